"""F32, F16 and BF16 "quantization": plain conversions, rounded as ggml does.

F16: IEEE round-to-nearest-even, NaN -> 0x7E00. BF16: round-to-nearest-even on
the upper 16 bits, NaN made quiet (ggml_compute_fp32_to_bf16).
"""
import numpy as np


def _u8(a, rows):
    return np.ascontiguousarray(a).view(np.uint8).reshape(rows, -1)


def quantize_f32_ggml(x, imatrix=None):
    return _u8(x.astype(np.float32, copy=True), x.shape[0])


def quantize_f16_ggml(x, imatrix=None):
    with np.errstate(over="ignore", invalid="ignore"):
        h = x.astype(np.float16).view(np.uint16)
    h = np.where(np.isnan(x), np.uint16(0x7E00), h)
    return _u8(h.astype(np.uint16), x.shape[0])


def quantize_bf16_ggml(x, imatrix=None):
    u = x.astype(np.float32).view(np.uint32)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16
    b = np.where(nan, (u >> 16) | 64, rounded).astype(np.uint16)
    return _u8(b, x.shape[0])


def dequantize_f32(rows, n_per_row):
    return rows.view(np.float32).reshape(rows.shape[0], n_per_row).copy()


def dequantize_f16(rows, n_per_row):
    return rows.view(np.float16).reshape(rows.shape[0], n_per_row).astype(np.float32)


def dequantize_bf16(rows, n_per_row):
    u = rows.view(np.uint16).reshape(rows.shape[0], n_per_row).astype(np.uint32) << 16
    return u.view(np.float32)
