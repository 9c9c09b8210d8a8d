"""GGUF tensor formats: quantize and dequantize, byte-compatible with ggml.

    blocks = quantize(x, "Q4_K", quantizer="best", imatrix=None)
    y = dequantize(blocks, "Q4_K", shape)

Two quantizers per type: "ggml" reproduces llama.cpp's llama-quantize bytes
(its reference quantizers, or its importance-matrix path when `imatrix` is
given); "best" (default) writes the same format with a lower (weighted) error.
Each type is implemented three times behind one interface (numpy reference in
this package, Numba and C in qinfer.kernels); all three give the same bytes.
"""
import numpy as np

from ..errors import QinferError
from .types import QUANTIZERS, TYPES, BY_ID, QuantType, get_type

__all__ = ["quantize", "dequantize", "row_bytes", "get_type", "QuantType", "TYPES",
           "BY_ID", "QUANTIZERS"]



def row_bytes(type, n_per_row: int) -> int:
    return get_type(type).row_bytes(n_per_row)


def _as_rows(x):
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        x = x.reshape(-1, x.shape[-1])
    return np.ascontiguousarray(x, dtype=np.float32)


def quantize(x, type, quantizer="best", imatrix=None, *, backend=None, n_threads=None):
    """Quantize float rows to `type` blocks.

    x: float array [rows, cols] (1-D is one row; more dims are flattened to rows).
    imatrix: optional float32 [cols] importance of each column (mean squared
    activation, as llama-imatrix computes it).
    Returns uint8 [rows, row_bytes(type, cols)].
    """
    from .. import kernels

    qt = get_type(type)
    if quantizer not in QUANTIZERS:
        raise QinferError(f"unknown quantizer {quantizer!r}; use one of {', '.join(QUANTIZERS)}")
    x = _as_rows(x)
    qt.row_bytes(x.shape[1])  # validates divisibility
    if imatrix is not None:
        imatrix = np.ascontiguousarray(imatrix, dtype=np.float32).reshape(-1)
        if imatrix.shape[0] != x.shape[1]:
            raise QinferError(
                f"importance matrix has {imatrix.shape[0]} entries for rows of {x.shape[1]}")
    if not qt.searched:
        quantizer = "ggml"
    return kernels.get_backend(backend).quantize(qt, quantizer, x, imatrix, n_threads)


def dequantize(blocks, type, shape=None, *, backend=None):
    """Decode `type` blocks back to float32 with the given logical shape.

    blocks: uint8 array of whole rows (any shape; flattened), or a bytes-like.
    shape: logical float shape (last dim = row length); default: one flat row.
    """
    from .. import kernels

    qt = get_type(type)
    raw = np.frombuffer(blocks, dtype=np.uint8) if isinstance(blocks, (bytes, bytearray, memoryview)) \
        else np.asarray(blocks)
    if raw.dtype != np.uint8:
        raw = raw.view(np.uint8)
    raw = np.ascontiguousarray(raw).reshape(-1)
    if raw.size % qt.type_size:
        raise QinferError(f"{qt.name} data of {raw.size} bytes is not whole blocks")
    n = raw.size // qt.type_size * qt.block_size
    if shape is None:
        shape = (n,)
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    if int(np.prod(shape)) != n:
        raise QinferError(f"{qt.name} data holds {n} values, not shape {shape}")
    n_per_row = shape[-1]
    qt.row_bytes(n_per_row)
    rows = raw.reshape(-1, qt.row_bytes(n_per_row))
    out = kernels.get_backend(backend).dequantize(qt, rows, n_per_row)
    return out.reshape(shape)
