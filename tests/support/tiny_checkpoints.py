"""Tiny Mistral/Mixtral checkpoints in the forms users download them.

From one transformers model: a Hugging Face folder (config.json + safetensors),
a raw Mistral folder (params.json + consolidated.safetensors with Mistral's
native names, q/k in the adjacent-pair layout) and the same as a .tar. The
tokenizer is the bundled demo model's sentencepiece file (3000 pieces), so the
models use vocab 3000, unless `tokenizer_files` names others (e.g. a real
tekken.json with a model of its vocab size).
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


def write_forms(model, root, tokenizer_files=None):
    """HF folder, raw folder and raw .tar of `model` under `root`; returns their paths.
    tokenizer_files: {file name: bytes} written into both folders instead of the demo
    sentencepiece model (tokenizer.model in HF form, tokenizer.model.v3 in raw form)."""
    hf, raw = os.path.join(root, "hf"), os.path.join(root, "raw")
    model.save_pretrained(hf, safe_serialization=True)
    os.makedirs(raw, exist_ok=True)
    if tokenizer_files is None:
        tok = demo_tokenizer_bytes()
        tokenizer_files = {}
        with open(os.path.join(hf, "tokenizer.model"), "wb") as f:
            f.write(tok)
        with open(os.path.join(raw, "tokenizer.model.v3"), "wb") as f:
            f.write(tok)
    for name, data in tokenizer_files.items():
        for folder in (hf, raw):
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
    saved = load_file(os.path.join(hf, "model.safetensors"))
    save_file(raw_state(model, saved), os.path.join(raw, "consolidated.safetensors"))
    with open(os.path.join(raw, "params.json"), "w") as f:
        json.dump(params_json(model.config), f)
    tar = os.path.join(root, "model.tar")
    with tarfile.open(tar, "w") as tf:
        for n in sorted(os.listdir(raw)):
            tf.add(os.path.join(raw, n), arcname=n)
    return {"hf": hf, "raw": raw, "tar": tar}


def bf16_state(model, root):
    """raw_state(...) of `model` as torch bfloat16 tensors (what Mistral ships), from
    the checkpoint transformers saves under `root`/hf (its in-memory state dict
    merges Mixtral's experts; the saved names keep them apart, as raw_state needs)."""
    import torch

    hf = os.path.join(root, "hf")
    model.save_pretrained(hf, safe_serialization=True)
    sd = load_file(os.path.join(hf, "model.safetensors"))
    return {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in raw_state(model, sd).items()}


def write_pth_forms(model, root, shards=1):
    """The raw Mistral form of `model` in bf16 twice, from one state dict: with
    consolidated.safetensors ("st") and with torch.save's consolidated.NN.pth
    ("pth", its tensors dealt round-robin over `shards` files), plus the .pth
    folder as a tar ("pth_tar"). Returns their paths."""
    import torch
    from safetensors.torch import save_file as save_torch

    state = bf16_state(model, root)
    forms = {"st": os.path.join(root, "st"), "pth": os.path.join(root, "pth")}
    tok = demo_tokenizer_bytes()
    for folder in forms.values():
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "params.json"), "w") as f:
            json.dump(params_json(model.config), f)
        with open(os.path.join(folder, "tokenizer.model.v3"), "wb") as f:
            f.write(tok)
    save_torch(state, os.path.join(forms["st"], "consolidated.safetensors"))
    names = sorted(state)
    for s in range(shards):
        part = {n: state[n] for n in names[s::shards]}
        torch.save(part, os.path.join(forms["pth"], f"consolidated.{s:02d}.pth"))
    forms["pth_tar"] = os.path.join(root, "pth.tar")
    with tarfile.open(forms["pth_tar"], "w") as tf:
        for n in sorted(os.listdir(forms["pth"])):
            tf.add(os.path.join(forms["pth"], n), arcname=n)
    return forms
