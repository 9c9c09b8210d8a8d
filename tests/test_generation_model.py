"""Generation on a real model: the bundled demo model converted by qinfer,
compared with llama.cpp (llama-cpp-python) running the same GGUF file."""
import threading

import pytest

import qinfer
from cli import run_qinfer
from qinfer.cli.demo import DEMO_TARBALL, bundled
from qinfer.errors import QinferError
from qinfer.generation import GenerationStats, chat_prompt_ids, generate

llama_cpp = pytest.importorskip("llama_cpp")

PROMPT = "The json module"
QUESTION = "What does the os.path module do?"
# llama-cpp-python leaves the prompt out of the repetition-penalty history
# (llama-cli and llama-server put it in, as qinfer does): compare without penalty.
NO_PENALTY = dict(repeat_penalty=1.0)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    # F16: both runtimes compute in float there (llama.cpp quantizes activations
    # for quantized weights, which moves its logits by a few 1e-2 on this model),
    # so their logits agree to ~1e-3 and the sampled tokens can be compared exactly.
    out = tmp_path_factory.mktemp("demo") / "demo-F16.gguf"
    qinfer.convert(bundled(DEMO_TARBALL), str(out), type="F16")
    return str(out)


@pytest.fixture(scope="module")
def model(gguf):
    return qinfer.load(gguf, n_ctx=1024)


@pytest.fixture(scope="module")
def llama(gguf):
    return llama_cpp.Llama(gguf, n_ctx=1024, n_threads=2, verbose=False)


def test_greedy_run_prints_what_llama_cpp_generates(gguf, llama):
    n = 48
    res = run_qinfer("run", gguf, "-p", PROMPT, "--temp", "0", "--repeat-penalty", "1", "-n", n)
    assert res.returncode == 0, res.stderr
    assert "tok/s" in res.stderr
    ours = res.stdout[:-1]   # run ends the text with a newline
    ref = llama.create_completion(PROMPT, max_tokens=n, temperature=0.0, repeat_penalty=1.0)
    assert ours == ref["choices"][0]["text"]
    assert ours.strip()


@pytest.mark.parametrize("seed", [1, 2024])
def test_seeded_sampling_picks_what_llama_cpp_picks(model, llama, seed):
    kw = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, **NO_PENALTY)
    ours = generate(model, PROMPT, max_tokens=32, seed=seed, stop=[], stream=False, **kw)
    ref = llama.create_completion(PROMPT, max_tokens=32, seed=seed, temperature=kw["temperature"],
                                  top_k=kw["top_k"], top_p=kw["top_p"], min_p=kw["min_p"],
                                  repeat_penalty=1.0)
    assert ours == ref["choices"][0]["text"]


def test_seeded_sampling_is_the_same_across_runs_and_backends(gguf):
    from backends import available

    texts = []
    backends = available()
    for backend in backends[:1] + backends:   # the first backend twice: two runs
        m = qinfer.load(gguf, n_ctx=256, backend=backend)
        texts.append(generate(m, PROMPT, max_tokens=16, seed=5, temperature=0.7, stream=False, stop=[]))
    assert len(set(texts)) == 1 and texts[0].strip()


def test_multi_turn_chat_evaluates_only_the_new_tokens(model):
    model.reset()
    turn1 = [{"role": "user", "content": QUESTION}]
    first = model.chat(turn1, max_tokens=24, temperature=0)
    reply = first["choices"][0]["message"]["content"]
    ids1 = chat_prompt_ids(model, turn1)
    assert first["usage"]["prompt_tokens"] == len(ids1)
    turn2 = turn1 + [{"role": "assistant", "content": reply}, {"role": "user", "content": "Thanks!"}]
    ids2 = chat_prompt_ids(model, turn2)
    cached = model.cached_ids
    assert cached[:len(ids1)] == tuple(ids1)   # turn 1's prompt, then its reply, are in the cache
    reused = next((i for i, (a, b) in enumerate(zip(cached, ids2)) if a != b), min(len(cached), len(ids2)))
    stats = GenerationStats()
    second = model.chat(turn2, max_tokens=8, temperature=0, stats=stats)
    assert second["usage"]["prompt_tokens"] == len(ids2)
    # Turn 1's prompt is reused whole, and of its reply every token that the
    # re-rendered history tokenizes the same way; only the rest is evaluated.
    assert stats.cached_tokens == reused >= len(ids1)
    assert stats.prompt_eval_tokens == len(ids2) - reused


def test_two_models_work_in_two_threads(gguf):
    alone = generate(qinfer.load(gguf, n_ctx=256), PROMPT, max_tokens=24, temperature=0, stream=False)
    models = [qinfer.load(gguf, n_ctx=256) for _ in range(2)]
    results, errors = [None, None], []

    def work(i):
        try:
            results[i] = models[i].generate(PROMPT, max_tokens=24, temperature=0, stream=False)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and results == [alone, alone]


def test_one_model_used_from_a_second_thread_raises(model):
    stream = model.generate(PROMPT, max_tokens=200, temperature=0, stop=[])
    started, release, outcome = threading.Event(), threading.Event(), []

    def first_user():
        next(stream)          # the stream now holds the model
        started.set()
        release.wait(60)
        outcome.append("".join(stream))

    t = threading.Thread(target=first_user)
    t.start()
    assert started.wait(60)
    with pytest.raises(QinferError, match="in use by another thread"):
        model.generate(PROMPT, max_tokens=4, stream=False)
    release.set()
    t.join(60)
    assert outcome and isinstance(outcome[0], str)


@pytest.mark.parametrize("args, message", [
    (["-p", "The json module is a module of the standard library", "--ctx", "8"], "context full: the prompt has"),
    (["-p", "x", "--temp", "-1"], "temperature must be >= 0"),
    (["-p", "x", "--top-p", "0"], "top_p must be in (0, 1]"),
])
def test_run_refuses_bad_requests_with_one_line(gguf, args, message):
    res = run_qinfer("run", gguf, *args)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("qinfer run: error:") and message in res.stderr
    assert res.stderr.count("\n") == 1


def test_run_on_a_missing_file(tmp_path):
    res = run_qinfer("run", tmp_path / "missing.gguf", "-p", "x")
    assert res.returncode == 1 and "missing.gguf" in res.stderr and "Traceback" not in res.stderr
