"""The bundled demo model (qinfer/data/demo-mistral.tar) as tests read it: its
files, its float32 weights, and the same weights in transformers (the oracle)."""
import json
import tarfile

import numpy as np

from qinfer.cli.demo import DEMO_TARBALL, bundled

TAR = bundled(DEMO_TARBALL)


def members():
    with tarfile.open(TAR) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def raw_checkpoint():
    """(params.json, float32 tensors, tokenizer.model bytes) of the tarball."""
    import torch
    from safetensors.torch import load

    files = members()
    # bf16 tensors, which numpy cannot hold: read through torch
    tensors = {k: v.to(torch.float32).numpy() for k, v in load(files["consolidated.safetensors"]).items()}
    return json.loads(files["params.json"]), tensors, files["tokenizer.model"]


def hf_from_raw(params, tensors):
    """transformers' MistralForCausalLM holding the tarball's weights. HF keeps
    q/k rows in rotate-half order: permuted from Mistral's interleaved pairs
    the way HF's own conversion script did it."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    def permute(w, n_heads):
        rows, cols = w.shape
        return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)

    cfg = MistralConfig(vocab_size=params["vocab_size"], hidden_size=params["dim"],
                        intermediate_size=params["hidden_dim"], num_hidden_layers=params["n_layers"],
                        num_attention_heads=params["n_heads"], num_key_value_heads=params["n_kv_heads"],
                        head_dim=params["head_dim"], rms_norm_eps=params["norm_eps"],
                        rope_theta=params["rope_theta"], sliding_window=None, tie_word_embeddings=False,
                        max_position_embeddings=2048)
    sd = {"model.embed_tokens.weight": tensors["tok_embeddings.weight"],
          "model.norm.weight": tensors["norm.weight"], "lm_head.weight": tensors["output.weight"]}
    names = {"attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
             "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
             "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj",
             "feed_forward.w3": "mlp.up_proj"}
    for i in range(params["n_layers"]):
        raw, hf = f"layers.{i}.", f"model.layers.{i}."
        sd[hf + "self_attn.q_proj.weight"] = permute(tensors[raw + "attention.wq.weight"], params["n_heads"])
        sd[hf + "self_attn.k_proj.weight"] = permute(tensors[raw + "attention.wk.weight"], params["n_kv_heads"])
        for r, h in names.items():
            sd[f"{hf}{h}.weight"] = tensors[f"{raw}{r}.weight"]
    model = MistralForCausalLM(cfg).eval()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()})
    return model
