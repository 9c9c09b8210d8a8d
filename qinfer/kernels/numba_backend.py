"""Numba backend: jitted kernels in qinfer.kernels.numba.<family>.

Same function names and signatures as the numpy reference (see
numpy_backend); matmuls and ops share rows through row_pool's threads.
matmul(qt, w, x, out=None, n_threads=None) is qinfer.kernels.numba.matmul.
"""
import importlib

import numba  # noqa: F401  (import error here = backend unavailable)
import numpy as np

from ._dispatch import missing
from .numpy_backend import Backend as _Reference


class Backend:
    name = "numba"

    def describe(self):
        return f"numba {numba.__version__} (jitted, cached on first use)"

    def _fn(self, qt, prefix):
        try:
            mod = importlib.import_module(f"qinfer.kernels.numba.{qt.module}")
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.startswith("qinfer."):
                raise
            missing(self.name, f"{prefix} ({qt.name})")
        fn = getattr(mod, prefix, None)
        if fn is None:
            missing(self.name, f"{prefix} ({qt.name})")
        return fn

    def quantize(self, qt, quantizer, x, imatrix, n_threads=None):
        return self._fn(qt, f"quantize_{qt.key}_{quantizer}")(x, imatrix)

    def dequantize(self, qt, rows, n_per_row):
        from .numba.ops import numba_threads

        # A row or two (the embedding of a generated token) on the calling
        # thread: waking Numba's pool would cost more than the work.
        with numba_threads(1 if len(rows) <= 2 else None):
            return self._fn(qt, f"dequantize_{qt.key}")(rows, n_per_row)

    def matmul(self, qt, w, x, out=None, n_threads=None):
        """y = x @ W.T (see qinfer.kernels.numpy_backend.Backend.matmul_args)."""
        from .numba import matmul as mm

        qt, w, x, out = _Reference.matmul_args(qt, w, x, out)
        return mm.matmul(qt, w, x, out, n_threads)

    def bind_matmul(self, qt, w, n_in, n_threads=None):
        """x -> x @ W.T for one weight matrix, checks and the kernels' view of
        its rows worked out once (generation calls each matrix per token)."""
        from .numba import matmul as mm

        qt, w, _, _ = _Reference.matmul_args(qt, w, np.zeros((0, n_in), np.float32), None)
        if isinstance(w, np.memmap):
            w = w.view(np.ndarray)
        n_out = w.shape[0]
        if (qt.block_size == 1 and qt.name not in ("F16", "BF16")) or n_out == 0:
            return lambda x: self.matmul(qt, w, x, n_threads=n_threads)
        flat, stride = mm.weight_rows(qt, w)
        name = f"matmul ({qt.name})"

        def run(x):
            x = _Reference.bound_activations(x, n_in, name)
            out = np.empty((x.shape[0], n_out), dtype=np.float32)
            return mm.matmul_rows(qt, flat, stride, n_out, x, out, n_threads)

        return run

