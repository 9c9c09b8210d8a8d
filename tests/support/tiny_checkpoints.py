"""Tiny Mistral/Mixtral checkpoints in the forms users download them.

From one transformers model: a Hugging Face folder (config.json + safetensors),
a raw Mistral folder (params.json + consolidated.safetensors with Mistral's
native names, q/k in the adjacent-pair layout) and the same as a .tar. The
tokenizer is the bundled demo model's sentencepiece file (3000 pieces), so the
models use vocab 3000.
"""
import json
import os
import tarfile

import numpy as np
from safetensors.numpy import load_file, save_file

import qinfer

VOCAB = 3000


def demo_tokenizer_bytes():
    path = os.path.join(os.path.dirname(qinfer.__file__), "data", "demo-mistral.tar")
    with tarfile.open(path) as tf:
        return tf.extractfile("tokenizer.model").read()


def _unpermute(w, n_head):
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def raw_state(model, sd):
    """Mistral-native names and layout, from the tensors transformers saved (`sd`:
    its checkpoint names, which keep Mixtral's per-expert w1/w2/w3)."""
    cfg = model.config
    sd = {k: np.asarray(v, dtype=np.float32) for k, v in sd.items()}
    out = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
    if "lm_head.weight" in sd and not cfg.tie_word_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    for i in range(cfg.num_hidden_layers):
        p, r = f"model.layers.{i}.", f"layers.{i}."
        out[r + "attention.wq.weight"] = _unpermute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads)
        out[r + "attention.wk.weight"] = _unpermute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads)
        out[r + "attention.wv.weight"] = sd[p + "self_attn.v_proj.weight"]
        out[r + "attention.wo.weight"] = sd[p + "self_attn.o_proj.weight"]
        out[r + "attention_norm.weight"] = sd[p + "input_layernorm.weight"]
        out[r + "ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
        if getattr(cfg, "num_local_experts", 0):
            out[r + "feed_forward.gate.weight"] = sd[p + "block_sparse_moe.gate.weight"]
            for e in range(cfg.num_local_experts):
                for w in ("w1", "w2", "w3"):
                    out[r + f"feed_forward.experts.{e}.{w}.weight"] = \
                        sd[p + f"block_sparse_moe.experts.{e}.{w}.weight"]
        else:
            out[r + "feed_forward.w1.weight"] = sd[p + "mlp.gate_proj.weight"]
            out[r + "feed_forward.w2.weight"] = sd[p + "mlp.down_proj.weight"]
            out[r + "feed_forward.w3.weight"] = sd[p + "mlp.up_proj.weight"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def params_json(cfg):
    p = {"dim": cfg.hidden_size, "n_layers": cfg.num_hidden_layers, "head_dim": cfg.head_dim,
         "hidden_dim": cfg.intermediate_size, "n_heads": cfg.num_attention_heads,
         "n_kv_heads": cfg.num_key_value_heads, "norm_eps": cfg.rms_norm_eps, "vocab_size": cfg.vocab_size,
         "rope_theta": cfg.rope_parameters["rope_theta"] if getattr(cfg, "rope_parameters", None)
         else cfg.rope_theta}
    if getattr(cfg, "sliding_window", None):
        p["sliding_window"] = cfg.sliding_window
    if getattr(cfg, "num_local_experts", 0):
        p["moe"] = {"num_experts": cfg.num_local_experts, "num_experts_per_tok": cfg.num_experts_per_tok}
    return p


def write_forms(model, root):
    """HF folder, raw folder and raw .tar of `model` under `root`; returns their paths."""
    hf, raw = os.path.join(root, "hf"), os.path.join(root, "raw")
    model.save_pretrained(hf, safe_serialization=True)
    tok = demo_tokenizer_bytes()
    with open(os.path.join(hf, "tokenizer.model"), "wb") as f:
        f.write(tok)
    os.makedirs(raw, exist_ok=True)
    saved = load_file(os.path.join(hf, "model.safetensors"))
    save_file(raw_state(model, saved), os.path.join(raw, "consolidated.safetensors"))
    with open(os.path.join(raw, "params.json"), "w") as f:
        json.dump(params_json(model.config), f)
    with open(os.path.join(raw, "tokenizer.model.v3"), "wb") as f:
        f.write(tok)
    tar = os.path.join(root, "model.tar")
    with tarfile.open(tar, "w") as tf:
        for n in sorted(os.listdir(raw)):
            tf.add(os.path.join(raw, n), arcname=n)
    return {"hf": hf, "raw": raw, "tar": tar}
