"""`best` quantizers for the legacy formats (numpy reference).

Same bytes as llama.cpp's format, lower error: per 32-block a search over
candidate scales, each refit by weighted least squares, rounded to the fp16 the
file stores, and its codes recomputed from that stored scale; the error is
measured on exactly what dequantization will give. llama.cpp's own solution
is the first candidate, so `best` is never worse than `ggml` on any block.
Weights are the importance matrix when given, else 1.

The arithmetic is specified in float32 with sequential sums so that the C and
Numba twins (csrc/quant_legacy.c, kernels/numba/legacy.py) give the same bytes:
    sxl += (w*x)*l;  sll += (w*l)*l;  sw += w;  sl += w*l;  sx += w*x
    err += (w*diff)*diff with diff = x - d*l (symmetric) or x - (d*L + m).
Candidates, symmetric types (codes lo..hi): for k in 0..24, t = (nmax-2) + k/8,
iscale = -t/mx and (for types with an extra negative level) +(t-1)/mx, where
mx is the signed absmax. Asymmetric types: trimmed ranges
[mn + a*r, mx - b*r] for a, b in {0, .025, .05, .075, .1}. Then one refinement:
least-squares refit on the winner's codes.
"""
import numpy as np

from .legacy import _blocks, _signed_absmax, quantize_q4_0_ggml, quantize_q4_1_ggml, \
    quantize_q5_0_ggml, quantize_q5_1_ggml, quantize_q8_0_ggml
from .legacy_layout import LAYOUTS, fp16_round, pack, unpack

F32 = np.float32
N_SYM = 25
TRIMS = 5

SYM_RANGE = {"q8_0": (-127, 127), "q4_0": (-8, 7), "q5_0": (-16, 15)}


def _rint_clip(v, lo, hi):
    v = np.clip(v.astype(F32), F32(lo - 1), F32(hi + 1))
    return np.clip(np.rint(v), lo, hi).astype(np.int64)


def _weights(x, imatrix):
    if imatrix is None:
        return np.ones_like(_blocks(x))
    return _blocks(np.broadcast_to(imatrix.astype(F32), x.shape))


def _sym_err(xb, w, d, l):
    e = np.zeros(xb.shape[0], F32)
    lf = l.astype(F32)
    for i in range(xb.shape[1]):
        diff = (xb[:, i] - (d * lf[:, i]).astype(F32)).astype(F32)
        e = (e + ((w[:, i] * diff).astype(F32) * diff).astype(F32)).astype(F32)
    return e


def _asym_err(xb, w, d, m, L):
    e = np.zeros(xb.shape[0], F32)
    lf = L.astype(F32)
    for i in range(xb.shape[1]):
        v = ((d * lf[:, i]).astype(F32) + m).astype(F32)
        diff = (xb[:, i] - v).astype(F32)
        e = (e + ((w[:, i] * diff).astype(F32) * diff).astype(F32)).astype(F32)
    return e


def _sym_fit(xb, w, l, lo, hi):
    """LS scale for codes l -> (stored d, requantized codes, error, valid)."""
    sxl = np.zeros(xb.shape[0], F32)
    sll = np.zeros(xb.shape[0], F32)
    lf = l.astype(F32)
    for i in range(xb.shape[1]):
        sxl = (sxl + ((w[:, i] * xb[:, i]).astype(F32) * lf[:, i]).astype(F32)).astype(F32)
        sll = (sll + ((w[:, i] * lf[:, i]).astype(F32) * lf[:, i]).astype(F32)).astype(F32)
    ok = sll > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = fp16_round(np.where(ok, sxl / np.where(ok, sll, F32(1)), F32(0)).astype(F32))
        ok &= (d != 0) & np.isfinite(d)
        dsafe = np.where(ok, d, F32(1)).astype(F32)
        lq = _rint_clip((xb / dsafe[:, None]).astype(F32), lo, hi)
    return d, lq, _sym_err(xb, w, d, lq), ok


def _asym_fit(xb, w, L, nmax):
    nb = xb.shape[0]
    sw, sl, sl2, sx, sxl = (np.zeros(nb, F32) for _ in range(5))
    lf = L.astype(F32)
    for i in range(xb.shape[1]):
        wi, xi, li = w[:, i], xb[:, i], lf[:, i]
        wl = (wi * li).astype(F32)
        sw = (sw + wi).astype(F32)
        sl = (sl + wl).astype(F32)
        sl2 = (sl2 + (wl * li).astype(F32)).astype(F32)
        sx = (sx + (wi * xi).astype(F32)).astype(F32)
        sxl = (sxl + ((wi * xi).astype(F32) * li).astype(F32)).astype(F32)
    D = ((sw * sl2).astype(F32) - (sl * sl).astype(F32)).astype(F32)
    ok = D > 0
    Ds = np.where(ok, D, F32(1)).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = ((((sw * sxl).astype(F32) - (sx * sl).astype(F32)).astype(F32)) / Ds).astype(F32)
        m = ((((sl2 * sx).astype(F32) - (sl * sxl).astype(F32)).astype(F32)) / Ds).astype(F32)
        d = fp16_round(np.where(ok, d, F32(0)))
        m = fp16_round(np.where(ok, m, F32(0)))
        ok &= (d > 0) & np.isfinite(d) & np.isfinite(m)
        dsafe = np.where(ok, d, F32(1)).astype(F32)
        Lq = _rint_clip(((xb - m[:, None]).astype(F32) / dsafe[:, None]).astype(F32), 0, nmax)
    return d, m, Lq, _asym_err(xb, w, d, m, Lq), ok


def _best_sym(kind, x, imatrix, ggml_fn):
    lo, hi = SYM_RANGE[kind]
    nmax = LAYOUTS[kind].nmax
    off = LAYOUTS[kind].offset
    xb = _blocks(x)
    w = _weights(x, imatrix)
    d0, _, L0 = unpack(kind, ggml_fn(x, imatrix))
    best_d, best_l = d0, L0 - off
    best_e = _sym_err(xb, w, best_d, best_l)
    mx = _signed_absmax(xb)
    nz = mx != 0
    mxs = np.where(nz, mx, F32(1)).astype(F32)
    signs = (F32(-1), F32(1)) if lo == -hi - 1 else (F32(1),)
    for sign in signs:
        for k in range(N_SYM):
            t = (F32(nmax - 2) + F32(0.125) * F32(k)).astype(F32)
            if sign > 0 and lo == -hi - 1:
                t = (t - F32(1)).astype(F32)
            iscale = ((sign * t).astype(F32) / mxs).astype(F32)
            l = _rint_clip((iscale[:, None] * xb).astype(F32), lo, hi)
            d, lq, e, ok = _sym_fit(xb, w, l, lo, hi)
            take = ok & nz & (e < best_e)
            best_d = np.where(take, d, best_d).astype(F32)
            best_l = np.where(take[:, None], lq, best_l)
            best_e = np.where(take, e, best_e).astype(F32)
    d, lq, e, ok = _sym_fit(xb, w, best_l, lo, hi)
    take = ok & nz & (e < best_e)
    best_d = np.where(take, d, best_d).astype(F32)
    best_l = np.where(take[:, None], lq, best_l)
    return pack(kind, best_d, None, best_l + off, x.shape[0])


def _best_asym(kind, x, imatrix, ggml_fn):
    nmax = LAYOUTS[kind].nmax
    xb = _blocks(x)
    w = _weights(x, imatrix)
    best_d, best_m, best_L = unpack(kind, ggml_fn(x, imatrix))
    best_e = _asym_err(xb, w, best_d, best_m, best_L)
    mn = xb.min(axis=1)
    mx = xb.max(axis=1)
    r = (mx - mn).astype(F32)
    for ia in range(TRIMS):
        for ib in range(TRIMS):
            a = (F32(0.025) * F32(ia)).astype(F32)
            b = (F32(0.025) * F32(ib)).astype(F32)
            lo_v = (mn + (a * r).astype(F32)).astype(F32)
            hi_v = (mx - (b * r).astype(F32)).astype(F32)
            valid = hi_v > lo_v
            d0 = (((hi_v - lo_v).astype(F32)) / F32(nmax)).astype(F32)
            d0s = np.where(valid & (d0 > 0), d0, F32(1)).astype(F32)
            L = _rint_clip(((xb - lo_v[:, None]).astype(F32) / d0s[:, None]).astype(F32), 0, nmax)
            d, m, Lq, e, ok = _asym_fit(xb, w, L, nmax)
            take = ok & valid & (d0 > 0) & (e < best_e)
            best_d = np.where(take, d, best_d).astype(F32)
            best_m = np.where(take, m, best_m).astype(F32)
            best_L = np.where(take[:, None], Lq, best_L)
            best_e = np.where(take, e, best_e).astype(F32)
    d, m, Lq, e, ok = _asym_fit(xb, w, best_L, nmax)
    take = ok & (e < best_e)
    best_d = np.where(take, d, best_d).astype(F32)
    best_m = np.where(take, m, best_m).astype(F32)
    best_L = np.where(take[:, None], Lq, best_L)
    return pack(kind, best_d, best_m, best_L, x.shape[0])


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
