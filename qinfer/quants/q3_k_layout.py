"""Byte layout of Q3_K super-blocks: hmask[32] @0, qs[64] @32, scales[12] @96, d f16 @108.

Codes are stored as L = q + 4 (0..7): the low two bits in the shared 2-bit
field, the third bit in hmask (byte e % 32, bit e / 32). The 16 six-bit
sub-scales carry a +32 bias: low nibbles in bytes 0..7, top two bits in bytes
8..11 (REFERENCE.md §1).
"""
import numpy as np

from .q2_k_layout import QK_K, fp16_value, pack_2bit, unpack_2bit

Q3_K_SIZE = 110


def pack_q3_scales(biased):
    """16 six-bit scales with the +32 bias applied (0..63) [nb,16] -> 12 bytes."""
    s = biased.astype(np.uint8)
    out = np.empty((s.shape[0], 12), dtype=np.uint8)
    out[:, 0:8] = (s[:, 0:8] & 15) | ((s[:, 8:16] & 15) << 4)
    hi = (s >> 4).reshape(-1, 4, 4)            # [nb, j//4, j%4]
    out[:, 8:12] = hi[:, 0] | (hi[:, 1] << 2) | (hi[:, 2] << 4) | (hi[:, 3] << 6)
    return out


def unpack_q3_scales(packed):
    """12 bytes [nb,12] -> signed scales -32..31 as int8 [nb,16]."""
    p = packed.reshape(-1, 12)
    low = np.concatenate([p[:, 0:8] & 15, p[:, 0:8] >> 4], axis=1)
    hi = (p[:, 8:12].reshape(-1, 1, 4) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 4, 1)) & 3
    return ((low | (hi.reshape(-1, 16) << 4)).astype(np.int16) - 32).astype(np.int8)


def pack_q3_k(biased_scales, codes, d_bits):
    """biased_scales 0..63 [nb,16]; codes 0..7 (= q + 4) [nb,256]."""
    nb = codes.shape[0]
    c = codes.astype(np.uint8)
    high = (c > 3).reshape(nb, 8, 32).astype(np.uint8)
    hmask = np.zeros((nb, 32), dtype=np.uint8)
    for k in range(8):
        hmask |= high[:, k] << k
    out = np.empty((nb, Q3_K_SIZE), dtype=np.uint8)
    out[:, 0:32] = hmask
    out[:, 32:96] = pack_2bit(c & 3)
    out[:, 96:108] = pack_q3_scales(biased_scales)
    out[:, 108:110] = np.asarray(d_bits, dtype=np.uint16).reshape(nb, 1).view(np.uint8)
    return out


def unpack_q3_k(blocks):
    """-> (signed scales int8 [nb,16], q int8 -4..3 [nb,256], d f32 [nb])."""
    b = blocks.reshape(-1, Q3_K_SIZE)
    hbit = (b[:, 0:32].reshape(-1, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
    q = unpack_2bit(b[:, 32:96]).astype(np.int8) - 4 * (1 - hbit.reshape(-1, QK_K)).astype(np.int8)
    d = fp16_value(np.ascontiguousarray(b[:, 108:110]).view(np.uint16)[:, 0])
    return unpack_q3_scales(b[:, 96:108]), q, d
