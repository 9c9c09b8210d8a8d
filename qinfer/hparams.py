"""The model's hyperparameters, read from GGUF metadata (llama.cpp's `llama.*` keys).

llama.cpp writes architecture "llama" for both Mistral and Mixtral; Mixtral adds
`llama.expert_count` / `llama.expert_used_count`. qinfer also honours
`llama.attention.sliding_window` (which llama.cpp itself does not write or use).
"""
from dataclasses import dataclass

import numpy as np

from .errors import FormatError, UnsupportedError

SUPPORTED_ARCHITECTURES = ("llama",)


@dataclass(frozen=True)
class HParams:
    arch: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_ff: int            # hidden size of the FFN (of each expert for MoE)
    n_head: int
    n_head_kv: int
    head_dim: int        # key/query head size
    head_dim_v: int      # value head size
    rope_base: float
    rope_dims: int
    rms_eps: float
    n_expert: int        # 0 for a dense model
    n_expert_used: int
    sliding_window: int  # 0: full causal attention

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @property
    def n_gqa(self) -> int:
        """Query heads per key/value head."""
        return self.n_head // self.n_head_kv


class _Meta:
    """Typed lookups of `<arch>.<key>` with errors that name the file and key."""

    def __init__(self, metadata, path, arch):
        self.md, self.path, self.arch = metadata, path, arch

    def _get(self, key, required):
        full = f"{self.arch}.{key}"
        if full not in self.md and required:
            raise FormatError(f"{self.path}: metadata key {full} is missing")
        return full, self.md.get(full)

    def int(self, key, required=True, default=None, minimum=1):
        full, v = self._get(key, required)
        if v is None:
            return default
        if isinstance(v, np.ndarray):
            raise UnsupportedError(f"{self.path}: {full} varies per layer, which qinfer does not support")
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise FormatError(f"{self.path}: metadata key {full} must be an integer, got {v!r}")
        if v < minimum:
            raise FormatError(f"{self.path}: metadata key {full} = {v} must be at least {minimum}")
        return int(v)

    def float(self, key, required=True, default=None):
        full, v = self._get(key, required)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise FormatError(f"{self.path}: metadata key {full} must be a number, got {v!r}")
        v = float(v)
        if not (v > 0 and np.isfinite(v)):
            raise FormatError(f"{self.path}: metadata key {full} = {v} must be a positive number")
        return v


def read_hparams(metadata, tensors, path) -> HParams:
    """HParams from a GGUF file's metadata dict (and tensor table, for the vocab size)."""
    arch = metadata.get("general.architecture")
    if arch is None:
        raise FormatError(f"{path}: metadata key general.architecture is missing")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedError(f"{path}: architecture {arch!r} is not supported "
                               f"(qinfer runs {', '.join(SUPPORTED_ARCHITECTURES)}: Mistral and Mixtral)")
    m = _Meta(metadata, path, arch)
    scaling = metadata.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear") or (
            scaling == "linear" and metadata.get(f"{arch}.rope.scaling.factor", 1.0) != 1.0):
        raise UnsupportedError(f"{path}: RoPE scaling {scaling!r} is not supported")
    if "rope_freqs.weight" in tensors:
        raise UnsupportedError(f"{path}: per-frequency RoPE factors (rope_freqs.weight, Llama 3 style) "
                               "are not supported")

    n_embd = m.int("embedding_length")
    n_head = m.int("attention.head_count")
    n_head_kv = m.int("attention.head_count_kv", required=False, default=n_head)
    if n_head % n_head_kv:
        raise FormatError(f"{path}: {n_head} attention heads cannot be shared by {n_head_kv} KV heads")
    default_hd = n_embd // n_head if n_embd % n_head == 0 else None
    head_dim = m.int("attention.key_length", required=default_hd is None, default=default_hd)
    head_dim_v = m.int("attention.value_length", required=False, default=head_dim)
    if head_dim % 2:
        raise FormatError(f"{path}: head size {head_dim} must be even for RoPE")
    rope_dims = m.int("rope.dimension_count", required=False, default=head_dim)
    if rope_dims != head_dim:
        raise UnsupportedError(f"{path}: partial RoPE ({rope_dims} of {head_dim} dims) is not "
                               "supported by the llama architecture")
    n_expert = m.int("expert_count", required=False, default=0, minimum=0)
    n_expert_used = m.int("expert_used_count", required=False, default=0, minimum=0)
    if n_expert and not 1 <= n_expert_used <= n_expert:
        raise FormatError(f"{path}: {arch}.expert_used_count = {n_expert_used} must be in 1..{n_expert}")
    if not n_expert:
        n_expert_used = 0

    n_vocab = metadata.get(f"{arch}.vocab_size")
    if n_vocab is None:
        tokens = metadata.get("tokenizer.ggml.tokens")
        if tokens is not None:
            n_vocab = len(tokens)
        elif "token_embd.weight" in tensors and len(tensors["token_embd.weight"].shape) == 2:
            n_vocab = tensors["token_embd.weight"].shape[1]
        else:
            raise FormatError(f"{path}: cannot tell the vocabulary size (no {arch}.vocab_size, "
                              "tokenizer.ggml.tokens or token_embd.weight)")
    else:
        n_vocab = m.int("vocab_size")

    return HParams(
        arch=arch,
        n_vocab=int(n_vocab),
        n_ctx_train=m.int("context_length"),
        n_embd=n_embd,
        n_layer=m.int("block_count"),
        n_ff=m.int("feed_forward_length"),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        head_dim_v=head_dim_v,
        rope_base=m.float("rope.freq_base", required=False, default=10000.0),
        rope_dims=rope_dims,
        rms_eps=m.float("attention.layer_norm_rms_epsilon"),
        n_expert=n_expert,
        n_expert_used=n_expert_used,
        sliding_window=m.int("attention.sliding_window", required=False, default=0, minimum=0),
    )
