"""A vocabulary-only GGUF (llama architecture, minimal hyperparameters) written
with the converter's own tokenizer writer, for llama.cpp's vocab_only loader
and qinfer's from_gguf."""
import gguf
import numpy as np

from qinfer.convert.vocab import write_vocab
from qinfer.gguf_file import GGUFFile


def write_vocab_gguf(path, vocab):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(8)
    w.add_head_count(1)
    w.add_layer_norm_rms_eps(1e-5)
    write_vocab(w, vocab)
    w.add_tensor("token_embd.weight", np.zeros((len(vocab["tokens"]), 8), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def gguf_metadata(path):
    f = GGUFFile(str(path))
    try:
        return dict(f.metadata)
    finally:
        f.close()


def as_metadata(vocab):
    """The GGUF metadata keys write_vocab would write for `vocab`, without a file."""
    md = {"tokenizer.ggml.model": vocab["model"], "tokenizer.ggml.pre": vocab["pre"],
          "tokenizer.ggml.tokens": vocab["tokens"], "tokenizer.ggml.token_type": vocab["types"],
          "tokenizer.ggml.add_bos_token": vocab.get("add_bos", True),
          "tokenizer.ggml.add_eos_token": vocab.get("add_eos", False)}
    for key, name in (("scores", "scores"), ("merges", "merges"), ("add_space_prefix", "add_space_prefix")):
        if key in vocab:
            md[f"tokenizer.ggml.{name}"] = vocab[key]
    for key, name in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                      ("pad", "padding_token_id")):
        if vocab.get(key, -1) >= 0:
            md[f"tokenizer.ggml.{name}"] = vocab[key]
    return md
