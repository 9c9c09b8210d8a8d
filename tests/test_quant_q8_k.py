"""Q8_K, the activation type of the K-quant dot products.

gguf-py has no Q8_K decoder, so the oracle here is a direct reading of
ggml's block_q8_K layout (d f32, qs int8[256], bsums int16[16]) and of
quantize_row_q8_K_ref's definition; every backend must give the same bytes.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends import available
from qinfer import quants


def read_blocks(raw):
    b = np.asarray(raw, np.uint8).reshape(-1, 292)
    d = b[:, 0:4].copy().view(np.float32)[:, 0]
    qs = b[:, 4:260].view(np.int8)
    bsums = b[:, 260:292].copy().view(np.int16)
    return d, qs, bsums


# Magnitudes from 1e-30 up: a block whose largest value is tinier than that
# overflows -127/max to inf in float32, where ggml's rounding trick has no
# defined result. Zeros, ties (x.5 steps) and heavy tails come from the menu.
@st.composite
def matrices(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "t", "ints", "zeros"]))
    scale = draw(st.sampled_from([1e-30, 1e-3, 1.0, 3e4, 1e6]))
    shape = (2, 512)
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "t":
        x = rng.standard_t(1.5, shape)
    elif kind == "ints":        # multiples of 1/2 of a step: exercises round-half-even
        x = rng.integers(-254, 255, shape) / 2.0
        x[:, 0] = 127.0
    else:
        x = rng.standard_normal(shape) * (rng.random(shape) < 0.05)
    x = x * scale
    x[1, :256] = 0                                   # always one all-zero block
    return x.astype(np.float32)


@pytest.mark.parametrize("backend", available())
def test_layout_and_definition(backend):
    @given(x=matrices())
    @settings(max_examples=30, deadline=None)
    def run(x):
        raw = quants.quantize(x, "Q8_K", backend=backend)
        assert raw.shape == (2, 2 * 292)
        d, qs, bsums = read_blocks(raw)
        xb = x.reshape(-1, 256)
        for i in range(xb.shape[0]):
            amax = np.abs(xb[i]).max()
            if amax == 0:
                assert d[i] == 0 and not qs[i].any()
                continue
            top = xb[i][np.argmax(np.abs(xb[i]))]          # first element of largest magnitude
            iscale = np.float32(-127.0) / top
            # round half to even, as ggml's nearest_int
            expect = np.minimum(127, np.rint(iscale * xb[i])).astype(np.int8)
            assert np.array_equal(qs[i], expect)
            assert d[i] == np.float32(1) / iscale
            assert np.array_equal(bsums[i], qs[i].reshape(16, 16).astype(np.int32).sum(axis=1))
        y = quants.dequantize(raw, "Q8_K", x.shape, backend=backend)
        assert np.array_equal(y.reshape(-1, 256), d[:, None] * qs.astype(np.float32))
        # round trip: each value within half a step of the scale
        assert np.all(np.abs(y - x).reshape(-1, 256) <= np.abs(d)[:, None] * 0.5001 + 1e-30)
    run()


def test_backends_agree_and_best_is_ggml():
    rng = np.random.default_rng(0)
    x = (rng.standard_t(3, (3, 1024)) * 0.1).astype(np.float32)
    x[0, :256] = 0
    ref = quants.quantize(x, "Q8_K", "ggml", backend="numpy")
    for backend in available():
        assert np.array_equal(quants.quantize(x, "Q8_K", "ggml", backend=backend), ref)
        assert np.array_equal(quants.quantize(x, "Q8_K", "best", backend=backend), ref)
