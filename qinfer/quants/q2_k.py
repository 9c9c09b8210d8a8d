"""Q2_K: 2.625 bits per weight. Super-block of 256 = 16 sub-blocks of 16;
x = d * sc_j * q - dmin * m_j with q in 0..3 and 4-bit sc_j, m_j.

numpy reference (the oracle for the Numba and C versions):
- quantize_q2_k_ggml: llama.cpp's quantize_row_q2_K_ref (no imatrix) or
  quantize_row_q2_K_impl (imatrix), bit for bit;
- quantize_q2_k_best: same format, lower (imatrix-)weighted squared error;
- dequantize_q2_k: dequantize_row_q2_K.
"""
import numpy as np

from .q2_k_layout import QK_K, Q2_K_SIZE, unpack_q2_k


def dequantize_q2_k(rows, n_per_row):
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN scales decode as ggml's do
        return _dequantize(rows, n_per_row)


def _dequantize(rows, n_per_row):
    sc, q, d, dmin = unpack_q2_k(rows)
    dl = (d[:, None] * (sc & 15).astype(np.float32))[:, :, None]
    ml = (dmin[:, None] * (sc >> 4).astype(np.float32))[:, :, None]
    y = dl * q.reshape(-1, 16, 16).astype(np.float32) - ml
    return y.reshape(rows.shape[0], n_per_row)
