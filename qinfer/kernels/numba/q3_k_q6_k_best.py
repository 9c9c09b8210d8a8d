"""The "best" scale search of Q3_K and Q6_K and the block error of every "best"
quantizer, jitted per super-block (same bytes as qinfer.quants.q3_k_q6_k_best,
which documents the algorithm). All arithmetic is float32: constants and
integer codes are converted explicitly, since Numba would otherwise promote
to float64 and round differently.
"""
import numpy as np
from numba import njit

from .floats import fp16_bits_to_fp32, fp32_to_fp16_bits
from .kq_search import GROUP_MAX_EPS, clampi, nearest_int, signed_max  # noqa: F401 (re-exported)

F32 = np.float32
INF = np.float32(np.inf)
DELTAS = (0, -1, 1)


@njit(cache=True, error_model="numpy")
def fit_scale(x, w, qmin, qmax, grid):
    top = signed_max(x)
    if abs(top) < GROUP_MAX_EPS:
        return F32(0)
    scale = F32(0)
    best = F32(0)
    for g in range(grid.shape[0]):
        iscale = grid[g] / top
        sumlx = F32(0)
        suml2 = F32(0)
        for i in range(16):
            lf = F32(clampi(nearest_int(iscale * x[i]), qmin, qmax))
            sumlx += w[i] * x[i] * lf
            suml2 += w[i] * lf * lf
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@njit(cache=True, error_model="numpy")
def sub_error(x, w, dl, qmin, qmax, q):
    inv = F32(1) / dl if dl != 0 else F32(0)
    err = F32(0)
    for l in range(16):
        v = clampi(nearest_int(x[l] * inv), qmin, qmax) if dl != 0 else 0
        q[l] = v
        diff = x[l] - dl * F32(v)
        err += w[l] * diff * diff
    return err


@njit(cache=True, error_model="numpy")
def search(x, w, scales, qmin, qmax, smin, smax, divisors, s_out, q_out):
    """Returns (err, d_bits); fills s_out [16] and q_out [256] (signed codes)."""
    top = signed_max(scales)
    best_err = INF
    best_bits = np.uint16(0)
    cand_s = np.zeros(16, np.int32)
    cand_q = np.zeros(256, np.int32)
    q = np.zeros(16, np.int32)
    s_out[:] = 0
    q_out[:] = 0
    for k in range(divisors.shape[0]):
        bits = fp32_to_fp16_bits(top / divisors[k])
        d = fp16_bits_to_fp32(bits)
        total = F32(0)
        cand_s[:] = 0
        cand_q[:] = 0
        for j in range(16):
            s0 = clampi(nearest_int(scales[j] / d), smin, smax) if d != 0 else 0
            err_j = INF
            for delta in DELTAS:
                s = clampi(s0 + delta, smin, smax)
                err = sub_error(x[16 * j:16 * j + 16], w[16 * j:16 * j + 16], d * F32(s), qmin, qmax, q)
                if err < err_j:
                    err_j = err
                    cand_s[j] = s
                    cand_q[16 * j:16 * j + 16] = q
            total += err_j
        if total < best_err:
            best_err = total
            best_bits = bits
            s_out[:] = cand_s
            q_out[:] = cand_q
    return best_err, best_bits


@njit(cache=True, error_model="numpy")
def block_error(x, w, y):
    total = F32(0)
    for j in range(16):
        err = F32(0)
        for l in range(16):
            diff = x[16 * j + l] - y[16 * j + l]
            err += w[16 * j + l] * diff * diff
        total += err
    return total


@njit(cache=True)
def prefer(err_new, err_old):
    return err_new < err_old or (np.isnan(err_old) and not np.isnan(err_new))
