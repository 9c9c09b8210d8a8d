"""Q3_K: 3.4375 bits per weight. Super-block of 256 = 16 sub-blocks of 16;
x = d * s_j * q with q in -4..3 and signed 6-bit s_j in -32..31.

numpy reference (the oracle for the Numba and C versions):
- quantize_q3_k_ggml: llama.cpp's quantize_row_q3_K_ref (no imatrix) or
  quantize_row_q3_K_impl (imatrix), bit for bit;
- quantize_q3_k_best: same format, lower (imatrix-)weighted squared error;
- dequantize_q3_k: dequantize_row_q3_K.
"""
import numpy as np

from .q2_k_layout import fp16_bits, fp16_value, split_subblocks
from .kq_search import make_q3_quants, make_qx_quants, nearest_int
from .q3_k_layout import QK_K, pack_q3_k, unpack_q3_k
from .q3_k_q6_k_best import block_error, fit_scales, prefer, search_symmetric, signed_max, trial_grid
from .q6_k import requantize


def dequantize_q3_k(rows, n_per_row):
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN scales decode as ggml's do
        return _dequantize(rows, n_per_row)


def _dequantize(rows, n_per_row):
    sc, q, d = unpack_q3_k(rows)
    dl = (d[:, None] * sc.astype(np.float32))[:, :, None]
    y = dl * q.reshape(-1, 16, 16).astype(np.float32)
    return y.reshape(rows.shape[0], n_per_row)


def encode_scales_ref(scales):
    """quantize_row_q3_K_ref's 6-bit coding of the 16 sub-block scales [nb,16].

    max_scale = signed scale of largest magnitude; iscale = -32/max_scale;
    s = clamp(int8(nearest_int(iscale*scale)), -32, 31); d = 1/iscale. A block
    whose scales are all 0 gets d = 0 and all-zero scale bytes (which decode as
    -32). Returns (biased scales 0..63 [nb,16], d_bits [nb]).
    """
    top = signed_max(scales)
    live = top != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = np.float32(-32.0) / np.where(live, top, np.float32(1))
        l = nearest_int(iscale[:, None] * scales).astype(np.int8)   # ggml stores it in an int8 first
        biased = np.clip(l, -32, 31).astype(np.int16) + 32
        d_bits = fp16_bits(np.float32(1.0) / iscale)
    biased = np.where(live[:, None], biased, 0)
    return biased.astype(np.uint8), np.where(live, d_bits, np.uint16(0))


def _pack(x, biased, d_bits, L):
    """Blocks from biased 6-bit scales, d and search codes L (0..7), after ggml's requantization."""
    sc = biased.astype(np.int16) - 32
    codes, coded = requantize(x, fp16_value(d_bits), sc, -4, 3)
    L = np.where(np.repeat(coded, 16, axis=1), codes, L)
    return pack_q3_k(biased, L, d_bits)


def _ggml_blocks(sub, qw):
    """Blocks of quantize_row_q3_K_ref (qw None) or quantize_row_q3_K_impl (imatrix qw tiled)."""
    xb = sub.reshape(-1, QK_K)
    if qw is None:
        scales, L = make_q3_quants(sub, 4)
        biased, d_bits = encode_scales_ref(scales.reshape(-1, 16))
    else:
        sumx2 = np.zeros(xb.shape[0], np.float32)
        for j in range(QK_K):                       # sequential, as ggml sums
            sumx2 = sumx2 + xb[:, j] * xb[:, j]
        sigma2 = np.float32(2) * sumx2 / np.float32(QK_K)
        w = qw * np.sqrt(np.repeat(sigma2, 16)[:, None] + sub * sub)
        sw = np.zeros(sub.shape[0], np.float32)
        for l in range(16):
            sw = sw + w[:, l]
        scales, L = make_qx_quants(sub, 4, w)
        d_block, Ls = make_qx_quants(scales.reshape(-1, 16), 32, sw.reshape(-1, 16))
        biased, d_bits = Ls.astype(np.uint8), fp16_bits(d_block)
    return _pack(xb, biased, d_bits, L.reshape(-1, QK_K))


def quantize_q3_k_ggml(x, imatrix=None):
    sub, qw = split_subblocks(x, imatrix)
    return _ggml_blocks(sub, qw).reshape(x.shape[0], -1)


# Trial scales of the sub-block fit: the largest |x| maps to -5..-3 (the side
# with four levels) or to 2.2..4 (the side with three).
BEST_GRID = trial_grid(-4.0, 0.1, -10, 10) + trial_grid(3.0, 0.1, -8, 10)
# Signed 6-bit sub-scale the largest ideal sub-block scale is mapped to.
BEST_DIVISORS = (-32.0, -31.0, -30.0, -29.0, 31.0, 30.0)


def quantize_q3_k_best(x, imatrix=None):
    sub, qw = split_subblocks(x, imatrix)
    w = qw if qw is not None else np.ones_like(sub)
    xb, wb = sub.reshape(-1, QK_K), w.reshape(-1, QK_K)
    out = _ggml_blocks(sub, qw)
    err_g = block_error(xb, wb, dequantize_q3_k(out, QK_K))
    scales = fit_scales(sub, w, -4, 3, BEST_GRID)
    bits, s, q, err = search_symmetric(xb, wb, scales.reshape(-1, 16), -4, 3, -32, 31,
                                       BEST_DIVISORS)
    win = prefer(err, err_g)
    out[win] = pack_q3_k((s[win] + 32).astype(np.uint8), q[win] + 4, bits[win])
    return out.reshape(x.shape[0], -1)
