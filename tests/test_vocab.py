"""The converter's tokenizer metadata (convert/vocab.py) end to end: checkpoints
whose tokenizer is a real tekken.json or a Hugging Face tokenizer.json convert
to GGUF files that llama.cpp and qinfer tokenize exactly as the tokenizer's own
library does (mistral-common, `tokenizers`), with tokenizer_config.json's
special tokens, add_bos and chat template; other kinds are refused clearly."""
import glob
import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mistral_common.tokens.tokenizers.tekken import Tekkenizer

import qinfer
from cli import run_qinfer
from hf_to_gguf_f32 import tiny_mistral
from hf_tokenizer_files import hf_gpt2_tokenizer, hf_tekken_tokenizer
from multilingual import MORE_TEXT, TEXT
from qinfer.chat_template import render
from qinfer.convert.api import convert
from qinfer.convert.sources import Member
from qinfer.convert.vocab import vocab_metadata
from qinfer.errors import QinferError, UnsupportedError
from qinfer.generation import GenerationStats
from qinfer.gguf_file import GGUFFile
from qinfer.tokenizer import from_gguf
from tiny_checkpoints import demo_tokenizer_bytes, write_forms
from vocab_gguf import as_metadata, gguf_metadata, write_vocab_gguf

llama_cpp = pytest.importorskip("llama_cpp")

DATA = os.path.join(os.path.dirname(__import__("mistral_common").__file__), "data")
TEKKEN = os.path.join(DATA, "tekken_240911.json")
LINES = [TEXT, MORE_TEXT, *TEXT.split("\n"), *MORE_TEXT.split("\n")]
SPECIALS = ["<s>", "</s>", "[INST]", "[/INST]"]
TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST]{{ m['content'] }}"
            "[/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


def _member(path):
    return Member(os.path.basename(path), str(path), 0, os.path.getsize(path))


def _llama(path):
    return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)


# ---- a raw Mistral tarball with tekken.json ---------------------------------------

@pytest.fixture(scope="module")
def tekken_gguf(tmp_path_factory):
    root = tmp_path_factory.mktemp("tekken_ck")
    oracle = Tekkenizer.from_file(TEKKEN)
    # the model's embedding covers the vocabulary llama.cpp's converter keeps (131072 rows)
    model = tiny_mistral(vocab=oracle.n_words, dim=32, n_heads=2, n_kv_heads=1, hidden=64, n_layers=1,
                         tied=True)
    with open(TEKKEN, "rb") as f:
        forms = write_forms(model, str(root), {"tekken.json": f.read()})
    out = convert(forms["tar"], root / "tekken.gguf", type="F16")
    return oracle, out


def test_tekken_checkpoint_metadata(tekken_gguf):
    oracle, out = tekken_gguf
    md = GGUFFile(out).metadata
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "tekken"
    assert len(md["tokenizer.ggml.tokens"]) == md["llama.vocab_size"] == oracle.n_words
    assert len(md["tokenizer.ggml.merges"]) > oracle.n_words - oracle.num_special_tokens - 256
    assert (md["tokenizer.ggml.bos_token_id"], md["tokenizer.ggml.eos_token_id"],
            md["tokenizer.ggml.padding_token_id"]) == (oracle.bos_id, oracle.eos_id, oracle.pad_id)
    assert md["tokenizer.ggml.add_bos_token"] is True and md["tokenizer.ggml.add_eos_token"] is False


def test_tekken_checkpoint_tokenizes_like_mistral_common(tekken_gguf):
    oracle, out = tekken_gguf
    llm = _llama(out)
    model = qinfer.load(out, n_ctx=64)
    for text in LINES:
        ref = oracle.encode(text, bos=False, eos=False)
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == ref, repr(text)
        assert model.tokenize(text) == [oracle.bos_id] + ref, repr(text)
        assert model.detokenize(ref) == text
    text = "[INST]Bonjour ! 你好[/INST]"
    ids = [oracle.bos_id, 3, *oracle.encode("Bonjour ! 你好", bos=False, eos=False), 4]
    assert llm.tokenize(text.encode(), add_bos=True, special=True) == ids
    assert model.tokenizer.encode(text, add_bos=True, parse_special=True) == ids


def test_tekken_model_streams_what_its_ids_decode_to(tekken_gguf):
    oracle, out = tekken_gguf
    model = qinfer.load(out, n_ctx=64)
    stats = GenerationStats()
    pieces = list(model.generate("Grüße, 你好", max_tokens=24, temperature=1.0, top_k=0, top_p=1.0,
                                 min_p=0.0, seed=7, stop=(), stats=stats))
    assert stats.prompt_tokens == 1 + len(oracle.encode("Grüße, 你好", bos=False, eos=False))
    ids = [i for i in stats.completion_ids if i != oracle.eos_id]
    # streamed pieces put together are the full decode of the generated ids
    assert "".join(pieces) == model.detokenize(ids) == oracle.decode(ids)


# ---- Hugging Face folders with tokenizer.json ---------------------------------------

@pytest.fixture(scope="module")
def hf_tekken_ck(tmp_path_factory):
    """A tiny HF checkpoint whose tokenizer.json is tekken's first 2996 ranks plus 4
    special tokens (made by transformers' TikTokenConverter), with a chat template."""
    root = tmp_path_factory.mktemp("hf_ck")
    hf_tok = hf_tekken_tokenizer(TEKKEN, 2996, SPECIALS, root)
    config = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False,
              "chat_template": TEMPLATE}
    model = tiny_mistral(vocab=3000)
    forms = write_forms(model, str(root), {"tokenizer.json": hf_tok.to_str().encode(),
                                           "tokenizer_config.json": json.dumps(config).encode()})
    out = convert(forms["hf"], root / "hf.gguf", type="F16")
    return hf_tok, forms, out


def test_hf_tokenizer_json_converts_with_chat_template(hf_tekken_ck):
    hf_tok, forms, out = hf_tekken_ck
    md = GGUFFile(out).metadata
    assert (md["tokenizer.ggml.model"], md["tokenizer.ggml.pre"]) == ("gpt2", "tekken")
    assert md["tokenizer.chat_template"] == TEMPLATE
    assert md["tokenizer.ggml.bos_token_id"] == hf_tok.token_to_id("<s>")
    assert md["tokenizer.ggml.eos_token_id"] == hf_tok.token_to_id("</s>")
    assert list(md["tokenizer.ggml.token_type"][-4:]) == [3] * 4
    # the template lands in the runtime's chat prompt
    model = qinfer.load(out, n_ctx=64)
    assert render(model.metadata, [{"role": "user", "content": "hi"}]) == "<s>[INST]hi[/INST]"


def test_hf_tokenizer_json_ids_equal_tokenizers(hf_tekken_ck):
    hf_tok, forms, out = hf_tekken_ck
    llm = _llama(out)
    tok = qinfer.load(out, n_ctx=64).tokenizer
    for text in LINES:
        # `tokenizers` always matches its added tokens, like parse_special
        ref = hf_tok.encode(text, add_special_tokens=False).ids
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ref, repr(text)
        assert tok.encode(text, add_bos=False, parse_special=True) == ref, repr(text)
        assert tok.decode(ref, special=True) == hf_tok.decode(ref, skip_special_tokens=False) == text


def test_gpt2_byte_level_tokenizer_json(tmp_path):
    hf_tok = hf_gpt2_tokenizer(TEKKEN, 2996, SPECIALS, tmp_path)
    (tmp_path / "tokenizer.json").write_text(hf_tok.to_str(), encoding="utf-8")
    (tmp_path / "config.json").write_text(json.dumps({"bos_token_id": 2996, "eos_token_id": 2997}))
    files = {n: _member(tmp_path / n) for n in ("tokenizer.json", "config.json")}
    v = vocab_metadata(files["tokenizer.json"], 3000, "ck", files)
    assert (v["pre"], v["bos"], v["eos"]) == ("gpt-2", 2996, 2997)
    path = write_vocab_gguf(tmp_path / "gpt2.gguf", v)
    llm, tok = _llama(path), from_gguf(gguf_metadata(path))
    for text in LINES:
        ref = hf_tok.encode(text, add_special_tokens=False).ids
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ref, repr(text)
        assert tok.encode(text, add_bos=False, parse_special=True) == ref, repr(text)
        assert tok.decode(ref) == text.replace("<s>", "").replace("</s>", "").replace(
            "[INST]", "").replace("[/INST]", "")


def test_unsupported_tokenizer_json_kinds_are_refused(tmp_path, hf_tekken_ck):
    hf_tok, forms, _ = hf_tekken_ck
    good = json.loads(hf_tok.to_str())
    spm_like = {"model": {"type": "BPE", "byte_fallback": True, "vocab": {}, "merges": []},
                "pre_tokenizer": {"type": "Metaspace"}, "normalizer": None}
    wordpiece = {"model": {"type": "WordPiece", "vocab": {}}}
    other_split = json.loads(json.dumps(good))
    other_split["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\S+"
    cases = [(spm_like, "sentencepiece-style tokenizer.json"), (wordpiece, "'WordPiece' is not supported"),
             (other_split, "pre-tokenizer ['Split', 'ByteLevel'] is not supported")]
    for k, (data, match) in enumerate(cases):
        p = tmp_path / f"case{k}"
        p.mkdir()
        (p / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(UnsupportedError, match=re.escape(match)):
            vocab_metadata(_member(p / "tokenizer.json"), 3000, "ck")
    # the command line says it in one line, exit 1, nothing written
    bad = tmp_path / "bad_hf"
    bad.mkdir()
    for n in os.listdir(forms["hf"]):
        if n != "tokenizer.json":
            (bad / n).write_bytes(open(os.path.join(forms["hf"], n), "rb").read())
    (bad / "tokenizer.json").write_text(json.dumps(spm_like), encoding="utf-8")
    out = tmp_path / "out.gguf"
    r = run_qinfer("convert", bad, "-o", out, "-q", "--type", "F16")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "tokenizer.json: sentencepiece-style" in r.stderr and not out.exists()


# ---- sentencepiece files through the same entry point --------------------------------

def _spm_files():
    return {os.path.basename(f): f for f in sorted(glob.glob(os.path.join(DATA, "*.model.v[137]")))
            + sorted(glob.glob(os.path.join(DATA, "tokenizer.model.v1")))}


@pytest.mark.parametrize("name", ["demo", *sorted(_spm_files())])
def test_sentencepiece_files_tokenize_in_llamacpp_like_sentencepiece(name, tmp_path):
    import sentencepiece as spm

    if name == "demo":
        path = tmp_path / "tokenizer.model"
        path.write_bytes(demo_tokenizer_bytes())
    else:
        path = _spm_files()[name]
    sp = spm.SentencePieceProcessor(model_file=str(path))
    v = vocab_metadata(_member(path), sp.GetPieceSize() + 3, "ck")
    assert v["model"] == "llama" and v["tokens"][-1] == f"[PAD{sp.GetPieceSize() + 2}]"
    g = write_vocab_gguf(tmp_path / "spm.gguf", v)
    llm, tok = _llama(g), from_gguf(gguf_metadata(g))
    for text in LINES:
        ref = sp.encode(text)
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == ref, repr(text)
        assert tok.encode(text, add_bos=False) == ref, repr(text)
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == tok.encode(text) == [sp.bos_id()] + ref


def test_tokenizer_config_beside_a_sentencepiece_model(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(demo_tokenizer_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"add_bos_token": False, "add_eos_token": True, "add_prefix_space": False, "chat_template": "x",
         "eos_token": {"content": "</s>"}}))
    (tmp_path / "chat_template.jinja").write_text(TEMPLATE, encoding="utf-8")
    files = {n: _member(tmp_path / n) for n in os.listdir(tmp_path)}
    v = vocab_metadata(files["tokenizer.model"], 3000, "ck", files)
    assert (v["add_bos"], v["add_eos"], v["add_space_prefix"]) == (False, True, False)
    assert v["chat_template"] == TEMPLATE and v["tokens"][v["eos"]] == "</s>"
    g = write_vocab_gguf(tmp_path / "cfg.gguf", v)
    md = gguf_metadata(g)
    assert md["tokenizer.ggml.add_bos_token"] is False and md["tokenizer.chat_template"] == TEMPLATE
    tok = from_gguf(md)
    assert tok.encode("hello")[-1] == v["eos"] and tok.encode("hello")[0] != v["bos"]
    assert _llama(g).tokenize(b"hello", add_bos=True, special=False) == tok.encode("hello")


# ---- hostile JSON ---------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 400) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _mutate(data, doc):
    """`doc` with one value somewhere in it replaced by random JSON, or deleted."""
    doc = json.loads(json.dumps(doc))
    parent, key = None, None
    node = doc
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, data.draw(st.sampled_from(keys))
        node = node[key]
    if parent is None:
        return data.draw(JSON_VALUES)
    if data.draw(st.booleans()):
        parent[key] = data.draw(JSON_VALUES)
    else:
        del parent[key]
    return doc


@pytest.fixture(scope="module")
def small_json_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("small_json")
    hf = json.loads(hf_tekken_tokenizer(TEKKEN, 300, SPECIALS, root).to_str())
    with open(TEKKEN, encoding="utf-8") as f:
        tekken = json.load(f)
    cfg = dict(tekken["config"], default_vocab_size=320, num_vocab_tokens=300)
    return {"tokenizer.json": hf, "tekken.json": {"config": cfg, "vocab": tekken["vocab"][:300]}}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_tokenizer_files_convert_or_fail_clearly(small_json_files, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(small_json_files)))
    doc = _mutate(data, small_json_files[name])
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    try:
        v = vocab_metadata(_member(path), 320, "ck")
    except QinferError as exc:
        assert str(exc).startswith("ck:") and "\n" not in str(exc)
        return
    assert len(v["tokens"]) == len(v["types"]) == 320
    try:
        tok = from_gguf(as_metadata(v))
    except QinferError:
        return
    ids = tok.encode("Hello wörld 🙂 [INST]", parse_special=True)
    assert all(0 <= i < 320 for i in ids)


# ---- the converter's vocabulary equals llama.cpp's gguf-py MistralVocab -----------------

@pytest.mark.parametrize("name, as_name", [("tekken_240911.json", "tekken.json"),
                                           ("tokenizer.model.v1", "tokenizer.model.v1"),
                                           ("mistral_instruct_tokenizer_240323.model.v3", "tokenizer.model.v3"),
                                           ("mistral_instruct_tokenizer_241114.model.v7", "tokenizer.model.v7")])
def test_vocab_equals_gguf_py_mistral_vocab(name, as_name, tmp_path):
    from pathlib import Path

    from gguf.vocab import MistralVocab

    path = tmp_path / as_name
    if as_name == "tekken.json":
        # the real file cut to its first 7000 ranks (8000 tokens with the 1000 controls),
        # so that gguf-py's merge reconstruction takes a second, not ten
        with open(os.path.join(DATA, name), encoding="utf-8") as f:
            data = json.load(f)
        data["vocab"] = data["vocab"][:7000]
        data["config"].update(num_vocab_tokens=7000, default_vocab_size=8000)
        path.write_text(json.dumps(data), encoding="utf-8")
    else:
        path.write_bytes(open(os.path.join(DATA, name), "rb").read())
    ref = MistralVocab(Path(tmp_path))
    v = vocab_metadata(_member(path), ref.vocab_size, "ck")
    tokens = list(ref.all_tokens())
    assert v["model"] == ref.gguf_tokenizer_model
    assert v["tokens"] == [t.decode("utf-8") for t, _, _ in tokens]
    assert v["scores"] == [s for _, s, _ in tokens]
    assert v["types"] == [int(ty) for _, _, ty in tokens]
    assert (v["bos"], v["eos"], v["unk"]) == (ref.bos_id, ref.eos_id, ref.unk_id)
    if v["model"] == "gpt2":
        assert v["pad"] == ref.pad_id and v["merges"] == ref.extract_vocab_merges_from_model()


def test_nemo_style_tokenizer_json_gives_the_tekken_vocabulary(tmp_path):
    # Mistral's HF repos of tekken models ship transformers' conversion of tekken.json
    # (controls at ids 0..999, merges rebuilt): it must give the same GGUF vocabulary
    # as the tekken.json itself, and tokenize as the `tokenizers` library does.
    from tokenizers import Tokenizer
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    with open(TEKKEN, encoding="utf-8") as f:
        data = json.load(f)
    data["vocab"] = data["vocab"][:7000]   # cut, to keep the test fast
    data["config"].update(num_vocab_tokens=7000, default_vocab_size=8000)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "tekken.json").write_text(json.dumps(data), encoding="utf-8")
    convert_tekken_tokenizer(str(tmp_path / "src" / "tekken.json")).save_pretrained(tmp_path / "hf")
    files = {n: _member(tmp_path / "hf" / n) for n in os.listdir(tmp_path / "hf")}
    v = vocab_metadata(files["tokenizer.json"], 8000, "hf", files)
    ref = vocab_metadata(_member(tmp_path / "src" / "tekken.json"), 8000, "raw")
    for key in ("model", "pre", "tokens", "types", "merges", "bos", "eos", "unk", "pad"):
        assert v[key] == ref[key], key
    assert v["chat_template"] == (tmp_path / "hf" / "chat_template.jinja").read_text(encoding="utf-8")
    hf_tok = Tokenizer.from_file(str(tmp_path / "hf" / "tokenizer.json"))
    tok = from_gguf(as_metadata(v))
    for text in LINES:
        assert tok.encode(text, add_bos=False, parse_special=True) == \
            hf_tok.encode(text, add_special_tokens=False).ids, repr(text)
