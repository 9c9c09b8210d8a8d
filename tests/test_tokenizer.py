"""The sentencepiece tokenizer rebuilt from GGUF metadata equals sentencepiece
(the oracle; REFERENCE §12) and llama.cpp, and decoding inverts encoding."""
import glob
import os

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from qinfer.convert.spm_metadata import spm_metadata
from qinfer.tokenizer import from_gguf
from tiny_checkpoints import demo_tokenizer_bytes

TEXT = ("Hello world! The quick brown fox.  Ça va très bien, merci. Grüße aus München, "
        "Führer-schein. 你好，世界！机器学习。 مرحبا بالعالم. def f(x):\n\treturn x ** 2  # 🙂🚀👍🏽\n\n"
        "    indented    runs     of spaces\t\ttabs\r\n<s> [INST] not special [/INST] </s> end")


def _files():
    import mistral_common
    data = os.path.join(os.path.dirname(mistral_common.__file__), "data")
    return sorted(glob.glob(os.path.join(data, "*.model*")))


def _metadata(model_bytes):
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(model_bytes)
    v = spm_metadata(model_bytes, sp.GetPieceSize(), "test")
    md = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": v["tokens"],
          "tokenizer.ggml.scores": v["scores"], "tokenizer.ggml.token_type": v["types"],
          "tokenizer.ggml.bos_token_id": v["bos"], "tokenizer.ggml.eos_token_id": v["eos"],
          "tokenizer.ggml.unknown_token_id": v["unk"]}
    return sp, md


SOURCES = {os.path.basename(f): f for f in _files()}


def _load(name):
    data = demo_tokenizer_bytes() if name == "demo" else open(SOURCES[name], "rb").read()
    return _metadata(data)


@pytest.mark.parametrize("name", ["demo", *SOURCES])
def test_encode_equals_sentencepiece(name):
    sp, md = _load(name)
    tok = from_gguf(md)
    for line in [TEXT, *TEXT.split("\n"), "", " ", "  ", "\t", "\n\n"]:
        assert tok.encode(line, add_bos=False) == sp.encode(line), repr(line)
        assert tok.encode(line) == [sp.bos_id()] + sp.encode(line)
    assert tok.decode(tok.encode(TEXT)) == TEXT


@pytest.mark.parametrize("name", ["demo", *SOURCES])
def test_special_tokens_only_when_asked(name):
    sp, md = _load(name)
    tok = from_gguf(md)
    ids = tok.encode("[INST] hi [/INST]", add_bos=False, parse_special=True)
    controls = [i for i, t in enumerate(md["tokenizer.ggml.tokens"]) if t in ("[INST]", "[/INST]")]
    if controls:
        assert set(controls) <= set(ids)
    assert tok.encode("[INST] hi", add_bos=False) == sp.encode("[INST] hi")


@settings(max_examples=40)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                    max_size=60))
def test_roundtrip_and_parity_on_random_text(text):
    sp, md = _load("tokenizer.model.v1") if "tokenizer.model.v1" in SOURCES else _load("demo")
    tok = from_gguf(md)
    ids = tok.encode(text, add_bos=False)
    assert ids == sp.encode(text)
    assert tok.decode(ids) == sp.decode(ids)


@pytest.mark.parametrize("name", ["demo", *SOURCES])
def test_gguf_vocab_tokenizes_in_llamacpp_like_sentencepiece(name, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    import gguf

    sp, md = _load(name)
    path = str(tmp_path / "vocab.gguf")
    w = gguf.GGUFWriter(path, "llama")
    for k, v in (("block_count", 1), ("context_length", 64), ("embedding_length", 64),
                 ("feed_forward_length", 64), ("head_count", 4)):
        getattr(w, f"add_{k}")(v)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(md["tokenizer.ggml.tokens"])
    w.add_token_scores(md["tokenizer.ggml.scores"])
    w.add_token_types(md["tokenizer.ggml.token_type"])
    w.add_bos_token_id(md["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(md["tokenizer.ggml.eos_token_id"])
    w.add_unk_token_id(md["tokenizer.ggml.unknown_token_id"])
    w.add_tensor("token_embd.weight", np.zeros((len(md["tokenizer.ggml.tokens"]), 64), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    llm = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    for line in [TEXT, *TEXT.split("\n")]:
        assert llm.tokenize(line.encode(), add_bos=False, special=False) == sp.encode(line), repr(line)
