"""`qinfer info MODEL` (qinfer.gguf_info.describe) on tiny transformers-made files."""
import re

import pytest

from cli import run_qinfer
from hf_to_gguf_f32 import tiny_mistral, tiny_mixtral, write_gguf
from qinfer.gguf_info import describe


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("info")
    mistral, mixtral = tiny_mistral(seed=1, sliding_window=32), tiny_mixtral(seed=2)
    return {"mistral": (mistral, write_gguf(mistral, d / "mistral.gguf", ttype="F16")),
            "mixtral": (mixtral, write_gguf(mixtral, d / "mixtral.gguf", ttype="Q8_0", out_type="F16"))}


def _params(text):
    m = re.search(r"parameters:\s+([\d.]+)K", text)
    return float(m.group(1)) * 1e3


def test_mistral_summary(files):
    model, path = files["mistral"]
    text = describe(path, n_ctx=512)
    # transformers counts the same parameters (to the 2 decimals printed).
    assert abs(_params(text) - model.num_parameters()) < 10
    assert "file type:     F16" in text and "sliding window 32" in text
    assert "2 layers, dim 64, ffn 128, 4 heads (2 KV) of 16, vocab 320" in text
    # 2 layers * 512 positions * 2 KV heads * (16 + 16) dims * 2 bytes = 128 KiB.
    assert "KV cache 128.00 KiB (F16)" in text
    hist = dict(re.findall(r"^  (\w+)\s+(\d+) tensors", text, re.M))
    assert hist == {"F16": "16", "F32": "5"}  # 1-D norms stay F32


def test_mixtral_summary(files):
    model, path = files["mixtral"]
    text = describe(path, n_ctx=64)
    assert abs(_params(text) - model.num_parameters()) < 10
    cfg = model.config
    expert = 3 * cfg.hidden_size * cfg.intermediate_size * cfg.num_hidden_layers
    active = model.num_parameters() - expert * cfg.num_local_experts + expert * cfg.num_experts_per_tok
    m = re.search(r"\(([\d.]+)K active per token: 2 of 8 experts\)", text)
    assert m and abs(float(m.group(1)) * 1e3 - active) < 10
    assert re.search(r"^  Q8_0\s+", text, re.M) and "file type:     Q8_0" in text


def test_cli_info_and_errors(files, tmp_path):
    _, path = files["mixtral"]
    ok = run_qinfer("info", path, "--ctx", "128")
    assert ok.returncode == 0 and "Mixtral-style MoE" in ok.stdout
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(path.read_bytes()[:500])
    res = run_qinfer("info", bad)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and str(bad) in res.stderr and "truncated" in res.stderr
