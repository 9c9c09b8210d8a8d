"""F32/F16/BF16 conversions equal gguf-py's, on every backend."""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants as gq
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from backends import available
from qinfer import quants

FLOATS = ["F32", "F16", "BF16"]

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=True, allow_subnormal=True)


@pytest.mark.parametrize("backend", available())
@pytest.mark.parametrize("t", FLOATS)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 70)), elements=finite32))
def test_encode_matches_gguf(backend, t, x):
    ours = quants.quantize(x, t, backend=backend)
    ref = gq.quantize(x, getattr(T, t)).view(np.uint8).reshape(x.shape[0], -1)
    assert ours.tobytes() == ref.tobytes()


@pytest.mark.parametrize("backend", available())
@pytest.mark.parametrize("t", FLOATS)
@given(bits=arrays(np.uint16, st.integers(1, 200)))
def test_decode_matches_gguf(backend, t, bits):
    if t == "F32":
        bits = bits[: bits.size // 2 * 2]
        if bits.size == 0:
            return
    raw = bits.view(np.uint8)
    ref = gq.dequantize(raw, getattr(T, t)).reshape(-1)
    ours = quants.dequantize(raw, t, backend=backend).reshape(-1)
    # NaN payloads are not part of the contract; every other value is bit-exact.
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(ours), nan)
    assert ours[~nan].tobytes() == ref[~nan].tobytes()


def test_nan_encodes_like_ggml():
    x = np.array([[np.nan, -np.nan, 1.0]], dtype=np.float32)
    for backend in available():
        h = quants.quantize(x, "F16", backend=backend).view(np.uint16)
        assert h[0, 0] == 0x7E00 and h[0, 2] == 0x3C00
