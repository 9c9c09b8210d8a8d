"""ggml's scale-search helpers for one sub-block, jitted (same results as
qinfer.quants.kq_search, which documents each function).

Scalar float32 code over 1-D arrays; constants and integer codes are
converted explicitly because Numba would otherwise promote to float64 and
round differently. Code arrays are int32; where ggml stores codes in uint8
(make_qp_quants) the values are wrapped the same way.
"""
import numpy as np
from numba import njit

F32 = np.float32
GROUP_MAX_EPS = np.float32(1e-15)


@njit(cache=True)
def nearest_int(f):
    """ggml's nearest_int: round-half-even through the 1.5*2^23 trick."""
    i = np.int32(np.float32(np.float32(f) + np.float32(12582912.0)).view(np.int32))
    return (i & 0x007FFFFF) - 0x00400000


@njit(cache=True)
def clampi(v, lo, hi):
    """min(max(v, lo), hi) on integers."""
    return lo if v < lo else (hi if v > hi else v)


@njit(cache=True)
def signed_max(v):
    """The element of largest magnitude, sign kept (the first one on ties)."""
    amax = F32(0)
    smax = F32(0)
    for i in range(v.shape[0]):
        a = abs(v[i])
        if a > amax:
            amax = a
            smax = v[i]
    return smax


@njit(cache=True, error_model="numpy")
def make_qx_quants(x, nmax, L, qw, has_qw):
    """rmse_type 1; weights qw when has_qw else x^2. Fills L (= l + nmax), returns the scale."""
    n = x.shape[0]
    top = signed_max(x)
    if abs(top) < GROUP_MAX_EPS:
        L[:] = 0
        return F32(0)
    iscale = F32(-nmax) / top
    sumlx = F32(0)
    suml2 = F32(0)
    for i in range(n):
        l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1)
        L[i] = l + nmax
        w = qw[i] if has_qw else x[i] * x[i]
        sumlx += w * x[i] * F32(l)
        suml2 += w * F32(l) * F32(l)
    scale = sumlx / suml2 if suml2 != 0 else F32(0)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(F32(nmax) + F32(0.1) * F32(step)) / top
        sumlx = F32(0)
        suml2 = F32(0)
        for i in range(n):
            l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1)
            w = qw[i] if has_qw else x[i] * x[i]
            sumlx += w * x[i] * F32(l)
            suml2 += w * F32(l) * F32(l)
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            for i in range(n):
                L[i] = nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1)
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@njit(cache=True, error_model="numpy")
def make_q3_quants(x, nmax, L):
    """do_rmse variant. Fills L (= l + nmax), returns the scale."""
    n = x.shape[0]
    top = signed_max(x)
    if abs(top) < GROUP_MAX_EPS:
        L[:] = 0
        return F32(0)
    iscale = F32(-nmax) / top
    sumlx = F32(0)
    suml2 = F32(0)
    for i in range(n):
        l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1)
        L[i] = l
        w = x[i] * x[i]
        sumlx += w * x[i] * F32(l)
        suml2 += w * F32(l) * F32(l)
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            w = x[i] * x[i]
            slx = sumlx - w * x[i] * F32(L[i])
            if slx > 0:
                sl2 = suml2 - w * F32(L[i]) * F32(L[i])
                new_l = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1)
                if new_l != L[i]:
                    slx += w * x[i] * F32(new_l)
                    sl2 += w * F32(new_l) * F32(new_l)
                    if sl2 > 0 and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    for i in range(n):
        L[i] += nmax
    return sumlx / suml2 if suml2 > 0 else F32(0)


@njit(cache=True, error_model="numpy")
def _make_qkx(x, weights, has_w, nmax, L, Laux, rmin, rdelta, nstep, use_mad, empty_if_le):
    n = x.shape[0]
    mn = x[0]
    mx = x[0]
    sum_w = weights[0] if has_w else x[0] * x[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        if x[i] < mn:
            mn = x[i]
        if x[i] > mx:
            mx = x[i]
        w = weights[i] if has_w else x[i] * x[i]
        sum_w += w
        sum_x += w * x[i]
    if mn > 0:
        mn = F32(0)
    if (mx <= mn) if empty_if_le else (mx == mn):
        L[:] = 0
        return F32(0), -mn
    iscale = F32(nmax) / (mx - mn)
    scale = F32(1) / iscale
    best = F32(0)
    for i in range(n):
        L[i] = clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax)
        diff = scale * F32(L[i]) + mn - x[i]
        diff = abs(diff) if use_mad else diff * diff
        w = weights[i] if has_w else x[i] * x[i]
        best += w * diff
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * F32(step) + F32(nmax)) / (mx - mn)
        sum_l = F32(0)
        sum_l2 = F32(0)
        sum_xl = F32(0)
        for i in range(n):
            l = clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax)
            Laux[i] = l
            w = weights[i] if has_w else x[i] * x[i]
            sum_l += w * F32(l)
            sum_l2 += w * F32(l) * F32(l)
            sum_xl += w * F32(l) * x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > 0:
                this_min = F32(0)
                this_scale = sum_xl / sum_l2
            cur = F32(0)
            for i in range(n):
                diff = this_scale * F32(Laux[i]) + this_min - x[i]
                diff = abs(diff) if use_mad else diff * diff
                w = weights[i] if has_w else x[i] * x[i]
                cur += w * diff
            if cur < best:
                for i in range(n):
                    L[i] = Laux[i]
                best = cur
                scale = this_scale
                mn = this_min
    return scale, -mn


@njit(cache=True, error_model="numpy")
def make_qkx2_quants(x, weights, nmax, L, Laux, rmin, rdelta, nstep, use_mad):
    """Returns (scale, the_min); fills L."""
    return _make_qkx(x, weights, True, nmax, L, Laux, rmin, rdelta, nstep, use_mad, False)


@njit(cache=True, error_model="numpy")
def make_qkx3_quants(x, weights, has_w, nmax, L, Laux, rmin, rdelta, nstep, use_mad):
    """Returns (scale, the_min); fills L. Weights x^2 when not has_w."""
    return _make_qkx(x, weights, has_w, nmax, L, Laux, rmin, rdelta, nstep, use_mad, True)


@njit(cache=True, error_model="numpy")
def make_qp_quants(x, nmax, L, qw):
    """Returns sumlx/suml2; fills L with ggml's uint8 codes."""
    n = x.shape[0]
    top = F32(0)
    for i in range(n):
        top = max(top, x[i])
    if top < GROUP_MAX_EPS:
        L[:] = 0
        return F32(0)
    iscale = F32(nmax) / top
    for i in range(n):
        L[i] = nearest_int(iscale * x[i]) & 0xFF
    scale = F32(1) / iscale
    best = F32(0)
    for i in range(n):
        diff = x[i] - scale * F32(L[i])
        best += qw[i] * diff * diff
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_is = (F32(0.1) * F32(step) + F32(nmax)) / top
        scale_is = F32(1) / iscale_is
        mse = F32(0)
        for i in range(n):
            l = min(nmax, nearest_int(iscale_is * x[i]))
            diff = x[i] - scale_is * F32(l)
            mse += qw[i] * diff * diff
        if mse < best:
            best = mse
            iscale = iscale_is
    sumlx = F32(0)
    suml2 = F32(0)
    for i in range(n):
        l = min(nmax, nearest_int(iscale * x[i]))
        L[i] = l & 0xFF
        sumlx += qw[i] * x[i] * F32(l)
        suml2 += qw[i] * F32(l) * F32(l)
    for _ in range(5):
        n_changed = 0
        for i in range(n):
            w = qw[i]
            slx = sumlx - w * x[i] * F32(L[i])
            sl2 = suml2 - w * F32(L[i]) * F32(L[i])
            if slx > 0 and sl2 > 0:
                new_l = min(nmax, nearest_int(x[i] * sl2 / slx))
                if new_l != L[i]:
                    slx += w * x[i] * F32(new_l)
                    sl2 += w * F32(new_l) * F32(new_l)
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    return sumlx / suml2 if suml2 > 0 else F32(0)
