"""Transformer ops: the Numba and C versions equal the numpy reference.

The numpy reference computes in float64; the others in float32 with float64
(or, for attention scores, float32) accumulation. Tolerances:
- rms_norm, softmax, silu_mul, rope: 2e-6 relative + 1e-6 absolute: a few float32
  ulps from the final rounding and from sin/cos/exp in float vs double.
- attention: 2e-5 relative + 2e-6 absolute: float32 dot products over up to 64
  elements (AVX2/NEON FMA order differs from the scalar sum) feed an exp; errors
  stay within ~10 float32 ulps of the outputs.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import available
from qinfer.kernels.ops import get_ops

REF = get_ops("numpy")
OTHERS = [b for b in available() if b != "numpy"]


def _x(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("backend", OTHERS)
@given(n=st.integers(1, 5), d=st.integers(1, 97), seed=st.integers(0, 2**31))
def test_rms_norm(backend, n, d, seed):
    rng = np.random.default_rng(seed)
    x, w = _x(rng, n, d, scale=3.0), _x(rng, d)
    np.testing.assert_allclose(get_ops(backend).rms_norm(x, w, 1e-5), REF.rms_norm(x, w, 1e-5),
                               rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("backend", OTHERS)
@given(n=st.integers(1, 5), m=st.integers(1, 70), seed=st.integers(0, 2**31))
def test_softmax_and_silu(backend, n, m, seed):
    rng = np.random.default_rng(seed)
    x, u = _x(rng, n, m, scale=5.0), _x(rng, n, m)
    ops = get_ops(backend)
    np.testing.assert_allclose(ops.softmax(x), REF.softmax(x), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(ops.silu_mul(x, u), REF.silu_mul(x, u), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("backend", OTHERS)
@given(n=st.integers(1, 4), h=st.integers(1, 5), half=st.integers(1, 40),
       pos0=st.integers(0, 40000), base=st.sampled_from([10000.0, 1e6]), seed=st.integers(0, 2**31))
def test_rope(backend, n, h, half, pos0, base, seed):
    rng = np.random.default_rng(seed)
    x = _x(rng, n, h, 2 * half)
    pos = np.arange(pos0, pos0 + n, dtype=np.int32)
    ours = get_ops(backend).rope(x.copy(), pos, base)
    np.testing.assert_allclose(ours, REF.rope(x.copy(), pos, base), rtol=2e-6, atol=1e-6)


def test_rope_is_norm_mode_pairs():
    # Position 1, d = 4, base 100: pair (x0, x1) turns by 1 rad, (x2, x3) by 0.1 rad.
    x = np.array([[[1.0, 0.0, 0.0, 1.0]]], dtype=np.float32)
    want = np.array([np.cos(1.0), np.sin(1.0), -np.sin(0.1), np.cos(0.1)])
    for b in available():
        np.testing.assert_allclose(get_ops(b).rope(x.copy(), np.array([1], np.int32), 100.0)[0, 0],
                                   want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("kv", [np.float16, np.float32])
@given(n=st.integers(1, 6), pos0=st.integers(0, 30), n_kv_head=st.integers(1, 3), group=st.integers(1, 3),
       d=st.integers(1, 40), dv=st.integers(1, 40), window=st.integers(0, 12), seed=st.integers(0, 2**31))
def test_attention(backend, kv, n, pos0, n_kv_head, group, d, dv, window, seed):
    rng = np.random.default_rng(seed)
    n_ctx = pos0 + n + 3
    q = _x(rng, n, n_kv_head * group, d, scale=2.0)
    k = _x(rng, n_ctx, n_kv_head, d).astype(kv)
    v = _x(rng, n_ctx, n_kv_head, dv).astype(kv)
    ours = get_ops(backend).attention(q, k, v, pos0, window)
    ref = REF.attention(q, k, v, pos0, window)
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=2e-6)


def test_attention_reference_semantics():
    # One head, d = 1: scores are q*k; a window of 2 at position 3 sees keys 2 and 3 only.
    q = np.array([[[1.0]]], dtype=np.float32)
    k = np.array([[[9.0]], [[9.0]], [[0.0]], [[np.log(3.0)]]], dtype=np.float32)
    v = np.array([[[100.0]], [[100.0]], [[1.0]], [[2.0]]], dtype=np.float32)
    for b in available():
        out = get_ops(b).attention(q, k, v, pos0=3, window=2)
        np.testing.assert_allclose(out[0, 0, 0], (1.0 * 1 + 2.0 * 3) / 4, rtol=1e-5)
        # Causality: at position 0 only key 0 is visible.
        np.testing.assert_allclose(get_ops(b).attention(q, k, v, pos0=0)[0, 0, 0], 100.0, rtol=1e-6)


@pytest.mark.skipif("native" not in available(), reason="the C core is not built")
def test_native_rope_table_is_exact_and_never_stale():
    # The native rope keeps the last cos/sin table; it must equal the one-call
    # C rotation bit for bit and be rebuilt whenever positions, size or base change.
    from qinfer._native import ffi, lib

    ops = get_ops("native")
    rng = np.random.default_rng(5)
    x = _x(rng, 3, 2, 8)
    for pos, d_x, base in [([7, 8, 9], x, 1e4), ([7, 8, 9], x, 1e6), ([1, 2, 3], x, 1e6),
                           ([7, 8, 9], x, 1e4), ([7, 8, 9], x[:, :, :6].copy(), 1e4)]:
        pos = np.array(pos, np.int32)
        want = np.ascontiguousarray(d_x).copy()
        assert lib.qi_rope_norm_f32(ffi.cast("float *", ffi.from_buffer(want)),
                                    ffi.cast("const int32_t *", ffi.from_buffer(pos)),
                                    3, 2, want.shape[2], base) == 0
        np.testing.assert_array_equal(ops.rope(np.ascontiguousarray(d_x).copy(), pos, base), want)


@pytest.mark.skipif("numba" not in available(), reason="numba not installed")
@pytest.mark.parametrize("kv", [np.float16, np.float32])
def test_numba_ops_split_over_threads(kv):
    """Sizes above the thresholds where the Numba ops share work with
    row_pool's threads (one-token SiLU slices, attention jobs, rows): two
    threads give the bits one thread gives, and both match the reference."""
    from qinfer.kernels.numba.ops import SILU_SLICE, numba_threads

    rng = np.random.default_rng(11)
    ops = get_ops("numba")
    g, u = _x(rng, 1, 3 * SILU_SLICE + 17, scale=4.0), _x(rng, 1, 3 * SILU_SLICE + 17)
    x, w = _x(rng, 7, 300, scale=3.0), _x(rng, 300)
    rq = _x(rng, 7, 4, 32)
    pos = np.arange(100, 107, dtype=np.int32)
    q = _x(rng, 3, 8, 64, scale=2.0)
    k, v = _x(rng, 200, 2, 64).astype(kv), _x(rng, 200, 2, 48).astype(kv)
    runs = []
    for threads in (1, 2):
        with numba_threads(threads):
            runs.append((ops.silu_mul(g, u), ops.rms_norm(x, w, 1e-5), ops.softmax(x),
                         ops.rope(rq.copy(), pos, 1e4), ops.attention(q, k, v, 150, n_threads=threads)))
    for one, two in zip(*runs):
        np.testing.assert_array_equal(one, two)
    silu, norm, soft, rope, att = runs[1]
    np.testing.assert_allclose(silu, REF.silu_mul(g, u), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(norm, REF.rms_norm(x, w, 1e-5), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(soft, REF.softmax(x), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(rope, REF.rope(rq.copy(), pos, 1e4), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(att, REF.attention(q, k, v, 150), rtol=2e-5, atol=2e-6)
