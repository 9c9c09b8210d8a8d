"""Q4_K (4.5 bits per weight) and Q5_K (5.5): super-blocks of 256 = 8 sub-blocks
of 32; x = d*sc_j*q - dmin*m_j with 6-bit sc_j, m_j and q in 0..15 / 0..31.

numpy reference (the oracle for the Numba and C versions):
- quantize_q4_k_ggml / quantize_q5_k_ggml: llama.cpp's quantize_row_q{4,5}_K_ref
  (no imatrix) or quantize_row_q{4,5}_K_impl (imatrix), bit for bit;
- quantize_q4_k_best / quantize_q5_k_best: same format, lower
  (imatrix-)weighted squared error (qinfer.quants.kq_asym_best);
- dequantize_q4_k / dequantize_q5_k: dequantize_row_q{4,5}_K.
"""
from dataclasses import dataclass

import numpy as np

from . import kq_asym_best
from .kq_search import make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int
from .q2_k_layout import QK_K, fp16_bits
from .q3_k_q6_k_best import block_error, prefer
from .q45_k_layout import pack_q4_k, pack_q5_k, pack_scales, unpack_q4_k, unpack_q5_k

F32 = np.float32


@dataclass(frozen=True)
class Variant:
    nmax: int          # largest code
    ref_grid: tuple    # (rmin, rdelta, nstep) of make_qkx2_quants in the ref path
    clamp_qp: bool     # the imatrix path clamps make_qp_quants' codes to 63 (Q5_K does, Q4_K not)
    pack: object
    unpack: object
    search: kq_asym_best.Config


Q4 = Variant(15, (-1.0, 0.1, 20), False, pack_q4_k, unpack_q4_k, kq_asym_best.Q4)
Q5 = Variant(31, (-0.5, 0.1, 15), True, pack_q5_k, unpack_q5_k, kq_asym_best.Q5)


def _dequantize(v, rows, n_per_row):
    sc, mn, q, d, dmin = v.unpack(rows)
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN scales decode as ggml's do
        dl = (d[:, None] * sc.astype(F32))[:, :, None]
        ml = (dmin[:, None] * mn.astype(F32))[:, :, None]
        y = dl * q.reshape(-1, 8, 32).astype(F32) - ml
    return y.reshape(rows.shape[0], n_per_row)


def dequantize_q4_k(rows, n_per_row):
    return _dequantize(Q4, rows, n_per_row)


def dequantize_q5_k(rows, n_per_row):
    return _dequantize(Q5, rows, n_per_row)


def _seq_sum(a):
    """Sum over the last axis, left to right (C's order)."""
    s = np.zeros(a.shape[:-1], F32)
    for i in range(a.shape[-1]):
        s = s + a[..., i]
    return s


def _first_max(v):
    """max(0, v[:, j]...) with ggml's strict '>' scan."""
    top = np.zeros(v.shape[0], F32)
    for j in range(v.shape[1]):
        top = np.where(v[:, j] > top, v[:, j], top)
    return top


def requantize(v, xb, sc, mn, d, dmin, L):
    """ggml's last step: codes clamp(nearest_int((x + dmin*m)/(d*sc)), 0, nmax), by
    division; sub-blocks whose d*sc is 0 keep the search codes L. xb, L [nb,256]."""
    dl = d[:, None] * sc.astype(F32)
    ml = dmin[:, None] * mn.astype(F32)
    coded = dl != 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = nearest_int((xb.reshape(-1, 8, 32) + ml[:, :, None])
                        / np.where(coded, dl, F32(1))[:, :, None])
    q = np.clip(q, 0, v.nmax)
    return np.where(coded[:, :, None], q, L.reshape(-1, 8, 32)).reshape(-1, QK_K)


def _ref_scales(sub, v):
    """quantize_row_q{4,5}_K_ref: per-sub-block fit, then 6-bit codes relative to the maxima."""
    av_x = np.sqrt(_seq_sum(sub * sub) / F32(32))
    w = av_x[:, None] + np.abs(sub)
    scales, mins, L = make_qkx2_quants(sub, w, v.nmax, *v.ref_grid, False)
    scales, mins = scales.reshape(-1, 8), mins.reshape(-1, 8)
    max_scale, max_min = _first_max(scales), _first_max(mins)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv_scale = np.where(max_scale > 0, F32(63) / np.where(max_scale > 0, max_scale, F32(1)), F32(0))
        inv_min = np.where(max_min > 0, F32(63) / np.where(max_min > 0, max_min, F32(1)), F32(0))
        ls = np.minimum(63, nearest_int(inv_scale[:, None] * scales) & 0xFF)
        lm = np.minimum(63, nearest_int(inv_min[:, None] * mins) & 0xFF)
        d_bits, dmin_bits = fp16_bits(max_scale / F32(63)), fp16_bits(max_min / F32(63))
    return ls, lm, d_bits, dmin_bits, L


def _impl_scales(sub, qw, v):
    """quantize_row_q{4,5}_K_impl (the imatrix path): weighted fits, make_qp_quants codes."""
    xb = sub.reshape(-1, QK_K)
    sigma2 = F32(2) * _seq_sum(xb * xb) / F32(QK_K)
    s2 = np.repeat(sigma2, 8)[:, None]
    w = qw * np.sqrt(s2 + sub * sub)
    sw = _seq_sum(w).reshape(-1, 8)
    scales, mins, L = make_qkx3_quants(sub, w, v.nmax, -0.9, 0.05, 36, False)
    d_block, ls = make_qp_quants(scales.reshape(-1, 8), 63, sw)
    m_block, lm = make_qp_quants(mins.reshape(-1, 8), 63, sw)
    if v.clamp_qp:
        ls, lm = np.minimum(63, ls), np.minimum(63, lm)
    return ls, lm, fp16_bits(d_block), fp16_bits(m_block), L


def _ggml_blocks(v, sub, qw):
    ls, lm, d_bits, dmin_bits, L = _ref_scales(sub, v) if qw is None else _impl_scales(sub, qw, v)
    sbytes = pack_scales(ls, lm)
    # the stored (6-bit) codes as ggml reads them back with get_scale_min_k4
    blocks = v.pack(sbytes, np.zeros((sbytes.shape[0], QK_K), np.uint8), d_bits, dmin_bits)
    sc, mn, _, d, dmin = v.unpack(blocks)
    codes = requantize(v, sub.reshape(-1, QK_K), sc, mn, d, dmin, L.reshape(-1, QK_K))
    return v.pack(sbytes, codes, d_bits, dmin_bits)


def split_subblocks(x, imatrix):
    """Rows [R, n] -> 32-weight sub-blocks [R*n/32, 32] float32, and the imatrix tiled alike."""
    sub = np.ascontiguousarray(x, dtype=F32).reshape(-1, 32)
    if imatrix is None:
        return sub, None
    return sub, np.tile(np.asarray(imatrix, dtype=F32).reshape(-1, 32), (x.shape[0], 1))


def _ggml(v, x, imatrix):
    sub, qw = split_subblocks(x, imatrix)
    return _ggml_blocks(v, sub, qw).reshape(x.shape[0], -1)


def quantize_q4_k_ggml(x, imatrix=None):
    return _ggml(Q4, x, imatrix)


def quantize_q5_k_ggml(x, imatrix=None):
    return _ggml(Q5, x, imatrix)


def _best(v, x, imatrix):
    sub, qw = split_subblocks(x, imatrix)
    w = qw if qw is not None else np.ones_like(sub)
    xb, wb = sub.reshape(-1, QK_K), w.reshape(-1, QK_K)
    out = _ggml_blocks(v, sub, qw)
    err_g = block_error(xb, wb, _dequantize(v, out, QK_K))
    sc, mn, d_bits, dmin_bits, q, err = kq_asym_best.search(xb, wb, v.search)
    win = prefer(err, err_g)
    out[win] = v.pack(pack_scales(sc[win], mn[win]), q[win], d_bits[win], dmin_bits[win])
    return out.reshape(x.shape[0], -1)


def quantize_q4_k_best(x, imatrix=None):
    return _best(Q4, x, imatrix)


def quantize_q5_k_best(x, imatrix=None):
    return _best(Q5, x, imatrix)
