"""qinfer.sampling: each filter against a direct reference computation, the
random numbers against the reference Mersenne twister, seeds and parameter
checks. (The whole chain against llama.cpp: test_sampling_llamacpp.py.)"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from qinfer import sampling
from qinfer.errors import QinferError
from qinfer.sampling import MersenneUniform, Sampler, SamplingParams

seeds = st.integers(0, 2**32 - 1)


def random_logits(seed, n, scale):
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


logit_vectors = st.builds(random_logits, seeds, st.integers(2, 300), st.floats(0.1, 8.0))


def _probs64(logits):
    e = np.exp(logits.astype(np.float64) - logits.max())
    return e / e.sum()


# -- each step against its definition --------------------------------------------------------------


@given(logit_vectors, st.lists(st.integers(0, 299), max_size=40), st.floats(0.5, 2.0),
       st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_penalties_match_a_per_token_loop(logits, history, repeat, freq, present):
    history = [t % logits.size for t in history]
    out = sampling.apply_penalties(logits, history, repeat, freq, present)
    expect = logits.copy()
    for tok in set(history):
        x = expect[tok]
        x = x * np.float32(repeat) if x <= 0 else x / np.float32(repeat)
        expect[tok] = x - (np.float32(history.count(tok)) * np.float32(freq) + np.float32(present))
    np.testing.assert_array_equal(out, expect)
    untouched = np.setdiff1d(np.arange(logits.size), history)
    np.testing.assert_array_equal(out[untouched], logits[untouched])


@given(logit_vectors, st.integers(-3, 400))
def test_top_k_keeps_the_k_largest_in_descending_order(logits, k):
    c = sampling.top_k(sampling.all_candidates(logits), k)
    if k <= 0:
        assert c.ids.size == logits.size and not c.sorted
        return
    n = min(k, logits.size)
    assert c.sorted and c.ids.size == n
    assert set(c.ids.tolist()) == set(np.argsort(-logits, kind="stable")[:n].tolist())
    assert np.all(np.diff(c.logits) <= 0)
    np.testing.assert_array_equal(c.logits, logits[c.ids])


def test_top_k_breaks_ties_by_lower_id():
    c = sampling.top_k(sampling.all_candidates(np.array([1, 3, 3, 0, 3], np.float32)), 2)
    assert c.ids.tolist() == [1, 2]


@given(logit_vectors, st.floats(0.01, 1.0))
def test_top_p_keeps_the_shortest_prefix_reaching_p(logits, p):
    probs = _probs64(logits)
    order = np.argsort(-logits, kind="stable")
    cum = np.cumsum(probs[order])
    # float32 accumulation (as llama.cpp) may differ from float64 by ~1e-6:
    # skip inputs where a partial sum lies that close to p.
    assume(np.all(np.abs(cum - p) > 1e-5) or p >= 1.0)
    c = sampling.top_p(sampling.all_candidates(logits), p)
    n = logits.size if p >= 1.0 else int(np.argmax(cum >= p)) + 1
    assert c.ids.tolist() == (order[:n].tolist() if p < 1.0 else list(range(logits.size)))


@given(logit_vectors, st.floats(0.0, 1.0))
def test_min_p_keeps_tokens_at_least_p_times_as_likely_as_the_best(logits, p):
    probs = _probs64(logits)
    ratio = probs / probs.max()
    assume(np.all(np.abs(ratio - p) > 1e-5 * max(p, 1e-30)) or p == 0.0)  # float32 log/exp margin
    c = sampling.min_p(sampling.all_candidates(logits), p)
    expect = np.arange(logits.size) if p == 0.0 else np.nonzero(ratio >= p)[0]
    assert c.ids.tolist() == expect.tolist()   # vocabulary order kept when unsorted


@given(logit_vectors, st.floats(0.05, 4.0))
def test_temperature_scales_the_distribution(logits, t):
    c = sampling.apply_temperature(sampling.all_candidates(logits), t)
    # float32 division vs float64 softmax: relative error a few ulp of the logits
    np.testing.assert_allclose(_probs64(c.logits), _probs64(logits / t), rtol=1e-4, atol=1e-9)


@given(logit_vectors)
def test_temperature_zero_is_the_first_argmax(logits):
    logits = np.round(logits)   # rounding creates ties
    c = sampling.apply_temperature(sampling.all_candidates(logits), 0)
    assert c.ids.tolist() == [int(np.argmax(logits))]


@given(logit_vectors, st.floats(0.0, 1.0, exclude_max=True))
def test_pick_is_the_inverse_cumulative_distribution(logits, u):
    p = _probs64(logits)
    cum = np.cumsum(p)
    assume(np.all(np.abs(cum - u) > 1e-6))   # float32 exp vs float64 reference at a boundary
    i = sampling.pick(sampling.all_candidates(logits), u)
    assert i == int(np.argmax(cum >= u))


# -- the random numbers ------------------------------------------------------------------------------


def test_mersenne_words_are_the_reference_generator():
    # The C++ standard ([rand.predef]) requires the 10000th output of a
    # default-constructed std::mt19937 (seed 5489) to be 4123659995.
    u = MersenneUniform(5489)
    words = u._bits.random_raw(10000)
    assert int(words[-1]) == 4123659995
    # numpy's legacy RandomState seeds MT19937 with the same init_genrand.
    for seed in (0, 1, 42, 2**32 - 1):
        ours = MersenneUniform(seed)._bits.random_raw(50)
        ref = np.random.RandomState(seed).randint(0, 2**32, size=50, dtype=np.uint64)
        np.testing.assert_array_equal(ours, ref)


@given(seeds)
def test_uniform_combines_two_words_like_generate_canonical(seed):
    a, b = MersenneUniform(seed), MersenneUniform(seed)
    for _ in range(5):
        w0, w1 = (int(w) for w in b._bits.random_raw(2))
        u = a.uniform()
        assert 0.0 <= u < 1.0
        assert u == min((w0 + w1 * 2.0**32) / 2.0**64, np.nextafter(1.0, 0.0))


# -- the chain -------------------------------------------------------------------------------------


params_strategy = st.builds(
    SamplingParams,
    temperature=st.one_of(st.just(0.0), st.floats(0.1, 2.0)),
    top_k=st.integers(0, 60), top_p=st.floats(0.05, 1.0), min_p=st.floats(0.0, 0.5),
    repeat_penalty=st.floats(0.5, 2.0), frequency_penalty=st.floats(0.0, 1.0),
    presence_penalty=st.floats(0.0, 1.0), penalty_last_n=st.integers(0, 64), seed=seeds)


@given(params_strategy, st.integers(0, 2**31), st.integers(2, 200))
def test_same_seed_same_tokens(params, data_seed, n):
    rows = np.random.default_rng(data_seed).standard_normal((8, n)).astype(np.float32) * 3
    runs = []
    for _ in range(2):
        s = Sampler(params)
        runs.append([s.sample(r) for r in rows])
    assert runs[0] == runs[1]


def test_different_seeds_differ():
    logits = np.zeros(1000, np.float32)
    params = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
    a = [Sampler(SamplingParams(seed=1, **params)).sample(logits) for _ in range(3)]
    b = [Sampler(SamplingParams(seed=2, **params)).sample(logits) for _ in range(3)]
    assert a != b


def test_history_is_limited_to_the_last_n_tokens():
    s = Sampler(SamplingParams(penalty_last_n=3, repeat_penalty=2.0, temperature=0))
    s.accept([5, 1, 2, 3])
    assert list(s.history) == [1, 2, 3]
    logits = np.zeros(10, np.float32)
    logits[5] = logits[1] = 1.0   # token 1 is penalised (1.0 -> 0.5), token 5 no longer
    assert s.sample(logits) == 5
    assert list(s.history) == [2, 3, 5]


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5),
                                 dict(min_p=-0.1), dict(repeat_penalty=0), dict(top_k=2.5),
                                 dict(penalty_last_n=-1), dict(seed=-1), dict(seed=2**32)])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(QinferError, match="invalid sampling parameter"):
        SamplingParams(**bad)
