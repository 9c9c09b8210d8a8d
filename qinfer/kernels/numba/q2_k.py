"""Q2_K quantize/dequantize, jitted (same bytes as qinfer.quants.q2_k)."""
import numpy as np
from numba import njit, prange

from .q2_k_layout import get_fp16

BLOCK = 84


@njit(cache=True, parallel=True)
def _dequantize_rows(rows, out):
    nb = out.shape[1] // 256
    for r in prange(rows.shape[0]):
        for i in range(nb):
            blk = rows[r, i * BLOCK:(i + 1) * BLOCK]
            d = get_fp16(blk, 80)
            dmin = get_fp16(blk, 82)
            for j in range(16):
                sc = np.int32(blk[j])
                dl = d * np.float32(sc & 15)
                ml = dmin * np.float32(sc >> 4)
                # sub-block j: half h = j // 8, shift 2 * ((j % 8) // 2), bytes 16*(j % 2)..
                h = j // 8
                shift = 2 * ((j % 8) // 2)
                base = 16 + 32 * h + 16 * (j % 2)
                for l in range(16):
                    q = (np.int32(blk[base + l]) >> shift) & 3
                    out[r, 256 * i + 16 * j + l] = dl * np.float32(q) - ml


def dequantize_q2_k(rows, n_per_row):
    out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
    _dequantize_rows(rows, out)
    return out
