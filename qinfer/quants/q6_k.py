"""Q6_K: 6.5625 bits per weight. Super-block of 256 = 16 sub-blocks of 16;
x = d * s_j * q with q in -32..31 and int8 s_j.

numpy reference (the oracle for the Numba and C versions):
- quantize_q6_k_ggml: llama.cpp's quantize_row_q6_K_ref (no imatrix) or
  quantize_row_q6_K_impl (imatrix), bit for bit;
- quantize_q6_k_best: same format, lower (imatrix-)weighted squared error;
- dequantize_q6_k: dequantize_row_q6_K.
"""
import numpy as np

from .q6_k_layout import QK_K, Q6_K_SIZE, unpack_q6_k


def dequantize_q6_k(rows, n_per_row):
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN scales decode as ggml's do
        return _dequantize(rows, n_per_row)


def _dequantize(rows, n_per_row):
    sc, q, d = unpack_q6_k(rows)
    dl = (d[:, None] * sc.astype(np.float32))[:, :, None]
    y = dl * q.reshape(-1, 16, 16).astype(np.float32)
    return y.reshape(rows.shape[0], n_per_row)
