"""Jitted field access shared by the Q2_K, Q3_K and Q6_K kernels: fp16 super-scales
and the 2-bit code field of Q2_K/Q3_K (layout as qinfer.quants.q2_k_layout).

Scalar loops over caller-owned arrays, so the quantizers can call them per
super-block inside prange loops; `blk` is the uint8 view of one super-block.
"""
import numpy as np
from numba import njit

from .floats import fp16_bits_to_fp32


@njit(cache=True)
def put_half(blk, off, bits):
    """Store fp16 bits little-endian at blk[off:off+2]."""
    blk[off] = np.uint8(bits & 0xFF)
    blk[off + 1] = np.uint8(bits >> 8)


@njit(cache=True)
def get_fp16(blk, off):
    return fp16_bits_to_fp32(np.uint16(blk[off]) | (np.uint16(blk[off + 1]) << 8))


@njit(cache=True)
def pack_2bit(codes, qs, off):
    """codes 0..3 [256] -> 64 bytes at qs[off:]."""
    for h in range(2):
        for l in range(32):
            b = 128 * h + l
            qs[off + 32 * h + l] = np.uint8(codes[b] | (codes[b + 32] << 2) | (codes[b + 64] << 4)
                                            | (codes[b + 96] << 6))
