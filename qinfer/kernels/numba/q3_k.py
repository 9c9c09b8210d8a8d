"""Q3_K quantize/dequantize, jitted (same bytes as qinfer.quants.q3_k)."""
import numpy as np
from numba import njit, prange

from .q2_k_layout import get_fp16, q3_scale

BLOCK = 110


@njit(cache=True, parallel=True)
def _dequantize_rows(rows, out):
    nb = out.shape[1] // 256
    for r in prange(rows.shape[0]):
        for i in range(nb):
            blk = rows[r, i * BLOCK:(i + 1) * BLOCK]
            d = get_fp16(blk, 108)
            for j in range(16):
                dl = d * np.float32(q3_scale(blk, 96, j))
                h = j // 8
                shift = 2 * ((j % 8) // 2)
                for l in range(16):
                    e = 16 * j + l
                    low = (np.int32(blk[32 + 32 * h + 16 * (j % 2) + l]) >> shift) & 3
                    hbit = (np.int32(blk[e % 32]) >> (e // 32)) & 1
                    q = low - (0 if hbit else 4)
                    out[r, 256 * i + e] = dl * np.float32(q)


def dequantize_q3_k(rows, n_per_row):
    out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
    _dequantize_rows(rows, out)
    return out
