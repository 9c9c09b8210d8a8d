"""The "best" scale search shared by the symmetric K-quants Q3_K and Q6_K.

Both formats store x = d * s_j * q: one fp16 super-scale d, one signed integer
sub-scale s_j per 16 weights (6-bit -32..31 for Q3_K, int8 for Q6_K) and
signed codes q (-4..3, -32..31). ggml rounds each ideal sub-block scale to the
sub-scale grid once and never looks back; the error it minimises is also not
the one that matters (x^2-weighted without an imatrix). This search scores
every candidate by the error of what is actually stored:

1. each sub-block gets its ideal continuous scale from a weighted least-squares
   fit over a grid of trial scales (`fit_scales`; like ggml's make_qx_quants,
   but with the target weights - the imatrix, or 1 - and a grid of the
   caller's choosing: the optimum of a 16-weight sub-block often lies 5-15%
   away from max|x|/nmax, outside make_qx_quants' +-3% grid);
2. for a few super-scales d = fp16(max_scale / m), m from `divisors` (the
   signed sub-scale the largest ideal scale maps to), every sub-block tries the
   sub-scales round(scale/d) and its two neighbours, requantizes its codes with
   the stored d*s exactly as ggml does (nearest_int of x/(d*s), clamped) and
   keeps the sub-scale with the lowest weighted squared error;
3. the super-scale with the lowest total error wins.

The caller then keeps ggml's own block where that is at least as good, so
"best" is never worse than "ggml" per super-block.

All arithmetic is float32 with sums accumulated sequentially in a fixed order
(elements 0..15, sub-blocks 0..15), candidates compared with strict '<'
(first wins), so that the Numba and C versions reproduce these bytes exactly.
"""
import numpy as np

from .q2_k_layout import fp16_bits, fp16_value
from .kq_search import GROUP_MAX_EPS, nearest_int

F32 = np.float32
DELTAS = np.array([0, -1, 1], dtype=np.int32)


def signed_max(scales):
    """The signed value of largest magnitude per row (first one on ties), as ggml picks it."""
    amax = np.zeros(scales.shape[0], F32)
    smax = np.zeros(scales.shape[0], F32)
    for j in range(scales.shape[1]):
        upd = np.abs(scales[:, j]) > amax
        amax = np.where(upd, np.abs(scales[:, j]), amax)
        smax = np.where(upd, scales[:, j], smax)
    return smax


def fit_scales(x, w, qmin, qmax, grid):
    """Weighted least-squares scale per sub-block x [m,16] (0 for all-zero ones).

    For each g in `grid`, codes l = clamp(nearest_int(g/max * x)) with max the
    signed element of largest magnitude; the candidate's scale is
    sum(w*x*l)/sum(w*l*l) and it wins if it explains more of the weighted
    energy (sum(w*x*l)^2/sum(w*l*l), strictly), exactly ggml's criterion.
    """
    m = x.shape[0]
    top = signed_max(x)
    zero = np.abs(top) < GROUP_MAX_EPS
    safe_top = np.where(zero, F32(1), top)
    scale = np.zeros(m, F32)
    best = np.zeros(m, F32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for g in grid:
            l = np.clip(nearest_int((F32(g) / safe_top)[:, None] * x), qmin, qmax).astype(F32)
            sumlx = np.zeros(m, F32)
            suml2 = np.zeros(m, F32)
            for i in range(x.shape[1]):
                sumlx = sumlx + w[:, i] * x[:, i] * l[:, i]
                suml2 = suml2 + w[:, i] * l[:, i] * l[:, i]
            acc = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            scale = np.where(acc, sumlx / np.where(acc, suml2, F32(1)), scale)
            best = np.where(acc, scale * sumlx, best)
    return np.where(zero, F32(0), scale)


def trial_grid(base, step, lo, hi):
    """float32 trial values base + step*i, i = lo..hi, rounded as C computes them."""
    return [F32(base) + F32(step) * F32(i) for i in range(lo, hi + 1)]


def subblock_error(x, w, dl, qmin, qmax):
    """Weighted squared error and codes of sub-blocks x [..., 16] coded with step dl [...].

    x and w broadcast against dl (one row of 16 weights can be tried with
    several steps at once). Codes are nearest_int(x * (1/dl)) clamped (0 where
    dl == 0): a multiply instead of ggml's division, 3x cheaper in the inner
    loop; the two differ only within an ulp of a rounding tie, and the error
    is measured on the codes actually chosen. The decoded value is dl*q as
    every dequantizer computes it.
    """
    coded = dl != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = F32(1) / np.where(coded, dl, F32(1))
        q = np.clip(nearest_int(x * inv[..., None]), qmin, qmax)
        q = np.where(coded[..., None], q, 0)
        err = np.zeros(dl.shape, F32)
        for l in range(x.shape[-1]):
            diff = x[..., l] - dl * q[..., l].astype(F32)
            err = err + w[..., l] * diff * diff
    return err, q


def first_min(err, *choices):
    """Along the last axis: the first strict minimum of err (NaN never wins)
    and the matching entries of each array in choices (same leading shape)."""
    best = np.full(err.shape[:-1], np.inf, F32)
    picked = [np.zeros(c.shape[:err.ndim - 1] + c.shape[err.ndim:], c.dtype) for c in choices]
    for t in range(err.shape[-1]):
        better = err[..., t] < best
        best = np.where(better, err[..., t], best)
        for i, c in enumerate(choices):
            mask = better.reshape(better.shape + (1,) * (c.ndim - err.ndim))
            picked[i] = np.where(mask, c[:, :, t], picked[i])
    return best, picked


def search_symmetric(x, w, scales, qmin, qmax, smin, smax, divisors):
    """Best (d_bits [nb], s [nb,16] int32, q [nb,256] int32, err [nb]) per super-block.

    x, w: [nb, 256] float32 weights and error weights; scales: [nb, 16] ideal
    sub-block scales; q in qmin..qmax, s in smin..smax.
    """
    nb = x.shape[0]
    xs = x.reshape(nb, 16, 1, 16)
    ws = w.reshape(nb, 16, 1, 16)
    top = signed_max(scales)
    best_err = np.full(nb, np.inf, F32)
    best_bits = np.zeros(nb, np.uint16)
    best_s = np.zeros((nb, 16), np.int32)
    best_q = np.zeros((nb, 16, 16), np.int32)
    for m in divisors:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            bits = fp16_bits(top / F32(m))
            d = fp16_value(bits)
            ratio = scales / np.where(d != 0, d, F32(1))[:, None]
        s0 = np.where((d != 0)[:, None], np.clip(nearest_int(ratio), smin, smax), 0)
        # every sub-block tries s0, s0-1, s0+1 (in this order: ties keep the first)
        s = np.clip(s0[:, :, None] + DELTAS, smin, smax)                     # [nb, 16, 3]
        err, q = subblock_error(xs, ws, d[:, None, None] * s.astype(F32), qmin, qmax)
        err_j, (cand_s, cand_q) = first_min(err, s, q)
        total = np.zeros(nb, F32)
        for j in range(16):
            total = total + err_j[:, j]
        better = total < best_err
        best_err = np.where(better, total, best_err)
        best_bits = np.where(better, bits, best_bits)
        best_s = np.where(better[:, None], cand_s, best_s)
        best_q = np.where(better[:, None, None], cand_q, best_q)
    return best_bits, best_s, best_q.reshape(nb, 256), best_err


def block_error(x, w, y):
    """Weighted squared error per super-block, summed like search_symmetric sums it."""
    nb = x.shape[0]
    xs, ws, ys = (a.reshape(nb, 16, 16) for a in (x, w, y))
    total = np.zeros(nb, F32)
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(16):
            err = np.zeros(nb, F32)
            for l in range(16):
                diff = xs[:, j, l] - ys[:, j, l]
                err = err + ws[:, j, l] * diff * diff
            total = total + err
    return total


def prefer(err_new, err_old):
    """Where the new candidate wins: strictly lower error, or the old one is NaN."""
    return (err_new < err_old) | (np.isnan(err_old) & ~np.isnan(err_new))
