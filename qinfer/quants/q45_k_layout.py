"""Byte layouts of Q4_K (144 bytes) and Q5_K (176 bytes) super-blocks of 256 weights.

Both: d f16 @0, dmin f16 @2, scales[12] @4 holding eight 6-bit sub-block
scales and eight 6-bit mins (REFERENCE.md §1, ggml's get_scale_min_k4), then
Q4_K: qs[128] @16; Q5_K: qh[32] @16, qs[128] @48. Each 64-weight chunk c
(sub-blocks 2c, 2c+1) puts weights 64c+l in the low and 64c+32+l in the high
nibble of qs[32c+l]; Q5_K's fifth bit of those two weights is bit 2c and
2c+1 of qh[l]. Pure packing, no quantization decisions.
"""
import numpy as np

from .q2_k_layout import QK_K, fp16_value

Q4_K_SIZE = 144
Q5_K_SIZE = 176


def pack_scales(ls, lm):
    """Sub-block scale and min codes uint8 [nb, 8] -> the 12 scale bytes [nb, 12].

    Byte arithmetic exactly as ggml's packing, including what it does with
    codes above 63 (only its Q4_K imatrix path can produce them: the extra
    bits spill into neighbouring fields as they do in C).
    """
    ls = np.asarray(ls, dtype=np.int32) & 0xFF
    lm = np.asarray(lm, dtype=np.int32) & 0xFF
    out = np.zeros((ls.shape[0], 12), dtype=np.int32)
    out[:, 0:4] = ls[:, 0:4]
    out[:, 4:8] = lm[:, 0:4]
    out[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    out[:, 0:4] |= (ls[:, 4:8] >> 4) << 6
    out[:, 4:8] |= (lm[:, 4:8] >> 4) << 6
    return (out & 0xFF).astype(np.uint8)


def unpack_scales(sb):
    """The 12 scale bytes [nb, 12] -> (scale codes, min codes) int32 [nb, 8], each 0..63."""
    q = sb.astype(np.int32)
    sc = np.empty((q.shape[0], 8), np.int32)
    mn = np.empty((q.shape[0], 8), np.int32)
    sc[:, 0:4] = q[:, 0:4] & 63
    mn[:, 0:4] = q[:, 4:8] & 63
    sc[:, 4:8] = (q[:, 8:12] & 0xF) | ((q[:, 0:4] >> 6) << 4)
    mn[:, 4:8] = (q[:, 8:12] >> 4) | ((q[:, 4:8] >> 6) << 4)
    return sc, mn


def _put_halves(out, d_bits, dmin_bits):
    nb = out.shape[0]
    out[:, 0:2] = np.asarray(d_bits, dtype=np.uint16).reshape(nb, 1).view(np.uint8)
    out[:, 2:4] = np.asarray(dmin_bits, dtype=np.uint16).reshape(nb, 1).view(np.uint8)


def _halves(b):
    d = fp16_value(np.ascontiguousarray(b[:, 0:2]).view(np.uint16)[:, 0])
    dmin = fp16_value(np.ascontiguousarray(b[:, 2:4]).view(np.uint16)[:, 0])
    return d, dmin


def _nibbles(codes):
    c = codes.astype(np.uint8).reshape(-1, 4, 2, 32)
    return ((c[:, :, 0] & 15) | ((c[:, :, 1] & 15) << 4)).reshape(-1, 128)


def _unnibble(qs):
    q = qs.reshape(-1, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
    return (q & 15).reshape(-1, QK_K)


def pack_q4_k(scale_bytes, codes, d_bits, dmin_bits):
    """scale_bytes uint8 [nb,12] (pack_scales); codes 0..15 [nb,256] in element order."""
    out = np.empty((codes.shape[0], Q4_K_SIZE), dtype=np.uint8)
    _put_halves(out, d_bits, dmin_bits)
    out[:, 4:16] = scale_bytes
    out[:, 16:144] = _nibbles(codes)
    return out


def pack_q5_k(scale_bytes, codes, d_bits, dmin_bits):
    """scale_bytes uint8 [nb,12]; codes 0..31 [nb,256] in element order."""
    c = codes.astype(np.uint8)
    out = np.empty((c.shape[0], Q5_K_SIZE), dtype=np.uint8)
    _put_halves(out, d_bits, dmin_bits)
    out[:, 4:16] = scale_bytes
    hi = (c >> 4).reshape(-1, 8, 32)                       # bit 4 of sub-block j -> qh bit j
    qh = np.zeros((c.shape[0], 32), np.uint8)
    for j in range(8):
        qh |= hi[:, j] << j
    out[:, 16:48] = qh
    out[:, 48:176] = _nibbles(c)
    return out


def unpack_q4_k(blocks):
    """-> (scale codes [nb,8], min codes [nb,8], codes 0..15 [nb,256], d [nb], dmin [nb])."""
    b = blocks.reshape(-1, Q4_K_SIZE)
    sc, mn = unpack_scales(b[:, 4:16])
    d, dmin = _halves(b)
    return sc, mn, _unnibble(b[:, 16:144]), d, dmin


def unpack_q5_k(blocks):
    """-> (scale codes [nb,8], min codes [nb,8], codes 0..31 [nb,256], d [nb], dmin [nb])."""
    b = blocks.reshape(-1, Q5_K_SIZE)
    sc, mn = unpack_scales(b[:, 4:16])
    d, dmin = _halves(b)
    qh = b[:, 16:48]
    hi = np.stack([(qh >> j) & 1 for j in range(8)], axis=1).reshape(-1, QK_K)
    return sc, mn, _unnibble(b[:, 48:176]) | (hi << 4), d, dmin
