"""The "best" scale search of Q2_K: x = d*sc_j*q - dmin*m_j, q in 0..3, sc_j, m_j in 0..15.

ggml fits each 16-weight sub-block with an |x|-weighted absolute-error search
(make_qkx2_quants), rounds scales and mins to 4 bits once and never checks
what that rounding cost. Here every candidate is scored by the weighted
squared error of what is actually stored:

1. each sub-block gets an ideal (scale, min) from make_qkx3_quants with the
   target weights (the imatrix, or 1) and a squared-error criterion;
2. for each pair of super-scales d = fp16(max_scale/md), dmin =
   fp16(max_min/mm) (md, mm from DIVISORS), every sub-block tries its rounded
   (sc, m) and the four one-step neighbours, requantizes its codes with the
   stored d*sc, dmin*m exactly as ggml does, and keeps the best;
3. the pair with the lowest total error wins; the caller keeps ggml's own
   block where that is at least as good.

float32 arithmetic, sequential sums in a fixed order and strict '<' (first
wins) make the Numba and C versions reproduce these bytes exactly.
"""
import numpy as np

from .q2_k_layout import fp16_bits, fp16_value
from .kq_search import make_qkx3_quants, nearest_int
from .q3_k_q6_k_best import first_min

F32 = np.float32

# Sub-block fit grid: iscale = (nmax + RMIN + RDELTA*i)/(max - min), i = 0..NSTEP:
# the span of ggml's imatrix path at half its density, which halves the cost
# of the fit and moves the final error by < 0.1% (the super-block search
# re-decides the rounding anyway).
RMIN, RDELTA, NSTEP = -0.9, 0.1, 18
# 4-bit code the largest ideal scale (min) maps to.
DIVISORS = (15.0, 14.0, 13.0)
# (sc, m) moves tried around the rounded pair.
MOVES = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int32)


def fit_subblocks(sub, w):
    """Ideal (scale, min) per sub-block [m,16] under weights w, as non-negative floats."""
    scale, the_min, _ = make_qkx3_quants(sub, w, 3, RMIN, RDELTA, NSTEP, False)
    return scale, the_min


def subblock_error(x, w, dl, ml):
    """Weighted squared error and codes of sub-blocks x [..., 16] decoded as dl*q - ml.

    x and w broadcast against dl, ml [...]. Codes clamp(nearest_int((x + ml) *
    (1/dl)), 0, 3), 0 where dl == 0 (a multiply where ggml divides: cheaper,
    and the error is measured on the codes actually chosen).
    """
    coded = dl != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = F32(1) / np.where(coded, dl, F32(1))
        q = np.clip(nearest_int((x + ml[..., None]) * inv[..., None]), 0, 3)
        q = np.where(coded[..., None], q, 0)
        err = np.zeros(dl.shape, F32)
        for l in range(x.shape[-1]):
            diff = x[..., l] - (dl * q[..., l].astype(F32) - ml)
            err = err + w[..., l] * diff * diff
    return err, q


def _first_max(v):
    top = np.zeros(v.shape[0], F32)
    for j in range(v.shape[1]):
        top = np.where(v[:, j] > top, v[:, j], top)
    return top


def _round_codes(v, step):
    """clamp(nearest_int(v/step), 0, 15), 0 where step == 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.clip(nearest_int(v / np.where(step != 0, step, F32(1))[:, None]), 0, 15)
    return np.where((step != 0)[:, None], r, 0)


def search(x, w, scales, mins):
    """Best (scale bytes [nb,16] u8, d_bits, dmin_bits, codes [nb,256], err [nb]).

    x, w: [nb, 256]; scales, mins: [nb, 16] ideal sub-block scales and mins.
    """
    nb = x.shape[0]
    xs, ws = x.reshape(nb, 16, 1, 16), w.reshape(nb, 16, 1, 16)
    max_scale, max_min = _first_max(scales), _first_max(mins)
    best_err = np.full(nb, np.inf, F32)
    best = (np.zeros((nb, 16), np.int32), np.zeros(nb, np.uint16), np.zeros(nb, np.uint16),
            np.zeros((nb, 16), np.int32), np.zeros((nb, 16, 16), np.int32))
    for md in DIVISORS:
        d_bits = fp16_bits(max_scale / F32(md))
        d = fp16_value(d_bits)
        sc0 = _round_codes(scales, d)
        for mm in DIVISORS:
            dmin_bits = fp16_bits(max_min / F32(mm))
            dmin = fp16_value(dmin_bits)
            m0 = _round_codes(mins, dmin)
            sc = np.clip(sc0[:, :, None] + MOVES[:, 0], 0, 15)                # [nb, 16, 5]
            m = np.clip(m0[:, :, None] + MOVES[:, 1], 0, 15)
            err, q = subblock_error(xs, ws, d[:, None, None] * sc.astype(F32),
                                    dmin[:, None, None] * m.astype(F32))
            err_j, (c_sc, c_m, c_q) = first_min(err, sc, m, q)
            total = np.zeros(nb, F32)
            for j in range(16):
                total = total + err_j[:, j]
            better = total < best_err
            best_err = np.where(better, total, best_err)
            best = (np.where(better[:, None], c_sc, best[0]), np.where(better, d_bits, best[1]),
                    np.where(better, dmin_bits, best[2]), np.where(better[:, None], c_m, best[3]),
                    np.where(better[:, None, None], c_q, best[4]))
    sc, d_bits, dmin_bits, m, q = best
    return (sc | (m << 4)).astype(np.uint8), d_bits, dmin_bits, q.reshape(nb, 256), best_err
