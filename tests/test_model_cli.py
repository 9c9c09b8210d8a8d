"""`qinfer perplexity` (scoring checked against llama.cpp's logits on the same file) and `qinfer bench`.

Tolerance: perplexities agree to 1e-3 relative. The logits agree to 2e-3 of
their scale (see test_model_llamacpp.py); NLL differences of that size average
out over the scored tokens, and exp() keeps them relative (observed ~1e-5).
"""
import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from cli import run_qinfer  # noqa: E402
from hf_to_gguf_f32 import make_decisive, tiny_mistral, write_gguf  # noqa: E402
import qinfer  # noqa: E402
from qinfer.cli.perplexity import _ppl, chunk_ids, score  # noqa: E402


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    m = tiny_mistral(seed=31)
    make_decisive(m, seed=1)
    return write_gguf(m, tmp_path_factory.mktemp("ppl") / "m.gguf", ttype="F16")


def test_chunks():
    assert chunk_ids(list(range(10)), 4, bos_id=1) == [[1, 1, 2, 3], [1, 5, 6, 7]]
    assert chunk_ids(list(range(10)), 4, max_chunks=1) == [[0, 1, 2, 3]]


def test_perplexity_matches_llamacpp(path):
    ids = list(np.random.default_rng(0).integers(3, 320, 200))
    chunks = chunk_ids(ids, 64, bos_id=1)
    model = qinfer.load(path, n_ctx=64)
    res = score(model, chunks, base=model)
    llm = llama_cpp.Llama(str(path), n_ctx=64, n_threads=2, logits_all=True, verbose=False)
    nll = []
    for c in chunks:
        llm.reset()
        llm.eval(c)
        lg = np.array(llm.scores[:64], dtype=np.float64)[32:-1]
        lp = lg - np.logaddexp.reduce(lg, axis=1, keepdims=True)
        nll.append(-lp[np.arange(31), c[33:]])
    ref, _ = _ppl(np.concatenate(nll))
    ours, err = _ppl(res["nll"])
    assert len(res["nll"]) == 3 * 31
    assert abs(ours / ref - 1) < 1e-3 and err > 0
    # A model compared with itself: no divergence, same top token everywhere.
    assert np.abs(res["kl"]).max() < 1e-9 and res["same_top"].all()


def test_cli_refuses_missing_text(path, tmp_path):
    res = run_qinfer("perplexity", path, "-f", tmp_path / "missing.txt")
    assert res.returncode == 1 and "missing.txt" in res.stderr and res.stderr.count("\n") == 1


def test_bench_cli(path):
    res = run_qinfer("bench", path, "-p", "16", "-n", "4", "--reps", "1", "-t", "1", "-t", "2")
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()[1:]]
    assert [(r[3], r[4]) for r in rows] == [("1", "pp16"), ("1", "tg4"), ("2", "pp16"), ("2", "tg4")]
    assert all(float(r[5]) > 0 for r in rows)
