"""Byte layout of Q6_K super-blocks: ql[128] @0, qh[64] @128, scales int8[16] @192, d f16 @208.

Codes L = q + 32 (0..63); per 128-weight half h, ql[64h + l] holds the low
nibbles of weights l and l+64, ql[64h + 32 + l] those of l+32 and l+96, and qh
holds the top two bits in the shared 2-bit field order (REFERENCE.md §1).
"""
import numpy as np

from .q2_k_layout import QK_K, fp16_value, unpack_2bit

Q6_K_SIZE = 210


def pack_q6_k(scales, codes, d_bits):
    """scales int8 [nb,16]; codes 0..63 (= q + 32) [nb,256]."""
    nb = codes.shape[0]
    c = codes.astype(np.uint8).reshape(nb, 2, 4, 32)
    ql = (c[:, :, 0:2] & 15) | ((c[:, :, 2:4] & 15) << 4)
    hi = c >> 4
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    out = np.empty((nb, Q6_K_SIZE), dtype=np.uint8)
    out[:, 0:128] = ql.reshape(nb, 128)
    out[:, 128:192] = qh.reshape(nb, 64)
    out[:, 192:208] = np.asarray(scales, dtype=np.int8).view(np.uint8)
    out[:, 208:210] = np.asarray(d_bits, dtype=np.uint16).reshape(nb, 1).view(np.uint8)
    return out


def unpack_q6_k(blocks):
    """-> (scales int8 [nb,16], q int8 -32..31 [nb,256], d f32 [nb])."""
    b = blocks.reshape(-1, Q6_K_SIZE)
    ql = b[:, 0:128].reshape(-1, 2, 1, 2, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1, 1)
    low = (ql & 15).reshape(-1, 2, 4, 32)
    hi = unpack_2bit(b[:, 128:192]).reshape(-1, 2, 4, 32)
    q = (low | (hi << 4)).reshape(-1, QK_K).astype(np.int8) - 32
    d = fp16_value(np.ascontiguousarray(b[:, 208:210]).view(np.uint16)[:, 0])
    return b[:, 192:208].view(np.int8), q.astype(np.int8), d
