"""The "best" scale search shared by the asymmetric K-quants Q2_K, Q4_K and Q5_K.

They store x = d*sc_j*q - dmin*m_j: fp16 super-scales d and dmin, small
unsigned sub-block codes sc_j and m_j (4-bit for Q2_K's 16 sub-blocks of 16,
6-bit for Q4_K/Q5_K's 8 sub-blocks of 32) and codes q in 0..nmax. ggml fits
each sub-block with weights that are not the target error's (|x|-based
without an imatrix), rounds scales and mins to the sub-block code grid once
and never checks what that rounding cost. Here every candidate is scored by
the weighted squared error of what is actually stored:

1. each sub-block gets an ideal (scale, min) from make_qkx3_quants with the
   target weights (the imatrix, or 1) and a squared-error criterion, over the
   trial grid `fit` = (rmin, rdelta, nstep);
2. for each pair of super-scales d = fp16(max_scale/md), dmin =
   fp16(max_min/mm) (md, mm from `divisors`: the code the largest ideal
   scale or min maps to), every sub-block tries its rounded (sc, m) and the
   neighbours in `moves`, requantizes its codes with the stored d*sc,
   dmin*m and keeps the best;
3. the pair with the lowest total error wins; optionally its (d, dmin) are
   refitted by weighted least squares to its own codes and the result tried
   as one more pair (`refits` times);
4. the caller keeps ggml's own block where that is at least as good.

float32 arithmetic, sequential sums in a fixed order and strict '<' (first
wins) make the Numba and C versions reproduce these bytes exactly.
"""
from dataclasses import dataclass

import numpy as np

from .kq_search import make_qkx3_quants, nearest_int
from .q2_k_layout import fp16_bits, fp16_value
from .q3_k_q6_k_best import first_min

F32 = np.float32

MOVES5 = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int32)
MOVES9 = np.concatenate([MOVES5, np.array([(-1, -1), (1, 1), (-1, 1), (1, -1)], dtype=np.int32)])


@dataclass(frozen=True)
class Config:
    n_sub: int         # sub-blocks per super-block
    nmax: int          # largest weight code
    smax: int          # largest sub-block scale / min code
    fit: tuple         # (rmin, rdelta, nstep) of the sub-block fit
    divisors: tuple    # codes the largest ideal scale / min are mapped to
    moves: np.ndarray  # (sc, m) steps tried around the rounded pair
    refits: int        # least-squares refits of the winner's (d, dmin) tried as candidates


# Q2_K: the span of ggml's imatrix-path grid at half its density, which halves
# the cost of the fit and moves the final error by < 0.1% (the super-block
# search re-decides the rounding anyway).
Q2 = Config(16, 3, 15, (-0.9, 0.1, 18), (15.0, 14.0, 13.0), MOVES5, 0)
# Q4_K/Q5_K, measured on Gaussian, Student-t and outlier rows (16x4096, no
# imatrix): Q4_K 2.2/2.9/2.9% lower RMSE than ggml with 5 moves and no refit;
# 9 moves +0.1%, two refits +0.1%; five divisors or 25 moves +0.1-0.2% at
# 2-5x the time; a denser fit grid was worse.
Q4 = Config(8, 15, 63, (-0.9, 0.1, 18), (63.0, 62.0, 61.0), MOVES9, 2)
Q5 = Config(8, 31, 63, (-0.9, 0.1, 18), (63.0, 62.0, 61.0), MOVES9, 2)


def subblock_error(x, w, dl, ml, nmax):
    """Weighted squared error and codes of sub-blocks x [..., n] decoded as dl*q - ml.

    x and w broadcast against dl, ml [...]. Codes clamp(nearest_int((x + ml) *
    (1/dl)), 0, nmax), 0 where dl == 0 (a multiply where ggml divides: cheaper,
    and the error is measured on the codes actually chosen).
    """
    coded = dl != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = F32(1) / np.where(coded, dl, F32(1))
        q = np.clip(nearest_int((x + ml[..., None]) * inv[..., None]), 0, nmax)
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


def _round_codes(v, step, smax):
    """clamp(nearest_int(v/step), 0, smax), 0 where step == 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.clip(nearest_int(v / np.where(step != 0, step, F32(1))[:, None]), 0, smax)
    return np.where((step != 0)[:, None], r, 0)


def _refit(x, w, sc, m, q, n_sub):
    """Weighted least-squares (d, dmin) for fixed integer sc, m, q: x ~ d*(sc*q) - dmin*m.

    Returns float32 [nb] each, and a mask of blocks where the 2x2 system is
    well posed and the solution usable (both positive)."""
    nb, n = x.shape[0], x.shape[1] // n_sub
    a = (sc[:, :, None] * q.reshape(nb, n_sub, n)).astype(F32).reshape(nb, -1)
    b = np.repeat(m.astype(F32), n, axis=1)
    saa = sab = sbb = sxa = sxb = np.zeros(nb, F32)
    for i in range(x.shape[1]):
        wi = w[:, i]
        saa = saa + wi * a[:, i] * a[:, i]
        sab = sab + wi * a[:, i] * b[:, i]
        sbb = sbb + wi * b[:, i] * b[:, i]
        sxa = sxa + wi * x[:, i] * a[:, i]
        sxb = sxb + wi * x[:, i] * b[:, i]
    det = saa * sbb - sab * sab
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        safe = np.where(det > 0, det, F32(1))
        d = (sxa * sbb - sxb * sab) / safe
        dmin = (sxa * sab - sxb * saa) / safe
    ok = (det > 0) & (d > 0) & (dmin >= 0)
    return np.where(ok, d, F32(0)), np.where(ok, dmin, F32(0)), ok


def search(x, w, cfg):
    """Best stored form of super-blocks x [nb, 256] under error weights w [nb, 256].

    Returns (sc [nb, n_sub], m [nb, n_sub] codes 0..smax, d_bits [nb],
    dmin_bits [nb], codes [nb, 256] in 0..nmax, err [nb]).
    """
    nb, n_sub, nmax, smax = x.shape[0], cfg.n_sub, cfg.nmax, cfg.smax
    n = x.shape[1] // n_sub
    scales, mins, _ = make_qkx3_quants(x.reshape(-1, n), w.reshape(-1, n), nmax, *cfg.fit, False)
    scales, mins = scales.reshape(nb, n_sub), mins.reshape(nb, n_sub)
    xs, ws = x.reshape(nb, n_sub, 1, n), w.reshape(nb, n_sub, 1, n)
    max_scale, max_min = _first_max(scales), _first_max(mins)
    best_err = np.full(nb, np.inf, F32)
    best = [np.zeros((nb, n_sub), np.int32), np.zeros(nb, np.uint16), np.zeros(nb, np.uint16),
            np.zeros((nb, n_sub), np.int32), np.zeros((nb, n_sub, n), np.int32)]

    def evaluate(d_bits, dmin_bits, allowed):
        d, dmin = fp16_value(d_bits), fp16_value(dmin_bits)
        sc0, m0 = _round_codes(scales, d, smax), _round_codes(mins, dmin, smax)
        sc = np.clip(sc0[:, :, None] + cfg.moves[:, 0], 0, smax)               # [nb, n_sub, moves]
        m = np.clip(m0[:, :, None] + cfg.moves[:, 1], 0, smax)
        err, q = subblock_error(xs, ws, d[:, None, None] * sc.astype(F32),
                                dmin[:, None, None] * m.astype(F32), nmax)
        err_j, (c_sc, c_m, c_q) = first_min(err, sc, m, q)
        total = np.zeros(nb, F32)
        for j in range(n_sub):
            total = total + err_j[:, j]
        better = allowed & (total < best_err)
        best_err[:] = np.where(better, total, best_err)
        for k, v in enumerate((c_sc, d_bits, dmin_bits, c_m, c_q)):
            best[k] = np.where(better.reshape((nb,) + (1,) * (v.ndim - 1)), v, best[k])

    everywhere = np.ones(nb, bool)
    for md in cfg.divisors:
        for mm in cfg.divisors:
            evaluate(fp16_bits(max_scale / F32(md)), fp16_bits(max_min / F32(mm)), everywhere)
    # the grid's winner, its (d, dmin) refitted by least squares to its own codes
    for _ in range(cfg.refits):
        d, dmin, ok = _refit(x, w, best[0], best[3], best[4], n_sub)
        evaluate(fp16_bits(d), fp16_bits(dmin), ok)
    sc, d_bits, dmin_bits, m, q = best
    return sc, m, d_bits, dmin_bits, q.reshape(nb, -1), best_err
