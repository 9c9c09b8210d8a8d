"""Transformer ops jitted with Numba (semantics: qinfer.kernels.ops).

Rows / (token, head) pairs run in parallel with prange. The KV cache may be
float32 or float16; float16 caches are passed as their uint16 bits and
decoded exactly (Numba's float16 support is too partial to rely on).

The public functions at the end run each kernel on the calling thread alone
when there is too little to split (one row, e.g. the single token of a
generation step, or a short attention): waking the rest of Numba's thread
pool costs ~20 us on an idle machine and milliseconds on a busy one, more
than such an op takes (benches/README.md, "Numba backend").
"""
import contextlib
import math

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .floats import fp16_bits_to_fp32

# Attention with fewer multiply-adds than this runs on one thread (module doc).
ATTENTION_PARALLEL_WORK = 1 << 16


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
def _rms_norm(x, w, eps, out):
    n, d = x.shape
    for r in prange(n):
        ss = 0.0
        for i in range(d):
            ss += np.float64(x[r, i]) * x[r, i]
        scale = np.float32(1.0 / math.sqrt(ss / d + eps))
        for i in range(d):
            out[r, i] = x[r, i] * scale * w[i]


@njit(cache=True, parallel=True)
def _rope(x, pos, base):
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
def _softmax(x, out):
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
def _silu_mul(gate, up, out):
    n, m = gate.shape
    for r in prange(n):
        for i in range(m):
            g = np.float64(gate[r, i])
            out[r, i] = g / (1.0 + math.exp(-g)) * up[r, i]


@njit(cache=True, parallel=True)
def _attention(q, k, v, pos0, window, out):
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


@contextlib.contextmanager
def numba_threads(n):
    """Numba's thread count (thread-local) set to n for the block; None keeps it."""
    old = numba.get_num_threads()
    if not n or n == old:
        yield
        return
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _call(kernel, parallel, n_threads, *args):
    """kernel(*args) on `n_threads` threads (None: Numba's current count), or
    on the calling thread alone when not `parallel`."""
    with numba_threads(n_threads if parallel else 1):
        kernel(*args)


def rms_norm(x, w, eps, out):
    _call(_rms_norm, x.shape[0] > 1, None, x, w, eps, out)


def rope(x, pos, base):
    _call(_rope, x.shape[0] > 1, None, x, pos, base)


def softmax(x, out):
    _call(_softmax, x.shape[0] > 1, None, x, out)


def silu_mul(gate, up, out):
    _call(_silu_mul, gate.shape[0] > 1, None, gate, up, out)


def attention(q, k, v, pos0, window, out, n_threads=None):
    """Splits (token, head) jobs over n_threads threads (None: Numba's current count)."""
    n, n_head, d = q.shape
    work = n * n_head * (pos0 + n) * (d + v.shape[2])
    _call(_attention, n * n_head > 1 and work >= ATTENTION_PARALLEL_WORK, n_threads,
          q, k, v, pos0, window, out)
