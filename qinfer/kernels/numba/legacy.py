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


@njit(cache=True, inline="always")
def _clampf(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


@njit(cache=True, inline="always")
def _rint_clip(v, lo, hi):
    r = int(np.rint(_clampf(F32(v), F32(lo - 1), F32(hi + 1))))
    return lo if r < lo else (hi if r > hi else r)


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


@njit(cache=True)
def _sym_err(x, w, d, l):
    e = F32(0)
    for i in range(QK):
        diff = F32(x[i] - F32(d * F32(l[i])))
        e = F32(e + F32(F32(w[i] * diff) * diff))
    return e


@njit(cache=True)
def _asym_err(x, w, d, m, L):
    e = F32(0)
    for i in range(QK):
        diff = F32(x[i] - F32(F32(d * F32(L[i])) + m))
        e = F32(e + F32(F32(w[i] * diff) * diff))
    return e


@njit(cache=True)
def _sym_fit(x, w, l, lo, hi, lq):
    sxl = F32(0)
    sll = F32(0)
    for i in range(QK):
        lf = F32(l[i])
        sxl = F32(sxl + F32(F32(w[i] * x[i]) * lf))
        sll = F32(sll + F32(F32(w[i] * lf) * lf))
    if not sll > 0:
        return False, F32(0), F32(0)
    d = _f16r(F32(sxl / sll))
    if d == 0 or not np.isfinite(d):
        return False, F32(0), F32(0)
    for i in range(QK):
        lq[i] = _rint_clip(F32(x[i] / d), lo, hi)
    return True, d, _sym_err(x, w, d, lq)


@njit(cache=True)
def _asym_fit(x, w, L, nmax, Lq):
    sw = F32(0)
    sl = F32(0)
    sl2 = F32(0)
    sx = F32(0)
    sxl = F32(0)
    for i in range(QK):
        li = F32(L[i])
        wl = F32(w[i] * li)
        sw = F32(sw + w[i])
        sl = F32(sl + wl)
        sl2 = F32(sl2 + F32(wl * li))
        sx = F32(sx + F32(w[i] * x[i]))
        sxl = F32(sxl + F32(F32(w[i] * x[i]) * li))
    D = F32(F32(sw * sl2) - F32(sl * sl))
    if not D > 0:
        return False, F32(0), F32(0), F32(0)
    d = _f16r(F32(F32(F32(sw * sxl) - F32(sx * sl)) / D))
    m = _f16r(F32(F32(F32(sl2 * sx) - F32(sl * sxl)) / D))
    if not d > 0 or not np.isfinite(d) or not np.isfinite(m):
        return False, F32(0), F32(0), F32(0)
    for i in range(QK):
        Lq[i] = _rint_clip(F32(F32(x[i] - m) / d), 0, nmax)
    return True, d, m, _asym_err(x, w, d, m, Lq)


@njit(cache=True)
def _best_block(kind, x, w, b):
    nmax, off, has_min = LAYOUT[kind, 1], LAYOUT[kind, 2], LAYOUT[kind, 3]
    L = np.empty(QK, np.int64)
    d, m = _unpack(kind, b, L)
    if has_min == 0:
        lo = -127 if kind == 0 else -nmax
        hi = 127 if kind == 0 else nmax - 1
        best_l = L - off
        best_d = d
        best_e = _sym_err(x, w, d, best_l)
        mx = _signed_absmax(x)
        if mx == 0:
            return
        nsign = 2 if lo == -hi - 1 else 1
        l = np.empty(QK, np.int64)
        lq = np.empty(QK, np.int64)
        for si in range(nsign):
            sign = F32(-1) if (nsign == 2 and si == 0) else F32(1)
            for k in range(25):
                t = F32(F32(nmax - 2) + F32(F32(0.125) * F32(k)))
                if sign > 0 and nsign == 2:
                    t = F32(t - F32(1))
                iscale = F32(F32(sign * t) / mx)
                for i in range(QK):
                    l[i] = _rint_clip(F32(iscale * x[i]), lo, hi)
                ok, dd, e = _sym_fit(x, w, l, lo, hi, lq)
                if ok and e < best_e:
                    best_e = e
                    best_d = dd
                    best_l[:] = lq
        ok, dd, e = _sym_fit(x, w, best_l.copy(), lo, hi, lq)
        if ok and e < best_e:
            best_d = dd
            best_l[:] = lq
        _pack(kind, b, best_d, F32(0), best_l + off)
    else:
        best_d, best_m = d, m
        best_e = _asym_err(x, w, d, m, L)
        best_L = L.copy()
        Lc = np.empty(QK, np.int64)
        Lq = np.empty(QK, np.int64)
        mn = F32(np.inf)
        mx = F32(-np.inf)
        for i in range(QK):
            if x[i] < mn:
                mn = x[i]
            if x[i] > mx:
                mx = x[i]
        r = F32(mx - mn)
        for ia in range(5):
            for ib in range(5):
                a = F32(F32(0.025) * F32(ia))
                bb = F32(F32(0.025) * F32(ib))
                lo_v = F32(mn + F32(a * r))
                hi_v = F32(mx - F32(bb * r))
                if not hi_v > lo_v:
                    continue
                d0 = F32(F32(hi_v - lo_v) / F32(nmax))
                if not d0 > 0:
                    continue
                for i in range(QK):
                    Lc[i] = _rint_clip(F32(F32(x[i] - lo_v) / d0), 0, nmax)
                ok, dd, mm, e = _asym_fit(x, w, Lc, nmax, Lq)
                if ok and e < best_e:
                    best_e = e
                    best_d = dd
                    best_m = mm
                    best_L[:] = Lq
        ok, dd, mm, e = _asym_fit(x, w, best_L.copy(), nmax, Lq)
        if ok and e < best_e:
            best_d = dd
            best_m = mm
            best_L[:] = Lq
        _pack(kind, b, best_d, best_m, best_L)


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
