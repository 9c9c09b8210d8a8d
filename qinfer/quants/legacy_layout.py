"""Byte layouts of the legacy 32-element blocks (ggml-common.h), vectorised.

Codes L are unsigned (0..2^bits-1) except Q8_0's signed int8; the value is
d*(L - offset) for the symmetric types and d*L + m for Q4_1/Q5_1.
"""
from dataclasses import dataclass

import numpy as np

from .q2_k_layout import fp16_bits

F32 = np.float32
QK = 32


@dataclass(frozen=True)
class Layout:
    bits: int
    nmax: int         # symmetric: codes span -nmax..nmax-1; asymmetric: 0..nmax
    offset: int       # subtracted from the stored code when decoding (symmetric types)
    has_min: bool
    type_size: int


LAYOUTS = {
    "q8_0": Layout(8, 127, 0, False, 34),
    "q4_0": Layout(4, 8, 8, False, 18),
    "q5_0": Layout(5, 16, 16, False, 22),
    "q4_1": Layout(4, 15, 0, True, 20),
    "q5_1": Layout(5, 31, 0, True, 24),
}


def fp16_round(v):
    """float32 -> nearest float16 (RNE, as ggml stores scales) -> float32."""
    with np.errstate(over="ignore"):
        return np.asarray(v, F32).astype(np.float16).astype(F32)


def _f16_bytes(v):
    # NaN as 0x7e00, the one NaN ggml's conversion (and qinfer's C and Numba) write
    return fp16_bits(v).reshape(-1, 1).view(np.uint8).reshape(-1, 2)


def pack(kind, d, m, L, nrows):
    """Blocks from per-block scale d, min m (or None) and codes L [nblocks, 32]."""
    lay = LAYOUTS[kind]
    nb = L.shape[0]
    out = np.zeros((nb, lay.type_size), np.uint8)
    out[:, 0:2] = _f16_bytes(d)
    pos = 2
    if lay.has_min:
        out[:, 2:4] = _f16_bytes(m)
        pos = 4
    if kind == "q8_0":
        out[:, 2:] = L.astype(np.int8).view(np.uint8)
        return out.reshape(nrows, -1)
    L = L.astype(np.uint32)
    if lay.bits == 5:
        hi = (L >> 4) & 1
        qh = np.zeros(nb, np.uint32)
        for j in range(QK):
            qh |= hi[:, j] << np.uint32(j)
        out[:, pos:pos + 4] = qh.astype("<u4").view(np.uint8).reshape(nb, 4)
        pos += 4
    lo = L & 15
    out[:, pos:pos + 16] = (lo[:, :16] | (lo[:, 16:] << 4)).astype(np.uint8)
    return out.reshape(nrows, -1)


def unpack(kind, rows):
    """(d, m or None, L) from blocks; L int64 [nblocks, 32]."""
    lay = LAYOUTS[kind]
    b = np.ascontiguousarray(rows).reshape(-1, lay.type_size)
    d = b[:, 0:2].copy().view(np.float16).reshape(-1).astype(F32)
    m = None
    pos = 2
    if lay.has_min:
        m = b[:, 2:4].copy().view(np.float16).reshape(-1).astype(F32)
        pos = 4
    if kind == "q8_0":
        return d, m, b[:, 2:].view(np.int8).astype(np.int64)
    qh = None
    if lay.bits == 5:
        qh = b[:, pos:pos + 4].copy().view("<u4").reshape(-1).astype(np.int64)
        pos += 4
    qs = b[:, pos:pos + 16].astype(np.int64)
    L = np.concatenate([qs & 15, qs >> 4], axis=1)
    if qh is not None:
        L |= ((qh[:, None] >> np.arange(QK)) & 1) << 4
    return d, m, L
