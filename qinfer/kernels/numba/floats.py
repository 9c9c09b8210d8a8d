"""F32/F16/BF16 conversions, jitted (same rounding as qinfer.quants.floats)."""
import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def fp32_to_fp16_bits(f):
    x = np.float32(f).view(np.uint32)
    sign = (x >> 16) & 0x8000
    ax = x & 0x7FFFFFFF
    if ax > 0x7F800000:
        return np.uint16(0x7E00)
    if ax >= 0x477FF000:
        return np.uint16(sign | 0x7C00)
    if ax < 0x38800000:
        if ax < 0x33000000:
            return np.uint16(sign)
        e = ax >> 23
        m = (ax & 0x7FFFFF) | 0x800000
        shift = 126 - e
        half = m >> shift
        rem = m & ((np.uint32(1) << shift) - 1)
        mid = np.uint32(1) << (shift - 1)
        if rem > mid or (rem == mid and (half & 1)):
            half += 1
        return np.uint16(sign | half)
    r = ax + 0xFFF + ((ax >> 13) & 1)
    return np.uint16(sign | ((r - 0x38000000) >> 13))


@njit(cache=True, inline="always")
def fp16_bits_to_fp32(h):
    h = np.uint32(h)
    sign = (h & 0x8000) << 16
    exp = (h >> 10) & 0x1F
    man = h & 0x3FF
    if exp == 0x1F:
        return np.uint32(sign | 0x7F800000 | (man << 13)).view(np.float32)
    if exp == 0:
        v = np.float32(man) * np.float32(5.9604644775390625e-08)
        return -v if sign else v
    return np.uint32(sign | ((exp + 112) << 23) | (man << 13)).view(np.float32)


@njit(cache=True, parallel=True)
def _f16_rows(x, out):
    for r in prange(x.shape[0]):
        for i in range(x.shape[1]):
            out[r, i] = fp32_to_fp16_bits(x[r, i])


@njit(cache=True, parallel=True)
def _bf16_rows(x, out):
    for r in prange(x.shape[0]):
        for i in range(x.shape[1]):
            u = np.float32(x[r, i]).view(np.uint32)
            if (u & 0x7FFFFFFF) > 0x7F800000:
                out[r, i] = np.uint16((u >> 16) | 64)
            else:
                out[r, i] = np.uint16((np.uint64(u) + 0x7FFF + ((u >> 16) & 1)) >> 16)


@njit(cache=True, parallel=True)
def _f16_to_f32_rows(h, out):
    for r in prange(h.shape[0]):
        for i in range(h.shape[1]):
            out[r, i] = fp16_bits_to_fp32(h[r, i])


def quantize_f32_ggml(x, imatrix=None):
    return np.ascontiguousarray(x, dtype=np.float32).copy().view(np.uint8).reshape(x.shape[0], -1)


def quantize_f16_ggml(x, imatrix=None):
    out = np.empty(x.shape, dtype=np.uint16)
    _f16_rows(x, out)
    return out.view(np.uint8).reshape(x.shape[0], -1)


def quantize_bf16_ggml(x, imatrix=None):
    out = np.empty(x.shape, dtype=np.uint16)
    _bf16_rows(x, out)
    return out.view(np.uint8).reshape(x.shape[0], -1)


def dequantize_f32(rows, n_per_row):
    return rows.view(np.float32).reshape(rows.shape[0], n_per_row).copy()


def dequantize_f16(rows, n_per_row):
    out = np.empty((rows.shape[0], n_per_row), dtype=np.float32)
    _f16_to_f32_rows(rows.view(np.uint16).reshape(rows.shape[0], n_per_row), out)
    return out


def dequantize_bf16(rows, n_per_row):
    u = rows.view(np.uint16).reshape(rows.shape[0], n_per_row).astype(np.uint32) << 16
    return u.view(np.float32)
