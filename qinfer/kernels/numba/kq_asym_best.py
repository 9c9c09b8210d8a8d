"""The "best" search of the asymmetric K-quants (Q2_K, Q4_K, Q5_K) for one
super-block, jitted; same bytes as qinfer.quants.kq_asym_best, which documents
the algorithm, and as csrc/kq_asym_best.c (mirrored operation for operation)."""
import numpy as np
from numba import njit

from .floats import fp16_bits_to_fp32, fp32_to_fp16_bits
from .kq_search import clampi, make_qkx3_quants, nearest_int

F32 = np.float32
INF = np.float32(np.inf)


@njit(cache=True, error_model="numpy")
def _round_code(v, step, smax):
    return clampi(nearest_int(v / step), 0, smax) if step != 0 else 0


@njit(cache=True, error_model="numpy")
def first_max(v):
    top = F32(0)
    for j in range(v.shape[0]):
        if v[j] > top:
            top = v[j]
    return top


@njit(cache=True, error_model="numpy")
def _sub_error(x, w, dl, ml, nmax, q):
    """Weighted squared error of one sub-block decoded as dl*q - ml; codes into q."""
    inv = F32(1) / dl if dl != 0 else F32(0)
    err = F32(0)
    for l in range(x.shape[0]):
        v = clampi(nearest_int((x[l] + ml) * inv), 0, nmax) if dl != 0 else 0
        q[l] = v
        diff = x[l] - (dl * F32(v) - ml)
        err += w[l] * diff * diff
    return err


@njit(cache=True, error_model="numpy")
def _evaluate(x, w, scales, mins, nmax, smax, moves, d_bits, dmin_bits, best_err, sc, m, q):
    """Score the super-scales (d_bits, dmin_bits); returns their total error and
    leaves their per-sub-block choices in sc, m, q (zeros where nothing is finite)."""
    n_sub = scales.shape[0]
    n = x.shape[0] // n_sub
    d = fp16_bits_to_fp32(d_bits)
    dmin = fp16_bits_to_fp32(dmin_bits)
    qt = np.empty(n, np.int32)
    total = F32(0)
    sc[:] = 0
    m[:] = 0
    q[:] = 0
    for j in range(n_sub):
        xj = x[n * j:n * (j + 1)]
        wj = w[n * j:n * (j + 1)]
        sc0 = _round_code(scales[j], d, smax)
        m0 = _round_code(mins[j], dmin, smax)
        err_j = INF
        for t in range(moves.shape[0]):
            s = clampi(sc0 + moves[t, 0], 0, smax)
            mm = clampi(m0 + moves[t, 1], 0, smax)
            err = _sub_error(xj, wj, d * F32(s), dmin * F32(mm), nmax, qt)
            if err < err_j:
                err_j = err
                sc[j] = s
                m[j] = mm
                q[n * j:n * (j + 1)] = qt
        total += err_j
    return total


@njit(cache=True, error_model="numpy")
def _refit(x, w, sc, m, q):
    """Weighted least-squares (d, dmin) for fixed codes; ok False if unusable."""
    n = x.shape[0] // sc.shape[0]
    saa = sab = sbb = sxa = sxb = F32(0)
    for i in range(x.shape[0]):
        j = i // n
        a = F32(sc[j] * q[i])
        b = F32(m[j])
        wi = w[i]
        saa += wi * a * a
        sab += wi * a * b
        sbb += wi * b * b
        sxa += wi * x[i] * a
        sxb += wi * x[i] * b
    det = saa * sbb - sab * sab
    if not det > 0:
        return F32(0), F32(0), False
    d = (sxa * sbb - sxb * sab) / det
    dmin = (sxa * sab - sxb * saa) / det
    return d, dmin, (d > 0) and (dmin >= 0)


@njit(cache=True, error_model="numpy")
def asym_search(x, w, n_sub, nmax, smax, rmin, rdelta, nstep, divisors, moves, refits, sc, m, q):
    """Best (sc [n_sub], m [n_sub], q [256]) into the given int32 arrays;
    returns (error, d_bits, dmin_bits)."""
    n = x.shape[0] // n_sub
    scales = np.empty(n_sub, F32)
    mins = np.empty(n_sub, F32)
    Ltmp = np.empty(n, np.int32)
    Laux = np.empty(n, np.int32)
    for j in range(n_sub):
        scales[j], mins[j] = make_qkx3_quants(x[n * j:n * (j + 1)], w[n * j:n * (j + 1)], True, nmax, Ltmp,
                                              Laux, rmin, rdelta, nstep, False)
    max_scale = first_max(scales)
    max_min = first_max(mins)
    best_err = INF
    best_d = np.uint16(0)
    best_dmin = np.uint16(0)
    sc[:] = 0
    m[:] = 0
    q[:] = 0
    c_sc = np.zeros(n_sub, np.int32)
    c_m = np.zeros(n_sub, np.int32)
    c_q = np.zeros(x.shape[0], np.int32)
    n_grid = divisors.shape[0] * divisors.shape[0]
    for k in range(n_grid + refits):
        if k < n_grid:
            d_bits = fp32_to_fp16_bits(max_scale / divisors[k // divisors.shape[0]])
            dmin_bits = fp32_to_fp16_bits(max_min / divisors[k % divisors.shape[0]])
        else:
            d, dmin, ok = _refit(x, w, sc, m, q)
            if not ok:
                continue
            d_bits = fp32_to_fp16_bits(d)
            dmin_bits = fp32_to_fp16_bits(dmin)
        total = _evaluate(x, w, scales, mins, nmax, smax, moves, d_bits, dmin_bits, best_err, c_sc, c_m, c_q)
        if total < best_err:
            best_err = total
            best_d = d_bits
            best_dmin = dmin_bits
            sc[:] = c_sc
            m[:] = c_m
            q[:] = c_q
    return best_err, best_d, best_dmin
