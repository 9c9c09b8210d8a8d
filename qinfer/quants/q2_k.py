"""Q2_K: 2.625 bits per weight. Super-block of 256 = 16 sub-blocks of 16;
x = d * sc_j * q - dmin * m_j with q in 0..3 and 4-bit sc_j, m_j.

numpy reference (the oracle for the Numba and C versions):
- quantize_q2_k_ggml: llama.cpp's quantize_row_q2_K_ref (no imatrix) or
  quantize_row_q2_K_impl (imatrix), bit for bit;
- quantize_q2_k_best: same format, lower (imatrix-)weighted squared error;
- dequantize_q2_k: dequantize_row_q2_K.
"""
import numpy as np

from . import kq_asym_best
from .q2_k_layout import QK_K, fp16_bits, fp16_value, pack_q2_k, split_subblocks, unpack_q2_k
from .kq_search import make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int
from .q3_k_q6_k_best import block_error, prefer


def dequantize_q2_k(rows, n_per_row):
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN scales decode as ggml's do
        return _dequantize(rows, n_per_row)


def _dequantize(rows, n_per_row):
    sc, q, d, dmin = unpack_q2_k(rows)
    dl = (d[:, None] * (sc & 15).astype(np.float32))[:, :, None]
    ml = (dmin[:, None] * (sc >> 4).astype(np.float32))[:, :, None]
    y = dl * q.reshape(-1, 16, 16).astype(np.float32) - ml
    return y.reshape(rows.shape[0], n_per_row)


def _first_max(v):
    """max(0, v[:, j]...) with ggml's strict '>' scan."""
    top = np.zeros(v.shape[0], np.float32)
    for j in range(v.shape[1]):
        top = np.where(v[:, j] > top, v[:, j], top)
    return top


def encode_scales_ref(scales, mins):
    """quantize_row_q2_K_ref's 4-bit coding of sub-block scales and mins [nb,16].

    sc = nearest_int(15/max_scale*scale) (no clamp; C stores it in a uint8) in
    the low nibble, likewise the mins OR-ed in as (m << 4); d = max_scale/15,
    dmin = max_min/15, each 0 when its maximum is not positive.
    Returns (scale bytes [nb,16] u8, d_bits, dmin_bits).
    """
    max_scale, max_min = _first_max(scales), _first_max(mins)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ls = nearest_int((np.float32(15) / max_scale)[:, None] * scales)
        lm = nearest_int((np.float32(15) / max_min)[:, None] * mins)
        d_bits = fp16_bits(max_scale / np.float32(15))
        dmin_bits = fp16_bits(max_min / np.float32(15))
    ls = np.where((max_scale > 0)[:, None], ls & 0xFF, 0)
    lm = np.where((max_min > 0)[:, None], (lm << 4) & 0xFF, 0)
    d_bits = np.where(max_scale > 0, d_bits, np.uint16(0))
    dmin_bits = np.where(max_min > 0, dmin_bits, np.uint16(0))
    return (ls | lm).astype(np.uint8), d_bits, dmin_bits


def requantize(x, scale_bytes, d, dmin):
    """Codes 0..3 of x [nb,256]: clamp(nearest_int((x + dmin*m)/(d*sc)), 0, 3), by division.

    Returns (codes, mask of sub-blocks with d*sc != 0; the others keep the caller's codes).
    """
    dl = d[:, None] * (scale_bytes & 15).astype(np.float32)
    ml = dmin[:, None] * (scale_bytes >> 4).astype(np.float32)
    coded = dl != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = nearest_int((x.reshape(-1, 16, 16) + ml[:, :, None])
                        / np.where(coded, dl, np.float32(1))[:, :, None])
    return np.clip(q, 0, 3).reshape(-1, QK_K), coded


def _pack(x, scale_bytes, d_bits, dmin_bits, L):
    codes, coded = requantize(x, scale_bytes, fp16_value(d_bits), fp16_value(dmin_bits))
    L = np.where(np.repeat(coded, 16, axis=1), codes, L)
    return pack_q2_k(scale_bytes, L, d_bits, dmin_bits)


def _ggml_blocks(sub, qw):
    """Blocks of quantize_row_q2_K_ref (qw None) or quantize_row_q2_K_impl."""
    xb = sub.reshape(-1, QK_K)
    if qw is None:
        scales, mins, L = make_qkx2_quants(sub, np.abs(sub), 3, -0.5, 0.1, 15, True)
        sbytes, d_bits, dmin_bits = encode_scales_ref(scales.reshape(-1, 16), mins.reshape(-1, 16))
    else:
        sumx2 = np.zeros(xb.shape[0], np.float32)
        for j in range(QK_K):                       # sequential, as ggml sums
            sumx2 = sumx2 + xb[:, j] * xb[:, j]
        sigma2 = sumx2 / np.float32(QK_K)
        w = qw * np.sqrt(np.repeat(sigma2, 16)[:, None] + sub * sub)
        sw = np.zeros(sub.shape[0], np.float32)
        for l in range(16):
            sw = sw + w[:, l]
        scales, mins, L = make_qkx3_quants(sub, w, 3, -0.9, 0.05, 36, False)
        sw = sw.reshape(-1, 16)
        dm, Ls = make_qp_quants(scales.reshape(-1, 16), 15, sw)
        mm, Lm = make_qp_quants(mins.reshape(-1, 16), 15, sw)
        sbytes = ((Ls & 0xFF) | ((Lm << 4) & 0xFF)).astype(np.uint8)
        d_bits, dmin_bits = fp16_bits(dm), fp16_bits(mm)
    return _pack(xb, sbytes, d_bits, dmin_bits, L.reshape(-1, QK_K))


def quantize_q2_k_ggml(x, imatrix=None):
    sub, qw = split_subblocks(x, imatrix)
    return _ggml_blocks(sub, qw).reshape(x.shape[0], -1)


def quantize_q2_k_best(x, imatrix=None):
    sub, qw = split_subblocks(x, imatrix)
    w = qw if qw is not None else np.ones_like(sub)
    xb, wb = sub.reshape(-1, QK_K), w.reshape(-1, QK_K)
    out = _ggml_blocks(sub, qw)
    err_g = block_error(xb, wb, dequantize_q2_k(out, QK_K))
    sc, m, d_bits, dmin_bits, q, err = kq_asym_best.search(xb, wb, kq_asym_best.Q2)
    win = prefer(err, err_g)
    sbytes = (sc | (m << 4)).astype(np.uint8)
    out[win] = pack_q2_k(sbytes[win], q[win], d_bits[win], dmin_bits[win])
    return out.reshape(x.shape[0], -1)
