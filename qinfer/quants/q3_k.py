"""Q3_K: 3.4375 bits per weight. Super-block of 256 = 16 sub-blocks of 16;
x = d * s_j * q with q in -4..3 and signed 6-bit s_j in -32..31.

numpy reference (the oracle for the Numba and C versions):
- quantize_q3_k_ggml: llama.cpp's quantize_row_q3_K_ref (no imatrix) or
  quantize_row_q3_K_impl (imatrix), bit for bit;
- quantize_q3_k_best: same format, lower (imatrix-)weighted squared error;
- dequantize_q3_k: dequantize_row_q3_K.
"""
import numpy as np

from .q3_k_layout import QK_K, Q3_K_SIZE, unpack_q3_k


def dequantize_q3_k(rows, n_per_row):
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN scales decode as ggml's do
        return _dequantize(rows, n_per_row)


def _dequantize(rows, n_per_row):
    sc, q, d = unpack_q3_k(rows)
    dl = (d[:, None] * sc.astype(np.float32))[:, :, None]
    y = dl * q.reshape(-1, 16, 16).astype(np.float32)
    return y.reshape(rows.shape[0], n_per_row)
