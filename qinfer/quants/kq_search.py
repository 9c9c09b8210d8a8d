"""ggml's scale-search helpers, shared by every K-quant quantizer (ggml-quants.c, REFERENCE.md §2.3).

numpy, vectorised ACROSS independent sub-blocks: x is float32 [m, n] (m
sub-blocks of n weights); every loop over the n weights runs sequentially so
that each sum accumulates in C's order, all arithmetic stays float32, and
comparisons are C's (strict, first one wins). Only the variants the K-quants
need are here (make_qx_quants with rmse_type 1, make_q3_quants with
do_rmse); ggml's `L` code arrays come back as int32 [m, n].
"""
import numpy as np

F32 = np.float32
GROUP_MAX_EPS = F32(1e-15)   # ggml's "all zero" threshold


def nearest_int(f):
    """ggml's nearest_int: round-half-even via the 1.5*2^23 trick, on float32 (any shape)."""
    v = (np.asarray(f, dtype=F32) + F32(12582912.0)).view(np.int32)
    return (v & 0x007FFFFF) - 0x00400000


def _signed_max(x):
    """(max |x|, the signed element it comes from) per row, first one on ties."""
    amax = np.zeros(x.shape[0], F32)
    top = np.zeros(x.shape[0], F32)
    for i in range(x.shape[1]):
        upd = np.abs(x[:, i]) > amax
        amax = np.where(upd, np.abs(x[:, i]), amax)
        top = np.where(upd, x[:, i], top)
    return amax, top


def _sums(w, x, l):
    """sum(w*x*l), sum(w*l*l) per row, accumulated left to right like ggml."""
    sumlx = np.zeros(x.shape[0], F32)
    suml2 = np.zeros(x.shape[0], F32)
    for i in range(x.shape[1]):
        li = l[:, i].astype(F32)
        sumlx = sumlx + w[:, i] * x[:, i] * li
        suml2 = suml2 + w[:, i] * li * li
    return sumlx, suml2


def make_qx_quants(x, nmax, qw=None):
    """make_qx_quants(n, nmax, x, L, rmse_type=1, qw): symmetric signed scale.

    Weights qw [m, n] (x^2 when None). Codes l = clamp(nearest_int(iscale*x),
    -nmax, nmax-1) for iscale = -(nmax + 0.1*is)/max, is = 0, -9..9; the
    least-squares scale of the best trial is returned. Returns (scale [m],
    L = l + nmax [m, n]); all-zero rows (max|x| < 1e-15) give 0 and L = 0.
    """
    amax, top = _signed_max(x)
    zero = amax < GROUP_MAX_EPS
    top = np.where(zero, F32(1), top)
    w = x * x if qw is None else qw
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        l = np.clip(nearest_int((F32(-nmax) / top)[:, None] * x), -nmax, nmax - 1)
        L = l + nmax
        sumlx, suml2 = _sums(w, x, l)
        scale = np.where(suml2 != 0, sumlx / np.where(suml2 != 0, suml2, F32(1)), F32(0))
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = -(F32(nmax) + F32(0.1) * F32(step)) / top
            l = np.clip(nearest_int(iscale[:, None] * x), -nmax, nmax - 1)
            sumlx, suml2 = _sums(w, x, l)
            acc = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            L = np.where(acc[:, None], l + nmax, L)
            scale = np.where(acc, sumlx / np.where(acc, suml2, F32(1)), scale)
            best = np.where(acc, scale * sumlx, best)
    return np.where(zero, F32(0), scale), np.where(zero[:, None], 0, L)


def make_q3_quants(x, nmax):
    """make_q3_quants(n, nmax, x, L, do_rmse=true): x^2-weighted coordinate descent.

    Start from l = clamp(nearest_int(-nmax/max*x), -nmax, nmax-1), then up to
    5 passes trying, per weight, the code that best fits the others' scale
    (kept if it strictly raises sumlx^2/suml2). Returns (sumlx/suml2 [m],
    L = l + nmax [m, n]); all-zero rows give 0 and L = 0.
    """
    amax, top = _signed_max(x)
    zero = amax < GROUP_MAX_EPS
    top = np.where(zero, F32(1), top)
    w = x * x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        L = np.clip(nearest_int((F32(-nmax) / top)[:, None] * x), -nmax, nmax - 1)
        sumlx, suml2 = _sums(w, x, L)
        active = np.ones(x.shape[0], bool)        # a row stops after a pass without change
        for _ in range(5):
            changed = np.zeros(x.shape[0], bool)
            for i in range(x.shape[1]):
                wi, xi, li = w[:, i], x[:, i], L[:, i].astype(F32)
                slx = sumlx - wi * xi * li
                ok = active & (slx > 0)
                sl2 = suml2 - wi * li * li
                new_l = np.clip(nearest_int(xi * sl2 / np.where(ok, slx, F32(1))), -nmax, nmax - 1)
                ok &= new_l != L[:, i]
                nl = new_l.astype(F32)
                slx = slx + wi * xi * nl
                sl2 = sl2 + wi * nl * nl
                ok &= (sl2 > 0) & (slx * slx * suml2 > sumlx * sumlx * sl2)
                L[:, i] = np.where(ok, new_l, L[:, i])
                sumlx = np.where(ok, slx, sumlx)
                suml2 = np.where(ok, sl2, suml2)
                changed |= ok
            active &= changed
        scale = np.where(suml2 > 0, sumlx / np.where(suml2 > 0, suml2, F32(1)), F32(0))
    return np.where(zero, F32(0), scale), np.where(zero[:, None], 0, L + nmax)


def _make_qkx(x, weights, nmax, rmin, rdelta, nstep, use_mad, empty_if_le):
    """Shared body of make_qkx2_quants / make_qkx3_quants (they differ in the
    empty-range test only: max == min vs max <= min)."""
    w = x * x if weights is None else weights
    mn, mx = x[:, 0].copy(), x[:, 0].copy()
    sum_w = w[:, 0].copy()
    sum_x = sum_w * x[:, 0]
    for i in range(1, x.shape[1]):
        mn = np.where(x[:, i] < mn, x[:, i], mn)
        mx = np.where(x[:, i] > mx, x[:, i], mx)
        sum_w = sum_w + w[:, i]
        sum_x = sum_x + w[:, i] * x[:, i]
    mn = np.where(mn > 0, F32(0), mn)
    empty = (mx <= mn) if empty_if_le else (mx == mn)
    span = np.where(empty, F32(1), mx - mn)

    def error(scale, offset, L):
        err = np.zeros(x.shape[0], F32)
        for i in range(x.shape[1]):
            diff = scale * L[:, i].astype(F32) + offset - x[:, i]
            err = err + w[:, i] * (np.abs(diff) if use_mad else diff * diff)
        return err

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = F32(nmax) / span
        scale = F32(1) / iscale
        L = np.clip(nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax)
        best = error(scale, mn, L)
        for step in range(nstep + 1):
            # the range uses the min of the best candidate so far, as in ggml
            iscale = (F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / np.where(empty, F32(1), mx - mn)
            Laux = np.clip(nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax)
            sum_l = np.zeros(x.shape[0], F32)
            sum_l2 = np.zeros(x.shape[0], F32)
            sum_xl = np.zeros(x.shape[0], F32)
            for i in range(x.shape[1]):
                li = Laux[:, i].astype(F32)
                sum_l = sum_l + w[:, i] * li
                sum_l2 = sum_l2 + w[:, i] * li * li
                sum_xl = sum_xl + w[:, i] * li * x[:, i]
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            positive = this_min > 0
            this_min = np.where(positive, F32(0), this_min)
            this_scale = np.where(positive, sum_xl / sum_l2, this_scale)
            cur = error(this_scale, this_min, Laux)
            acc = (D > 0) & (cur < best)
            L = np.where(acc[:, None], Laux, L)
            best = np.where(acc, cur, best)
            scale = np.where(acc, this_scale, scale)
            mn = np.where(acc, this_min, mn)
    return np.where(empty, F32(0), scale), -mn, np.where(empty[:, None], 0, L)


def make_qkx2_quants(x, weights, nmax, rmin, rdelta, nstep, use_mad):
    """make_qkx2_quants: asymmetric (scale, min) fit, x ~ scale*L - the_min.

    Returns (scale [m], the_min = -min >= 0 [m], L in 0..nmax [m, n]).
    """
    return _make_qkx(x, weights, nmax, rmin, rdelta, nstep, use_mad, False)


def make_qkx3_quants(x, weights, nmax, rmin, rdelta, nstep, use_mad):
    """make_qkx3_quants: as make_qkx2_quants; weights None means x^2."""
    return _make_qkx(x, weights, nmax, rmin, rdelta, nstep, use_mad, True)


def make_qp_quants(x, nmax, qw):
    """make_qp_quants(n, nmax, x, L, qw): quantize non-negative values (sub-scales).

    Trial iscales (nmax + 0.1*is)/max, is = -4..4, by weighted MSE; then 5
    passes of coordinate descent on the codes. Returns (sumlx/suml2 [m],
    L [m, n]) where L holds what ggml stores in its uint8 array (codes of
    negative inputs wrap, as in C).
    """
    mx = np.zeros(x.shape[0], F32)
    for i in range(x.shape[1]):
        mx = np.maximum(mx, x[:, i])
    zero = mx < GROUP_MAX_EPS
    top = np.where(zero, F32(1), mx)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = F32(nmax) / top
        L = nearest_int(iscale[:, None] * x)
        scale = F32(1) / iscale
        best = np.zeros(x.shape[0], F32)
        for i in range(x.shape[1]):
            diff = x[:, i] - scale * (L[:, i] & 0xFF).astype(F32)   # C reads back its uint8
            best = best + qw[:, i] * diff * diff
        for step in range(-4, 5):
            if step == 0:
                continue
            iscale_is = (F32(0.1) * F32(step) + F32(nmax)) / top
            scale_is = F32(1) / iscale_is
            mse = np.zeros(x.shape[0], F32)
            for i in range(x.shape[1]):
                l = np.minimum(nmax, nearest_int(iscale_is * x[:, i]))
                diff = x[:, i] - scale_is * l.astype(F32)
                mse = mse + qw[:, i] * diff * diff
            acc = mse < best
            best = np.where(acc, mse, best)
            iscale = np.where(acc, iscale_is, iscale)
        l = np.minimum(nmax, nearest_int(iscale[:, None] * x))
        sumlx, suml2 = _sums(qw, x, l)
        L = l & 0xFF                                                       # uint8 in C
        active = np.ones(x.shape[0], bool)
        for _ in range(5):
            changed = np.zeros(x.shape[0], bool)
            for i in range(x.shape[1]):
                wi, xi, li = qw[:, i], x[:, i], L[:, i].astype(F32)
                slx = sumlx - wi * xi * li
                sl2 = suml2 - wi * li * li
                ok = active & (slx > 0) & (sl2 > 0)
                new_l = np.minimum(nmax, nearest_int(xi * sl2 / np.where(ok, slx, F32(1))))
                ok &= new_l != L[:, i]
                nl = new_l.astype(F32)
                slx = slx + wi * xi * nl
                sl2 = sl2 + wi * nl * nl
                ok &= slx * slx * suml2 > sumlx * sumlx * sl2
                L[:, i] = np.where(ok, new_l & 0xFF, L[:, i])
                sumlx = np.where(ok, slx, sumlx)
                suml2 = np.where(ok, sl2, suml2)
                changed |= ok
            active &= changed
        scale = np.where(suml2 > 0, sumlx / np.where(suml2 > 0, suml2, F32(1)), F32(0))
    return np.where(zero, F32(0), scale), np.where(zero[:, None], 0, L)
