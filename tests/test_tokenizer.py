"""The sentencepiece tokenizer rebuilt from GGUF metadata equals sentencepiece
(the oracle; REFERENCE §12), and decoding inverts encoding. llama.cpp's parity
on the same vocabularies, written by the converter, is in test_vocab.py."""
import functools
import glob
import os

import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from multilingual import TEXT
from qinfer.convert.spm_metadata import spm_metadata
from qinfer.tokenizer import from_gguf
from tiny_checkpoints import demo_tokenizer_bytes



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


@functools.lru_cache(maxsize=None)   # parsed once per file, not per hypothesis example
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
