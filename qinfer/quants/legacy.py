"""Legacy 32-element block formats: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (numpy reference).

`ggml` reproduces llama.cpp's quantize_row_*_ref (and, with an importance
matrix, quantize_row_q{4,5}_{0,1}_impl) in float32 with C's operation order: the
truncating casts of `x*id + 8.5f`, the fp32 reciprocal `id`, roundf's ties away
from zero for Q8_0. `best` lives in legacy_best.py.
"""
import numpy as np

from .kq_search import make_qkx3_quants
from .legacy_layout import (LAYOUTS, pack, unpack, fp16_round)

F32 = np.float32
QK = 32


def _blocks(x):
    return np.ascontiguousarray(x, dtype=F32).reshape(-1, QK)


def _signed_absmax(xb):
    """The element with the largest |x| (first one on ties), as ggml finds it:
    +0 for a block of zeros, -0 included (ggml starts from max = 0.0f)."""
    idx = np.argmax(np.abs(xb), axis=1)
    mx = xb[np.arange(xb.shape[0]), idx]
    return np.where(mx == 0, F32(0), mx).astype(F32)


def _recip(d):
    with np.errstate(divide="ignore"):
        return np.where(d != 0, F32(1) / d, F32(0)).astype(F32)


def trunc_i(v):
    """C's (int) cast of a float32: truncation toward zero."""
    return np.trunc(v).astype(np.int64)


def roundf_i(v):
    """C's roundf: halves away from zero (exact: float64 holds every float32 + 0.5)."""
    v64 = v.astype(np.float64)
    return (np.sign(v64) * np.floor(np.abs(v64) + 0.5)).astype(np.int64)


def nearest_int(v):
    """ggml's nearest_int: float32 round-half-to-even."""
    return np.rint(v.astype(F32)).astype(np.int64)


def _sym_ref(xb, nmax):
    mx = _signed_absmax(xb)
    d = (mx / F32(-nmax)).astype(F32)
    idv = _recip(d)
    v = (xb * idv[:, None]).astype(F32) + F32(nmax + 0.5)
    L = np.minimum(2 * nmax - 1, trunc_i(v.astype(F32)))
    return d, L


def _asym_ref(xb, nmax, clamp):
    mn = xb.min(axis=1)
    mx = xb.max(axis=1)
    d = ((mx - mn) / F32(nmax)).astype(F32)
    idv = _recip(d)
    v = (((xb - mn[:, None]).astype(F32) * idv[:, None]).astype(F32) + F32(0.5)).astype(F32)
    L = trunc_i(v)
    if clamp:
        L = np.minimum(nmax, L)
    return d, mn.astype(F32), L


def make_qx_quants_w(xb, nmax, w):
    """ggml's make_qx_quants with rmse_type 1 and explicit weights, per block
    (rows of xb), accumulating sums sequentially in float32 as C does.
    Returns (scale, L) with L already offset by +nmax."""
    nb, n = xb.shape
    ax = np.abs(xb)
    amax = ax.max(axis=1)
    mx = _signed_absmax(xb)
    zero = amax < F32(1e-15)
    safe_mx = np.where(zero, F32(1), mx).astype(F32)

    def fit(iscale):
        l = np.clip(nearest_int((iscale[:, None] * xb).astype(F32)), -nmax, nmax - 1)
        lf = l.astype(F32)
        sumlx = np.zeros(nb, F32)
        suml2 = np.zeros(nb, F32)
        for i in range(n):
            sumlx = (sumlx + ((w[:, i] * xb[:, i]).astype(F32) * lf[:, i]).astype(F32)).astype(F32)
            suml2 = (suml2 + ((w[:, i] * lf[:, i]).astype(F32) * lf[:, i]).astype(F32)).astype(F32)
        return l, sumlx, suml2

    iscale = (F32(-nmax) / safe_mx).astype(F32)
    l, sumlx, suml2 = fit(iscale)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / suml2, F32(0)).astype(F32)
    best = (scale * sumlx).astype(F32)
    L = l + nmax
    for is_ in range(-9, 10):
        if is_ == 0:
            continue
        iscale = (-(F32(nmax) + (F32(0.1) * F32(is_))).astype(F32) / safe_mx).astype(F32)
        l, sumlx, suml2 = fit(iscale)
        take = (suml2 > 0) & ((sumlx * sumlx).astype(F32) > (best * suml2).astype(F32))
        with np.errstate(divide="ignore", invalid="ignore"):
            new_scale = (sumlx / suml2).astype(F32)
        L = np.where(take[:, None], l + nmax, L)
        scale = np.where(take, new_scale, scale).astype(F32)
        best = np.where(take, (new_scale * sumlx).astype(F32), best).astype(F32)
    L = np.where(zero[:, None], 0, L)
    scale = np.where(zero, F32(0), scale).astype(F32)
    return scale, L


def _sym_impl(x, imatrix, nmax):
    """quantize_row_q4_0_impl / q5_0_impl: weights qw*sqrt(sigma2 + x^2), sigma2
    the mean square of the whole row."""
    d, L = make_qx_quants_w(_blocks(x), nmax, _impl_weights(x, imatrix).reshape(-1, QK))
    return d, L


def _impl_weights(x, imatrix):
    """imatrix * sqrt(sigma2 + x^2), sigma2 the mean square of the whole row (ggml's *_impl)."""
    rows, n = x.shape
    sum_x2 = np.zeros(rows, F32)
    for j in range(n):
        sum_x2 = (sum_x2 + (x[:, j] * x[:, j]).astype(F32)).astype(F32)
    sigma2 = (sum_x2 / F32(n)).astype(F32)
    return (imatrix[None, :] * np.sqrt((sigma2[:, None] + (x * x).astype(F32)).astype(F32))).astype(F32)


def _asym_impl(x, imatrix, nmax):
    """quantize_row_q4_1_impl / q5_1_impl: the same weights, make_qkx3_quants' fit
    and codes stored as they come (m = -the_min)."""
    w = _impl_weights(x, imatrix)
    d, the_min, L = make_qkx3_quants(_blocks(x), w.reshape(-1, QK), nmax, -0.9, 0.05, 36, False)
    return d, -the_min, L


def _quantize(kind, x, imatrix):
    lay = LAYOUTS[kind]
    xb = _blocks(x)
    if kind == "q8_0":
        amax = np.abs(xb).max(axis=1)
        d = (amax / F32(127)).astype(F32)
        L = roundf_i((xb * _recip(d)[:, None]).astype(F32))
        return pack(kind, d, None, L, x.shape[0])
    if kind in ("q4_0", "q5_0"):
        if imatrix is not None:
            d, L = _sym_impl(x, imatrix, lay.nmax)
        else:
            d, L = _sym_ref(xb, lay.nmax)
        return pack(kind, d, None, L, x.shape[0])
    if imatrix is not None:
        d, m, L = _asym_impl(x, imatrix, lay.nmax)
    else:
        d, m, L = _asym_ref(xb, lay.nmax, clamp=(kind == "q4_1"))
    return pack(kind, d, m, L, x.shape[0])


def quantize_q8_0_ggml(x, imatrix=None):
    # llama.cpp ignores the importance matrix for Q8_0.
    return _quantize("q8_0", x, None)


def quantize_q4_0_ggml(x, imatrix=None):
    return _quantize("q4_0", x, imatrix)


def quantize_q5_0_ggml(x, imatrix=None):
    return _quantize("q5_0", x, imatrix)


def quantize_q4_1_ggml(x, imatrix=None):
    return _quantize("q4_1", x, imatrix)


def quantize_q5_1_ggml(x, imatrix=None):
    return _quantize("q5_1", x, imatrix)


def _dequantize(kind, rows, n_per_row):
    d, m, L = unpack(kind, rows)
    lay = LAYOUTS[kind]
    if m is None:
        y = d[:, None] * (L - lay.offset).astype(F32)
    else:
        y = (d[:, None] * L.astype(F32)).astype(F32) + m[:, None]
    return y.astype(F32).reshape(rows.shape[0], n_per_row)


def dequantize_q8_0(rows, n):
    return _dequantize("q8_0", rows, n)


def dequantize_q4_0(rows, n):
    return _dequantize("q4_0", rows, n)


def dequantize_q5_0(rows, n):
    return _dequantize("q5_0", rows, n)


def dequantize_q4_1(rows, n):
    return _dequantize("q4_1", rows, n)


def dequantize_q5_1(rows, n):
    return _dequantize("q5_1", rows, n)


from .legacy_best import (quantize_q4_0_best, quantize_q4_1_best, quantize_q5_0_best,  # noqa: E402
                          quantize_q5_1_best, quantize_q8_0_best)

__all__ = [n for n in dir() if n.startswith(("quantize_", "dequantize_"))] + ["fp16_round"]
