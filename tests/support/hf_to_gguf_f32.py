"""Tiny Mistral/Mixtral models made with transformers, written as GGUF by gguf-py.

The runtime's tests compare qinfer's logits with transformers' on these files.
The GGUF layout follows llama.cpp's converter (REFERENCE §5): architecture
"llama", HF q_proj/k_proj un-permuted back to the adjacent-pair RoPE layout,
Mixtral experts merged into 3-D tensors (or, on request, the older per-expert
2-D tensors), router and norms in F32. A minimal SPM vocabulary (unk/bos/eos,
the 256 byte tokens, filler pieces) makes the files loadable by llama.cpp too;
the tests feed token ids directly, so its contents do not matter.
"""
import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf import quants as gq
from transformers import MistralConfig, MistralForCausalLM, MixtralConfig, MixtralForCausalLM


def tiny_mistral(seed=0, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden=128, vocab=320,
                 sliding_window=None, rope_theta=10000.0, tied=False, init_std=0.02):
    torch.manual_seed(seed)
    cfg = MistralConfig(vocab_size=vocab, hidden_size=dim, intermediate_size=hidden,
                        num_hidden_layers=n_layers, num_attention_heads=n_heads,
                        num_key_value_heads=n_kv_heads, head_dim=dim // n_heads,
                        max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=rope_theta,
                        sliding_window=sliding_window, tie_word_embeddings=tied,
                        initializer_range=init_std, attn_implementation="eager")
    return _randomize_norms(MistralForCausalLM(cfg).eval(), seed)


def tiny_mixtral(seed=0, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden=64, vocab=320,
                 n_experts=8, top_k=2, rope_theta=1e6, init_std=0.02):
    torch.manual_seed(seed)
    cfg = MixtralConfig(vocab_size=vocab, hidden_size=dim, intermediate_size=hidden,
                        num_hidden_layers=n_layers, num_attention_heads=n_heads,
                        num_key_value_heads=n_kv_heads, head_dim=dim // n_heads,
                        max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=rope_theta,
                        num_local_experts=n_experts, num_experts_per_tok=top_k,
                        initializer_range=init_std, attn_implementation="eager")
    return _randomize_norms(MixtralForCausalLM(cfg).eval(), seed)


def _randomize_norms(model, seed):
    # HF initialises norm weights to 1; random ones make a missing norm visible.
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
    return model


def hf_logits(model, ids):
    """transformers' float32 logits [len(ids), vocab] for one sequence."""
    with torch.no_grad():
        return model(torch.tensor([list(ids)])).logits[0].float().numpy()


def _unpermute(w, n_head):
    # HF rotate-half layout -> adjacent pairs (llama.cpp's LlamaModel.permute).
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _vocab(w, n_vocab):
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"▁t{i}" for i in range(n_vocab - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (n_vocab - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens[:n_vocab])
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(n_vocab - 259)])
    w.add_token_types(types[:n_vocab])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def _encode(arr, ttype):
    """numpy float32 (out, in[, ...]) -> (array to write, raw_dtype) for GGUFWriter."""
    if ttype == "F32" or arr.ndim == 1:
        return arr.astype(np.float32), None
    if ttype == "F16":
        return arr.astype(np.float16), None
    qt = getattr(GGMLQuantizationType, ttype)
    return gq.quantize(arr.astype(np.float32), qt), qt


def write_gguf(model, path, ttype="F32", merged_experts=True, sliding_window_key=True,
               extra_kv=None, drop=(), out_type=None):
    """Write `model` (a tiny_mistral / tiny_mixtral) as GGUF. ttype: "F32", "F16",
    or a type gguf-py can quantize (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1). out_type
    overrides the type of output.weight. `drop` names GGUF tensors to omit (for
    bad-file tests); `extra_kv` {key: value} overrides metadata."""
    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    n_head, n_kv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    moe = hasattr(cfg, "num_local_experts")
    w = GGUFWriter(str(path), "llama")
    w.add_name("tiny-mixtral" if moe else "tiny-mistral")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type({"F32": 0, "F16": 1, "Q8_0": 7, "Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q5_1": 9}[ttype])
    if moe:
        w.add_expert_count(cfg.num_local_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
    if getattr(cfg, "sliding_window", None) and sliding_window_key:
        w.add_uint32("llama.attention.sliding_window", cfg.sliding_window)
    for k, v in (extra_kv or {}).items():
        if isinstance(v, str):
            w.add_string(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        else:
            w.add_uint32(k, v)
    _vocab(w, cfg.vocab_size)

    def put(name, arr, t=ttype):
        if name in drop:
            return
        data, raw = _encode(arr, t)
        w.add_tensor(name, data, raw_dtype=raw)

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        put(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        put(b + "attn_q.weight", _unpermute(sd[p + "self_attn.q_proj.weight"], n_head))
        put(b + "attn_k.weight", _unpermute(sd[p + "self_attn.k_proj.weight"], n_kv))
        put(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        put(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        put(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        if moe:
            put(b + "ffn_gate_inp.weight", sd[p + "mlp.gate.weight"], "F32")
            ff = cfg.intermediate_size
            gate_up = sd[p + "mlp.experts.gate_up_proj"]          # [E, 2*ff, dim]: gate then up
            gate, up, down = gate_up[:, :ff], gate_up[:, ff:], sd[p + "mlp.experts.down_proj"]
            if merged_experts:
                put(b + "ffn_gate_exps.weight", gate)
                put(b + "ffn_up_exps.weight", up)
                put(b + "ffn_down_exps.weight", down)
            else:
                for e in range(cfg.num_local_experts):
                    put(f"{b}ffn_gate.{e}.weight", gate[e])
                    put(f"{b}ffn_up.{e}.weight", up[e])
                    put(f"{b}ffn_down.{e}.weight", down[e])
        else:
            put(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
            put(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
            put(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    put("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        put("output.weight", sd["lm_head.weight"], out_type or ttype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path



def make_decisive(model, seed=0):
    """Give an untrained model clear top-2 logit gaps, without training.

    Random-init models have near-tied logits, so greedy decoding flips on
    rounding noise (REFERENCE §12). Here the output matrix becomes a permutation
    of the token embeddings (output row perm[c] = embedding of c), so the
    residual stream, dominated by the current token's embedding, scores token
    perm[c] far above the rest while every layer still perturbs the logits.
    Embeddings are scaled up 20x so that (as in trained models) they are not
    swamped by the layers' random outputs; the output rows are scaled so the
    winning logit is about 5 above the others. Returns the permutation."""
    emb = model.model.embed_tokens.weight
    perm = np.random.default_rng(seed).permutation(emb.shape[0])
    with torch.no_grad():
        emb.mul_(20.0)
        # After the final RMSNorm the state has per-element RMS ~1, i.e. it is
        # about emb[c] / rms(emb[c]); dotting with emb[c] * scale gives
        # scale * |emb[c]| * sqrt(dim). Choose scale for a winning logit of 5.
        rms = emb.pow(2).mean().sqrt()
        scale = 5.0 / (rms * emb.shape[1])
        model.lm_head.weight.copy_(emb[torch.tensor(np.argsort(perm))] * scale)
    return perm
