"""Q6_K quantize/dequantize, jitted (same bytes as qinfer.quants.q6_k)."""
import numpy as np
from numba import njit, prange

from .q2_k_layout import get_fp16

BLOCK = 210


@njit(cache=True, inline="always")
def q6_code(blk, e):
    """Stored code (0..63) of weight e of one Q6_K super-block."""
    h = e // 128
    k = (e % 128) // 32
    l = e % 32
    low = (np.int32(blk[64 * h + 32 * (k % 2) + l]) >> (4 * (k // 2))) & 15
    high = (np.int32(blk[128 + 32 * h + l]) >> (2 * k)) & 3
    return low | (high << 4)


@njit(cache=True, parallel=True)
def _dequantize_rows(rows, out):
    nb = out.shape[1] // 256
    for r in prange(rows.shape[0]):
        for i in range(nb):
            blk = rows[r, i * BLOCK:(i + 1) * BLOCK]
            d = get_fp16(blk, 208)
            for j in range(16):
                dl = d * np.float32(np.int8(blk[192 + j]))
                for l in range(16):
                    e = 16 * j + l
                    out[r, 256 * i + e] = dl * np.float32(q6_code(blk, e) - 32)


def dequantize_q6_k(rows, n_per_row):
    out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
    _dequantize_rows(rows, out)
    return out
