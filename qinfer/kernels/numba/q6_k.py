"""Q6_K quantize/dequantize, jitted (same bytes as qinfer.quants.q6_k).

Rows are split over threads with prange; each super-block is handled by
scalar float32 code that mirrors csrc/quant_q6_k.c operation for operation.
"""
import numpy as np
from numba import njit, prange

from .floats import fp16_bits_to_fp32, fp32_to_fp16_bits
from .q2_k_layout import get_fp16, put_half
from .kq_search import GROUP_MAX_EPS, clampi, make_qx_quants, nearest_int
from .q3_k_q6_k_best import block_error, fit_scale, prefer, search, signed_max

BLOCK = 210
F32 = np.float32
# Same grid and divisors as qinfer.quants.q6_k (BEST_GRID, BEST_DIVISORS).
GRID = np.array([F32(-32.0) + F32(0.4) * F32(i) for i in range(-10, 15)], dtype=np.float32)
DIVISORS = np.array([-128.0, -127.0, -126.0, 127.0], dtype=np.float32)


@njit(cache=True)
def q6_code(blk, e):
    """Stored code (0..63) of weight e of one Q6_K super-block."""
    h = e // 128
    k = (e % 128) // 32
    l = e % 32
    low = (np.int32(blk[64 * h + 32 * (k % 2) + l]) >> (4 * (k // 2))) & 15
    high = (np.int32(blk[128 + 32 * h + l]) >> (2 * k)) & 3
    return low | (high << 4)


@njit(cache=True)
def dequantize_block(blk, y):
    d = get_fp16(blk, 208)
    for j in range(16):
        dl = d * F32(np.int8(blk[192 + j]))
        for l in range(16):
            e = 16 * j + l
            y[e] = dl * F32(q6_code(blk, e) - 32)


@njit(cache=True, parallel=True)
def _dequantize_rows(rows, out):
    nb = out.shape[1] // 256
    for r in prange(rows.shape[0]):
        for i in range(nb):
            dequantize_block(rows[r, i * BLOCK:(i + 1) * BLOCK], out[r, 256 * i:256 * (i + 1)])


def dequantize_q6_k(rows, n_per_row):
    out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
    _dequantize_rows(rows, out)
    return out


@njit(cache=True)
def pack_codes(L, blk):
    """Codes 0..63 in element order -> ql, qh."""
    for h in range(2):
        for l in range(32):
            c0 = L[128 * h + l]
            c1 = L[128 * h + l + 32]
            c2 = L[128 * h + l + 64]
            c3 = L[128 * h + l + 96]
            blk[64 * h + l] = np.uint8((c0 & 15) | ((c2 & 15) << 4))
            blk[64 * h + 32 + l] = np.uint8((c1 & 15) | ((c3 & 15) << 4))
            blk[128 + 32 * h + l] = np.uint8((c0 >> 4) | ((c1 >> 4) << 2) | ((c2 >> 4) << 4) | ((c3 >> 4) << 6))


@njit(cache=True, error_model="numpy")
def ggml_block(x, qw, has_qw, blk):
    """quantize_row_q6_K_ref (has_qw False) or quantize_row_q6_K_impl for one super-block."""
    scales = np.empty(16, F32)
    L = np.empty(256, np.int32)
    for j in range(16):
        scales[j] = make_qx_quants(x[16 * j:16 * j + 16], 32, L[16 * j:16 * j + 16],
                                   qw[16 * j:16 * j + 16], has_qw)
    max_scale = signed_max(scales)
    if abs(max_scale) < GROUP_MAX_EPS:
        blk[:] = 0
        return
    iscale = F32(-128.0) / max_scale
    d_bits = fp32_to_fp16_bits(F32(1.0) / iscale)
    for j in range(16):
        blk[192 + j] = np.uint8(np.int8(min(127, nearest_int(iscale * scales[j]))) & 0xFF)
    d_all = fp16_bits_to_fp32(d_bits)
    for j in range(16):
        d = d_all * F32(np.int8(blk[192 + j]))
        if d == 0:
            continue
        for i in range(16):
            L[16 * j + i] = clampi(nearest_int(x[16 * j + i] / d), -32, 31) + 32
    pack_codes(L, blk)
    put_half(blk, 208, d_bits)


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
        scales[j] = fit_scale(x[16 * j:16 * j + 16], w[16 * j:16 * j + 16], -32, 31, GRID)
    err, d_bits = search(x, w, scales, -32, 31, -128, 127, DIVISORS, s, q)
    if not prefer(err, err_g):
        return
    for i in range(256):
        q[i] += 32
    pack_codes(q, blk)
    for j in range(16):
        blk[192 + j] = np.uint8(s[j] & 0xFF)
    put_half(blk, 208, d_bits)


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


def quantize_q6_k_ggml(x, imatrix=None):
    return _quantize(x, imatrix, False)


def quantize_q6_k_best(x, imatrix=None):
    return _quantize(x, imatrix, True)
