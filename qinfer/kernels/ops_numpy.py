"""Reference transformer ops in numpy (float64 inside): the oracle for the
Numba and C versions. Shapes and semantics are those of qinfer.kernels.ops.
"""
import numpy as np


def moe_route(h, router, k):
    """ops.moe_route in float64 (also the Numba backend's: a few thousand
    multiply-adds per token and layer, as fast through BLAS as jitted)."""
    logits = h.astype(np.float64) @ router.astype(np.float64).T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]     # ties: the lower id first
    w = np.take_along_axis(p, top, axis=1)
    return top.astype(np.int64), (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


class NumpyOps:
    name = "numpy"

    def rms_norm(self, x, w, eps, out=None):
        x64 = x.astype(np.float64)
        scale = 1.0 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + eps)
        res = (x64 * scale * w).astype(np.float32)
        if out is None:
            return res
        out[...] = res
        return out

    def rope(self, x, pos, base):
        """NORM-mode RoPE in place: pairs (2i, 2i+1) of every head rotated by
        pos * base**(-2i/d). x: float32 [n, n_head, d]; pos: int32 [n]."""
        d = x.shape[-1]
        inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        theta = pos.astype(np.float64)[:, None] * inv[None, :]          # [n, d/2]
        c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
        x0 = x[..., 0::2].astype(np.float64)
        x1 = x[..., 1::2].astype(np.float64)
        x[..., 0::2] = x0 * c - x1 * s
        x[..., 1::2] = x0 * s + x1 * c
        return x

    def softmax(self, x, out=None):
        x64 = x.astype(np.float64)
        e = np.exp(x64 - x64.max(axis=-1, keepdims=True))
        res = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
        if out is None:
            return res
        out[...] = res
        return out

    moe_route = staticmethod(moe_route)

    def silu_mul(self, gate, up, out=None):
        g = gate.astype(np.float64)
        res = (g / (1.0 + np.exp(-g)) * up).astype(np.float32)
        if out is None:
            return res
        out[...] = res
        return out

    def attention(self, q, k, v, pos0, window=0, out=None, n_threads=None):
        """Causal attention of n new queries (positions pos0..pos0+n-1) over the
        cache. q: float32 [n, H, d]; k: [n_ctx, Hkv, d], v: [n_ctx, Hkv, dv]
        (float16 or float32); window > 0 limits each query to its last `window`
        positions (itself included). Returns float32 [n, H, dv]."""
        n, H, d = q.shape
        hkv = k.shape[1]
        n_kv = pos0 + n
        kk = k[:n_kv].astype(np.float64)
        vv = v[:n_kv].astype(np.float64)
        qpos = pos0 + np.arange(n)[:, None]
        kpos = np.arange(n_kv)[None, :]
        allowed = kpos <= qpos
        if window > 0:
            allowed &= kpos > qpos - window
        res = np.empty((n, H, v.shape[2]), dtype=np.float64)
        for h in range(H):
            g = h // (H // hkv)
            s = q[:, h, :].astype(np.float64) @ kk[:, g, :].T / np.sqrt(d)
            s = np.where(allowed, s, -np.inf)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            res[:, h, :] = p @ vv[:, g, :]
        if out is None:
            return res.astype(np.float32)
        out[...] = res
        return out
