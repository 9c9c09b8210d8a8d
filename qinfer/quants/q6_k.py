"""Q6_K: 6.5625 bits per weight. Super-block of 256 = 16 sub-blocks of 16;
x = d * s_j * q with q in -32..31 and int8 s_j.

numpy reference (the oracle for the Numba and C versions):
- quantize_q6_k_ggml: llama.cpp's quantize_row_q6_K_ref (no imatrix) or
  quantize_row_q6_K_impl (imatrix), bit for bit;
- quantize_q6_k_best: same format, lower (imatrix-)weighted squared error;
- dequantize_q6_k: dequantize_row_q6_K.
"""
import numpy as np

from .q2_k_layout import fp16_bits, fp16_value, split_subblocks
from .kq_search import GROUP_MAX_EPS, make_qx_quants, nearest_int
from .q3_k_q6_k_best import (block_error, fit_scales, prefer, search_symmetric, signed_max,
                              trial_grid)
from .q6_k_layout import QK_K, pack_q6_k, unpack_q6_k


def dequantize_q6_k(rows, n_per_row):
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN scales decode as ggml's do
        return _dequantize(rows, n_per_row)


def _dequantize(rows, n_per_row):
    sc, q, d = unpack_q6_k(rows)
    dl = (d[:, None] * sc.astype(np.float32))[:, :, None]
    y = dl * q.reshape(-1, 16, 16).astype(np.float32)
    return y.reshape(rows.shape[0], n_per_row)


def requantize(x, d, sc, qmin=-32, qmax=31):
    """Codes q - qmin of x [nb,256] for super-scale d [nb] and signed sub-scales [nb,16].

    As ggml's final step of Q6_K (and Q3_K): q = clamp(nearest_int(x / (d*s)),
    qmin, qmax), by division. Sub-blocks whose d*s is 0 are not coded here
    (the caller keeps its own codes). Returns (codes, mask of coded sub-blocks).
    """
    dl = d[:, None] * sc.astype(np.float32)                 # [nb, 16]
    coded = dl != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        q = nearest_int(x.reshape(-1, 16, 16) / np.where(coded, dl, np.float32(1))[:, :, None])
    return (np.clip(q, qmin, qmax) - qmin).reshape(-1, QK_K), coded


def encode_scales(scales):
    """ggml's int8 coding of 16 sub-block scales per super-block [nb,16].

    max_scale = the signed scale of largest magnitude (first one on ties);
    iscale = -128/max_scale; s = min(127, nearest_int(iscale*scale)); d = 1/iscale.
    Returns (d_bits [nb] u16, s int8 [nb,16], zero mask [nb]) where zero marks
    super-blocks whose largest |scale| is below GROUP_MAX_EPS (stored as all zero).
    """
    smax = signed_max(scales)
    zero = np.abs(smax) < GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = np.float32(-128.0) / np.where(zero, np.float32(1), smax)
        s = np.minimum(127, nearest_int(iscale[:, None] * scales)).astype(np.int8)
        d_bits = fp16_bits(np.float32(1.0) / iscale)
    return d_bits, s, zero


def _pack_ggml(x, scales, L):
    """Blocks from per-sub-block scales [nb,16] and search codes L (0..63) [nb,256]."""
    d_bits, s, zero = encode_scales(scales)
    codes, coded = requantize(x, fp16_value(d_bits), s)
    L = np.where(np.repeat(coded, 16, axis=1), codes, L)
    out = pack_q6_k(s, L, d_bits)
    out[zero] = 0
    return out


def quantize_q6_k_ggml(x, imatrix=None):
    sub, qw = split_subblocks(x, imatrix)
    scales, L = make_qx_quants(sub, 32, qw)
    xb = sub.reshape(-1, QK_K)
    out = _pack_ggml(xb, scales.reshape(-1, 16), L.reshape(-1, QK_K))
    return out.reshape(x.shape[0], -1)


# Trial scales of the sub-block fit: max|x| maps to code -36 .. -26.4 (ggml
# tries -32.9 .. -31.1); on Gaussian data the best scale lies there 90% of the time.
BEST_GRID = trial_grid(-32.0, 0.4, -10, 14)
# Signed sub-scales the largest ideal sub-block scale is mapped to: ggml's -128
# and its neighbours, plus the positive end of the int8 range.
BEST_DIVISORS = (-128.0, -127.0, -126.0, 127.0)


def quantize_q6_k_best(x, imatrix=None):
    sub, qw = split_subblocks(x, imatrix)
    w = qw if qw is not None else np.ones_like(sub)
    xb, wb = sub.reshape(-1, QK_K), w.reshape(-1, QK_K)
    scales_g, L = make_qx_quants(sub, 32, qw)
    out = _pack_ggml(xb, scales_g.reshape(-1, 16), L.reshape(-1, QK_K))
    err_g = block_error(xb, wb, dequantize_q6_k(out, QK_K))
    scales = fit_scales(sub, w, -32, 31, BEST_GRID)
    bits, s, q, err = search_symmetric(xb, wb, scales.reshape(-1, 16), -32, 31, -128, 127,
                                       BEST_DIVISORS)
    win = prefer(err, err_g)
    out[win] = pack_q6_k(s[win].astype(np.int8), q[win] + 32, bits[win])
    return out.reshape(x.shape[0], -1)
