"""qinfer convert: raw Mistral (.tar and folder) and HF checkpoints to GGUF."""
import json
import os
import shutil

import numpy as np
import pytest

from cli import run_qinfer
from hf_to_gguf_f32 import hf_logits, tiny_mistral, tiny_mixtral
from tiny_checkpoints import VOCAB, write_forms
import qinfer
from qinfer.convert.api import convert
from qinfer.convert.recipes import FILE_TYPES, tensor_type
from qinfer.gguf_file import GGUFFile

IDS = [1, 5, 77, 300, 2999, 42, 17, 1000, 2500]

MODELS = {
    # dim 256 / hidden 512 keep rows multiples of 256, so llama.cpp's K-quant rules
    # apply as they do for real models (no fallbacks); GQA 4 like Mistral 7B.
    "mistral": lambda: tiny_mistral(vocab=VOCAB, dim=256, n_heads=8, n_kv_heads=2, hidden=512),
    "mistral_swa": lambda: tiny_mistral(vocab=VOCAB, sliding_window=4, seed=3),
    "mixtral": lambda: tiny_mixtral(vocab=VOCAB, dim=256, n_heads=8, n_kv_heads=2, hidden=256),
}


@pytest.fixture(scope="module", params=list(MODELS))
def checkpoint(request, tmp_path_factory):
    model = MODELS[request.param]()
    root = tmp_path_factory.mktemp(request.param)
    return request.param, model, write_forms(model, str(root)), root


def _tensors(path):
    f = GGUFFile(path)
    return {n: (t.qtype.name, bytes(f.tensor_data(t))) for n, t in f.tensors.items()}


def test_every_form_gives_identical_tensors(checkpoint):
    name, model, forms, root = checkpoint
    outs = {k: _tensors(convert(v, root / f"{k}.gguf", type="Q8_0", quantizer="ggml", force=True))
            for k, v in forms.items()}
    assert outs["hf"] == outs["raw"] == outs["tar"]
    f = GGUFFile(root / "tar.gguf")
    assert f.metadata["llama.context_length"] > 0
    if name == "mistral_swa":
        assert f.metadata["llama.attention.sliding_window"] == 4
    if name == "mixtral":
        assert f.metadata["llama.expert_count"] == 8 and f.metadata["llama.expert_used_count"] == 2
        assert f.tensors["blk.0.ffn_gate_exps.weight"].qtype.name == "Q8_0"
        assert f.tensors["blk.0.ffn_gate_inp.weight"].qtype.name == "F32"


def test_f32_logits_match_transformers(checkpoint):
    llama_cpp = pytest.importorskip("llama_cpp")
    name, model, forms, root = checkpoint
    path = convert(forms["tar"], root / "f32.gguf", type="F32", force=True)
    ref = hf_logits(model, IDS)
    scale = np.abs(ref).max()
    # float32 end to end; only accumulation order differs (observed ~3e-4 of the
    # logit range), 2e-3 leaves room for the F16 KV cache of llama.cpp.
    ours = qinfer.load(str(path)).logits(IDS)
    assert np.abs(ours - ref).max() / scale < 2e-3
    if name != "mistral_swa":   # llama.cpp ignores the window (REFERENCE §12)
        llm = llama_cpp.Llama(str(path), logits_all=True, n_ctx=64, verbose=False)
        llm.eval(IDS)
        theirs = np.array(llm.scores[:len(IDS)])
        assert np.abs(theirs - ref).max() / scale < 2e-3


def _llamacpp_quantize(src, dst, ftype):
    import ctypes

    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[ftype][0]
    params.nthread = 1
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) == 0


@pytest.mark.parametrize("ftype", [t for t in FILE_TYPES if t not in ("F32", "F16", "BF16")])
def test_recipe_matches_llamacpp(checkpoint, ftype):
    pytest.importorskip("llama_cpp")
    name, model, forms, root = checkpoint
    if name == "mistral_swa":
        pytest.skip("rows of 64 only exercise fallbacks; covered by the other models")
    f32 = root / "recipe-f32.gguf"
    if not f32.exists():
        convert(forms["raw"], f32, type="F32")
    theirs = root / f"llama-{ftype}.gguf"
    _llamacpp_quantize(f32, theirs, ftype)
    ref = GGUFFile(theirs)
    from convert_params import params_of
    params = params_of(forms["raw"])
    for n, t in ref.tensors.items():
        shape = tuple(reversed(t.shape))
        assert tensor_type(n, shape, ftype, params) == t.qtype.name, n


def test_bad_inputs_fail_with_one_line_and_no_output(checkpoint, tmp_path):
    name, model, forms, root = checkpoint
    if name != "mistral":
        pytest.skip("one model is enough")
    out = tmp_path / "out.gguf"

    def fails(src, *extra, match):
        r = run_qinfer("convert", src, "-o", out, "-q", *extra)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert match in r.stderr, r.stderr
        assert not out.exists() and not list(tmp_path.glob(".qinfer-*"))

    # no params.json / config.json
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(os.path.join(forms["raw"], "tokenizer.model.v3"), bare)
    fails(bare, match="params.json")
    # truncated tar
    cut = tmp_path / "cut.tar"
    data = open(forms["tar"], "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    fails(cut, match="cut.tar")
    # a safetensors header that lies about offsets
    lying = tmp_path / "lying"
    shutil.copytree(forms["raw"], lying)
    st = lying / "consolidated.safetensors"
    raw = bytearray(st.read_bytes())
    hlen = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + hlen])
    first = next(k for k in header if k != "__metadata__")
    header[first]["data_offsets"][1] += 4096
    new = json.dumps(header).encode()
    st.write_bytes(len(new).to_bytes(8, "little") + new + bytes(raw[8 + hlen:]))
    fails(lying, match="consolidated.safetensors")
    # shapes that contradict params.json
    wrong = tmp_path / "wrong"
    shutil.copytree(forms["raw"], wrong)
    p = json.loads((wrong / "params.json").read_text())
    p["hidden_dim"] += 32
    (wrong / "params.json").write_text(json.dumps(p))
    fails(wrong, match="parameters imply")
    # no tokenizer file
    notok = tmp_path / "notok"
    shutil.copytree(forms["raw"], notok)
    for n in os.listdir(notok):
        if n.startswith("tokenizer"):
            os.remove(notok / n)
    fails(notok, match="no tokenizer file")
    # an architecture qinfer does not convert
    gpt2 = tmp_path / "gpt2"
    shutil.copytree(forms["hf"], gpt2)
    cfg = json.loads((gpt2 / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (gpt2 / "config.json").write_text(json.dumps(cfg))
    fails(gpt2, match="unsupported architecture")
    # unknown file type
    fails(forms["tar"], "--type", "Q7_K", match="unsupported file type")
    # existing output is not overwritten
    out.write_bytes(b"keep")
    r = run_qinfer("convert", forms["tar"], "-o", out, "-q", "--type", "F16")
    assert r.returncode == 1 and "--force" in r.stderr and out.read_bytes() == b"keep"
    r = run_qinfer("convert", forms["tar"], "-o", out, "-q", "--type", "F16", "--force")
    assert r.returncode == 0 and GGUFFile(out).tensors


def test_quantize_gguf_equals_llamacpp_quantize(checkpoint):
    pytest.importorskip("llama_cpp")
    name, model, forms, root = checkpoint
    if name != "mistral":
        pytest.skip("one model is enough")
    f16 = convert(forms["tar"], root / "rq-f16.gguf", type="F16", force=True)
    ours = qinfer.quantize(f16, root / "rq-ours-q8.gguf", "Q8_0", quantizer="ggml", force=True)
    theirs = root / "rq-llama-q8.gguf"
    _llamacpp_quantize(f16, theirs, "Q8_0")
    assert _tensors(ours) == _tensors(theirs)
    a, b = GGUFFile(ours).metadata, GGUFFile(f16).metadata
    assert a["general.file_type"] == FILE_TYPES["Q8_0"][0]
    assert a["tokenizer.ggml.tokens"] == b["tokenizer.ggml.tokens"]
    r = run_qinfer("quantize", ours, root / "rq-again.gguf", "Q4_0")
    assert r.returncode == 1 and "already Q8_0" in r.stderr
