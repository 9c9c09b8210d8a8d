"""qinfer.sampling's whole chain against llama.cpp's own sampler chain, built
through llama-cpp-python's low-level API and fed the same logits, history and
seed: the chosen tokens must be the same."""
import ctypes

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qinfer.sampling import Sampler, SamplingParams

llama_cpp = pytest.importorskip("llama_cpp")

# 2**32 - 1 is LLAMA_DEFAULT_SEED, which llama.cpp replaces by a random seed
# (qinfer's "random" is seed=None), so it is left out of the comparison.
params_strategy = st.builds(
    SamplingParams,
    temperature=st.one_of(st.just(0.0), st.floats(0.1, 2.0)),
    top_k=st.integers(0, 60), top_p=st.floats(0.05, 1.0), min_p=st.floats(0.0, 0.5),
    repeat_penalty=st.floats(0.5, 2.0), frequency_penalty=st.floats(0.0, 1.0),
    presence_penalty=st.floats(0.0, 1.0), penalty_last_n=st.integers(0, 64),
    seed=st.integers(0, 2**32 - 2))

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


class LlamaChain:
    """llama.cpp's chain as llama-cpp-python builds it for these parameters."""

    def __init__(self, p: SamplingParams, n_vocab):
        lc = llama_cpp
        self.chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        parts = [lc.llama_sampler_init_penalties(n_vocab, p.penalty_last_n, p.repeat_penalty,
                                                 p.frequency_penalty, p.presence_penalty)]
        if p.greedy:
            parts.append(lc.llama_sampler_init_greedy())
        else:
            parts += [lc.llama_sampler_init_top_k(p.top_k), lc.llama_sampler_init_top_p(p.top_p, 1),
                      lc.llama_sampler_init_min_p(p.min_p, 1), lc.llama_sampler_init_temp(p.temperature),
                      lc.llama_sampler_init_dist(p.seed)]
        for s in parts:
            lc.llama_sampler_chain_add(self.chain, s)

    def accept(self, tokens):
        for t in tokens:
            llama_cpp.llama_sampler_accept(self.chain, int(t))

    def sample(self, logits):
        buf = (llama_cpp.llama_token_data * logits.size)()
        view = np.frombuffer(buf, dtype=TOKEN_DATA)
        view["id"] = np.arange(logits.size)
        view["logit"] = logits
        cur = llama_cpp.llama_token_data_array(
            data=ctypes.cast(buf, llama_cpp.llama_token_data_p), size=logits.size,
            selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(cur))
        token = int(cur.data[cur.selected].id)
        self.accept([token])
        return token

    def __del__(self):
        llama_cpp.llama_sampler_free(self.chain)


@given(params_strategy, st.integers(0, 2**31), st.integers(2, 400), st.integers(0, 30))
def test_chain_picks_the_tokens_llama_cpp_picks(params, data_seed, n_vocab, n_prompt):
    rng = np.random.default_rng(data_seed)
    scale = rng.uniform(0.5, 6.0)
    prompt = rng.integers(0, n_vocab, n_prompt)
    ours, ref = Sampler(params), LlamaChain(params, n_vocab)
    ours.accept(prompt)
    ref.accept(prompt)
    for _ in range(6):
        logits = (rng.standard_normal(n_vocab) * scale).astype(np.float32)
        assert ours.sample(logits) == ref.sample(logits)


def test_chain_matches_llama_cpp_on_a_real_vocabulary_size():
    # 32768 logits: llama.cpp switches to its bucketed partial sort above 1024 candidates.
    params = SamplingParams(temperature=0.9, top_k=0, top_p=0.9, min_p=0.0, seed=7)
    rng = np.random.default_rng(3)
    ours, ref = Sampler(params), LlamaChain(params, 32768)
    for _ in range(20):
        logits = (rng.standard_normal(32768) * 2.5).astype(np.float32)
        assert ours.sample(logits) == ref.sample(logits)
