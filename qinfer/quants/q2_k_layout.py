"""Byte layout of Q2_K super-blocks (256 weights), and the 2-bit field it shares with Q3_K.

Pure packing/unpacking of ggml's block_q2_K (REFERENCE.md §1); no quantization
decisions live here. Functions work on batches of super-blocks: codes are
uint8 [nb, 256] in element order, packed blocks uint8 [nb, type_size].

The 2-bit field (`qs` of Q2_K and Q3_K): two halves of 128 weights, byte l of
a half holding weights l, l+32, l+64, l+96 at bit shifts 0, 2, 4, 6. The fp16
helpers are the half conversions every K-quant super-scale goes through.
"""
import numpy as np

QK_K = 256
Q2_K_SIZE = 84    # scales[16] @0, qs[64] @16, d f16 @80, dmin f16 @82

_SHIFT2 = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)


def fp16_bits(values):
    """float32 -> IEEE half bits, round-to-nearest-even (GGML_FP32_TO_FP16)."""
    with np.errstate(over="ignore", invalid="ignore"):
        h = np.asarray(values, dtype=np.float32).astype(np.float16).view(np.uint16)
    return np.where(np.isnan(values), np.uint16(0x7E00), h).astype(np.uint16)


def fp16_value(bits):
    """IEEE half bits -> float32 (exact)."""
    return np.asarray(bits, dtype=np.uint16).view(np.float16).astype(np.float32)


def pack_2bit(codes):
    """uint8 codes 0..3 [nb, 256] -> the 64-byte 2-bit field."""
    c = codes.reshape(-1, 2, 4, 32).astype(np.uint8)
    return (c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)).reshape(-1, 64)


def unpack_2bit(qs):
    """The 64-byte 2-bit field [nb, 64] -> codes 0..3 [nb, 256]."""
    return ((qs.reshape(-1, 2, 1, 32) >> _SHIFT2) & np.uint8(3)).reshape(-1, QK_K)


# ---- Q2_K -----------------------------------------------------------------

def pack_q2_k(scales, codes, d_bits, dmin_bits):
    """scales: uint8 [nb,16] (low nibble scale, high nibble min); codes 0..3."""
    nb = codes.shape[0]
    out = np.empty((nb, Q2_K_SIZE), dtype=np.uint8)
    out[:, 0:16] = scales
    out[:, 16:80] = pack_2bit(codes)
    out[:, 80:82] = np.asarray(d_bits, dtype=np.uint16).reshape(nb, 1).view(np.uint8)
    out[:, 82:84] = np.asarray(dmin_bits, dtype=np.uint16).reshape(nb, 1).view(np.uint8)
    return out


def unpack_q2_k(blocks):
    """-> (scales u8 [nb,16], codes u8 [nb,256], d f32 [nb], dmin f32 [nb])."""
    b = blocks.reshape(-1, Q2_K_SIZE)
    d = fp16_value(np.ascontiguousarray(b[:, 80:82]).view(np.uint16)[:, 0])
    dmin = fp16_value(np.ascontiguousarray(b[:, 82:84]).view(np.uint16)[:, 0])
    return b[:, 0:16], unpack_2bit(b[:, 16:80]), d, dmin


def split_subblocks(x, imatrix):
    """Rows [R, n] -> 16-weight sub-blocks [R*n/16, 16] (float32), and the
    per-column imatrix [n] tiled to the same shape (None stays None)."""
    sub = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 16)
    if imatrix is None:
        return sub, None
    return sub, np.tile(np.asarray(imatrix, dtype=np.float32).reshape(-1, 16), (x.shape[0], 1))
