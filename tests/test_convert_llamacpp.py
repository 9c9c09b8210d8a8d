"""llama.cpp's own converter (convert_hf_to_gguf.py, from the installed
llama-cpp-python's sources) as the oracle of `qinfer convert`:

- its F32 GGUF of a checkpoint holds the same tensors, byte for byte, as
  qinfer's of the same checkpoint in any form (raw .tar, HF folder), and the
  same hyperparameters and vocabulary (Mistral's real v3 and v1 tokenizer files);
- llama.cpp's convert + llama-quantize at every file type gives the tensor bytes
  of `qinfer convert --quantizer ggml`.
"""
import ctypes
import os

import pytest

from hf_to_gguf_f32 import tiny_mistral, tiny_mixtral
from llamacpp_converter import convert_with_llamacpp
from tiny_checkpoints import write_forms
from qinfer.convert.api import convert
from qinfer.convert.recipes import FILE_TYPES
from qinfer.gguf_file import GGUFFile

llama_cpp = pytest.importorskip("llama_cpp")

def _mistral_tokenizer(name):
    """A tokenizer file Mistral ships (from mistral-common's package data), under the
    names both forms use: tokenizer.model (HF) and tokenizer.model.v3 (raw)."""
    import mistral_common
    with open(os.path.join(os.path.dirname(mistral_common.__file__), "data", name), "rb") as f:
        data = f.read()
    return {"tokenizer.model": data, "tokenizer.model.v3": data}


# Mistral's real sentencepiece vocabularies: v3 (32768 pieces, Mistral 7B v0.3)
# for the dense model, v1 (32000, Mixtral 8x7B) for the MoE one.
MODELS = {
    "mistral": (lambda: tiny_mistral(vocab=32768, dim=256, n_heads=8, n_kv_heads=2, hidden=512),
                "mistral_instruct_tokenizer_240323.model.v3"),
    "mixtral": (lambda: tiny_mixtral(vocab=32000, dim=256, n_heads=8, n_kv_heads=2, hidden=256),
                "tokenizer.model.v1"),
}
# Keys that must agree; the rest differ by design: general.name (from the
# folder name), llama.context_length (llama.cpp takes max_position_embeddings,
# qinfer Mistral's params.json or 32768), the chat template (a name for Mistral
# downloads), add_bos/add_eos and unk (qinfer writes llama.cpp's defaults explicitly).
SAME = ("llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
        "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
        "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "llama.expert_count",
        "llama.expert_used_count", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id")


@pytest.fixture(scope="module", params=list(MODELS))
def converted(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    make, tokenizer = MODELS[request.param]
    forms = write_forms(make(), str(root), tokenizer_files=_mistral_tokenizer(tokenizer))
    theirs = convert_with_llamacpp(forms["hf"], root / "llama-f32.gguf")
    return request.param, forms, root, theirs


def _tensors(path):
    f = GGUFFile(path)
    return {n: (t.qtype.name, tuple(t.shape), bytes(f.tensor_data(t))) for n, t in f.tensors.items()}


def test_f32_tensors_and_metadata_equal_llamacpp_converter(converted):
    name, forms, root, theirs = converted
    ref = _tensors(theirs)
    for form in ("tar", "hf"):
        ours = convert(forms[form], root / f"ours-{form}.gguf", type="F32", force=True)
        got = _tensors(ours)
        assert got.keys() == ref.keys()
        for n in ref:
            assert got[n] == ref[n], (form, n)
    a, b = GGUFFile(root / "ours-tar.gguf").metadata, GGUFFile(theirs).metadata
    for k in SAME:
        assert (k in a) == (k in b), k
        if k in a:
            va, vb = a[k], b[k]
            assert (list(va) if isinstance(va, (list, tuple)) or hasattr(va, "tolist") else va) == \
                   (list(vb) if isinstance(vb, (list, tuple)) or hasattr(vb, "tolist") else vb), k


def test_mistral_format_conversion_equals_ours(converted):
    name, forms, root, theirs = converted
    if name != "mistral":
        pytest.skip("llama.cpp's --mistral-format path, shown on the dense model")
    raw = convert_with_llamacpp(forms["raw"], root / "llama-raw-f32.gguf", mistral_format=True)
    ours = convert(forms["raw"], root / "ours-raw.gguf", type="F32", force=True)
    assert _tensors(raw) == _tensors(ours)


@pytest.mark.parametrize("ftype", [t for t in FILE_TYPES if t not in ("F32", "F16", "BF16")])
def test_ggml_files_equal_llamacpp_convert_and_quantize(converted, ftype):
    name, forms, root, theirs = converted
    if name != "mistral" and ftype not in ("Q4_K_M", "Q2_K"):
        pytest.skip("every file type on the dense model; Mixtral's expert rules at two")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[ftype][0]
    params.nthread = 2
    quantized = root / f"llama-{ftype}.gguf"
    assert llama_cpp.llama_model_quantize(str(theirs).encode(), str(quantized).encode(),
                                          ctypes.byref(params)) == 0
    ours = convert(forms["tar"], root / f"ours-{ftype}.gguf", type=ftype, quantizer="ggml", force=True)
    a, b = _tensors(ours), _tensors(quantized)
    assert a.keys() == b.keys()
    for n in a:
        assert a[n] == b[n], n
