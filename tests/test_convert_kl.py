"""Quality of every file type, measured where users feel it: the KL divergence of
the converted model's next-token distributions from transformers' (float32, the
unquantized weights), for qinfer's default conversion and for llama.cpp's
(llama_model_quantize of the F32 GGUF, whose tensors equal llama.cpp's own
converter's; tests/test_convert_llamacpp.py). Both files are run by llama.cpp,
so only the quantized bytes differ.

The model is the bundled demo (trained, so its distributions are peaked like a
real model's, unlike random tiny models whose near-uniform outputs make KL
noise); the text is 4 x 384 tokens of Python's own documentation, the kind of
text it was trained on.
"""
import ctypes
import json
import os

import numpy as np
import pytest

from demo_model import TAR, hf_from_raw, raw_checkpoint
from qinfer.convert.api import convert
from qinfer.convert.recipes import FILE_TYPES

llama_cpp = pytest.importorskip("llama_cpp")

QUANTIZED = [t for t in FILE_TYPES if t not in ("F32", "F16", "BF16")]

# Measured KL ratios qinfer / llama.cpp on this model and text (x 1e-3: qinfer vs
# llama.cpp KL): Q8_0 0.91 (0.11/0.12), Q4_0 0.93 (5.3/5.7), Q4_1 0.79, Q5_0 0.83,
# Q5_1 0.82, Q2_K 0.88 (48/54), Q3_K_S 0.97 (16.3/16.9), Q3_K_M 0.95, Q3_K_L 0.93,
# Q4_K_S 0.95, Q4_K_M 0.92 (3.8/4.1), Q5_K_S 0.91, Q5_K_M 0.95, Q6_K 0.91.


def _texts():
    import collections
    import json as json_mod
    import pathlib
    import textwrap
    return [collections.__doc__, json_mod.__doc__, pathlib.Path.__doc__ + textwrap.__doc__, os.__doc__]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import sentencepiece as spm
    import torch

    root = tmp_path_factory.mktemp("kl")
    params, tensors, tok = raw_checkpoint()
    sp = spm.SentencePieceProcessor(model_proto=tok)
    seqs = [([1] + sp.encode(t))[:384] for t in _texts()]
    model = hf_from_raw(params, tensors)
    with torch.no_grad():
        refs = [_log_softmax(model(torch.tensor([ids])).logits[0].double().numpy()) for ids in seqs]
    f32 = convert(TAR, root / "f32.gguf", type="F32")
    return root, seqs, refs, f32


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _kl(path, seqs, refs):
    # F32 KV cache: the file's weights are the only difference between runs
    llm = llama_cpp.Llama(str(path), logits_all=True, n_ctx=512, n_threads=2, verbose=False,
                          type_k=0, type_v=0)
    per_token = []
    for ids, ref in zip(seqs, refs):
        llm.reset()
        llm.eval(ids)
        got = _log_softmax(np.array(llm.scores[:len(ids)], dtype=np.float64))
        per_token.append((np.exp(ref) * (ref - got)).sum(axis=1))
    return float(np.concatenate(per_token).mean())


def _llamacpp_quantize(src, dst, ftype):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[ftype][0]
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) == 0


def test_f32_file_matches_transformers(setup):
    root, seqs, refs, f32 = setup
    # float32 weights on both sides: only summation order differs
    assert _kl(f32, seqs, refs) < 1e-8


@pytest.mark.parametrize("ftype", QUANTIZED)
def test_kl_no_worse_than_llamacpp(setup, ftype):
    root, seqs, refs, f32 = setup
    ours = convert(TAR, root / f"ours-{ftype}.gguf", type=ftype)
    theirs = root / f"llama-{ftype}.gguf"
    _llamacpp_quantize(f32, theirs, ftype)
    kl_ours, kl_theirs = _kl(ours, seqs, refs), _kl(theirs, seqs, refs)
    print(json.dumps({"ftype": ftype, "qinfer": kl_ours, "llama.cpp": kl_theirs}))
    assert kl_ours <= kl_theirs, f"{ftype}: KL {kl_ours:.5f} vs llama.cpp's {kl_theirs:.5f}"
