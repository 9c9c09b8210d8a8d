"""Transformer ops jitted with Numba (semantics: qinfer.kernels.ops).

Rows / (token, head) pairs run in parallel with prange. The KV cache may be
float32 or float16; float16 caches are passed as their uint16 bits and
decoded exactly (Numba's float16 support is too partial to rely on).
"""
import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .floats import fp16_bits_to_fp32


def kv_value(v):
    """float32 value of one cache element (float32, or float16 bits as uint16)."""


@overload(kv_value)
def _kv_value(v):
    if isinstance(v, types.Integer):
        def from_f16_bits(v):
            return fp16_bits_to_fp32(v)
        return from_f16_bits

    def from_float(v):
        return np.float32(v)
    return from_float


@njit(cache=True, parallel=True)
def rms_norm(x, w, eps, out):
    n, d = x.shape
    for r in prange(n):
        ss = 0.0
        for i in range(d):
            ss += np.float64(x[r, i]) * x[r, i]
        scale = np.float32(1.0 / math.sqrt(ss / d + eps))
        for i in range(d):
            out[r, i] = x[r, i] * scale * w[i]


@njit(cache=True, parallel=True)
def rope(x, pos, base):
    n, n_head, d = x.shape
    half = d // 2
    for t in prange(n):
        for i in range(half):
            theta = pos[t] * base ** (-2.0 * i / d)
            c, s = math.cos(theta), math.sin(theta)
            for h in range(n_head):
                x0 = np.float64(x[t, h, 2 * i])
                x1 = np.float64(x[t, h, 2 * i + 1])
                x[t, h, 2 * i] = x0 * c - x1 * s
                x[t, h, 2 * i + 1] = x0 * s + x1 * c


@njit(cache=True, parallel=True)
def softmax(x, out):
    n, m = x.shape
    for r in prange(n):
        mx = -np.inf
        for i in range(m):
            mx = max(mx, x[r, i])
        s = 0.0
        for i in range(m):
            e = math.exp(np.float64(x[r, i]) - mx)
            out[r, i] = e
            s += e
        inv = 1.0 / s
        for i in range(m):
            out[r, i] = out[r, i] * inv


@njit(cache=True, parallel=True)
def silu_mul(gate, up, out):
    n, m = gate.shape
    for r in prange(n):
        for i in range(m):
            g = np.float64(gate[r, i])
            out[r, i] = g / (1.0 + math.exp(-g)) * up[r, i]


@njit(cache=True, parallel=True)
def attention(q, k, v, pos0, window, out):
    n, n_head, d = q.shape
    n_kv_head = k.shape[1]
    dv = v.shape[2]
    group = n_head // n_kv_head
    scale = 1.0 / math.sqrt(d)
    for job in prange(n * n_head):
        t, h = job // n_head, job % n_head
        g = h // group
        p = pos0 + t
        lo = 0 if window <= 0 else max(0, p - window + 1)
        scores = np.empty(p + 1 - lo, dtype=np.float64)
        mx = -np.inf
        for j in range(lo, p + 1):
            acc = 0.0
            for i in range(d):
                acc += np.float64(q[t, h, i]) * kv_value(k[j, g, i])
            acc *= scale
            scores[j - lo] = acc
            mx = max(mx, acc)
        total = 0.0
        for j in range(scores.size):
            scores[j] = math.exp(scores[j] - mx)
            total += scores[j]
        acc_v = np.zeros(dv, dtype=np.float64)
        for j in range(lo, p + 1):
            wj = scores[j - lo] / total
            for i in range(dv):
                acc_v[i] += wj * kv_value(v[j, g, i])
        for i in range(dv):
            out[t, h, i] = acc_v[i]
