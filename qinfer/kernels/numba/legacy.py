"""Legacy formats Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, jitted; same bytes as the numpy
reference (qinfer/quants/legacy*.py) and csrc/quant_legacy.c."""
import numpy as np
from numba import njit, prange

from .floats import fp16_bits_to_fp32, fp32_to_fp16_bits
from .kq_search import make_qkx3_quants

F32 = np.float32
QK = 32
# kind: bits, nmax, offset, has_min, type_size  (order: q8_0, q4_0, q5_0, q4_1, q5_1)
LAYOUT = np.array([[8, 127, 0, 0, 34], [4, 8, 8, 0, 18], [5, 16, 16, 0, 22],
                   [4, 15, 0, 1, 20], [5, 31, 0, 1, 24]], dtype=np.int64)
KIND = {"q8_0": 0, "q4_0": 1, "q5_0": 2, "q4_1": 3, "q5_1": 4}


@njit(cache=True, inline="always")
def _f16r(v):
    return fp16_bits_to_fp32(fp32_to_fp16_bits(F32(v)))


@njit(cache=True)
def _put_f16(b, pos, v):
    h = fp32_to_fp16_bits(F32(v))
    b[pos] = h & 0xFF
    b[pos + 1] = h >> 8


@njit(cache=True)
def _get_f16(b, pos):
    return fp16_bits_to_fp32(np.uint16(b[pos]) | (np.uint16(b[pos + 1]) << 8))


@njit(cache=True)
def _pack(kind, b, d, m, L):
    bits, has_min = LAYOUT[kind, 0], LAYOUT[kind, 3]
    _put_f16(b, 0, d)
    pos = 2
    if has_min:
        _put_f16(b, 2, m)
        pos = 4
    if kind == 0:
        for j in range(QK):
            b[2 + j] = np.uint8(L[j] & 0xFF)
        return
    if bits == 5:
        qh = 0
        for j in range(QK):
            qh |= ((L[j] >> 4) & 1) << j
        for k in range(4):
            b[pos + k] = (qh >> (8 * k)) & 0xFF
        pos += 4
    for j in range(16):
        b[pos + j] = (L[j] & 15) | ((L[j + 16] & 15) << 4)


@njit(cache=True)
def _unpack(kind, b, L):
    bits, has_min = LAYOUT[kind, 0], LAYOUT[kind, 3]
    d = _get_f16(b, 0)
    m = F32(0)
    pos = 2
    if has_min:
        m = _get_f16(b, 2)
        pos = 4
    if kind == 0:
        for j in range(QK):
            v = int(b[2 + j])
            L[j] = v - 256 if v > 127 else v
        return d, m
    qh = 0
    if bits == 5:
        for k in range(4):
            qh |= int(b[pos + k]) << (8 * k)
        pos += 4
    for j in range(16):
        L[j] = b[pos + j] & 15
        L[j + 16] = b[pos + j] >> 4
    if bits == 5:
        for j in range(QK):
            L[j] |= ((qh >> j) & 1) << 4
    return d, m


@njit(cache=True)
def _signed_absmax(x):
    amax = F32(0)
    mx = F32(0)
    for j in range(QK):
        a = abs(x[j])
        if amax < a:
            amax = a
            mx = x[j]
    return mx


@njit(cache=True)
def _ggml_block(kind, x, b):
    nmax = LAYOUT[kind, 1]
    L = np.empty(QK, np.int64)
    if kind == 0:
        amax = F32(0)
        for j in range(QK):
            amax = max(amax, abs(x[j]))
        d = F32(amax / F32(127))
        idv = F32(F32(1) / d) if d != 0 else F32(0)
        for j in range(QK):
            v = np.float64(F32(x[j] * idv))
            L[j] = int(np.sign(v) * np.floor(abs(v) + 0.5))
        _pack(kind, b, d, F32(0), L)
    elif LAYOUT[kind, 3] == 0:
        mx = _signed_absmax(x)
        d = F32(mx / F32(-nmax))
        idv = F32(F32(1) / d) if d != 0 else F32(0)
        bias = F32(nmax + 0.5)
        for j in range(QK):
            q = int(F32(F32(x[j] * idv) + bias))
            L[j] = min(q, 2 * nmax - 1)
        _pack(kind, b, d, F32(0), L)
    else:
        mn = F32(np.inf)
        mx = F32(-np.inf)
        for j in range(QK):
            if x[j] < mn:
                mn = x[j]
            if x[j] > mx:
                mx = x[j]
        d = F32(F32(mx - mn) / F32(nmax))
        idv = F32(F32(1) / d) if d != 0 else F32(0)
        for j in range(QK):
            q = int(F32(F32(F32(x[j] - mn) * idv) + F32(0.5)))
            L[j] = min(q, 15) if kind == 3 else q
        _pack(kind, b, d, mn, L)


@njit(cache=True)
def _make_qx_w(x, nmax, L, w):
    mx = F32(0)
    amax = F32(0)
    for i in range(QK):
        ax = abs(x[i])
        if ax > amax:
            amax = ax
            mx = x[i]
    if amax < F32(1e-15):
        for i in range(QK):
            L[i] = 0
        return F32(0)
    iscale = F32(F32(-nmax) / mx)
    sumlx = F32(0)
    suml2 = F32(0)
    for i in range(QK):
        l = min(max(int(np.rint(F32(iscale * x[i]))), -nmax), nmax - 1)
        L[i] = l + nmax
        sumlx = F32(sumlx + F32(F32(w[i] * x[i]) * F32(l)))
        suml2 = F32(suml2 + F32(F32(w[i] * F32(l)) * F32(l)))
    scale = F32(sumlx / suml2) if suml2 != 0 else F32(0)
    best = F32(scale * sumlx)
    for is_ in range(-9, 10):
        if is_ == 0:
            continue
        iscale = F32(F32(-F32(F32(nmax) + F32(F32(0.1) * F32(is_)))) / mx)
        sumlx = F32(0)
        suml2 = F32(0)
        for i in range(QK):
            l = min(max(int(np.rint(F32(iscale * x[i]))), -nmax), nmax - 1)
            sumlx = F32(sumlx + F32(F32(w[i] * x[i]) * F32(l)))
            suml2 = F32(suml2 + F32(F32(w[i] * F32(l)) * F32(l)))
        if suml2 > 0 and F32(sumlx * sumlx) > F32(best * suml2):
            for i in range(QK):
                L[i] = nmax + min(max(int(np.rint(F32(iscale * x[i]))), -nmax), nmax - 1)
            scale = F32(sumlx / suml2)
            best = F32(scale * sumlx)
    return scale


@njit(cache=True, parallel=True)
def _quantize_ggml_rows(kind, x, out, imatrix, use_im):
    nrows, n = x.shape
    nb = n // QK
    ts = LAYOUT[kind, 4]
    nmax = LAYOUT[kind, 1]
    for r in prange(nrows):
        xr = x[r]
        sigma2 = F32(0)
        if use_im:
            s = F32(0)
            for j in range(n):
                s = F32(s + F32(xr[j] * xr[j]))
            sigma2 = F32(s / F32(n))
        w = np.empty(QK, F32)
        L = np.empty(QK, np.int64)
        Lq = np.empty(QK, np.int32)
        Laux = np.empty(QK, np.int32)
        for ib in range(nb):
            xb = xr[ib * QK:(ib + 1) * QK]
            blk = out[r, ib * ts:(ib + 1) * ts]
            if use_im:
                for j in range(QK):
                    w[j] = F32(imatrix[ib * QK + j] * np.sqrt(F32(sigma2 + F32(xb[j] * xb[j]))))
                if LAYOUT[kind, 3]:       # has a min: quantize_row_q{4,5}_1_impl
                    d, the_min = make_qkx3_quants(xb, w, True, nmax, Lq, Laux, F32(-0.9), F32(0.05), 36, False)
                    for j in range(QK):
                        L[j] = Lq[j]
                    _pack(kind, blk, d, -the_min, L)
                else:
                    d = _make_qx_w(xb, nmax, L, w)
                    _pack(kind, blk, d, F32(0), L)
            else:
                _ggml_block(kind, xb, blk)


# `best`: qinfer/quants/legacy_best.py, block by block. Trials of the symmetric
# types (t0, step, n) in kind order q8_0, q4_0, q5_0, and Q4_1/Q5_1's range trims.
SYM_TRIALS = np.array([[121.0, 1.0, 8], [7.25, 0.5, 4], [15.0, 0.25, 8]], dtype=np.float32)
TRIM_A = np.array([0.0, 0.375], dtype=np.float32)
TRIM_B = np.array([0.375, 0.0], dtype=np.float32)


@njit(cache=True)
def _lane_sum(v):
    """Eight running sums over the quarters, then lanes j+4, j+2, j+1 folded in."""
    s = np.empty(8, F32)
    for j in range(8):
        a = F32(v[j] + v[j + 8])
        a = F32(a + v[j + 16])
        s[j] = F32(a + v[j + 24])
    a0 = F32(s[0] + s[4])
    a1 = F32(s[1] + s[5])
    a2 = F32(s[2] + s[6])
    a3 = F32(s[3] + s[7])
    return F32(F32(a0 + a2) + F32(a1 + a3))


@njit(cache=True, inline="always")
def _round_clamp(v, lo, hi):
    r = F32(np.rint(F32(v)))
    return lo if r < lo else (hi if r > hi else r)


@njit(cache=True)
def _sym_err(x, w, d, l, tmp):
    for i in range(QK):
        diff = F32(x[i] - F32(d * l[i]))
        tmp[i] = F32(F32(w[i] * diff) * diff)
    return _lane_sum(tmp)


@njit(cache=True)
def _asym_err(x, w, d, m, L, tmp):
    for i in range(QK):
        diff = F32(x[i] - F32(F32(d * L[i]) + m))
        tmp[i] = F32(F32(w[i] * diff) * diff)
    return _lane_sum(tmp)


@njit(cache=True)
def _sym_sums(wx, w, l, ta, tb):
    for i in range(QK):
        ta[i] = F32(wx[i] * l[i])
        tb[i] = F32(F32(w[i] * l[i]) * l[i])
    return _lane_sum(ta), _lane_sum(tb)


@njit(cache=True)
def _sym_stored(x, d, lo, hi, l):
    d = _f16r(d)
    if not d != 0 or not np.isfinite(d):
        return False, F32(0)
    idv = F32(F32(1) / d)
    for i in range(QK):
        l[i] = _round_clamp(F32(x[i] * idv), lo, hi)
    return True, d


@njit(cache=True)
def _best_sym(kind, x, w, d, l):
    """Best of llama.cpp's (d, signed codes l) and the search; updates l, returns d."""
    lo = F32(-127) if kind == 0 else F32(-LAYOUT[kind, 1])
    hi = F32(127) if kind == 0 else F32(LAYOUT[kind, 1] - 1)
    wx = np.empty(QK, F32)
    lt = np.empty(QK, F32)
    l1 = np.empty(QK, F32)
    l2 = np.empty(QK, F32)
    ta = np.empty(QK, F32)
    tb = np.empty(QK, F32)
    for i in range(QK):
        wx[i] = F32(w[i] * x[i])
    best_e = _sym_err(x, w, d, l, ta)
    mx = _signed_absmax(x)
    if mx == 0:
        return d
    t0, step, n = SYM_TRIALS[kind, 0], SYM_TRIALS[kind, 1], int(SYM_TRIALS[kind, 2])
    score = F32(-np.inf)
    td = F32(0)
    for k in range(n):
        t = F32(t0 + F32(step * F32(k)))
        iscale = F32(F32(-t) / mx)
        for i in range(QK):
            lt[i] = _round_clamp(F32(iscale * x[i]), lo, hi)
        sxl, sll = _sym_sums(wx, w, lt, ta, tb)
        if not sll > 0:
            continue
        dk = F32(sxl / sll)
        s = F32(dk * sxl)
        if s > score:
            score = s
            td = dk
    if not score > -np.inf:
        return d
    ok1, _ = _sym_stored(x, td, lo, hi, l1)
    if not ok1:
        return d
    sxl, sll = _sym_sums(wx, w, l1, ta, tb)
    if not sll > 0:
        return d
    ok2, d2 = _sym_stored(x, F32(sxl / sll), lo, hi, l2)
    if ok2 and _sym_err(x, w, d2, l2, ta) < best_e:
        d = d2
        l[:] = l2
    return d


@njit(cache=True)
def _asym_ls(wx, w, L, sw, sx, ta, tb, tc):
    for i in range(QK):
        wl = F32(w[i] * L[i])
        ta[i] = wl
        tb[i] = F32(wl * L[i])
        tc[i] = F32(wx[i] * L[i])
    sl, sl2, sxl = _lane_sum(ta), _lane_sum(tb), _lane_sum(tc)
    D = F32(F32(sw * sl2) - F32(sl * sl))
    if not D > 0:
        return False, F32(0), F32(0), F32(0)
    d = F32(F32(F32(sw * sxl) - F32(sx * sl)) / D)
    m = F32(F32(F32(sl2 * sx) - F32(sl * sxl)) / D)
    return True, d, m, sxl


@njit(cache=True)
def _asym_stored(x, d, m, nmax, L):
    d = _f16r(d)
    m = _f16r(m)
    if not d > 0 or not np.isfinite(d) or not np.isfinite(m):
        return False, F32(0), F32(0)
    idv = F32(F32(1) / d)
    for i in range(QK):
        L[i] = _round_clamp(F32(F32(x[i] - m) * idv), F32(0), nmax)
    return True, d, m


@njit(cache=True)
def _best_asym(kind, x, w, d, m, L):
    """Best of llama.cpp's (d, m, codes L) and the search; updates L, returns (d, m)."""
    nmax = F32(LAYOUT[kind, 1])
    wx = np.empty(QK, F32)
    Lt = np.empty(QK, F32)
    L1 = np.empty(QK, F32)
    L2 = np.empty(QK, F32)
    ta = np.empty(QK, F32)
    tb = np.empty(QK, F32)
    tc = np.empty(QK, F32)
    for i in range(QK):
        wx[i] = F32(w[i] * x[i])
    best_e = _asym_err(x, w, d, m, L, ta)
    mn = x[0]
    mx = x[0]
    for i in range(1, QK):
        mn = x[i] if x[i] < mn else mn
        mx = x[i] if x[i] > mx else mx
    r = F32(mx - mn)
    if not r > 0:
        return d, m
    step = F32(r / nmax)
    sw = _lane_sum(w)
    sx = _lane_sum(wx)
    score = F32(-np.inf)
    td = F32(0)
    tm = F32(0)
    for k in range(TRIM_A.shape[0]):
        lo_v = F32(mn + F32(TRIM_A[k] * step))
        hi_v = F32(mx - F32(TRIM_B[k] * step))
        width = F32(hi_v - lo_v)
        if not width > 0:
            continue
        ic = F32(nmax / width)
        for i in range(QK):
            Lt[i] = _round_clamp(F32(F32(x[i] - lo_v) * ic), F32(0), nmax)
        ok, dk, mk, sxl = _asym_ls(wx, w, Lt, sw, sx, ta, tb, tc)
        if not ok:
            continue
        s = F32(F32(dk * sxl) + F32(mk * sx))
        if dk > 0 and s > score:
            score = s
            td = dk
            tm = mk
    if not score > -np.inf:
        return d, m
    ok1, _, _ = _asym_stored(x, td, tm, nmax, L1)
    if not ok1:
        return d, m
    ok, dr, mr, _ = _asym_ls(wx, w, L1, sw, sx, ta, tb, tc)
    if not ok:
        return d, m
    ok2, d2, m2 = _asym_stored(x, dr, mr, nmax, L2)
    if ok2 and _asym_err(x, w, d2, m2, L2, ta) < best_e:
        d, m = d2, m2
        L[:] = L2
    return d, m


@njit(cache=True)
def _best_block(kind, x, w, b):
    """b holds llama.cpp's block (candidate 0); rewritten with the best solution."""
    off, has_min = LAYOUT[kind, 2], LAYOUT[kind, 3]
    Li = np.empty(QK, np.int64)
    d, m = _unpack(kind, b, Li)
    lf = np.empty(QK, F32)
    for j in range(QK):
        lf[j] = F32(Li[j] - off)
    if has_min:
        d, m = _best_asym(kind, x, w, d, m, lf)
    else:
        d = _best_sym(kind, x, w, d, lf)
    for j in range(QK):
        Li[j] = int(lf[j]) + off
    _pack(kind, b, d, m, Li)


@njit(cache=True, parallel=True)
def _quantize_best_rows(kind, x, out, imatrix, use_im):
    nrows, n = x.shape
    nb = n // QK
    ts = LAYOUT[kind, 4]
    for r in prange(nrows):
        w = np.ones(QK, F32)
        for ib in range(nb):
            if use_im:
                w[:] = imatrix[ib * QK:(ib + 1) * QK]
            _best_block(kind, x[r, ib * QK:(ib + 1) * QK], w, out[r, ib * ts:(ib + 1) * ts])


@njit(cache=True, parallel=True)
def _dequantize_rows(kind, rows, out):
    nrows, n = out.shape
    ts = LAYOUT[kind, 4]
    off = LAYOUT[kind, 2]
    for r in prange(nrows):
        L = np.empty(QK, np.int64)
        for ib in range(n // QK):
            d, m = _unpack(kind, rows[r, ib * ts:(ib + 1) * ts], L)
            for j in range(QK):
                if LAYOUT[kind, 3]:
                    out[r, ib * QK + j] = F32(F32(d * F32(L[j])) + m)
                else:
                    out[r, ib * QK + j] = F32(d * F32(L[j] - off))


def _run(kind, quantizer, x, imatrix):
    k = KIND[kind]
    out = np.empty((x.shape[0], x.shape[1] // QK * LAYOUT[k, 4]), np.uint8)
    im = np.zeros(1, F32) if imatrix is None else np.ascontiguousarray(imatrix, F32)
    x = np.ascontiguousarray(x, F32)
    ggml_im = imatrix is not None and kind != "q8_0"
    _quantize_ggml_rows(k, x, out, im, ggml_im)
    if quantizer == "best":
        _quantize_best_rows(k, x, out, im, imatrix is not None)
    return out


def _make(kind):
    def q_ggml(x, imatrix=None):
        return _run(kind, "ggml", x, None if kind == "q8_0" else imatrix)

    def q_best(x, imatrix=None):
        return _run(kind, "best", x, imatrix)

    def deq(rows, n_per_row):
        out = np.empty((rows.shape[0], n_per_row), F32)
        _dequantize_rows(KIND[kind], np.ascontiguousarray(rows), out)
        return out

    return q_ggml, q_best, deq


quantize_q8_0_ggml, quantize_q8_0_best, dequantize_q8_0 = _make("q8_0")
quantize_q4_0_ggml, quantize_q4_0_best, dequantize_q4_0 = _make("q4_0")
quantize_q5_0_ggml, quantize_q5_0_best, dequantize_q5_0 = _make("q5_0")
quantize_q4_1_ggml, quantize_q4_1_best, dequantize_q4_1 = _make("q4_1")
quantize_q5_1_ggml, quantize_q5_1_best, dequantize_q5_1 = _make("q5_1")
