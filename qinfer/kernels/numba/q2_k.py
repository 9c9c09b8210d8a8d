"""Q2_K quantize/dequantize, jitted (same bytes as qinfer.quants.q2_k; the
"best" search is documented in qinfer.quants.q2_k_best).

Rows are split over threads with prange; each super-block is handled by
scalar float32 code that mirrors csrc/quant_q2_k.c operation for operation.
"""
import numpy as np
from numba import njit, prange

from .floats import fp16_bits_to_fp32, fp32_to_fp16_bits
from .q2_k_layout import get_fp16, pack_2bit, put_half
from .kq_search import clampi, make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int
from .q3_k_q6_k_best import block_error, prefer

BLOCK = 84
F32 = np.float32
INF = np.float32(np.inf)
# Same constants as qinfer.quants.q2_k_best (its fit grid RMIN, RDELTA, NSTEP is
# -0.9, 0.1, 18, passed to make_qkx3_quants in best_block).
DIVISORS = np.array([15.0, 14.0, 13.0], dtype=np.float32)
MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


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


@njit(cache=True)
def first_max(v):
    top = F32(0)
    for j in range(16):
        if v[j] > top:
            top = v[j]
    return top


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
def sub_error(x, w, dl, ml, q):
    inv = F32(1) / dl if dl != 0 else F32(0)
    err = F32(0)
    for l in range(16):
        v = clampi(nearest_int((x[l] + ml) * inv), 0, 3) if dl != 0 else 0
        q[l] = v
        diff = x[l] - (dl * F32(v) - ml)
        err += w[l] * diff * diff
    return err


@njit(cache=True, error_model="numpy")
def round_code(v, step):
    return clampi(nearest_int(v / step), 0, 15) if step != 0 else 0


@njit(cache=True, error_model="numpy")
def best_block(x, qw, has_qw, blk):
    w = qw.copy() if has_qw else np.ones(256, F32)
    y = np.empty(256, F32)
    scales = np.empty(16, F32)
    mins = np.empty(16, F32)
    Ltmp = np.empty(16, np.int32)
    Laux = np.empty(16, np.int32)
    ggml_block(x, qw, has_qw, blk)
    dequantize_block(blk, y)
    err_g = block_error(x, w, y)
    for j in range(16):
        scales[j], mins[j] = make_qkx3_quants(x[16 * j:16 * j + 16], w[16 * j:16 * j + 16], True, 3, Ltmp,
                                              Laux, F32(-0.9), F32(0.1), 18, False)
    max_scale = first_max(scales)
    max_min = first_max(mins)
    best_err = INF
    best_sc = np.zeros(16, np.int32)
    best_q = np.zeros(256, np.int32)
    best_d = np.uint16(0)
    best_dmin = np.uint16(0)
    c_sc = np.zeros(16, np.int32)
    c_q = np.zeros(256, np.int32)
    q = np.zeros(16, np.int32)
    for a in range(DIVISORS.shape[0]):
        d_bits = fp32_to_fp16_bits(max_scale / DIVISORS[a])
        d = fp16_bits_to_fp32(d_bits)
        for c in range(DIVISORS.shape[0]):
            dmin_bits = fp32_to_fp16_bits(max_min / DIVISORS[c])
            dmin = fp16_bits_to_fp32(dmin_bits)
            total = F32(0)
            c_sc[:] = 0
            c_q[:] = 0
            for j in range(16):
                sc0 = round_code(scales[j], d)
                m0 = round_code(mins[j], dmin)
                err_j = INF
                for mv in MOVES:
                    sc = clampi(sc0 + mv[0], 0, 15)
                    m = clampi(m0 + mv[1], 0, 15)
                    err = sub_error(x[16 * j:16 * j + 16], w[16 * j:16 * j + 16], d * F32(sc), dmin * F32(m), q)
                    if err < err_j:
                        err_j = err
                        c_sc[j] = sc | (m << 4)
                        c_q[16 * j:16 * j + 16] = q
                total += err_j
            if total < best_err:
                best_err = total
                best_d = d_bits
                best_dmin = dmin_bits
                best_sc[:] = c_sc
                best_q[:] = c_q
    if not prefer(best_err, err_g):
        return
    for j in range(16):
        blk[j] = np.uint8(best_sc[j])
    pack_2bit(best_q, blk, 16)
    put_half(blk, 80, best_d)
    put_half(blk, 82, best_dmin)


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
