"""Tekken vocabularies: the GGUF metadata the converter writes for Mistral's
tekken.json files tokenizes in qinfer's BPE tokenizer and in llama.cpp exactly
as mistral-common's Tekkenizer (the oracle) does, and decodes back to the text."""
import base64
import glob
import json
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mistral_common.tokens.tokenizers.base import TokenizerVersion
from mistral_common.tokens.tokenizers.tekken import Tekkenizer

from multilingual import MORE_TEXT, TEXT
from qinfer.convert.sources import Member
from qinfer.convert.vocab import LEGACY_TEKKEN_SPECIALS, tekken_metadata, vocab_metadata
from qinfer.errors import FormatError, UnsupportedError
from qinfer.generation_text import stream_decoder
from qinfer.tokenizer import from_gguf
from qinfer.tokenizer.pretokenize import PATTERNS, split_words
from vocab_gguf import as_metadata, gguf_metadata, write_vocab_gguf


def _tekken_files():
    import mistral_common
    data = os.path.join(os.path.dirname(mistral_common.__file__), "data")
    return {os.path.basename(f): f for f in sorted(glob.glob(os.path.join(data, "tekken*.json")))}


FILES = _tekken_files()
LINES = [TEXT, MORE_TEXT, *TEXT.split("\n"), *MORE_TEXT.split("\n"), "", " ", "  ", "\n", "\n\n", "\t"]


class Vocab:
    """One tekken file: the oracle, the converter's metadata, its GGUF and our tokenizer."""

    def __init__(self, path, tmp):
        self.oracle = Tekkenizer.from_file(path)
        self.meta = vocab_metadata(Member(os.path.basename(path), path, 0, os.path.getsize(path)),
                                   self.oracle.n_words, "test")
        self.gguf = write_vocab_gguf(tmp / "vocab.gguf", self.meta)
        # the runtime reads the metadata back from the file (test_vocab loads whole
        # converted models); here the same keys straight from the dict, to save time
        self.tok = from_gguf(as_metadata(self.meta))

    def specials(self):
        return [t["token_str"] for t in self.oracle._all_special_tokens]

    def expected_with_specials(self, text):
        """The oracle's ids when special-token strings are parsed: Tekkenizer encodes
        plain text only, so cut the strings out (longest first) and use their ids."""
        names = sorted(self.specials(), key=len, reverse=True)
        ids = []
        for k, part in enumerate(re.split("(" + "|".join(map(re.escape, names)) + ")", text)):
            if k % 2:
                ids.append(self.oracle.get_special_token(part))
            elif part:
                ids.extend(self.oracle.encode(part, bos=False, eos=False))
        return ids


@pytest.fixture(scope="module", params=sorted(FILES))
def vocab(request, tmp_path_factory):
    return Vocab(FILES[request.param], tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def llama(vocab):
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(vocab.gguf, vocab_only=True, verbose=False)


def test_metadata_layout_is_llamacpps(vocab):
    m, o = vocab.meta, vocab.oracle
    assert (m["model"], m["pre"]) == ("gpt2", "tekken")
    assert len(m["tokens"]) == o.n_words == 131072
    n_special = o.num_special_tokens
    assert m["tokens"][:n_special] == vocab.specials()
    assert set(m["types"][:n_special]) == {3} and set(m["types"][n_special:]) == {1}
    assert (m["bos"], m["eos"], m["unk"], m["pad"]) == (o.bos_id, o.eos_id, o.unk_id, o.pad_id)
    # byte-level spelling: " the" is "Ġthe"; every token's bytes are the oracle's
    for i in (n_special + 32, n_special + 300, n_special + 5000, o.n_words - 1):
        assert vocab.tok.token_bytes(i) == o.id_to_byte_piece(i)
    assert vocab.tok.token_bytes(o.encode(" the", bos=False, eos=False)[0]) == b" the"


def test_encode_equals_mistral_common(vocab):
    for text in LINES:
        ref = vocab.oracle.encode(text, bos=False, eos=False)
        assert vocab.tok.encode(text, add_bos=False) == ref, repr(text)
        assert vocab.tok.encode(text) == [vocab.oracle.bos_id] + ref
        assert vocab.tok.decode(ref) == vocab.oracle.decode(ref) == text


def test_special_token_strings(vocab):
    # every special token of the file (20 named, 980 <SPECIAL_n> fillers), glued and spaced
    text = " ".join(vocab.specials()) + "[INST]hi[/INST]<s></s>" + TEXT + "<SPECIAL_999>x"
    # not parsed: all plain text, exactly as the oracle encodes it
    assert vocab.tok.encode(text, add_bos=False) == vocab.oracle.encode(text, bos=False, eos=False)
    ids = vocab.tok.encode(text, add_bos=False, parse_special=True)
    assert ids == vocab.expected_with_specials(text)
    assert vocab.tok.decode(ids, special=True) == text
    # decoding drops control tokens unless asked, as the oracle's IGNORE policy does
    assert vocab.tok.decode(ids) == vocab.oracle.decode(ids)


def test_llamacpp_tokenizes_like_mistral_common(vocab, llama):
    for text in LINES:
        ref = vocab.oracle.encode(text, bos=False, eos=False)
        assert llama.tokenize(text.encode(), add_bos=False, special=False) == ref, repr(text)
    text = " ".join(vocab.specials()) + MORE_TEXT + "".join(vocab.specials()[:20])
    assert llama.tokenize(text.encode(), add_bos=True, special=True) == \
        [vocab.oracle.bos_id] + vocab.expected_with_specials(text)
    ids = vocab.oracle.encode(TEXT, bos=True, eos=False)
    assert llama.detokenize(ids) == TEXT.encode()


def test_long_word(vocab):
    # one 20k-character pre-token (never seen, so not cached): the heap merge stays
    # n log n and equals tiktoken
    text = "ab" * 5000 + "xyz" * 3000 + "é" * 1000
    assert len(split_words("tekken", text)) == 1
    assert vocab.tok.encode(text, add_bos=False) == vocab.oracle.encode(text, bos=False, eos=False)


# Code points unassigned in this Python's Unicode tables (Cn; 3.11 has Unicode
# 14.0) are left out: tiktoken's newer tables give some of them a letter or
# mark category, so the pre-tokenizer splits them differently (a documented
# limitation of qinfer/tokenizer/pretokenize.py, found here with U+13440, a
# Unicode 15 mark; newer Pythons carry newer tables).
ASSIGNED = st.characters(blacklist_categories=("Cs", "Cn"))
TEXTS = st.text(alphabet=ASSIGNED, max_size=80)


@settings(max_examples=60, deadline=None)
@given(text=TEXTS)
def test_random_text_roundtrip_and_incremental_decode(vocab, text):
    ids = vocab.tok.encode(text, add_bos=False)
    assert ids == vocab.oracle.encode(text, bos=False, eos=False)
    assert vocab.tok.decode(ids) == text
    dec = stream_decoder(vocab.tok, [vocab.oracle.bos_id])
    pieces = [dec.feed(i) for i in ids]
    # a piece never ends inside a character: byte tokens of one character are held
    assert all("\ufffd" not in p for p in pieces) or "\ufffd" in text
    assert "".join(pieces) + dec.flush() == text


# special-token strings (the 20 named ones and a few fillers) mixed into random text
SPECIAL_STRINGS = [*LEGACY_TEKKEN_SPECIALS, "<SPECIAL_20>", "<SPECIAL_500>", "<SPECIAL_999>"]
MIXED = st.lists(st.one_of(st.text(alphabet=ASSIGNED, max_size=12), st.sampled_from(SPECIAL_STRINGS)),
                 max_size=8).map("".join)


@settings(max_examples=40, deadline=None)
@given(text=MIXED)
def test_random_text_with_special_strings(vocab, text):
    ids = vocab.tok.encode(text, add_bos=False, parse_special=True)
    assert ids == vocab.expected_with_specials(text)
    assert vocab.tok.decode(ids, special=True) == text
    assert vocab.tok.encode(text, add_bos=False) == vocab.oracle.encode(text, bos=False, eos=False)


def test_character_split_across_byte_tokens_is_emitted_whole(vocab):
    # "🦙" is 4 bytes that tekken spells as several tokens; nothing shows until the last
    ids = vocab.oracle.encode("🦙", bos=False, eos=False)
    assert len(ids) > 1
    dec = stream_decoder(vocab.tok)
    assert [dec.feed(i) for i in ids] == [""] * (len(ids) - 1) + ["🦙"]


def test_vocab_cut_to_the_models_embedding_count(tmp_path):
    path = FILES["tekken_240718.json"]
    data = json.load(open(path, encoding="utf-8"))
    n_vocab = 6000
    meta = tekken_metadata(data, n_vocab, "test")
    oracle = Tekkenizer(data["vocab"], list(Tekkenizer.DEPRECATED_SPECIAL_TOKENS), data["config"]["pattern"],
                        n_vocab, data["config"]["default_num_special_tokens"], TokenizerVersion.v3)
    assert len(meta["tokens"]) == n_vocab
    path = write_vocab_gguf(tmp_path / "cut.gguf", meta)
    tok = from_gguf(gguf_metadata(path))
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    for text in (TEXT, MORE_TEXT):
        ids = tok.encode(text, add_bos=False)
        assert ids == oracle.encode(text, bos=False, eos=False) and max(ids) < n_vocab
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == ids
    # a model with more embeddings than the file's default: UNUSED padding, same ids
    small = _small_tekken()
    n = small["config"]["default_vocab_size"]
    meta = tekken_metadata(small, n + 8, "test")
    assert meta["tokens"][n:] == [f"[PAD{i}]" for i in range(n, n + 8)] and meta["types"][n:] == [5] * 8
    padded = from_gguf(as_metadata(meta))
    assert padded.encode(TEXT) == from_gguf(as_metadata(tekken_metadata(small, n, "test"))).encode(TEXT)


def _tekken_member(tmp_path, data, name="tekken.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data), encoding="utf-8")
    return Member(name, str(p), 0, p.stat().st_size)


def _small_tekken(n=300):
    cfg = {"pattern": json.load(open(FILES["tekken_240718.json"]))["config"]["pattern"],
           "num_vocab_tokens": n, "default_vocab_size": n + 20, "default_num_special_tokens": 20,
           "version": "v3"}
    vocab = [{"rank": i, "token_bytes": base64.b64encode(bytes([i])).decode(), "token_str": None}
             for i in range(256)]
    words = [b"th", b"the", b" the", b"he", b"ll", b"llo", b"he" + b"llo"][: n - 256]
    vocab += [{"rank": 256 + i, "token_bytes": base64.b64encode(w).decode(), "token_str": None}
              for i, w in enumerate(words)]
    cfg["num_vocab_tokens"] = len(vocab)
    cfg["default_vocab_size"] = len(vocab) + 20
    return {"config": cfg, "vocab": vocab}


def test_small_file_equals_tiktoken(tmp_path):
    data = _small_tekken()
    meta = vocab_metadata(_tekken_member(tmp_path, data), data["config"]["default_vocab_size"], "ck")
    oracle = Tekkenizer(data["vocab"], list(Tekkenizer.DEPRECATED_SPECIAL_TOKENS), data["config"]["pattern"],
                        data["config"]["default_vocab_size"], 20, TokenizerVersion.v3)
    tok = from_gguf(gguf_metadata(write_vocab_gguf(tmp_path / "small.gguf", meta)))
    for text in ("hello the theme, the hell", "thehello", TEXT):
        assert tok.encode(text, add_bos=False) == oracle.encode(text, bos=False, eos=False)
    assert "t h" in meta["merges"] and "Ġ the" in meta["merges"] and "he llo" in meta["merges"]


def test_bad_tekken_files(tmp_path):
    good = _small_tekken()
    n = good["config"]["default_vocab_size"]

    def fails(data, exc, match, n_vocab=n):
        with pytest.raises(exc, match=match):
            vocab_metadata(_tekken_member(tmp_path, data), n_vocab, "ck")

    bad = json.loads(json.dumps(good))
    bad["config"]["pattern"] = r"\s+|\S+"
    fails(bad, UnsupportedError, "tekken.json: tekken pre-tokenizer pattern differs")
    bad = json.loads(json.dumps(good))
    del bad["config"]["default_vocab_size"]
    fails(bad, FormatError, "not a tekken tokenizer file")
    bad = json.loads(json.dumps(good))
    bad["vocab"][260]["token_bytes"] = "***"
    fails(bad, FormatError, "ck:tekken.json: malformed vocab entry 260")
    bad = json.loads(json.dumps(good))
    bad["vocab"][5]["token_bytes"] = base64.b64encode(b"zz").decode()
    fails(bad, FormatError, "does not start with the 256 bytes")
    bad = json.loads(json.dumps(good))
    bad["vocab"].append({"rank": len(bad["vocab"]), "token_bytes": base64.b64encode(b"q\x01\x02").decode(),
                         "token_str": None})
    bad["config"]["default_vocab_size"] += 1
    fails(bad, FormatError, "cannot be made by merging", n + 1)
    fails(good, FormatError, "do not fit", 200)
    member = _tekken_member(tmp_path, good)
    with open(member.path, "ab") as f:
        f.write(b"}")
    with pytest.raises(FormatError, match="ck:tekken.json: not valid JSON"):
        vocab_metadata(Member(member.name, member.path, 0, os.path.getsize(member.path)), n, "ck")


def test_vocabularies_the_runtime_cannot_run_are_refused():
    md = as_metadata(tekken_metadata(_small_tekken(), 300, "test"))
    with pytest.raises(FormatError, match="no tokenizer.ggml.merges"):
        from_gguf({k: v for k, v in md.items() if k != "tokenizer.ggml.merges"})
    with pytest.raises(UnsupportedError, match="pre-tokenizer 'llama-bpe' is not supported"):
        from_gguf({**md, "tokenizer.ggml.pre": "llama-bpe"})
    with pytest.raises(UnsupportedError, match="tokenizer model 'bert'"):
        from_gguf({**md, "tokenizer.ggml.model": "bert"})


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=40)
       | st.text(alphabet=" \t\r\n\x0b\x0c\x1c\x85\xa0\u2028\u3000aZ9é.'/", max_size=30))
def test_pre_tokenizer_equals_the_regex_module(text):
    # Python's re with \p classes expanded from unicodedata splits as the `regex`
    # module runs the original patterns (\s as Unicode White_Space in both). Code
    # points unassigned in Python's Unicode 14 tables (Cn) are left out: newer
    # tables, as the regex module's, may give them a letter category.
    regex = pytest.importorskip("regex")
    for pre, pattern in PATTERNS.items():
        assert split_words(pre, text) == regex.findall(pattern, text), pre


def test_file_with_its_own_special_token_list(tmp_path):
    # newer tekken files (v11+) list their special tokens; the rest are <SPECIAL_n> fillers
    data = _small_tekken()
    named = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[THINK]", "[/THINK]", "<pad>"]
    data["special_tokens"] = [{"rank": i, "token_str": t, "is_control": True} for i, t in enumerate(named)]
    data["config"]["version"] = "v13"
    member = _tekken_member(tmp_path, data, "tekken_v13.json")
    oracle = Tekkenizer.from_file(member.path)
    meta = vocab_metadata(member, oracle.n_words, "ck")
    assert meta["tokens"][:20] == [oracle.id_to_piece(i) for i in range(20)]
    assert (meta["bos"], meta["eos"], meta["pad"]) == (oracle.bos_id, oracle.eos_id, oracle.pad_id)
    tok = from_gguf(as_metadata(meta))
    text = "[THINK]the hello[/THINK]<SPECIAL_12> hello"
    assert tok.encode(text, add_bos=False, parse_special=True) == [
        5, *oracle.encode("the hello", bos=False, eos=False), 6, 12, *oracle.encode(" hello", bos=False, eos=False)]
    del data["special_tokens"]
    with pytest.raises(FormatError, match="version v13 needs a special_tokens list"):
        vocab_metadata(_tekken_member(tmp_path, data), oracle.n_words, "ck")
