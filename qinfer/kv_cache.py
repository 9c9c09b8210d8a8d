"""The key/value cache: one K and one V slab per layer, [n_ctx, n_head_kv, head_dim].

F16 by default (as llama.cpp), F32 on request. The slabs are allocated with
np.zeros, i.e. calloc'd pages that cost no memory until a position is written.
"""
import numpy as np

from .errors import QinferError

KV_TYPES = {"f16": np.float16, "f32": np.float32}


class KVCache:
    def __init__(self, n_layer, n_ctx, n_head_kv, head_dim, head_dim_v, kv_type="f16"):
        if kv_type not in KV_TYPES:
            raise QinferError(f"unknown KV cache type {kv_type!r}; use one of {', '.join(KV_TYPES)}")
        dtype = KV_TYPES[kv_type]
        self.kv_type = kv_type
        self.n_ctx = n_ctx
        self.k = np.zeros((n_layer, n_ctx, n_head_kv, head_dim), dtype=dtype)
        self.v = np.zeros((n_layer, n_ctx, n_head_kv, head_dim_v), dtype=dtype)

    def write(self, layer, pos0, k, v):
        """Store the keys/values of positions pos0.. (float32 [n, n_head_kv, d]),
        rounded to the cache type (round-to-nearest-even for f16, as ggml)."""
        n = k.shape[0]
        self.k[layer, pos0:pos0 + n] = k
        self.v[layer, pos0:pos0 + n] = v

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    @staticmethod
    def size_for(hp, n_ctx, kv_type="f16") -> int:
        """Bytes a full cache of n_ctx positions takes."""
        item = np.dtype(KV_TYPES[kv_type]).itemsize
        return hp.n_layer * n_ctx * hp.n_head_kv * (hp.head_dim + hp.head_dim_v) * item
