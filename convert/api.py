"""qinfer.convert(src, out, type=...): one tensor at a time into a GGUF file.

The output is written to a temporary file beside `out` and renamed only when
complete, so a failure or Ctrl-C never leaves a partial file behind, and an
existing output is kept unless force=True.
"""
import os

import gguf
import numpy as np

from qinfer import quants
from qinfer.errors import QinferError

from .gguf_out import check_destination, write_gguf
from .imatrix import for_tensor, load_imatrix
from .md5sums import verify_published_md5
from .model_params import from_hf, from_mistral
from .names import plan
from .recipes import FILE_TYPES, file_type, tensor_type
from .sources import open_checkpoint
from .requantize import quantize  # noqa: F401  (public: qinfer.quantize)
from .vocab import vocab_metadata, write_vocab


def _order(name):
    # llama.cpp's order: non-block tensors first, then by layer, then by name.
    if name.startswith("blk."):
        return (int(name.split(".")[1]), name)
    return (-1, name)


def _write_metadata(w, p, ftype, name, vocab):
    w.add_name(name)
    w.add_context_length(p.context_length)
    w.add_embedding_length(p.dim)
    w.add_block_count(p.n_layers)
    w.add_feed_forward_length(p.hidden_dim)
    w.add_head_count(p.n_heads)
    w.add_head_count_kv(p.n_kv_heads)
    w.add_key_length(p.head_dim)
    w.add_value_length(p.head_dim)
    w.add_rope_dimension_count(p.head_dim)
    w.add_rope_freq_base(p.rope_theta)
    w.add_layer_norm_rms_eps(p.norm_eps)
    w.add_vocab_size(p.vocab_size)
    if p.sliding_window:
        w.add_sliding_window(p.sliding_window)
    if p.n_experts:
        w.add_expert_count(p.n_experts)
        w.add_expert_used_count(p.n_experts_used)
    w.add_file_type(FILE_TYPES[ftype][0])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_vocab(w, vocab)


def _encode(pt, ttype, quantizer, imatrix=None):
    """Bytes of one planned tensor in type `ttype`, one expert slice at a time;
    imatrix: None or float32 [n_experts (or 1), n_per_row]."""
    parts = []
    for e in (range(len(pt.sources)) if len(pt.sources) > 1 else [None]):
        x = pt.expert(e)
        if x.ndim == 1:
            parts.append(x.astype(np.float32).view(np.uint8))
        else:
            im = None if imatrix is None else imatrix[e or 0]
            parts.append(quants.quantize(x, ttype, quantizer, im).reshape(-1))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def convert(src, out, type="Q4_K_M", quantizer="best", imatrix=None, progress=None, force=False,
            verify_md5=True):
    """Convert a Mistral download (.tar or folder) or HF folder to a GGUF file.

    verify_md5: check a tarball named as in Mistral's published list against its md5
    first (convert/md5sums.py); False skips that full read of the file. During the
    check progress(name, done, total, elapsed) reports it with name "md5 <file name>"
    and byte counts over the tarball; the conversion then reports from zero again."""
    ftype = file_type(type)
    if quantizer not in quants.QUANTIZERS:
        raise QinferError(f"unknown quantizer {quantizer!r}; use one of {', '.join(quants.QUANTIZERS)}")
    imatrix = None if imatrix is None else load_imatrix(imatrix)
    out = check_destination(out, force)
    ck = open_checkpoint(src)
    if verify_md5:
        verify_published_md5(src, progress)
    cfg = ck.json("params.json" if ck.kind == "mistral" else "config.json")
    params = (from_mistral if ck.kind == "mistral" else from_hf)(cfg, ck.label)
    tensors = ck.tensors()
    planned = plan(tensors, params, ck.kind, ck.label)
    if "output.weight" not in planned:
        params.tied = True
    vocab = vocab_metadata(ck.tokenizer(), params.vocab_size, ck.label, ck.files)
    # -- chat template (owned by qinfer.chat_formats): for a Mistral download without
    #    its own chat_template.jinja, llama.cpp's converter writes the name of Mistral's
    #    chat format for the tokenizer version ("mistral-v7", ...); so does qinfer.
    if ck.kind == "mistral" and not vocab.get("chat_template"):
        from qinfer.chat_formats import converter_template_name

        vocab["chat_template"] = converter_template_name(ck.tokenizer().name, ck.tokenizer().read)
    # -- end chat template
    names = sorted(planned, key=_order)
    types = {n: tensor_type(n, planned[n].shape, ftype, params, imatrix is not None) for n in names}

    def produce(n):
        pt = planned[n]
        im = for_tensor(imatrix, n, pt.shape[-1], max(1, len(pt.sources)), ck.label) \
            if len(pt.shape) >= 2 else None
        return lambda: _encode(pt, types[n], quantizer, im)

    entries = [(n, planned[n].shape, types[n], produce(n), int(np.prod(planned[n].shape)) * 4)
               for n in names]
    meta_name = os.path.splitext(os.path.basename(os.fspath(src)))[0]
    write_gguf(out, lambda w: _write_metadata(w, params, ftype, meta_name, vocab), entries, progress)
    return out
