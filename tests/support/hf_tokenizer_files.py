"""Hugging Face tokenizer.json files made by the `tokenizers` library from a
real tekken vocabulary cut to its first n ranks: transformers' TikTokenConverter
with tekken's pre-tokenizer (what Mistral's HF repos of tekken models ship), or
the same vocabulary and merges behind GPT-2's ByteLevel pre-tokenizer."""
import base64
import json


def tiktoken_file(tekken_path, n, out_path):
    """The first `n` ranks of a tekken.json in tiktoken's "base64 rank" line format."""
    with open(tekken_path, encoding="utf-8") as f:
        data = json.load(f)
    with open(out_path, "w", encoding="ascii") as f:
        for e in data["vocab"][:n]:
            f.write(f"{e['token_bytes']} {e['rank']}\n")
    return data["config"]["pattern"]


def hf_tekken_tokenizer(tekken_path, n, specials, tmp_dir):
    """tokenizers.Tokenizer with tekken's pattern; `specials` appended after the n tokens."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab_file = str(tmp_dir / "tekken.tiktoken")
    pattern = tiktoken_file(tekken_path, n, vocab_file)
    return TikTokenConverter(vocab_file=vocab_file, pattern=pattern, extra_special_tokens=specials).converted()


def hf_gpt2_tokenizer(tekken_path, n, specials, tmp_dir):
    """The same vocabulary and merges with GPT-2's ByteLevel pre-tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab_file = str(tmp_dir / "gpt2.tiktoken")
    tiktoken_file(tekken_path, n, vocab_file)
    vocab, merges = TikTokenConverter(vocab_file=vocab_file).extract_vocab_merges_from_model(vocab_file)
    tok = Tokenizer(BPE(vocab, merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    return tok
