"""Q2_K quantize/dequantize, jitted (same bytes as qinfer.quants.q2_k; the
"best" search is documented in qinfer.quants.kq_asym_best).

Rows are split over threads with prange; each super-block is handled by
scalar float32 code that mirrors csrc/quant_q2_k.c operation for operation.
"""
import numpy as np
from numba import njit, prange

from .floats import fp32_to_fp16_bits
from .q2_k_layout import get_fp16, pack_2bit, put_half
from .kq_search import clampi, make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int
from .kq_asym_best import asym_search, first_max
from .q3_k_q6_k_best import block_error, prefer

BLOCK = 84
F32 = np.float32
# Same search configuration as qinfer.quants.kq_asym_best.Q2 (fit grid -0.9, 0.1, 18).
DIVISORS = np.array([15.0, 14.0, 13.0], dtype=np.float32)
MOVES = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int32)


@njit(cache=True)
def dequantize_block(blk, y):
    d = get_fp16(blk, 80)
    dmin = get_fp16(blk, 82)
    for j in range(16):
        sc = np.int32(blk[j])
        dl = d * F32(sc & 15)
        ml = dmin * F32(sc >> 4)
        # sub-block j: half j // 8, bit shift 2 * ((j % 8) // 2), bytes 16 * (j % 2)..
        base = 16 + 32 * (j // 8) + 16 * (j % 2)
        shift = 2 * ((j % 8) // 2)
        for l in range(16):
            y[16 * j + l] = dl * F32((np.int32(blk[base + l]) >> shift) & 3) - ml


@njit(cache=True, parallel=True)
def _dequantize_rows(rows, out):
    nb = out.shape[1] // 256
    for r in prange(rows.shape[0]):
        for i in range(nb):
            dequantize_block(rows[r, i * BLOCK:(i + 1) * BLOCK], out[r, 256 * i:256 * (i + 1)])


def dequantize_q2_k(rows, n_per_row):
    out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
    _dequantize_rows(rows, out)
    return out


@njit(cache=True, error_model="numpy")
def finish_ggml(x, L, blk):
    """Requantize from the stored d, dmin, scales and mins (by division) and pack."""
    dm = get_fp16(blk, 80)
    mm = get_fp16(blk, 82)
    for j in range(16):
        sc = np.int32(blk[j])
        d = dm * F32(sc & 15)
        if d == 0:
            continue
        m = mm * F32(sc >> 4)
        for i in range(16):
            L[16 * j + i] = clampi(nearest_int((x[16 * j + i] + m) / d), 0, 3)
    pack_2bit(L, blk, 16)


@njit(cache=True, error_model="numpy")
def ggml_block(x, qw, has_qw, blk):
    """quantize_row_q2_K_ref (has_qw False) or quantize_row_q2_K_impl for one super-block."""
    L = np.empty(256, np.int32)
    Laux = np.empty(16, np.int32)
    scales = np.empty(16, F32)
    mins = np.empty(16, F32)
    w = np.empty(16, F32)
    if not has_qw:
        for j in range(16):
            for l in range(16):
                w[l] = abs(x[16 * j + l])
            scales[j], mins[j] = make_qkx2_quants(x[16 * j:16 * j + 16], w, 3, L[16 * j:16 * j + 16], Laux,
                                                  F32(-0.5), F32(0.1), 15, True)
        max_scale = first_max(scales)
        max_min = first_max(mins)
        if max_scale > 0:
            iscale = F32(15.0) / max_scale
            for j in range(16):
                blk[j] = np.uint8(nearest_int(iscale * scales[j]) & 0xFF)
            put_half(blk, 80, fp32_to_fp16_bits(max_scale / F32(15.0)))
        else:
            blk[0:16] = 0
            put_half(blk, 80, 0)
        if max_min > 0:
            iscale = F32(15.0) / max_min
            for j in range(16):
                blk[j] |= np.uint8((nearest_int(iscale * mins[j]) << 4) & 0xFF)
            put_half(blk, 82, fp32_to_fp16_bits(max_min / F32(15.0)))
        else:
            put_half(blk, 82, 0)
    else:
        sw = np.zeros(16, F32)
        Ls = np.empty(16, np.int32)
        Lm = np.empty(16, np.int32)
        sumx2 = F32(0)
        for i in range(256):
            sumx2 += x[i] * x[i]
        sigma2 = sumx2 / F32(256)
        for j in range(16):
            for l in range(16):
                w[l] = qw[16 * j + l] * np.sqrt(sigma2 + x[16 * j + l] * x[16 * j + l])
            for l in range(16):
                sw[j] += w[l]
            scales[j], mins[j] = make_qkx3_quants(x[16 * j:16 * j + 16], w, True, 3, L[16 * j:16 * j + 16],
                                                  Laux, F32(-0.9), F32(0.05), 36, False)
        dm = make_qp_quants(scales, 15, Ls, sw)
        mm = make_qp_quants(mins, 15, Lm, sw)
        put_half(blk, 80, fp32_to_fp16_bits(dm))
        put_half(blk, 82, fp32_to_fp16_bits(mm))
        for j in range(16):
            blk[j] = np.uint8((Ls[j] | (Lm[j] << 4)) & 0xFF)
    finish_ggml(x, L, blk)


@njit(cache=True, error_model="numpy")
def best_block(x, qw, has_qw, blk):
    w = qw.copy() if has_qw else np.ones(256, F32)
    y = np.empty(256, F32)
    ggml_block(x, qw, has_qw, blk)
    dequantize_block(blk, y)
    err_g = block_error(x, w, y)
    sc = np.empty(16, np.int32)
    m = np.empty(16, np.int32)
    q = np.empty(256, np.int32)
    err, d_bits, dmin_bits = asym_search(x, w, 16, 3, 15, F32(-0.9), F32(0.1), 18, DIVISORS, MOVES, 0,
                                         sc, m, q)
    if not prefer(err, err_g):
        return
    for j in range(16):
        blk[j] = np.uint8(sc[j] | (m[j] << 4))
    pack_2bit(q, blk, 16)
    put_half(blk, 80, d_bits)
    put_half(blk, 82, dmin_bits)


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


def quantize_q2_k_ggml(x, imatrix=None):
    return _quantize(x, imatrix, False)


def quantize_q2_k_best(x, imatrix=None):
    return _quantize(x, imatrix, True)
