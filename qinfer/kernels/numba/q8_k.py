"""Q8_K quantize/dequantize, jitted (same bytes as qinfer.quants.q8_k, which
documents the format, and csrc/quant_q8_k.c)."""
import numpy as np
from numba import njit, prange

from .kq_search import nearest_int

F32 = np.float32
SIZE = 292


@njit(cache=True, parallel=True, error_model="numpy")
def _quantize_rows(x, out):
    nb = x.shape[1] // 256
    for r in prange(x.shape[0]):
        for i in range(nb):
            xs = x[r, 256 * i:256 * (i + 1)]
            blk = out[r, SIZE * i:SIZE * (i + 1)]
            amax = F32(0)
            top = F32(0)
            for j in range(256):
                if abs(xs[j]) > amax:
                    amax = abs(xs[j])
                    top = xs[j]
            qs = blk[4:260].view(np.int8)
            d = np.zeros(1, F32)
            if amax == 0:
                qs[:] = 0
            else:
                iscale = F32(-127.0) / top
                for j in range(256):
                    qs[j] = np.int8(min(127, nearest_int(iscale * xs[j])))
                d[0] = F32(1) / iscale
            blk[0:4] = d.view(np.uint8)
            bsums = np.zeros(16, np.int16)
            for j in range(16):
                s = 0
                for l in range(16):
                    s += np.int32(qs[16 * j + l])
                bsums[j] = np.int16(s)
            blk[260:292] = bsums.view(np.uint8)


def quantize_q8_k_ggml(x, imatrix=None):
    out = np.empty((x.shape[0], x.shape[1] // 256 * SIZE), dtype=np.uint8)
    _quantize_rows(x, out)
    return out


@njit(cache=True, parallel=True)
def _dequantize_rows(rows, out):
    nb = out.shape[1] // 256
    for r in prange(rows.shape[0]):
        for i in range(nb):
            blk = rows[r, SIZE * i:SIZE * (i + 1)]
            d = blk[0:4].copy().view(np.float32)[0]
            qs = blk[4:260].view(np.int8)
            for j in range(256):
                out[r, 256 * i + j] = d * F32(qs[j])


def dequantize_q8_k(rows, n_per_row):
    out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
    _dequantize_rows(rows, out)
    return out
