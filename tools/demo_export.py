"""Write a trained transformers MistralForCausalLM as a raw Mistral tarball.

The layout is the one Mistral publishes (params.json + consolidated.safetensors
+ tokenizer file, uncompressed tar): native tensor names (tok_embeddings,
layers.N.attention.wq, ...) and Meta's interleaved-pair RoPE layout for wq/wk.
transformers keeps q_proj/k_proj in the rotate-half layout, so they are
un-permuted here, as llama.cpp's converter does for HF checkpoints
(REFERENCE.md §5): rows viewed as (heads, 2, head_dim/2) are swapped to
(heads, head_dim/2, 2).
"""
import io
import json
import tarfile

import torch
from safetensors.torch import save as safetensors_bytes


def unpermute_rotary(w, n_heads):
    """HF rotate-half rows -> Mistral interleaved rows (inverse of HF's permute)."""
    rows, cols = w.shape
    return (w.reshape(n_heads, 2, rows // n_heads // 2, cols)
            .transpose(1, 2).reshape(rows, cols))


def permute_rotary(w, n_heads):
    """Mistral interleaved rows -> HF rotate-half rows (what HF's converter did)."""
    rows, cols = w.shape
    return (w.reshape(n_heads, rows // n_heads // 2, 2, cols)
            .transpose(1, 2).reshape(rows, cols))


def raw_state_dict(model, dtype=torch.bfloat16):
    """Mistral-native tensor names and layout for a MistralForCausalLM."""
    cfg = model.config
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    out = {"tok_embeddings.weight": sd["model.embed_tokens.weight"],
           "norm.weight": sd["model.norm.weight"],
           "output.weight": sd["lm_head.weight"]}
    for i in range(cfg.num_hidden_layers):
        hf, raw = f"model.layers.{i}.", f"layers.{i}."
        out[raw + "attention.wq.weight"] = unpermute_rotary(
            sd[hf + "self_attn.q_proj.weight"], cfg.num_attention_heads)
        out[raw + "attention.wk.weight"] = unpermute_rotary(
            sd[hf + "self_attn.k_proj.weight"], cfg.num_key_value_heads)
        out[raw + "attention.wv.weight"] = sd[hf + "self_attn.v_proj.weight"]
        out[raw + "attention.wo.weight"] = sd[hf + "self_attn.o_proj.weight"]
        out[raw + "attention_norm.weight"] = sd[hf + "input_layernorm.weight"]
        out[raw + "ffn_norm.weight"] = sd[hf + "post_attention_layernorm.weight"]
        out[raw + "feed_forward.w1.weight"] = sd[hf + "mlp.gate_proj.weight"]
        out[raw + "feed_forward.w2.weight"] = sd[hf + "mlp.down_proj.weight"]
        out[raw + "feed_forward.w3.weight"] = sd[hf + "mlp.up_proj.weight"]
    return {k: v.to(dtype).contiguous() for k, v in out.items()}


def params_json(cfg):
    """params.json with the keys Mistral's own files use."""
    return {"dim": cfg.hidden_size, "n_layers": cfg.num_hidden_layers,
            "head_dim": cfg.head_dim, "hidden_dim": cfg.intermediate_size,
            "n_heads": cfg.num_attention_heads, "n_kv_heads": cfg.num_key_value_heads,
            "norm_eps": cfg.rms_norm_eps, "vocab_size": cfg.vocab_size,
            "rope_theta": float(cfg.rope_parameters["rope_theta"])
            if getattr(cfg, "rope_parameters", None) else float(cfg.rope_theta)}


def write_tarball(path, model, tokenizer_model_bytes, extra_files=()):
    """Deterministic uncompressed tar (fixed mtime/owner) of the raw checkpoint."""
    files = [("params.json", (json.dumps(params_json(model.config), indent=2) + "\n").encode()),
             ("consolidated.safetensors", safetensors_bytes(raw_state_dict(model))),
             ("tokenizer.model", tokenizer_model_bytes), *extra_files]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uname = info.gname = "qinfer"
            tar.addfile(info, io.BytesIO(data))
