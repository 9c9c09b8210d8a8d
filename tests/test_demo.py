"""The bundled demo model (qinfer/data/demo-mistral.tar) and `qinfer demo`."""
import json
import os
import tarfile

import numpy as np
import pytest

from qinfer.cli.demo import DEMO_TARBALL, bundled

TAR = bundled(DEMO_TARBALL)
CONTROL = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]


def members():
    with tarfile.open(TAR) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def raw():
    """(params.json, float32 tensors, tokenizer.model bytes) of the tarball."""
    import torch
    from safetensors.torch import load

    files = members()
    # bf16 tensors, which numpy cannot hold: read through torch
    tensors = {k: v.to(torch.float32).numpy() for k, v in load(files["consolidated.safetensors"]).items()}
    return json.loads(files["params.json"]), tensors, files["tokenizer.model"]


def test_tarball_is_a_small_raw_mistral_checkpoint(raw):
    params, tensors, _ = raw
    assert os.path.getsize(TAR) < 15e6
    assert set(members()) == {"params.json", "consolidated.safetensors", "tokenizer.model"}
    dim, hd, nh, nkv, ff = (params[k] for k in ("dim", "head_dim", "n_heads", "n_kv_heads", "hidden_dim"))
    assert nkv < nh   # grouped-query attention, as Mistral 7B
    expect = {"tok_embeddings.weight": (params["vocab_size"], dim), "norm.weight": (dim,),
              "output.weight": (params["vocab_size"], dim)}
    for i in range(params["n_layers"]):
        p = f"layers.{i}."
        expect.update({p + "attention.wq.weight": (nh * hd, dim), p + "attention.wk.weight": (nkv * hd, dim),
                       p + "attention.wv.weight": (nkv * hd, dim), p + "attention.wo.weight": (dim, nh * hd),
                       p + "attention_norm.weight": (dim,), p + "ffn_norm.weight": (dim,),
                       p + "feed_forward.w1.weight": (ff, dim), p + "feed_forward.w2.weight": (dim, ff),
                       p + "feed_forward.w3.weight": (ff, dim)})
    assert {k: v.shape for k, v in tensors.items()} == expect
    assert all(np.isfinite(v).all() for v in tensors.values())
    # every matrix row is whole 256-value K-quant super-blocks: Q4_K_M really uses K-quants
    assert dim % 256 == 0 and ff % 256 == 0


def test_tokenizer_has_byte_fallback_and_mistral_control_tokens(raw):
    import sentencepiece as spm

    params, _, model_bytes = raw
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    assert sp.get_piece_size() == params["vocab_size"]
    assert [sp.id_to_piece(i) for i in range(5)] == CONTROL
    assert all(sp.is_control(i) for i in (1, 2, 3, 4)) and sp.is_unknown(0)
    assert sp.id_to_piece(5) == "<0x00>" and sp.is_byte(5) and sp.id_to_piece(260) == "<0xFF>"
    text = "Return the number of items.\nΣ and 😀 are bytes."
    assert sp.decode(sp.encode(text)) == text


def _hf_from_raw(params, tensors):
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


@pytest.fixture(scope="module")
def f32_gguf(tmp_path_factory):
    import qinfer

    out = tmp_path_factory.mktemp("demo") / "demo-F32.gguf"
    qinfer.convert(TAR, str(out), type="F32")
    return str(out)


SAMPLE = ("Return a new list containing all items from the iterable in ascending order.\n\n"
          "    >>> sorted([3, 1, 2])  # code, spaces, digits\n"
          "Ünïcödé, 中文, emoji 😀 and [INST] written as text.")


def test_converted_vocabulary_tokenizes_as_sentencepiece(raw, f32_gguf):
    """The converter accepts the demo's tokenizer.model, and qinfer's and
    llama.cpp's tokenizers rebuilt from the GGUF give sentencepiece's ids."""
    import sentencepiece as spm

    import qinfer

    llama_cpp = pytest.importorskip("llama_cpp")
    sp = spm.SentencePieceProcessor(model_proto=raw[2])
    expect = [1] + sp.encode(SAMPLE)
    assert qinfer.load(f32_gguf, n_ctx=64).tokenize(SAMPLE) == expect
    llm = llama_cpp.Llama(f32_gguf, vocab_only=True, verbose=False)
    assert llm.tokenize(SAMPLE.encode(), add_bos=True, special=False) == expect


def test_weights_are_in_mistral_native_layout(raw, f32_gguf):
    """llama.cpp runs the GGUF converted from the tarball with interleaved-pair
    RoPE; transformers runs the same weights in its own layout. Equal logits
    mean the tarball holds q/k the way Mistral's own tarballs do."""
    import sentencepiece as spm
    import torch

    llama_cpp = pytest.importorskip("llama_cpp")
    params, tensors, model_bytes = raw
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    ids = [1] + sp.encode("Return a new list containing all items from the iterable in ascending order.")
    with torch.no_grad():
        ref = _hf_from_raw(params, tensors)(torch.tensor([ids])).logits[0].numpy()
    # F32 KV cache (type 0): llama.cpp's default F16 cache alone moves logits by ~2e-3
    llm = llama_cpp.Llama(f32_gguf, n_ctx=128, n_threads=2, logits_all=True, verbose=False,
                          type_k=0, type_v=0)
    llm.eval(ids)
    got = np.array(llm.scores[:len(ids)], dtype=np.float32)
    # Same float32 weights on both sides, only summation order differs: measured
    # 7e-6 (logits up to 13); q/k in the wrong layout gives differences of ~4.
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert (got.argmax(1) == ref.argmax(1)).all()
