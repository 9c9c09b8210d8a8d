"""The Mistral / Mixtral forward pass over a KV cache.

For new tokens at positions pos0 .. pos0+n-1:

    x = embed(tokens)
    for each layer:
        x = x + attention(rms_norm(x) * attn_norm)       # RoPE'd Q/K, GQA, causal (+ window)
        x = x + ffn(rms_norm(x) * ffn_norm)              # SwiGLU, or the MoE of SwiGLU experts
    logits = output(rms_norm(x) * output_norm)

Kernels (matmul from qinfer.kernels' backends, the other ops from
qinfer.kernels.ops) do the arithmetic; this module only orchestrates.
"""
import numpy as np

from . import quants
from .kernels.ops import get_ops
from .model_weights import DenseFFN
from .moe import moe_ffn


class Forward:
    def __init__(self, hp, weights, cache, backend, n_threads=None):
        self.hp, self.w, self.cache = hp, weights, cache
        self.be = backend
        self.ops = get_ops(backend)
        if n_threads and hasattr(self.ops, "with_threads"):
            self.ops = self.ops.with_threads(n_threads)
        self.n_threads = n_threads
        self._bound = {}     # id(Matrix), ids of a group, or a block's key -> its bound backend call
        self.use_blocks = True   # several ops per backend call where it offers that (tests turn it off)

    # -- building blocks ---------------------------------------------------------

    def linear(self, m, x):
        """x @ W.T for a weight matrix m (quantized rows), x float32 [n, n_in]."""
        fn = self._bound.get(id(m))
        if fn is None:
            fn = self._bound[id(m)] = self._bind(m)
        return fn(x)

    def linear_group(self, ms, x):
        """[x @ W.T for W in ms]: matrices that read the same input, in one
        backend call where the backend offers it (bind_matmul_group)."""
        key = tuple(id(m) for m in ms)
        fn = self._bound.get(key)
        if fn is None:
            group = getattr(self.be, "bind_matmul_group", None)
            if group is not None:
                fn = group([(m.qtype, m.data) for m in ms], ms[0].n_in, n_threads=self.n_threads)
            else:
                fns = [self._bind(m) for m in ms]
                fn = lambda x: [f(x) for f in fns]  # noqa: E731
            self._bound[key] = fn
        return fn(x)

    def _bind(self, m):
        bind = getattr(self.be, "bind_matmul", None)
        if bind is not None:
            return bind(m.qtype, m.data, m.n_in, n_threads=self.n_threads)
        return lambda x: self.be.matmul(m.qtype, m.data, np.ascontiguousarray(x, dtype=np.float32),
                                        n_threads=self.n_threads)

    def embed(self, ids):
        m = self.w.token_embd
        return quants.dequantize(m.data[ids], m.qtype, (len(ids), m.n_in), backend=self.be)

    def attention(self, i, layer, h, pos0, pos):
        hp, ops, n = self.hp, self.ops, h.shape[0]
        q, k, v = self.linear_group((layer.wq, layer.wk, layer.wv), h)
        q = q.reshape(n, hp.n_head, hp.head_dim)
        k = k.reshape(n, hp.n_head_kv, hp.head_dim)
        v = v.reshape(n, hp.n_head_kv, hp.head_dim_v)
        ops.rope(q, pos, hp.rope_base)
        ops.rope(k, pos, hp.rope_base)
        self.cache.write(i, pos0, k, v)
        o = ops.attention(q, self.cache.k[i], self.cache.v[i], pos0, hp.sliding_window,
                          n_threads=self.n_threads)
        return self.linear(layer.wo, o.reshape(n, hp.n_head * hp.head_dim_v))

    def _block(self, key, bind_name, args):
        """The backend's fused call bind_name(*args()) for key, bound on first
        use; None where the backend has none (or use_blocks is off): the
        caller then runs the ops one by one."""
        block = self._bound.get(key, False)
        if block is False:
            bind = getattr(self.be, bind_name, None) if self.use_blocks else None
            block = self._bound[key] = bind(*args(), n_threads=self.n_threads) if bind is not None else None
        return block

    def add_attention(self, i, layer, x, pos0, pos):
        """x += attention(rms_norm(x) * attn_norm), in one backend call where
        the backend offers it (bind_attn_block; same arithmetic as attention())."""
        hp = self.hp
        block = self._block(("attn", id(layer)), "bind_attn_block", lambda: (
            [(m.qtype, m.data) for m in (layer.wq, layer.wk, layer.wv, layer.wo)], layer.attn_norm,
            hp.rms_eps, hp.n_head, hp.n_head_kv, hp.head_dim, hp.head_dim_v, hp.sliding_window or 0))
        if block is not None:
            block(x, self.ops.rope_table(pos, hp.head_dim, hp.rope_base), self.cache.k[i], self.cache.v[i], pos0)
        else:
            x += self.attention(i, layer, self.ops.rms_norm(x, layer.attn_norm, hp.rms_eps), pos0, pos)

    def ffn(self, layer, h):
        f = layer.ffn
        if isinstance(f, DenseFFN):
            return self.linear(f.down, self.ops.silu_mul(*self.linear_group((f.gate, f.up), h)))
        return moe_ffn(h, f, self.hp.n_expert_used, self.linear, self.ops, self.linear_group)

    def add_ffn(self, layer, x):
        """x += ffn(rms_norm(x) * ffn_norm), in one backend call where the
        backend offers it (bind_ffn_block, dense layers; same arithmetic as ffn())."""
        f = layer.ffn
        block = None
        if isinstance(f, DenseFFN):
            block = self._block(("ffn", id(f)), "bind_ffn_block", lambda: (
                [(m.qtype, m.data) for m in (f.gate, f.up, f.down)], layer.ffn_norm, self.hp.rms_eps))
        if block is not None:
            block(x)
        else:
            x += self.ffn(layer, self.ops.rms_norm(x, layer.ffn_norm, self.hp.rms_eps))

    # -- the pass ----------------------------------------------------------------

    def __call__(self, ids, pos0, last_only=False):
        """Logits (float32 [n, n_vocab], or [1, n_vocab] with last_only) of
        tokens `ids` (int array) placed at positions pos0.., filling the cache."""
        ops, eps = self.ops, self.hp.rms_eps
        pos = np.arange(pos0, pos0 + len(ids), dtype=np.int32)
        x = self.embed(ids)
        for i, layer in enumerate(self.w.layers):
            self.add_attention(i, layer, x, pos0, pos)
            self.add_ffn(layer, x)
        if last_only:
            x = x[-1:]
        return self.linear(self.w.output, ops.rms_norm(x, self.w.output_norm, eps))
