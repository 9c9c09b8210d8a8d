"""`best` quantizers for the legacy formats (numpy reference).

Same bytes as llama.cpp's format, lower error. Per 32-block:

1. llama.cpp's own solution (`ggml`, its imatrix path when there is one) is
   candidate 0, so `best` is never worse than `ggml` on any block.
2. A few trial codings, each scored by the least-squares fit its codes allow
   (no per-element division, no fp16 rounding, so a trial costs one rounding
   pass and two or three sums):
   - symmetric types (codes lo..hi): l = rint(-t/mx * x) clamped, mx the signed
     absmax, t = T0 + STEP*k for k < N (SYM_TRIALS); score d*sxl with
     d = sxl/sll, i.e. how much the LS scale removes from sum(w x^2).
   - Q4_1/Q5_1 (codes 0..nmax): the range [mn, mx] with 3/8 of a step trimmed
     off its top or its bottom (ASYM_TRIMS), codes rint((x - lo)*nmax/(hi - lo));
     score d*sxl + m*sx for the LS (d, m) of those codes.
3. The best-scoring trial's LS scale (and min) is rounded to the fp16 d the file
   stores and the codes recomputed from exactly that (times the float32 1/d, a
   multiplication rather than 32 divisions); the LS refit on those codes, rounded
   and recoded the same way, is the search's solution. It replaces llama.cpp's
   only if its exact weighted error on what dequantization returns is smaller.
   (Also measuring the unrefitted solution changed no block in 2048 tried per
   type: the refit is never worse in practice, so that error is not computed.)

Measured on N(0,1) rows (benches/README.md, "Legacy best quantizer"), this keeps
90-126% of the RMSE gain of the earlier 25-50-candidate search per type, at
1/50-1/150 of its time.

Weights are the importance matrix when given, else 1. Every sum over a block's
32 values is the lane-ordered sum `lane_sum`: eight running sums over the four
8-element quarters, then a fixed pairwise reduction (lanes j and j+4, then j and
j+2, then 0 and 1). It is what an 8-wide SIMD register computes, so the C (AVX2
and scalar) and Numba twins (csrc/quant_legacy*.c, kernels/numba/legacy.py)
give the same bytes without reassociating anything. Products are formed as
(w*x)*l, (w*l)*l and (w*diff)*diff; all arithmetic is float32.
"""
import numpy as np

from .legacy import _blocks, _signed_absmax, quantize_q4_0_ggml, quantize_q4_1_ggml, \
    quantize_q5_0_ggml, quantize_q5_1_ggml, quantize_q8_0_ggml
from .legacy_layout import LAYOUTS, fp16_round, pack, unpack

F32 = np.float32

SYM_RANGE = {"q8_0": (-127, 127), "q4_0": (-8, 7), "q5_0": (-16, 15)}
# (T0, STEP, N) of the symmetric trials; chosen from measured gains (see module doc).
SYM_TRIALS = {"q8_0": (121.0, 1.0, 8), "q4_0": (7.25, 0.5, 4), "q5_0": (15.0, 0.25, 8)}
# (a, b): lo = mn + a*step, hi = mx - b*step, step = (mx - mn)/nmax; likewise chosen.
ASYM_TRIMS = ((0.0, 0.375), (0.375, 0.0))


def lane_sum(v):
    """Sum of each row of v [nblocks, 32] in the lane order of an 8-wide register."""
    s = (v[:, 0:8] + v[:, 8:16]).astype(F32)
    s = (s + v[:, 16:24]).astype(F32)
    s = (s + v[:, 24:32]).astype(F32)
    a = (s[:, 0:4] + s[:, 4:8]).astype(F32)
    b = (a[:, 0:2] + a[:, 2:4]).astype(F32)
    return (b[:, 0] + b[:, 1]).astype(F32)


def _weights(x, imatrix):
    if imatrix is None:
        return np.ones_like(_blocks(x))
    return _blocks(np.broadcast_to(imatrix.astype(F32), x.shape))


def _round_clip(v, lo, hi):
    """rint then clamp, on float32 codes (clamping a rounded value equals
    rounding a clamped one for integer bounds)."""
    return np.clip(np.rint(v.astype(F32)), F32(lo), F32(hi)).astype(F32)


def _sym_err(xb, w, d, l):
    diff = (xb - (d[:, None] * l).astype(F32)).astype(F32)
    return lane_sum(((w * diff).astype(F32) * diff).astype(F32))


def _asym_err(xb, w, d, m, L):
    diff = (xb - ((d[:, None] * L).astype(F32) + m[:, None]).astype(F32)).astype(F32)
    return lane_sum(((w * diff).astype(F32) * diff).astype(F32))


def _sym_sums(wx, w, l):
    return lane_sum((wx * l).astype(F32)), lane_sum(((w * l).astype(F32) * l).astype(F32))


def _sym_stored(xb, d, valid, lo, hi):
    """fp16-round scale d and recompute the codes from it: (d, l, valid)."""
    with np.errstate(over="ignore"):
        d = fp16_round(np.where(valid, d, F32(0)))
    valid = valid & (d != 0) & np.isfinite(d)
    d = np.where(valid, d, F32(1)).astype(F32)
    with np.errstate(over="ignore"):
        l = _round_clip(xb * (F32(1) / d)[:, None], lo, hi)
    return d, l, valid


def _asym_sums(wx, w, L):
    wl = (w * L).astype(F32)
    return lane_sum(wl), lane_sum((wl * L).astype(F32)), lane_sum((wx * L).astype(F32))


def _asym_ls(sw, sx, sl, sl2, sxl):
    """LS (d, m) for codes with these sums; valid where the system is regular."""
    D = ((sw * sl2).astype(F32) - (sl * sl).astype(F32)).astype(F32)
    ok = D > 0
    Ds = np.where(ok, D, F32(1)).astype(F32)
    with np.errstate(over="ignore", invalid="ignore"):
        d = (((sw * sxl).astype(F32) - (sx * sl).astype(F32)).astype(F32) / Ds).astype(F32)
        m = (((sl2 * sx).astype(F32) - (sl * sxl).astype(F32)).astype(F32) / Ds).astype(F32)
    return d, m, ok


def _asym_stored(xb, d, m, valid, nmax):
    with np.errstate(over="ignore"):
        d = fp16_round(np.where(valid, d, F32(0)))
        m = fp16_round(np.where(valid, m, F32(0)))
    valid = valid & (d > 0) & np.isfinite(d) & np.isfinite(m)
    d = np.where(valid, d, F32(1)).astype(F32)
    m = np.where(valid, m, F32(0)).astype(F32)
    with np.errstate(over="ignore"):
        L = _round_clip(((xb - m[:, None]).astype(F32) * (F32(1) / d)[:, None]).astype(F32), 0, nmax)
    return d, m, L, valid


def _take(cond, new, old):
    return np.where(cond.reshape(cond.shape + (1,) * (old.ndim - 1)), new, old).astype(old.dtype)


def _best_sym(kind, x, imatrix, ggml_fn):
    lo, hi = SYM_RANGE[kind]
    off = LAYOUTS[kind].offset
    xb = _blocks(x)
    w = _weights(x, imatrix)
    wx = (w * xb).astype(F32)
    best_d, _, L0 = unpack(kind, ggml_fn(x, imatrix))
    best_l = (L0 - off).astype(F32)
    best_e = _sym_err(xb, w, best_d, best_l)
    mx = _signed_absmax(xb)
    nz = mx != 0
    mxs = np.where(nz, mx, F32(1)).astype(F32)
    t0, step, n = SYM_TRIALS[kind]
    score = np.full(xb.shape[0], -np.inf, F32)
    trial_d = np.zeros(xb.shape[0], F32)
    for k in range(n):
        t = (F32(t0) + (F32(step) * F32(k)).astype(F32)).astype(F32)
        iscale = (-t / mxs).astype(F32)
        l = _round_clip((iscale[:, None] * xb).astype(F32), lo, hi)
        sxl, sll = _sym_sums(wx, w, l)
        ok = sll > 0
        d = (sxl / np.where(ok, sll, F32(1))).astype(F32)
        s = (d * sxl).astype(F32)
        better = ok & (s > score)
        score = np.where(better, s, score).astype(F32)
        trial_d = np.where(better, d, trial_d).astype(F32)
    found = nz & (score > -np.inf)
    _, l1, v1 = _sym_stored(xb, trial_d, found, lo, hi)
    sxl, sll = _sym_sums(wx, w, l1)
    ok = v1 & (sll > 0)
    d2, l2, v2 = _sym_stored(xb, (sxl / np.where(ok, sll, F32(1))).astype(F32), ok, lo, hi)
    take = v2 & (_sym_err(xb, w, d2, l2) < best_e)
    best_d, best_l = _take(take, d2, best_d), _take(take, l2, best_l)
    return pack(kind, best_d, None, best_l.astype(np.int64) + off, x.shape[0])


def _best_asym(kind, x, imatrix, ggml_fn):
    nmax = LAYOUTS[kind].nmax
    xb = _blocks(x)
    w = _weights(x, imatrix)
    wx = (w * xb).astype(F32)
    best_d, best_m, L0 = unpack(kind, ggml_fn(x, imatrix))
    best_L = L0.astype(F32)
    best_e = _asym_err(xb, w, best_d, best_m, best_L)
    mn = xb.min(axis=1)
    mx = xb.max(axis=1)
    r = (mx - mn).astype(F32)
    spread = r > 0
    step = (r / F32(nmax)).astype(F32)
    sw, sx = lane_sum(w), lane_sum(wx)
    score = np.full(xb.shape[0], -np.inf, F32)
    trial_d = np.zeros(xb.shape[0], F32)
    trial_m = np.zeros(xb.shape[0], F32)
    for a, b in ASYM_TRIMS:
        lo_v = (mn + (F32(a) * step).astype(F32)).astype(F32)
        hi_v = (mx - (F32(b) * step).astype(F32)).astype(F32)
        width = (hi_v - lo_v).astype(F32)
        ok = spread & (width > 0)
        with np.errstate(divide="ignore"):
            ic = (F32(nmax) / np.where(ok, width, F32(1))).astype(F32)
        L = _round_clip(((xb - lo_v[:, None]).astype(F32) * ic[:, None]).astype(F32), 0, nmax)
        sl, sl2, sxl = _asym_sums(wx, w, L)
        d, m, regular = _asym_ls(sw, sx, sl, sl2, sxl)
        s = ((d * sxl).astype(F32) + (m * sx).astype(F32)).astype(F32)
        better = ok & regular & (d > 0) & (s > score)
        score = np.where(better, s, score).astype(F32)
        trial_d = np.where(better, d, trial_d).astype(F32)
        trial_m = np.where(better, m, trial_m).astype(F32)
    found = score > -np.inf
    _, _, L1, v1 = _asym_stored(xb, trial_d, trial_m, found, nmax)
    d, m, regular = _asym_ls(sw, sx, *_asym_sums(wx, w, L1))
    d2, m2, L2, v2 = _asym_stored(xb, d, m, v1 & regular, nmax)
    take = v2 & (_asym_err(xb, w, d2, m2, L2) < best_e)
    best_d, best_m, best_L = _take(take, d2, best_d), _take(take, m2, best_m), _take(take, L2, best_L)
    return pack(kind, best_d, best_m, best_L.astype(np.int64), x.shape[0])


def quantize_q8_0_best(x, imatrix=None):
    return _best_sym("q8_0", x, imatrix, lambda x_, im: quantize_q8_0_ggml(x_, None))


def quantize_q4_0_best(x, imatrix=None):
    return _best_sym("q4_0", x, imatrix, quantize_q4_0_ggml)


def quantize_q5_0_best(x, imatrix=None):
    return _best_sym("q5_0", x, imatrix, quantize_q5_0_ggml)


def quantize_q4_1_best(x, imatrix=None):
    return _best_asym("q4_1", x, imatrix, quantize_q4_1_ggml)


def quantize_q5_1_best(x, imatrix=None):
    return _best_asym("q5_1", x, imatrix, quantize_q5_1_ggml)
