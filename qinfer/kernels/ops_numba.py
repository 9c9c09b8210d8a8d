"""Numba implementation of qinfer.kernels.ops (see that module for semantics)."""
import numpy as np

from .numba import ops as k
from .ops_numpy import moe_route


def _out(out, shape):
    return np.empty(shape, dtype=np.float32) if out is None else out


def _cache_view(c):
    return c.view(np.uint16) if c.dtype == np.float16 else c


class NumbaOps:
    name = "numba"

    def rms_norm(self, x, w, eps, out=None):
        out = _out(out, x.shape)
        k.rms_norm(x, w, float(eps), out)
        return out

    def rope(self, x, pos, base):
        k.rope(x, np.asarray(pos, dtype=np.int32), float(base))
        return x

    def softmax(self, x, out=None):
        out = _out(out, x.shape)
        k.softmax(x, out)
        return out

    moe_route = staticmethod(moe_route)

    def silu_mul(self, gate, up, out=None):
        out = _out(out, gate.shape)
        k.silu_mul(gate, up, out)
        return out

    def attention(self, q, k_cache, v_cache, pos0, window=0, out=None, n_threads=None):
        out = _out(out, q.shape[:2] + (v_cache.shape[2],))
        k.attention(q, _cache_view(k_cache), _cache_view(v_cache), int(pos0), int(window), out, n_threads)
        return out
