"""Jitted packing/unpacking of the Q2_K, Q3_K and Q6_K fields for one super-block.

Same layouts as qinfer.quants.q2_k_layout / q3_k_layout / q6_k_layout, written
as scalar loops over caller-owned arrays so the quantizers can call them per
block inside prange loops. `blk` is the uint8 view of one super-block.
"""
import numpy as np
from numba import njit

from .floats import fp16_bits_to_fp32, fp32_to_fp16_bits  # noqa: F401  (re-exported for q3_k/q6_k)


@njit(cache=True, inline="always")
def put_fp16(blk, off, value):
    h = fp32_to_fp16_bits(value)
    blk[off] = np.uint8(h & 0xFF)
    blk[off + 1] = np.uint8(h >> 8)


@njit(cache=True, inline="always")
def get_fp16(blk, off):
    return fp16_bits_to_fp32(np.uint16(blk[off]) | (np.uint16(blk[off + 1]) << 8))


@njit(cache=True, inline="always")
def pack_2bit(codes, qs, off):
    """codes 0..3 [256] -> 64 bytes at qs[off:]."""
    for h in range(2):
        for l in range(32):
            b = 128 * h + l
            qs[off + 32 * h + l] = np.uint8(codes[b] | (codes[b + 32] << 2) | (codes[b + 64] << 4)
                                            | (codes[b + 96] << 6))


@njit(cache=True, inline="always")
def unpack_2bit(qs, off, codes):
    for h in range(2):
        for k in range(4):
            for l in range(32):
                codes[128 * h + 32 * k + l] = (np.int32(qs[off + 32 * h + l]) >> (2 * k)) & 3


@njit(cache=True, inline="always")
def pack_q3_scales(biased, blk, off):
    """16 six-bit scales (0..63, +32 bias applied) -> 12 bytes at blk[off:]."""
    for j in range(12):
        blk[off + j] = 0
    for j in range(16):
        l = biased[j]
        if j < 8:
            blk[off + j] = np.uint8(l & 15)
        else:
            blk[off + j - 8] |= np.uint8((l & 15) << 4)
        blk[off + 8 + j % 4] |= np.uint8((l >> 4) << (2 * (j // 4)))


@njit(cache=True, inline="always")
def q3_scale(blk, off, j):
    """Signed sub-scale j (-32..31) of the 12 packed bytes at blk[off:]."""
    low = (np.int32(blk[off + j]) & 15) if j < 8 else (np.int32(blk[off + j - 8]) >> 4)
    return (low | (((np.int32(blk[off + 8 + j % 4]) >> (2 * (j // 4))) & 3) << 4)) - 32
