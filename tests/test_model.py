"""qinfer.load / Model.logits against transformers on tiny Mistral and Mixtral files.

The GGUF files are written by gguf-py from randomly initialised transformers
models (tests/support/hf_to_gguf_f32.py); transformers' float32 forward pass
is the oracle.

Tolerances (max |ours - ref| relative to max |ref| over all logits):
- F32 weights, F32 KV cache: 1e-4. Both sides compute in float32; only the
  order of accumulation differs (dot products of length <= 128 over 2 layers:
  a few ulps, observed ~1e-6).
- F16 KV cache (the default): 5e-3. Keys/values are rounded to half precision
  (relative error 2**-11 ~ 4.9e-4 each), which moves attention outputs by about
  that much per layer; observed ~1e-3.
- F16 weights: the oracle runs with the same f16-rounded weights, so the
  difference is again accumulation order plus activation rounding where the
  backend's matmul converts activations to f16 (as llama.cpp does): 5e-3.
"""
import threading

import numpy as np
import pytest
import torch

from backends import available
from hf_to_gguf_f32 import hf_logits, tiny_mistral, tiny_mixtral, write_gguf
import qinfer
from qinfer.errors import FormatError, QinferError, UnsupportedError

F32_TOL = 1e-4
F16_TOL = 5e-3


def _rel_err(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    out = {}

    def add(key, model, **kw):
        out[key] = (model, write_gguf(model, d / f"{key}.gguf", **kw))

    mistral = tiny_mistral(seed=1)
    add("mistral", mistral)
    add("mistral_sw", tiny_mistral(seed=2, sliding_window=6))
    add("mistral_tied", tiny_mistral(seed=3, tied=True))
    mixtral = tiny_mixtral(seed=4)
    add("mixtral", mixtral)
    add("mixtral_split", mixtral, merged_experts=False)
    half = tiny_mistral(seed=5)
    with torch.no_grad():  # the oracle sees exactly the f16 weights the file holds
        for p in half.parameters():
            p.copy_(p.half().float())
    add("mistral_f16", half, ttype="F16")
    return out


IDS = [1, 17, 250, 3, 99, 42, 42, 7, 311, 5, 64, 128, 200, 9, 13, 301, 77, 2, 150, 33, 21, 8]


@pytest.mark.parametrize("backend", available())
@pytest.mark.parametrize("key", ["mistral", "mistral_sw", "mistral_tied", "mixtral", "mixtral_split"])
def test_logits_match_transformers_f32(models, key, backend):
    model, path = models[key]
    m = qinfer.load(path, n_ctx=64, backend=backend, kv_type="f32")
    ours = m.logits(IDS)
    assert ours.shape == (len(IDS), 320) and ours.dtype == np.float32
    assert _rel_err(ours, hf_logits(model, IDS)) < F32_TOL


@pytest.mark.parametrize("key", ["mistral", "mixtral", "mistral_f16"])
def test_logits_match_transformers_f16(models, key):
    model, path = models[key]
    m = qinfer.load(path, n_ctx=64)  # default: F16 KV cache, auto backend
    assert _rel_err(m.logits(IDS), hf_logits(model, IDS)) < F16_TOL


def test_sliding_window_is_honoured(models, tmp_path):
    model, path = models["mistral_sw"]
    assert model.config.sliding_window == 6 < len(IDS)
    m = qinfer.load(path, n_ctx=64, kv_type="f32")
    assert m.hparams.sliding_window == 6
    ref = hf_logits(model, IDS)
    # Without the window key the same weights attend to everything: positions
    # past the window must then differ from transformers' windowed result.
    nowin = qinfer.load(write_gguf(model, tmp_path / "nowin.gguf", sliding_window_key=False),
                        n_ctx=64, kv_type="f32")
    assert nowin.hparams.sliding_window == 0
    full = nowin.logits(IDS)
    assert _rel_err(full[:6], ref[:6]) < F32_TOL
    assert _rel_err(full[6:], ref[6:]) > 100 * F32_TOL
    # Incremental evaluation uses the window over the cache the same way.
    m.reset()
    rows = [m.eval(IDS[:5])] + [m.eval([t]) for t in IDS[5:]]
    assert _rel_err(np.concatenate(rows), ref) < F32_TOL


@pytest.mark.parametrize("key", ["mistral", "mixtral"])
def test_incremental_eval_equals_full(models, key):
    _, path = models[key]
    m = qinfer.load(path, n_ctx=32, kv_type="f32")
    full = m.logits(IDS)
    m.reset()
    a = m.eval(IDS[:9])
    b = m.eval(IDS[9:10])
    c = m.eval(IDS[10:], last_only=True)
    assert m.n_past == len(IDS) and m.cached_ids == tuple(IDS)
    assert c.shape == (1, 320)
    np.testing.assert_allclose(np.concatenate([a, b]), full[:10], rtol=0, atol=1e-5)
    np.testing.assert_allclose(c[0], full[-1], rtol=0, atol=1e-5)
    # Prefix reuse: keep 4 positions, evaluate a different continuation.
    m.truncate(4)
    assert m.n_past == 4
    alt = [5, 6, 7]
    np.testing.assert_allclose(m.eval(alt), m.logits(IDS[:4] + alt)[4:], rtol=0, atol=1e-5)


def test_context_full_and_bad_ids(models):
    _, path = models["mistral"]
    m = qinfer.load(path, n_ctx=8)
    m.eval(IDS[:6])
    with pytest.raises(QinferError, match="context full"):
        m.eval(IDS[:3])
    assert m.n_past == 6  # a refused call changes nothing
    with pytest.raises(QinferError, match="outside the vocabulary"):
        m.eval([320])
    with pytest.raises(QinferError, match="outside the vocabulary"):
        m.eval([-1])
    with pytest.raises(QinferError, match="truncate"):
        m.truncate(7)
    assert m.eval([]).shape == (0, 320)
    with pytest.raises(QinferError, match="n_ctx"):
        qinfer.load(path, n_ctx=0)


def test_weights_stay_in_the_file_map(models):
    _, path = models["mixtral"]
    m = qinfer.load(path, n_ctx=16)
    w = m._weights
    mats = [w.token_embd, w.output] + [x for L in w.layers for x in (L.wq, L.wk, L.wv, L.wo)] \
        + [x for L in w.layers for x in L.ffn.gate + L.ffn.up + L.ffn.down]
    buf = m._file.buffer
    for mat in mats:
        assert not mat.data.flags.writeable and np.shares_memory(mat.data, buf), mat.name


def test_one_model_per_thread(models):
    _, path = models["mistral"]
    m = qinfer.load(path, n_ctx=64)
    inside, release = threading.Event(), threading.Event()
    errors = []

    def hold():
        with m._using():  # what eval/generate hold while they run
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(10)
    try:
        with pytest.raises(QinferError, match="in use by another thread"):
            m.logits(IDS)
    finally:
        release.set()
        t.join()
    expected = m.logits(IDS)

    # Two Models in two threads both work and agree.
    m2 = qinfer.load(path, n_ctx=64)
    results = [None, None]

    def run(i, model):
        try:
            for _ in range(3):
                results[i] = model.logits(IDS)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, x)) for i, x in enumerate((m, m2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_array_equal(results[0], expected)
    np.testing.assert_array_equal(results[1], expected)


# -- bad files are refused at load time, before any compute --------------------

@pytest.mark.parametrize("kw, exc, match", [
    (dict(drop=("blk.1.attn_k.weight",)), FormatError, "blk.1.attn_k.weight is missing"),
    (dict(drop=("output_norm.weight",)), FormatError, "output_norm.weight is missing"),
    (dict(extra_kv={"llama.attention.head_count_kv": 3}), FormatError, "cannot be shared"),
    (dict(extra_kv={"llama.feed_forward_length": 96}), FormatError, "ffn_gate.weight has shape"),
    (dict(extra_kv={"llama.block_count": 1}), FormatError, "past block_count"),
    (dict(extra_kv={"llama.rope.scaling.type": "yarn"}), UnsupportedError, "RoPE scaling"),
])
def test_bad_files_refused(models, tmp_path, kw, exc, match):
    model, _ = models["mistral"]
    path = write_gguf(model, tmp_path / "bad.gguf", **kw)
    with pytest.raises(exc, match=match) as ei:
        qinfer.load(path)
    assert str(path) in str(ei.value)


def test_unsupported_architecture(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "mamba.gguf"
    w = GGUFWriter(str(path), "mamba")
    w.add_tensor("x", np.zeros(8, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedError, match="architecture 'mamba' is not supported"):
        qinfer.load(path)
