"""The MoE block (qinfer/moe.py): routing against a direct numpy statement of
llama.cpp's rule, and the one-token path (what generation runs) against the
batched path, exactly: same experts, same weights, same order of additions."""
from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from backends import available
from qinfer.kernels.ops import get_ops
from qinfer.moe import moe_batched, moe_ffn, moe_one_token

OPS = get_ops("numpy")


def _linear(m, x):
    # Row by row, so a token's result does not depend on which other rows
    # share the call (BLAS may block a 2-row product differently).
    return np.stack([(m @ row.astype(np.float32)).astype(np.float32) for row in x])


def _group(ms, x):
    return [_linear(m, x) for m in ms]


def _ffn(rng, n_expert, dim, hidden, tie=False):
    router = rng.standard_normal((n_expert, dim)).astype(np.float32)
    if tie:
        router[3] = router[1]    # experts 1 and 3 always score the same
    mats = lambda *s: tuple(rng.standard_normal(s[1:]).astype(np.float32) * 0.1 for _ in range(s[0]))  # noqa: E731
    return SimpleNamespace(router=router, gate=mats(n_expert, hidden, dim), up=mats(n_expert, hidden, dim),
                           down=mats(n_expert, dim, hidden))


@pytest.mark.parametrize("backend", available())
@settings(max_examples=40, deadline=None)
@given(n_tok=st.integers(1, 5), n_expert=st.integers(2, 8), k=st.integers(1, 3), tie=st.booleans(),
       seed=st.integers(0, 2**31))
def test_route_is_softmax_topk_renormalised(backend, n_tok, n_expert, k, tie, seed):
    rng = np.random.default_rng(seed)
    k = min(k, n_expert)
    tie = tie and n_expert > 3
    ffn = _ffn(rng, n_expert, 16, 8, tie=tie)
    h = rng.standard_normal((n_tok, 16)).astype(np.float32)
    experts, weights = get_ops(backend).moe_route(h, ffn.router, k)
    assert experts.shape == weights.shape == (n_tok, k) and weights.dtype == np.float32
    logits = h.astype(np.float64) @ ffn.router.T.astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for t in range(n_tok):
        assert len(set(experts[t])) == k
        # the chosen probabilities are the k largest (compared by value: float32
        # and float64 may order near-equal experts differently)
        np.testing.assert_allclose(np.sort(p[t, experts[t]]), np.sort(p[t])[::-1][:k][::-1], rtol=1e-5)
        np.testing.assert_allclose(weights[t], p[t, experts[t]] / p[t, experts[t]].sum(), rtol=1e-5)
        np.testing.assert_allclose(weights[t].sum(), 1.0, rtol=1e-6)
        if tie and (1 in experts[t]) != (3 in experts[t]):
            assert 1 in experts[t]    # equal scores, split by the cut: the lower id wins


@settings(max_examples=30, deadline=None)
@given(n_expert=st.integers(2, 8), k=st.integers(1, 3), tie=st.booleans(), seed=st.integers(0, 2**31))
def test_one_token_path_equals_batched_path(n_expert, k, tie, seed):
    rng = np.random.default_rng(seed)
    k = min(k, n_expert)
    ffn = _ffn(rng, n_expert, 16, 8, tie=tie and n_expert > 3)
    h = rng.standard_normal((3, 16)).astype(np.float32)
    batched = moe_ffn(h, ffn, k, _linear, OPS)
    for t in range(3):
        row = h[t:t + 1]
        one = moe_ffn(row, ffn, k, _linear, OPS)
        assert one.shape == (1, 16)
        # The same single row through both paths: bit for bit.
        np.testing.assert_array_equal(one, moe_one_token(row, ffn, k, _linear, OPS, _group))
        np.testing.assert_array_equal(one, moe_batched(row, ffn, k, _linear, OPS, _group))
        # Within a batch only the router's product (numpy/BLAS, which may block
        # 3 rows differently from 1) changes: float32 rounding of the logits.
        np.testing.assert_allclose(one[0], batched[t], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif("native" not in available(), reason="the C core is not built")
@settings(max_examples=30, deadline=None)
@given(n_tok=st.integers(1, 6), n_expert=st.integers(2, 8), k=st.integers(1, 3), dim=st.integers(1, 300),
       seed=st.integers(0, 2**31))
def test_native_route_rows_are_independent_and_match_the_reference(n_tok, n_expert, k, dim, seed):
    """The C routing computes each row alone (a generation step's token gets the
    experts and weights it gets inside a prompt, bit for bit) and agrees with
    the float64 numpy reference: same experts unless two probabilities are
    within rounding of each other, weights within 1e-6."""
    rng = np.random.default_rng(seed)
    k = min(k, n_expert)
    h = rng.standard_normal((n_tok, dim)).astype(np.float32)
    router = rng.standard_normal((n_expert, dim)).astype(np.float32)
    ops = get_ops("native")
    experts, weights = ops.moe_route(h, router, k)
    for t in range(n_tok):
        e1, w1 = ops.moe_route(h[t:t + 1], router, k)
        assert np.array_equal(e1[0], experts[t]) and np.array_equal(w1[0], weights[t])
    ref_e, ref_w = OPS.moe_route(h, router, k)
    logits = h.astype(np.float64) @ router.T.astype(np.float64)
    for t in range(n_tok):
        gaps = np.abs(np.subtract.outer(logits[t], logits[t]))[np.triu_indices(n_expert, 1)]
        if gaps.min() > 1e-9 * np.abs(logits[t]).max():
            assert np.array_equal(experts[t], ref_e[t])
            np.testing.assert_allclose(weights[t], ref_w[t], rtol=1e-6)
