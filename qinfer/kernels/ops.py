"""Transformer ops (RMSNorm, RoPE, softmax, SiLU-gate, attention) per backend.

    ops = get_ops("native" | "numba" | "numpy" | None)
    y = ops.rms_norm(x, w, eps)                  # float32 [n, d]
    ops.rope(x, pos, base)                       # in place, x float32 [n, n_head, head_dim]
    p = ops.softmax(x)                           # rows
    h = ops.silu_mul(gate, up)                   # silu(gate) * up
    o = ops.attention(q, k_cache, v_cache, pos0, window, n_threads=None)
                                                 # float32 [n, n_head, head_dim_v]
    e, w = ops.moe_route(h, router, k)           # MoE: experts int64 [n, k], weights float32 [n, k]

RoPE is llama.cpp's NORM mode (adjacent pairs). Attention is causal over cache
positions 0..pos0+n-1 with grouped-query heads (query head h reads KV head
h // (n_head / n_head_kv)), scale 1/sqrt(head_dim), and an optional sliding
window (a query sees its last `window` positions, itself included).

moe_route is llama.cpp's Mixtral routing: softmax over all experts of
router . h, the k most probable (equal probabilities: lower id first) in
descending order, their probabilities renormalised to sum 1; computed in
float64, each row independently of the others.

n_threads caps the threads attention splits its heads over (the C version;
Numba uses its own pool, numpy one thread).

The backend is chosen like qinfer.kernels.get_backend (None/"auto": the same
backend the matmuls use).
"""
import threading

from . import get_backend

_lock = threading.Lock()
_cache = {}


def _make(name):
    if name == "native":
        from .ops_native import NativeOps
        return NativeOps()
    if name == "numba":
        from .ops_numba import NumbaOps
        return NumbaOps()
    from .ops_numpy import NumpyOps
    return NumpyOps()


def get_ops(backend=None):
    name = get_backend(backend).name  # resolves "auto" and reports unavailable backends
    with _lock:
        if name not in _cache:
            _cache[name] = _make(name)
        return _cache[name]
