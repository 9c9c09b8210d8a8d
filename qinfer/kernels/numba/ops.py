"""Transformer ops jitted with Numba (semantics: qinfer.kernels.ops).

Rows, (token, head) pairs or slices of a row are shared out by row_pool (the
matmuls' threads), not prange: an OpenMP region leaves its workers spinning
after it ends, and on a 2-core machine they took a core from the next
matmul's row_pool worker (27% of a generation step's CPU time in libgomp;
benches/README.md, "Numba backend"). The KV cache may be float32 or float16;
float16 caches are passed as their uint16 bits and decoded exactly (Numba's
float16 support is too partial to rely on).

The public functions at the end run each kernel on the calling thread alone
when there is too little to split (one row of a norm, a short attention):
handing work to another thread costs more than such an op takes.
"""
import contextlib
import math

import numba
import numpy as np
from numba import njit, types
from numba.extending import overload

from .floats import fp16_bits_to_fp32
from .row_pool import claim, finish, run

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


@njit(cache=True, nogil=True)
def _rms_norm(x, w, eps, out, state, chunk_rows):
    n, d = x.shape
    while True:
        r0, r1 = claim(state, chunk_rows, n)
        if r0 >= r1:
            break
        for r in range(r0, r1):
            ss = 0.0
            for i in range(d):
                ss += np.float64(x[r, i]) * x[r, i]
            scale = np.float32(1.0 / math.sqrt(ss / d + eps))
            for i in range(d):
                out[r, i] = x[r, i] * scale * w[i]
        finish(state, r1 - r0)


@njit(cache=True, nogil=True)
def _rope(x, pos, base, state, chunk_rows):
    n, n_head, d = x.shape
    half = d // 2
    while True:
        t0, t1 = claim(state, chunk_rows, n)
        if t0 >= t1:
            break
        for t in range(t0, t1):
            for i in range(half):
                theta = pos[t] * base ** (-2.0 * i / d)
                c, s = math.cos(theta), math.sin(theta)
                for h in range(n_head):
                    x0 = np.float64(x[t, h, 2 * i])
                    x1 = np.float64(x[t, h, 2 * i + 1])
                    x[t, h, 2 * i] = x0 * c - x1 * s
                    x[t, h, 2 * i + 1] = x0 * s + x1 * c
        finish(state, t1 - t0)


@njit(cache=True, nogil=True)
def _softmax(x, out, state, chunk_rows):
    n, m = x.shape
    while True:
        r0, r1 = claim(state, chunk_rows, n)
        if r0 >= r1:
            break
        for r in range(r0, r1):
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
        finish(state, r1 - r0)


SILU_SLICE = 1024   # elements per claimed slice: a one-token step's 14336 split 14 ways


@njit(cache=True, nogil=True)
def _silu_mul(gate, up, out, state, chunk_rows):
    """Flat arrays; "rows" are slices of SILU_SLICE elements (elementwise op)."""
    n = gate.size
    n_slices = (n + SILU_SLICE - 1) // SILU_SLICE
    while True:
        c0, c1 = claim(state, chunk_rows, n_slices)
        if c0 >= c1:
            break
        for i in range(c0 * SILU_SLICE, min(n, c1 * SILU_SLICE)):
            g = np.float64(gate[i])
            out[i] = g / (1.0 + math.exp(-g)) * up[i]
        finish(state, c1 - c0)


@njit(cache=True, nogil=True)
def _attention(q, k, v, pos0, window, out, state, chunk_rows):
    n, n_head, d = q.shape
    while True:
        j0, j1 = claim(state, chunk_rows, n * n_head)
        if j0 >= j1:
            break
        for job in range(j0, j1):
            _attention_job(q, k, v, pos0, window, out, job)
        finish(state, j1 - j0)


@njit(cache=True, inline="always")
def _attention_job(q, k, v, pos0, window, out, job):
    """Query head h of token t (job = t * n_head + h): float64 scores, softmax, weighted V."""
    n, n_head, d = q.shape
    n_kv_head = k.shape[1]
    dv = v.shape[2]
    group = n_head // n_kv_head
    scale = 1.0 / math.sqrt(d)
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


def _call(kernel, n_rows, parallel, n_threads, *args):
    """kernel(*args, state, chunk_rows) over n_rows rows on `n_threads` threads
    (None: Numba's current count, which numba_threads sets), or on the
    calling thread alone when not `parallel`."""
    threads = (n_threads or numba.get_num_threads()) if parallel else 1
    run(kernel, args, n_rows, threads)


def rms_norm(x, w, eps, out):
    _call(_rms_norm, x.shape[0], x.shape[0] > 1, None, x, w, eps, out)


def rope(x, pos, base):
    _call(_rope, x.shape[0], x.shape[0] > 1, None, x, pos, base)


def softmax(x, out):
    _call(_softmax, x.shape[0], x.shape[0] > 1, None, x, out)


def silu_mul(gate, up, out):
    if not out.flags.c_contiguous:
        raise ValueError("silu_mul writes a contiguous out array")
    g, u, o = gate.reshape(-1), up.reshape(-1), out.reshape(-1)
    _call(_silu_mul, -(-g.size // SILU_SLICE), g.size > SILU_SLICE, None, g, u, o)


def attention(q, k, v, pos0, window, out, n_threads=None):
    """Splits (token, head) jobs over n_threads threads (None: Numba's current count)."""
    n, n_head, d = q.shape
    work = n * n_head * (pos0 + n) * (d + v.shape[2])
    _call(_attention, n * n_head, n * n_head > 1 and work >= ATTENTION_PARALLEL_WORK, n_threads,
          q, k, v, pos0, window, out)
