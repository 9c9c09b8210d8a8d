"""Tokenizers rebuilt from GGUF metadata alone: sentencepiece-style vocabularies
(tokenizer.ggml.model "llama", spm.py) and byte-level BPE ones such as Mistral's
tekken files become ("gpt2", bpe.py), each equal to llama.cpp's tokenizer.

    tok = from_gguf(metadata)
    ids = tok.encode("text", add_bos=True, parse_special=False)
    text = tok.decode(ids)
"""
from ..errors import UnsupportedError
from .bpe import BpeTokenizer
from .spm import SpmTokenizer


def from_gguf(metadata):
    model = metadata.get("tokenizer.ggml.model")
    if model == "llama":
        return SpmTokenizer.from_metadata(metadata)
    if model == "gpt2":
        return BpeTokenizer.from_metadata(metadata)
    raise UnsupportedError(f"tokenizer model {model!r} is not supported (sentencepiece 'llama' and "
                           "byte-level BPE 'gpt2' are)")


__all__ = ["from_gguf", "BpeTokenizer", "SpmTokenizer"]
