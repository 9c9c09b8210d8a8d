"""K-quant (Q2_K..Q6_K) quantizers on awkward inputs: all-zero and constant
blocks, one-sign blocks, huge and tiny magnitudes, subnormals, a single spike,
sparse importance matrices.

- "ggml" (numpy reference) equals llama.cpp's bytes there too;
- Numba and C reproduce the numpy bytes bit for bit, for both quantizers.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import llamacpp_quant
from backends import available
from qinfer import quants
from qinfer.errors import UnsupportedError

TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
OTHERS = [b for b in available() if b != "numpy"]


KINDS = ["normal", "zero", "const", "positive", "spike", "t"]
SCALES = [1.0, 1e-3, 1e3, 1e-30, 1e-42, 3e4, 1e8]   # 1e-42: float32 subnormals
# llama-quantize refuses its own output when a super-scale overflows fp16
# (ggml_validate_row_data), which 1e8 provokes: compare llama.cpp below that.
LLAMACPP_SCALES = [s for s in SCALES if s < 1e8]


def hard_block(kind, scale, rng):
    """One 256-weight super-block of a given kind, times scale."""
    if kind == "normal":
        b = rng.standard_normal(256)
    elif kind == "zero":
        b = np.zeros(256)
    elif kind == "const":
        b = np.full(256, rng.choice([1.0, -1.0, 0.5]))
    elif kind == "positive":
        b = np.abs(rng.standard_normal(256))
    elif kind == "spike":
        b = rng.standard_normal(256) * 1e-3
        b[rng.integers(256)] = 50.0
    else:
        b = rng.standard_t(3, 256)
    return (b * scale).astype(np.float32)


def hard_imatrix(kind, n, rng):
    if kind == "none":
        return None
    if kind == "ones":
        return np.ones(n, np.float32)
    im = (rng.random(n) ** 3 * 10).astype(np.float32)
    if kind == "sparse":
        im[rng.random(n) < 0.5] = 0
    return im


@st.composite
def matrices(draw):
    """float32 [rows, 256*k] built super-block by super-block from the menu above."""
    rows, nblocks = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    blocks = [hard_block(draw(st.sampled_from(KINDS)), draw(st.sampled_from(SCALES)), rng)
              for _ in range(rows * nblocks)]
    return np.stack(blocks).reshape(rows, nblocks * 256)


@st.composite
def imatrices(draw, n):
    kind = draw(st.sampled_from(["none", "random", "ones", "sparse"]))
    return hard_imatrix(kind, n, np.random.default_rng(draw(st.integers(0, 2**32 - 1))))


@pytest.mark.parametrize("imatrix_kind", ["none", "random", "sparse"])
@pytest.mark.parametrize("t", TYPES)
def test_ggml_matches_llamacpp(t, imatrix_kind):
    # Every (kind, scale) pair, in one llama.cpp run: one tensor per scale whose
    # 2 x 6 super-blocks cycle through the kinds (llama.cpp leaves 1-row tensors
    # unquantized, so 2 rows).
    rng = np.random.default_rng(17)
    tensors = {f"s{i}": np.stack([hard_block(k, scale, rng) for _ in range(2) for k in KINDS])
               .reshape(2, 6 * 256) for i, scale in enumerate(LLAMACPP_SCALES)}
    imatrix = None
    if imatrix_kind != "none":
        imatrix = {name: hard_imatrix(imatrix_kind, 6 * 256, rng) for name in tensors}
    ref = llamacpp_quant.llamacpp_quantize(tensors, t, imatrix=imatrix)
    for name, x in tensors.items():
        with np.errstate(all="ignore"):
            ours = quants.quantize(x, t, "ggml", imatrix=None if imatrix is None else imatrix[name],
                                   backend="numpy")
        type_name, raw = ref[name]
        assert type_name == t
        assert ours.tobytes() == raw, name


@pytest.mark.skipif(not OTHERS, reason="only the numpy backend is available")
@pytest.mark.parametrize("quantizer", ["ggml", "best"])
@pytest.mark.parametrize("t", TYPES)
def test_backends_agree(t, quantizer):
    @given(data=st.data())
    def run(data):
        x = data.draw(matrices())
        imatrix = data.draw(imatrices(x.shape[1]))
        with np.errstate(all="ignore"):
            ref = quants.quantize(x, t, quantizer, imatrix=imatrix, backend="numpy")
        for backend in OTHERS:
            got = quants.quantize(x, t, quantizer, imatrix=imatrix, backend=backend)
            assert got.shape == ref.shape
            bad = np.nonzero((got != ref).any(axis=1))[0]
            assert got.tobytes() == ref.tobytes(), f"{backend} differs in rows {bad}"
    run()


@pytest.mark.parametrize("backend", available())
@pytest.mark.parametrize("quantizer", ["ggml", "best"])
@pytest.mark.parametrize("t", TYPES)
def test_zero_rows_quantize_to_zero(t, quantizer, backend):
    x = np.zeros((2, 512), np.float32)
    out = quants.quantize(x, t, quantizer, backend=backend)
    assert not np.any(quants.dequantize(out, t, x.shape, backend="numpy"))


@pytest.mark.parametrize("t", TYPES)
def test_rejects_rows_that_are_not_whole_superblocks(t):
    with pytest.raises(UnsupportedError, match="multiple of 256"):
        quants.quantize(np.zeros((1, 300), np.float32), t)
