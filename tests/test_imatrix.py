"""--imatrix: llama.cpp's importance-matrix files (GGUF and legacy .dat) read as
llama-quantize reads them and used per tensor (per expert for Mixtral) exactly
as llama-quantize uses them: with --quantizer ggml the files equal llama.cpp's."""
import ctypes

import numpy as np
import pytest

from cli import run_qinfer
from hf_to_gguf_f32 import tiny_mistral, tiny_mixtral
from imatrix_files import write_gguf_imatrix, write_legacy_imatrix
from tiny_checkpoints import VOCAB, write_forms
import qinfer
from qinfer.convert.api import convert
from qinfer.convert.imatrix import load_imatrix
from qinfer.convert.recipes import FILE_TYPES
from qinfer.gguf_file import GGUFFile

MODELS = {
    "mistral": lambda: tiny_mistral(vocab=VOCAB, dim=256, n_heads=8, n_kv_heads=2, hidden=512),
    # 8 layers: llama.cpp's imatrix-only rule (Q4_0 files keep ffn_down of the first
    # n_layer/8 layers as Q4_1) needs n_layer >= 8 to fire
    "mistral8": lambda: tiny_mistral(vocab=VOCAB, dim=256, n_layers=8, n_heads=8, n_kv_heads=2, hidden=256),
    "mixtral": lambda: tiny_mixtral(vocab=VOCAB, dim=256, n_heads=8, n_kv_heads=2, hidden=256),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    forms = write_forms(MODELS[request.param](), str(root))
    f32 = convert(forms["tar"], root / "f32.gguf", type="F32")
    return request.param, forms, root, f32


def _matrix_shapes(f32):
    """{name: (n_mat, ne0)} of every weight matrix llama-imatrix would record."""
    out = {}
    for n, t in GGUFFile(f32).tensors.items():
        if len(t.shape) >= 2 and n.startswith("blk.") and "ffn_gate_inp" not in n:
            out[n] = (t.shape[2] if len(t.shape) > 2 else 1, t.shape[0])
    return out


def _random_imatrix(shapes, seed):
    rng = np.random.default_rng(seed)
    sums = {n: (rng.lognormal(0, 1, s) ** 2 * 300).astype(np.float32) for n, s in shapes.items()}
    counts = {n: rng.integers(100, 400, s[0]).astype(np.float32) for n, s in shapes.items()}
    counts[next(iter(counts))][0] = 0          # an expert (or matrix) that saw no tokens
    return sums, counts


def _tensors(path):
    f = GGUFFile(path)
    return {n: (t.qtype.name, bytes(f.tensor_data(t))) for n, t in f.tensors.items()}


def _llamacpp_quantize(src, dst, ftype, imatrix):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FILE_TYPES[ftype][0]
    params.nthread = 1
    entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
    keep = []
    for i, (name, v) in enumerate(imatrix.items()):
        data = np.ascontiguousarray(v, np.float32)
        keep.append(data)
        entries[i].name = name.encode()
        entries[i].data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entries[i].size = data.size
    entries[len(imatrix)].name = None
    params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) == 0


def test_both_formats_read_as_llama_quantize_reads_them(tmp_path):
    rng = np.random.default_rng(0)
    sums = {"blk.0.ffn_up.weight": (rng.random((1, 64)) * 50).astype(np.float32),
            "blk.0.ffn_up_exps.weight": (rng.random((4, 32)) * 50).astype(np.float32)}
    counts = {"blk.0.ffn_up.weight": np.array([37.0]), "blk.0.ffn_up_exps.weight": np.array([5, 0, 9, 1.0])}
    write_gguf_imatrix(tmp_path / "m.gguf", sums, counts)
    got = load_imatrix(tmp_path / "m.gguf")
    assert set(got) == set(sums)
    # sum / count per expert; 1 where an expert saw no tokens
    assert np.array_equal(got["blk.0.ffn_up.weight"], sums["blk.0.ffn_up.weight"][0] / np.float32(37))
    e = got["blk.0.ffn_up_exps.weight"].reshape(4, 32)
    assert np.array_equal(e[0], sums["blk.0.ffn_up_exps.weight"][0] / np.float32(5)) and np.all(e[1] == 1)
    # legacy: values / ncall
    vals = {n: v.reshape(-1) for n, v in sums.items()}
    write_legacy_imatrix(tmp_path / "m.dat", vals, ncall=8)
    old = load_imatrix(tmp_path / "m.dat")
    for n in vals:
        assert np.array_equal(old[n], vals[n] / np.float32(8))


def test_ggml_file_with_imatrix_equals_llamacpp(model):
    pytest.importorskip("llama_cpp")
    name, forms, root, f32 = model
    ftype = "Q4_0" if name == "mistral8" else "Q4_K_M"
    sums, counts = _random_imatrix(_matrix_shapes(f32), seed=1)
    path = root / "imatrix.gguf"
    write_gguf_imatrix(path, sums, counts)
    loaded = load_imatrix(path)
    theirs = root / f"llama-{ftype}.gguf"
    _llamacpp_quantize(f32, theirs, ftype, loaded)
    ours = convert(forms["tar"], root / f"ours-{ftype}.gguf", type=ftype, quantizer="ggml", imatrix=path,
                   force=True)
    a, b = _tensors(ours), _tensors(theirs)
    assert a.keys() == b.keys()
    for n in a:
        assert a[n] == b[n], n
    if ftype == "Q4_0":          # llama.cpp's imatrix-only rule: early ffn_down as Q4_1
        assert a["blk.0.ffn_down.weight"][0] == "Q4_1" and a["blk.1.ffn_down.weight"][0] == "Q4_0"
    # and the same from the F32 GGUF through qinfer quantize, legacy file format this time
    dat = root / "imatrix.dat"
    # (x4 then /4: exact in float32, so the same importance reaches the quantizer)
    write_legacy_imatrix(dat, {n: v.reshape(-1) * 4 for n, v in loaded.items()}, ncall=4)
    requant = qinfer.quantize(f32, root / f"rq-{ftype}.gguf", ftype, quantizer="ggml", imatrix=dat,
                              force=True)
    assert _tensors(requant) == b


def test_imatrix_changes_the_result_and_best_uses_it(model):
    name, forms, root, f32 = model
    if name != "mistral":
        pytest.skip("one model is enough")
    sums, counts = _random_imatrix(_matrix_shapes(f32), seed=2)
    path = root / "imatrix-best.gguf"
    write_gguf_imatrix(path, sums, counts)
    plain = _tensors(convert(forms["tar"], root / "plain.gguf", type="Q4_K_M", force=True))
    weighted = _tensors(convert(forms["tar"], root / "weighted.gguf", type="Q4_K_M", imatrix=path,
                                force=True))
    assert plain["blk.0.attn_q.weight"] != weighted["blk.0.attn_q.weight"]
    assert plain["token_embd.weight"] == weighted["token_embd.weight"]   # not in the file


def test_bad_imatrix_files_fail_with_one_line(model, tmp_path):
    name, forms, root, f32 = model
    if name != "mistral":
        pytest.skip("one model is enough")
    shapes = _matrix_shapes(f32)
    good = {n: np.ones(s[1], np.float32) for n, s in shapes.items()}
    out = tmp_path / "out.gguf"

    def fails(path, match):
        for cmd in (("convert", forms["tar"], "-o", out, "-q", "--imatrix", path),
                    ("quantize", f32, out, "Q4_K_M", "-q", "--imatrix", path)):
            r = run_qinfer(*cmd)
            assert r.returncode == 1, r.stderr
            assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert match in r.stderr, r.stderr
            assert not out.exists()

    cut = tmp_path / "cut.dat"
    write_legacy_imatrix(cut, good, ncall=1)
    cut.write_bytes(cut.read_bytes()[:200])
    fails(cut, "truncated")
    wrong = tmp_path / "wrong.dat"
    write_legacy_imatrix(wrong, {n: np.ones(v.size + 32, np.float32) for n, v in good.items()}, ncall=1)
    fails(wrong, "needs")
    nan = tmp_path / "nan.dat"
    bad = dict(good)
    first = next(iter(bad))
    bad[first] = bad[first].copy()
    bad[first][3] = np.nan
    write_legacy_imatrix(nan, bad, ncall=1)
    fails(nan, "non-finite")
    fails(tmp_path / "missing.dat", "missing.dat")
