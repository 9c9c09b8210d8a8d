"""C implementation of qinfer.kernels.ops (csrc/ops_*.c; semantics in ops.py).

cffi releases the GIL during each call; attention splits its query heads over
the C thread pool (the one matmul uses) when there is enough work to pay for it.
"""
import os
import threading

import numpy as np

from qinfer._native import lib  # noqa: E402  (ImportError = not built)

from .native_backend import check, ptr

def _out(out, shape):
    return np.empty(shape, dtype=np.float32) if out is None else out


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


class NativeOps:
    name = "native"

    def __init__(self, n_threads=None):
        self.n_threads = n_threads or os.cpu_count() or 1

    def with_threads(self, n_threads):
        """These ops on at most n_threads threads (a model's own thread count)."""
        return NativeOps(n_threads)

    def rms_norm(self, x, w, eps, out=None):
        x, w = _f32(x), _f32(w)
        out = _out(out, x.shape)
        check(lib.qi_rms_norm_mt_f32(ptr(x, "const float *"), ptr(w, "const float *"), ptr(out, "float *"),
                                     x.shape[0], x.shape[1], float(eps), self.n_threads), "rms_norm")
        return out

    def rope(self, x, pos, base):
        if not (x.flags.c_contiguous and x.dtype == np.float32):
            raise ValueError("rope works in place on a contiguous float32 array")
        pos = np.ascontiguousarray(pos, dtype=np.int32)
        n, h, d = x.shape
        check(lib.qi_rope_apply_f32(ptr(x, "float *"), ptr(self.rope_table(pos, d, base), "const double *"),
                                    n, h, d), "rope")
        return x

    _tables = threading.local()

    def rope_table(self, pos, d, base):
        """cos/sin of the angles at pos, kept for the next call: a forward pass
        rotates Q and K of every layer at the same positions (one table per
        thread, as models may run in several)."""
        key = (pos.tobytes(), d, float(base))
        last = getattr(self._tables, "last", None)
        if last is not None and last[0] == key:
            return last[1]
        cs = np.empty(len(pos) * d, dtype=np.float64)
        check(lib.qi_rope_table(ptr(pos, "const int32_t *"), len(pos), d, float(base), ptr(cs, "double *")),
              "rope")
        self._tables.last = (key, cs)
        return cs

    def softmax(self, x, out=None):
        x = _f32(x)
        out = _out(out, x.shape)
        check(lib.qi_softmax_f32(ptr(x, "const float *"), ptr(out, "float *"), x.shape[0], x.shape[1]),
              "softmax")
        return out

    def moe_route(self, h, router, k):
        h, router = _f32(h), _f32(router)
        n, d = h.shape
        experts = np.empty((n, k), dtype=np.int64)
        weights = np.empty((n, k), dtype=np.float32)
        check(lib.qi_moe_route_f32(ptr(h, "const float *"), ptr(router, "const float *"), n, d, router.shape[0], k,
                                   ptr(experts, "int64_t *"), ptr(weights, "float *")), "moe_route")
        return experts, weights

    def silu_mul(self, gate, up, out=None):
        gate, up = _f32(gate), _f32(up)
        out = _out(out, gate.shape)
        check(lib.qi_silu_mul_mt_f32(ptr(gate, "const float *"), ptr(up, "const float *"), ptr(out, "float *"),
                                     gate.size, self.n_threads), "silu_mul")
        return out

    def attention(self, q, k_cache, v_cache, pos0, window=0, out=None, n_threads=None):
        q = _f32(q)
        n, n_head, d = q.shape
        n_kv_head, dv = k_cache.shape[1], v_cache.shape[2]
        if k_cache.dtype != v_cache.dtype or k_cache.dtype not in (np.float16, np.float32):
            raise ValueError("the KV cache must be float16 or float32")
        if not (k_cache.flags.c_contiguous and v_cache.flags.c_contiguous):
            raise ValueError("the KV cache must be contiguous")
        f16 = int(k_cache.dtype == np.float16)
        out = _out(out, (n, n_head, dv))
        n_kv = pos0 + n
        threads = lib.qi_attention_threads(n, n_head, n_kv, d, dv, n_threads or self.n_threads)
        scratch = np.empty((threads, 4 * n_kv), dtype=np.float32)  # QI_ATTN_QB score rows per thread
        check(lib.qi_attention_mt_f32(ptr(q, "const float *"), ptr(k_cache, "const void *"),
                                      ptr(v_cache, "const void *"), ptr(out, "float *"),
                                      ptr(scratch, "float *"), n, n_head, n_kv_head, d, dv,
                                      int(pos0), int(window), f16, threads), "attention")
        return out
