"""Reference backend: the numpy implementations in qinfer.quants.<family>.

Per type, module qinfer.quants.<qt.module> provides
    quantize_<key>_<quantizer>(x: f32[rows, n], imatrix: f32[n] | None) -> u8[rows, row_bytes]
    dequantize_<key>(blocks: u8[rows, row_bytes], n_per_row) -> f32[rows, n]

matmul(qt, w, x, out=None, n_threads=None) -> out computes y = x @ W.T by
dequantizing W and multiplying in float64: the oracle of the other backends.
"""
import importlib

import numpy as np

from ..errors import QinferError, UnsupportedError
from ._dispatch import missing


class Backend:
    name = "numpy"

    def describe(self):
        return "numpy reference (slow, used as the oracle)"

    def _fn(self, qt, prefix):
        try:
            mod = importlib.import_module(f"qinfer.quants.{qt.module}")
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.startswith("qinfer."):
                raise
            missing(self.name, f"{prefix} ({qt.name})")
        fn = getattr(mod, f"{prefix}", None)
        if fn is None:
            missing(self.name, f"{prefix} ({qt.name})")
        return fn

    def quantize(self, qt, quantizer, x, imatrix, n_threads=None):
        return self._fn(qt, f"quantize_{qt.key}_{quantizer}")(x, imatrix)

    def dequantize(self, qt, rows, n_per_row):
        return self._fn(qt, f"dequantize_{qt.key}")(rows, n_per_row)

    @staticmethod
    def matmul_args(qt, w, x, out):
        """Validate matmul operands (shared by all backends).

        Returns (qt, w, x, out): x as C-contiguous float32 [n_tok, n_in]; w
        untouched (it may be a memmap slice; only its rows must be contiguous);
        out allocated as float32 [n_tok, n_out] when None.
        """
        from ..quants import get_type

        qt = get_type(qt)
        if qt.name == "Q8_K":
            raise UnsupportedError("Q8_K is an activation format; no matmul has Q8_K weights")
        x = np.asarray(x)
        if x.ndim != 2:
            raise QinferError(f"matmul activations must be 2-D [n_tok, n_in], got shape {x.shape}")
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        n_tok, n_in = x.shape
        rb = qt.row_bytes(n_in)
        if not isinstance(w, np.ndarray) or w.dtype != np.uint8 or w.ndim != 2:
            raise QinferError(f"{qt.name} weights must be a 2-D uint8 array of rows")
        if w.shape[1] != rb:
            raise QinferError(f"{qt.name} weight rows of {w.shape[1]} bytes do not hold the "
                              f"{n_in} inputs of the activations ({rb} bytes)")
        if w.shape[0] and w.strides[1] != 1:
            raise QinferError(f"{qt.name} weight rows must be contiguous in memory")
        shape = (n_tok, w.shape[0])
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif (not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float32
              or not out.flags.c_contiguous):
            raise QinferError(f"matmul output must be a C-contiguous float32 array of shape {shape}")
        return qt, w, x, out

    @staticmethod
    def bound_activations(x, n_in, name):
        """x as C-contiguous float32 [n_tok, n_in] for a bound matmul (the
        per-call half of matmul_args; the weights were checked at binding)."""
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != n_in:
            raise QinferError(f"{name}: activations of shape {x.shape}, expected [n, {n_in}]")
        return x

    def matmul(self, qt, w, x, out=None, n_threads=None):
        """y = x @ W.T with W dequantized by the reference code, in float64."""
        from ..quants import dequantize

        qt, w, x, out = self.matmul_args(qt, w, x, out)
        wf = dequantize(w, qt, (w.shape[0], x.shape[1]), backend=self)
        out[...] = x.astype(np.float64) @ wf.astype(np.float64).T
        return out
