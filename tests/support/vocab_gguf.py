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
