"""Q4_K / Q5_K quantize/dequantize, jitted: same bytes as qinfer.quants.q45_k
(the reference, which documents the layout and both quantizers) and as
csrc/quant_q45_k.c, mirrored operation for operation. Rows are split over
threads with prange; `nmax` (15 or 31) selects the type."""
import numpy as np
from numba import njit, prange

from .floats import fp32_to_fp16_bits
from .kq_asym_best import asym_search, first_max
from .kq_search import clampi, make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int
from .q2_k_layout import get_fp16, put_half
from .q3_k_q6_k_best import block_error, prefer

F32 = np.float32
# Search configuration of qinfer.quants.kq_asym_best.Q4 / Q5 (fit grid -0.9, 0.1, 18; two refits).
DIVISORS = np.array([63.0, 62.0, 61.0], dtype=np.float32)
MOVES = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)], dtype=np.int32)


@njit(cache=True)
def _qs_offset(nmax):
    return 16 if nmax == 15 else 48


@njit(cache=True)
def scale_min(j, blk):
    """ggml's get_scale_min_k4 on the 12 scale bytes at blk[4:16]."""
    q = blk[4:16]
    if j < 4:
        return np.int32(q[j]) & 63, np.int32(q[j + 4]) & 63
    sc = (np.int32(q[j + 4]) & 0xF) | ((np.int32(q[j - 4]) >> 6) << 4)
    m = (np.int32(q[j + 4]) >> 4) | ((np.int32(q[j]) >> 6) << 4)
    return sc, m


@njit(cache=True)
def pack_scales(ls, lm, blk):
    """Eight scale and min codes into blk[4:16], byte arithmetic as ggml's."""
    for k in range(12):
        blk[4 + k] = 0
    for j in range(8):
        a = np.int32(ls[j]) & 0xFF
        c = np.int32(lm[j]) & 0xFF
        if j < 4:
            blk[4 + j] = np.uint8(a)
            blk[8 + j] = np.uint8(c)
        else:
            blk[8 + j] = np.uint8((a & 0xF) | ((c & 0xF) << 4))
            blk[j] = np.uint8((np.int32(blk[j]) | ((a >> 4) << 6)) & 0xFF)
            blk[4 + j] = np.uint8((np.int32(blk[4 + j]) | ((c >> 4) << 6)) & 0xFF)


@njit(cache=True)
def pack_codes(nmax, L, blk):
    qs = _qs_offset(nmax)
    if nmax == 31:
        for l in range(32):
            h = 0
            for j in range(8):
                h |= ((np.int32(L[32 * j + l]) >> 4) & 1) << j
            blk[16 + l] = np.uint8(h)
    for c in range(4):
        for l in range(32):
            blk[qs + 32 * c + l] = np.uint8((np.int32(L[64 * c + l]) & 15) | ((np.int32(L[64 * c + 32 + l]) & 15) << 4))


@njit(cache=True)
def dequantize_block(nmax, blk, y):
    d = get_fp16(blk, 0)
    dmin = get_fp16(blk, 2)
    qs = _qs_offset(nmax)
    for j in range(8):
        sc, m = scale_min(j, blk)
        dl = d * F32(sc)
        ml = dmin * F32(m)
        base = qs + 32 * (j // 2)
        shift = 4 * (j % 2)
        for l in range(32):
            c = (np.int32(blk[base + l]) >> shift) & 15
            if nmax == 31:
                c |= ((np.int32(blk[16 + l]) >> j) & 1) << 4
            y[32 * j + l] = dl * F32(c) - ml


@njit(cache=True, parallel=True)
def _dequantize_rows(nmax, size, rows, out):
    nb = out.shape[1] // 256
    for r in prange(rows.shape[0]):
        for i in range(nb):
            dequantize_block(nmax, rows[r, i * size:(i + 1) * size], out[r, 256 * i:256 * (i + 1)])


def _dequantize(nmax, size, rows, n_per_row):
    out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
    _dequantize_rows(nmax, size, rows, out)
    return out


def dequantize_q4_k(rows, n_per_row):
    return _dequantize(15, 144, rows, n_per_row)


def dequantize_q5_k(rows, n_per_row):
    return _dequantize(31, 176, rows, n_per_row)


@njit(cache=True, error_model="numpy")
def ggml_block(nmax, x, qw, has_qw, blk):
    """quantize_row_q{4,5}_K_ref (has_qw False) or _impl for one super-block."""
    L = np.empty(256, np.int32)
    Laux = np.empty(32, np.int32)
    scales = np.empty(8, F32)
    mins = np.empty(8, F32)
    w = np.empty(32, F32)
    ls = np.empty(8, np.int32)
    lm = np.empty(8, np.int32)
    if not has_qw:
        rmin, rdelta, nstep = (F32(-1.0), F32(0.1), 20) if nmax == 15 else (F32(-0.5), F32(0.1), 15)
        for j in range(8):
            sum_x2 = F32(0)
            for l in range(32):
                sum_x2 += x[32 * j + l] * x[32 * j + l]
            av_x = np.sqrt(sum_x2 / F32(32))
            for l in range(32):
                w[l] = av_x + abs(x[32 * j + l])
            scales[j], mins[j] = make_qkx2_quants(x[32 * j:32 * j + 32], w, nmax, L[32 * j:32 * j + 32], Laux,
                                                  rmin, rdelta, nstep, False)
        max_scale = first_max(scales)
        max_min = first_max(mins)
        inv_scale = F32(63.0) / max_scale if max_scale > 0 else F32(0)
        inv_min = F32(63.0) / max_min if max_min > 0 else F32(0)
        for j in range(8):
            ls[j] = min(63, nearest_int(inv_scale * scales[j]) & 0xFF)
            lm[j] = min(63, nearest_int(inv_min * mins[j]) & 0xFF)
        d_bits = fp32_to_fp16_bits(max_scale / F32(63.0))
        dmin_bits = fp32_to_fp16_bits(max_min / F32(63.0))
    else:
        sum_x2 = F32(0)
        for l in range(256):
            sum_x2 += x[l] * x[l]
        sigma2 = F32(2) * sum_x2 / F32(256)
        sw = np.empty(8, F32)
        for j in range(8):
            for l in range(32):
                w[l] = qw[32 * j + l] * np.sqrt(sigma2 + x[32 * j + l] * x[32 * j + l])
            sumw = F32(0)
            for l in range(32):
                sumw += w[l]
            sw[j] = sumw
            scales[j], mins[j] = make_qkx3_quants(x[32 * j:32 * j + 32], w, True, nmax, L[32 * j:32 * j + 32],
                                                  Laux, F32(-0.9), F32(0.05), 36, False)
        d_bits = fp32_to_fp16_bits(make_qp_quants(scales, 63, ls, sw))
        dmin_bits = fp32_to_fp16_bits(make_qp_quants(mins, 63, lm, sw))
        if nmax == 31:            # Q5_K clamps these codes, Q4_K does not
            for j in range(8):
                ls[j] = min(63, ls[j])
                lm[j] = min(63, lm[j])
    put_half(blk, 0, d_bits)
    put_half(blk, 2, dmin_bits)
    pack_scales(ls, lm, blk)
    dd = get_fp16(blk, 0)
    dm = get_fp16(blk, 2)
    for j in range(8):
        sc, m = scale_min(j, blk)
        d = dd * F32(sc)
        if d == 0:
            continue
        mm = dm * F32(m)
        for l in range(32):
            L[32 * j + l] = clampi(nearest_int((x[32 * j + l] + mm) / d), 0, nmax)
    pack_codes(nmax, L, blk)


@njit(cache=True, error_model="numpy")
def best_block(nmax, x, qw, has_qw, blk):
    w = qw.copy() if has_qw else np.ones(256, F32)
    y = np.empty(256, F32)
    ggml_block(nmax, x, qw, has_qw, blk)
    dequantize_block(nmax, blk, y)
    err_g = block_error(x, w, y)
    sc = np.empty(8, np.int32)
    m = np.empty(8, np.int32)
    q = np.empty(256, np.int32)
    err, d_bits, dmin_bits = asym_search(x, w, 8, nmax, 63, F32(-0.9), F32(0.1), 18, DIVISORS, MOVES, 2,
                                         sc, m, q)
    if not prefer(err, err_g):
        return
    put_half(blk, 0, d_bits)
    put_half(blk, 2, dmin_bits)
    pack_scales(sc, m, blk)
    pack_codes(nmax, q, blk)


@njit(cache=True, parallel=True)
def _quantize_rows(nmax, size, x, qw, has_qw, out, best):
    nb = x.shape[1] // 256
    for r in prange(x.shape[0]):
        for i in range(nb):
            xs = x[r, 256 * i:256 * (i + 1)]
            ws = qw[256 * i:256 * (i + 1)]
            blk = out[r, size * i:size * (i + 1)]
            if best:
                best_block(nmax, xs, ws, has_qw, blk)
            else:
                ggml_block(nmax, xs, ws, has_qw, blk)


def _quantize(nmax, size, x, imatrix, best):
    out = np.empty((x.shape[0], x.shape[1] // 256 * size), dtype=np.uint8)
    has_qw = imatrix is not None
    qw = imatrix if has_qw else np.zeros(x.shape[1], np.float32)
    _quantize_rows(nmax, size, x, qw, has_qw, out, best)
    return out


def quantize_q4_k_ggml(x, imatrix=None):
    return _quantize(15, 144, x, imatrix, False)


def quantize_q4_k_best(x, imatrix=None):
    return _quantize(15, 144, x, imatrix, True)


def quantize_q5_k_ggml(x, imatrix=None):
    return _quantize(31, 176, x, imatrix, False)


def quantize_q5_k_best(x, imatrix=None):
    return _quantize(31, 176, x, imatrix, True)
