"""Q3_K quantize/dequantize, jitted (same bytes as qinfer.quants.q3_k).

Rows are split over threads with prange; each super-block is handled by
scalar float32 code that mirrors csrc/quant_q3_k.c operation for operation.
"""
import numpy as np
from numba import njit, prange

from .floats import fp16_bits_to_fp32, fp32_to_fp16_bits
from .q2_k_layout import get_fp16, pack_2bit, put_half
from .kq_search import clampi, make_q3_quants, make_qx_quants, nearest_int
from .q3_k_q6_k_best import block_error, fit_scale, prefer, search, signed_max

BLOCK = 110
F32 = np.float32
# Same grid and divisors as qinfer.quants.q3_k (BEST_GRID, BEST_DIVISORS).
GRID = np.array([F32(-4.0) + F32(0.1) * F32(i) for i in range(-10, 11)]
                + [F32(3.0) + F32(0.1) * F32(i) for i in range(-8, 11)], dtype=np.float32)
DIVISORS = np.array([-32.0, -31.0, -30.0, -29.0, 31.0, 30.0], dtype=np.float32)


@njit(cache=True)
def pack_q3_scales(biased, blk, off):
    """16 six-bit scales (0..63, +32 bias applied) -> 12 bytes at blk[off:]."""
    for j in range(12):
        blk[off + j] = 0
    for j in range(16):
        l = biased[j]
        if j < 8:
            blk[off + j] = np.uint8(l & 15)
        else:
            blk[off + j - 8] |= np.uint8((l & 15) << 4)
        blk[off + 8 + j % 4] |= np.uint8((l >> 4) << (2 * (j // 4)))


@njit(cache=True)
def q3_scale(blk, off, j):
    """Signed sub-scale j (-32..31) of the 12 packed bytes at blk[off:]."""
    low = (np.int32(blk[off + j]) & 15) if j < 8 else (np.int32(blk[off + j - 8]) >> 4)
    return (low | (((np.int32(blk[off + 8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32


@njit(cache=True)
def dequantize_block(blk, y):
    d = get_fp16(blk, 108)
    for j in range(16):
        dl = d * F32(q3_scale(blk, 96, j))
        h = j // 8
        shift = 2 * ((j % 8) // 2)
        for l in range(16):
            e = 16 * j + l
            low = (np.int32(blk[32 + 32 * h + 16 * (j % 2) + l]) >> shift) & 3
            hbit = (np.int32(blk[e % 32]) >> (e // 32)) & 1
            y[e] = dl * F32(low - (0 if hbit else 4))


@njit(cache=True, parallel=True)
def _dequantize_rows(rows, out):
    nb = out.shape[1] // 256
    for r in prange(rows.shape[0]):
        for i in range(nb):
            dequantize_block(rows[r, i * BLOCK:(i + 1) * BLOCK], out[r, 256 * i:256 * (i + 1)])


def dequantize_q3_k(rows, n_per_row):
    out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
    _dequantize_rows(rows, out)
    return out


@njit(cache=True)
def pack_codes(L, blk):
    """Codes 0..7 (q + 4) in element order -> hmask and the 2-bit field."""
    low = np.empty(256, np.int32)
    for e in range(32):
        blk[e] = 0
    for e in range(256):
        if L[e] > 3:
            blk[e % 32] |= np.uint8(1 << (e // 32))
        low[e] = L[e] & 3
    pack_2bit(low, blk, 32)


@njit(cache=True, error_model="numpy")
def finish_ggml(x, biased, d_bits, L, blk):
    """Requantize from the stored d and sub-scales (by division) and pack."""
    pack_q3_scales(biased, blk, 96)
    d_all = fp16_bits_to_fp32(d_bits)
    for j in range(16):
        d = d_all * F32(q3_scale(blk, 96, j))
        if d == 0:
            continue
        for i in range(16):
            L[16 * j + i] = clampi(nearest_int(x[16 * j + i] / d), -4, 3) + 4
    pack_codes(L, blk)
    put_half(blk, 108, d_bits)


@njit(cache=True, error_model="numpy")
def ggml_block(x, qw, has_qw, blk):
    """quantize_row_q3_K_ref (has_qw False) or quantize_row_q3_K_impl for one super-block."""
    scales = np.empty(16, F32)
    L = np.empty(256, np.int32)
    biased = np.zeros(16, np.int32)
    if not has_qw:
        for j in range(16):
            scales[j] = make_q3_quants(x[16 * j:16 * j + 16], 4, L[16 * j:16 * j + 16])
        max_scale = signed_max(scales)
        d_bits = np.uint16(0)
        if max_scale != 0:
            iscale = F32(-32.0) / max_scale
            for j in range(16):
                l = np.int32(np.int8(nearest_int(iscale * scales[j]) & 0xFF))   # int8 first, as ggml
                biased[j] = clampi(l, -32, 31) + 32
            d_bits = fp32_to_fp16_bits(F32(1.0) / iscale)
    else:
        w = np.empty(16, F32)
        sw = np.empty(16, F32)
        Ls = np.empty(16, np.int32)
        sumx2 = F32(0)
        for i in range(256):
            sumx2 += x[i] * x[i]
        sigma2 = F32(2) * sumx2 / F32(256)
        for j in range(16):
            sumw = F32(0)
            for l in range(16):
                w[l] = qw[16 * j + l] * np.sqrt(sigma2 + x[16 * j + l] * x[16 * j + l])
            for l in range(16):
                sumw += w[l]
            sw[j] = sumw
            scales[j] = make_qx_quants(x[16 * j:16 * j + 16], 4, L[16 * j:16 * j + 16], w, True)
        d_bits = fp32_to_fp16_bits(make_qx_quants(scales, 32, Ls, sw, True))
        for j in range(16):
            biased[j] = Ls[j]
    finish_ggml(x, biased, d_bits, L, blk)


@njit(cache=True, error_model="numpy")
def best_block(x, qw, has_qw, blk):
    w = qw.copy() if has_qw else np.ones(256, F32)
    y = np.empty(256, F32)
    scales = np.empty(16, F32)
    s = np.empty(16, np.int32)
    q = np.empty(256, np.int32)
    ggml_block(x, qw, has_qw, blk)
    dequantize_block(blk, y)
    err_g = block_error(x, w, y)
    for j in range(16):
        scales[j] = fit_scale(x[16 * j:16 * j + 16], w[16 * j:16 * j + 16], -4, 3, GRID)
    err, d_bits = search(x, w, scales, -4, 3, -32, 31, DIVISORS, s, q)
    if not prefer(err, err_g):
        return
    for i in range(256):
        q[i] += 4
    for j in range(16):
        s[j] += 32
    pack_codes(q, blk)
    pack_q3_scales(s, blk, 96)
    put_half(blk, 108, d_bits)


@njit(cache=True, parallel=True)
def _quantize_rows(x, qw, has_qw, out, best):
    nb = x.shape[1] // 256
    for r in prange(x.shape[0]):
        for i in range(nb):
            xs = x[r, 256 * i:256 * (i + 1)]
            ws = qw[256 * i:256 * (i + 1)]
            blk = out[r, BLOCK * i:BLOCK * (i + 1)]
            if best:
                best_block(xs, ws, has_qw, blk)
            else:
                ggml_block(xs, ws, has_qw, blk)


def _quantize(x, imatrix, best):
    out = np.empty((x.shape[0], x.shape[1] // 256 * BLOCK), dtype=np.uint8)
    has_qw = imatrix is not None
    qw = imatrix if has_qw else np.zeros(x.shape[1], np.float32)
    _quantize_rows(x, qw, has_qw, out, best)
    return out


def quantize_q3_k_ggml(x, imatrix=None):
    return _quantize(x, imatrix, False)


def quantize_q3_k_best(x, imatrix=None):
    return _quantize(x, imatrix, True)
