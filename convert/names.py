"""Checkpoint tensor names -> llama.cpp GGUF names, and the plan of tensors to write.

Raw Mistral weights are already in the adjacent-pair RoPE layout llama.cpp uses;
HF stores q/k permuted for rotate-half RoPE, so those are un-permuted here
(REFERENCE §5), which makes both forms give identical GGUF tensors.
"""
import re
from dataclasses import dataclass

import numpy as np

from qinfer.errors import FormatError

RAW = {"attention.wq": "attn_q", "attention.wk": "attn_k", "attention.wv": "attn_v",
       "attention.wo": "attn_output", "attention_norm": "attn_norm", "ffn_norm": "ffn_norm",
       "feed_forward.w1": "ffn_gate", "feed_forward.w2": "ffn_down", "feed_forward.w3": "ffn_up",
       "feed_forward.gate": "ffn_gate_inp"}
HF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
      "self_attn.o_proj": "attn_output", "input_layernorm": "attn_norm",
      "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.down_proj": "ffn_down",
      "mlp.up_proj": "ffn_up", "block_sparse_moe.gate": "ffn_gate_inp"}
TOP = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
       "output.weight": "output.weight", "model.embed_tokens.weight": "token_embd.weight",
       "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
EXPERT = {"w1": "ffn_gate_exps", "w2": "ffn_down_exps", "w3": "ffn_up_exps"}

_RAW_LAYER = re.compile(r"^layers\.(\d+)\.(.+)\.weight$")
_HF_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)\.weight$")
_RAW_EXPERT = re.compile(r"^feed_forward\.experts\.(\d+)\.(w[123])$")
_HF_EXPERT = re.compile(r"^block_sparse_moe\.experts\.(\d+)\.(w[123])$")


@dataclass
class PlannedTensor:
    name: str                 # GGUF name
    shape: tuple              # numpy (row-major) shape: (out, in) or (n_expert, out, in)
    sources: list             # TensorRefs; several = experts stacked on axis 0
    permute_heads: int = 0    # HF q/k: un-permute with this many heads

    def expert(self, e):
        """float32 2-D matrix of expert e (or the whole tensor when e is None)."""
        ref = self.sources[0 if e is None else e]
        a = ref.float32()
        if self.permute_heads:
            rows = a.shape[0]
            a = a.reshape(self.permute_heads, 2, rows // self.permute_heads // 2, *a.shape[1:]) \
                .swapaxes(1, 2).reshape(a.shape)
        return np.ascontiguousarray(a, dtype=np.float32)


def plan(tensors, params, kind, label):
    """Map checkpoint tensors to the GGUF tensors, checking every shape."""
    layer_re, table, expert_re = (_RAW_LAYER, RAW, _RAW_EXPERT) if kind == "mistral" \
        else (_HF_LAYER, HF, _HF_EXPERT)
    out, experts = {}, {}
    for name, ref in tensors.items():
        if name in TOP:
            out[TOP[name]] = PlannedTensor(TOP[name], ref.shape, [ref])
            continue
        m = layer_re.match(name)
        if not m:
            if name.endswith("rotary_emb.inv_freq"):
                continue
            raise FormatError(f"{label}: unexpected tensor {name!r}")
        layer, rest = int(m.group(1)), m.group(2)
        em = expert_re.match(rest)
        if em:
            experts.setdefault((layer, em.group(2)), {})[int(em.group(1))] = ref
            continue
        if rest not in table:
            raise FormatError(f"{label}: unexpected tensor {name!r}")
        g = f"blk.{layer}.{table[rest]}.weight"
        heads = 0
        if kind == "hf" and rest == "self_attn.q_proj":
            heads = params.n_heads
        elif kind == "hf" and rest == "self_attn.k_proj":
            heads = params.n_kv_heads
        out[g] = PlannedTensor(g, ref.shape, [ref], heads)
    for (layer, w), by_e in experts.items():
        if sorted(by_e) != list(range(params.n_experts)):
            raise FormatError(f"{label}: layer {layer} has experts {sorted(by_e)} for {w}, "
                              f"expected 0..{params.n_experts - 1}")
        refs = [by_e[e] for e in range(params.n_experts)]
        g = f"blk.{layer}.{EXPERT[w]}.weight"
        out[g] = PlannedTensor(g, (params.n_experts, *refs[0].shape), refs)
    _check_shapes(out, params, label)
    return out


def expected_shapes(p):
    q, kv = p.n_heads * p.head_dim, p.n_kv_heads * p.head_dim
    shapes = {"token_embd.weight": (p.vocab_size, p.dim), "output_norm.weight": (p.dim,)}
    if not p.tied:
        shapes["output.weight"] = (p.vocab_size, p.dim)
    for i in range(p.n_layers):
        b = f"blk.{i}."
        shapes.update({b + "attn_norm.weight": (p.dim,), b + "ffn_norm.weight": (p.dim,),
                       b + "attn_q.weight": (q, p.dim), b + "attn_k.weight": (kv, p.dim),
                       b + "attn_v.weight": (kv, p.dim), b + "attn_output.weight": (p.dim, q)})
        if p.n_experts:
            e = p.n_experts
            shapes.update({b + "ffn_gate_inp.weight": (e, p.dim),
                           b + "ffn_gate_exps.weight": (e, p.hidden_dim, p.dim),
                           b + "ffn_up_exps.weight": (e, p.hidden_dim, p.dim),
                           b + "ffn_down_exps.weight": (e, p.dim, p.hidden_dim)})
        else:
            shapes.update({b + "ffn_gate.weight": (p.hidden_dim, p.dim),
                           b + "ffn_up.weight": (p.hidden_dim, p.dim),
                           b + "ffn_down.weight": (p.dim, p.hidden_dim)})
    return shapes


def _check_shapes(planned, p, label):
    want = expected_shapes(p)
    if "output.weight" not in planned:
        want.pop("output.weight", None)
    for name, shape in want.items():
        if name not in planned:
            raise FormatError(f"{label}: missing tensor for {name}")
        if tuple(planned[name].shape) != tuple(shape):
            raise FormatError(f"{label}: {name} has shape {tuple(planned[name].shape)}, but the "
                              f"model's parameters imply {tuple(shape)}")
    extra = set(planned) - set(want)
    if extra:
        raise FormatError(f"{label}: unexpected tensors {sorted(extra)[:3]}")
