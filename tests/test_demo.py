"""The bundled demo model (qinfer/data/demo-mistral.tar) and `qinfer demo`."""
import os

import numpy as np
import pytest

from demo_model import TAR, hf_from_raw, members, raw_checkpoint

CONTROL = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]


@pytest.fixture(scope="module")
def raw():
    """(params.json, float32 tensors, tokenizer.model bytes) of the tarball."""
    return raw_checkpoint()


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
        ref = hf_from_raw(params, tensors)(torch.tensor([ids])).logits[0].numpy()
    # F32 KV cache (type 0): llama.cpp's default F16 cache alone moves logits by ~2e-3
    llm = llama_cpp.Llama(f32_gguf, n_ctx=128, n_threads=2, logits_all=True, verbose=False,
                          type_k=0, type_v=0)
    llm.eval(ids)
    got = np.array(llm.scores[:len(ids)], dtype=np.float32)
    # Same float32 weights on both sides, only summation order differs: measured
    # 7e-6 (logits up to 13); q/k in the wrong layout gives differences of ~4.
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert (got.argmax(1) == ref.argmax(1)).all()
