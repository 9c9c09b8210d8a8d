"""K-quant (Q2_K..Q6_K) decoding equals gguf-py's dequantize bit for bit, on every backend.

Blocks are random bytes (every code, sub-scale and sign pattern occurs) with
the fp16 super-scales drawn separately: ordinary, extreme (near 65504),
subnormal, zero and negative halves; inf/NaN halves are excluded (no
contract for them beyond "as ggml", and NaN payloads are not comparable).
"""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants as gq
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from backends import available
from qinfer import quants

# offsets of the fp16 super-scale fields in each block
HALF_FIELDS = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}

finite_half = st.one_of(
    st.integers(0, 0x7BFF),                      # any finite non-negative half
    st.sampled_from([0x0000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x3C00]),  # 0, subnormals, max
).flatmap(lambda h: st.sampled_from([h, h | 0x8000]))


@st.composite
def k_blocks(draw, t):
    qt = quants.get_type(t)
    nblocks = draw(st.integers(1, 6))
    raw = draw(arrays(np.uint8, nblocks * qt.type_size)).reshape(nblocks, qt.type_size)
    for off in HALF_FIELDS[t]:
        halves = draw(arrays(np.uint16, nblocks, elements=finite_half))
        raw[:, off:off + 2] = halves.reshape(nblocks, 1).view(np.uint8)
    return raw.reshape(-1)


def _check(t, raw, backend):
    with np.errstate(all="ignore"):
        ref = gq.dequantize(raw, getattr(T, t)).reshape(-1)
    ours = quants.dequantize(raw, t, backend=backend).reshape(-1)
    assert ours.dtype == np.float32
    assert ours.view(np.uint32).tobytes() == ref.astype(np.float32).view(np.uint32).tobytes()


@pytest.mark.parametrize("backend", available())
@pytest.mark.parametrize("t", sorted(HALF_FIELDS))
def test_dequantize_matches_gguf(backend, t):
    @given(raw=k_blocks(t))
    def run(raw):
        _check(t, raw, backend)
    run()


@pytest.mark.parametrize("backend", available())
@pytest.mark.parametrize("t", sorted(HALF_FIELDS))
def test_dequantize_all_zero_block_is_zero(backend, t):
    raw = np.zeros(3 * quants.get_type(t).type_size, dtype=np.uint8)
    out = quants.dequantize(raw, t, (3, 256), backend=backend)
    assert out.shape == (3, 256) and not np.any(out)


@pytest.mark.parametrize("backend", available())
@pytest.mark.parametrize("t", sorted(HALF_FIELDS))
def test_dequantize_keeps_rows_apart(backend, t):
    # two rows of two blocks: the row split must not reorder blocks
    rng = np.random.default_rng(5)
    qt = quants.get_type(t)
    raw = rng.integers(0, 256, (2, 2 * qt.type_size), dtype=np.uint8)
    for off in HALF_FIELDS[t]:
        for b in range(4):
            raw.reshape(4, qt.type_size)[b, off:off + 2] = np.array([0x3C00 + b], np.uint16).view(np.uint8)
    out = quants.dequantize(raw, t, (2, 512), backend=backend)
    ref = gq.dequantize(raw.reshape(-1), getattr(T, t)).reshape(2, 512)
    assert np.array_equal(out, ref)
