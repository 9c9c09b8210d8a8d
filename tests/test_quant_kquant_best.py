"""quantizer="best" never loses to "ggml" and wins clearly where the format allows it.

Error = sum over weights of imatrix[col] * (x - dequantized)^2 (imatrix = 1
when none is given), measured on the decoded bytes, i.e. after the real
storage rounding of every scale and code.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qinfer import quants

TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
KINDS = ["gauss", "student_t", "outlier"]

# Measured RMSE gains of best over ggml without an imatrix (8 x 4096 matrices,
# seeds below): Q2_K 11.8 / 17.2 / 24.3 %, Q3_K 5.0 / 4.2 / 1.5 %, Q6_K 7.2 /
# 5.6 / 1.9 % (gauss / student_t / outlier). The thresholds sit ~1 point below
# (noise across seeds is ~0.3 points). On outlier-channel data the format
# itself caps the gain of Q3_K and Q6_K: even a free (unquantized) scale per
# 16-weight sub-block only reaches 3.2 % and 2.7 % below ggml, because the
# error is dominated by the sub-blocks that hold an outlier.
# Q4_K 2.3 / 3.1 / 3.3 %, Q5_K 5.1 / 5.5 / 5.3 % (seeds 8 and 9: within 0.4
# points). Q4_K on Gaussian rows is near its cap: ggml's 32-weight sub-block
# fits are already close to optimal there, and free (unquantized) sub-block
# scales and mins fitted on a 300-point grid reach only 3.3 % below ggml.
MIN_GAIN = {
    ("Q2_K", "gauss"): 10.0, ("Q2_K", "student_t"): 15.0, ("Q2_K", "outlier"): 20.0,
    ("Q3_K", "gauss"): 4.0, ("Q3_K", "student_t"): 3.0, ("Q3_K", "outlier"): 0.5,
    ("Q4_K", "gauss"): 1.8, ("Q4_K", "student_t"): 2.3, ("Q4_K", "outlier"): 2.4,
    ("Q5_K", "gauss"): 4.5, ("Q5_K", "student_t"): 4.5, ("Q5_K", "outlier"): 4.5,
    ("Q6_K", "gauss"): 6.0, ("Q6_K", "student_t"): 4.5, ("Q6_K", "outlier"): 1.0,
}


def weights(kind, shape, seed):
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        x = rng.standard_normal(shape)
    elif kind == "student_t":
        x = rng.standard_t(3, shape)
    else:  # 1/64 of the input channels (columns) 20x larger than the rest
        x = rng.standard_normal(shape)
        x[:, rng.choice(shape[1], shape[1] // 64, replace=False)] *= 20
    return (x * 0.02).astype(np.float32)


def block_errors(x, t, blocks, imatrix):
    """Weighted squared error per 256-weight super-block, in float64."""
    y = quants.dequantize(blocks, t, x.shape, backend="numpy").astype(np.float64)
    w = np.ones(x.shape[1]) if imatrix is None else imatrix.astype(np.float64)
    return (w * (x - y) ** 2).reshape(-1, 256).sum(axis=1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t", TYPES)
def test_best_beats_ggml_without_imatrix(t, kind):
    x = weights(kind, (8, 4096), seed=7)
    e_ggml = block_errors(x, t, quants.quantize(x, t, "ggml"), None)
    e_best = block_errors(x, t, quants.quantize(x, t, "best"), None)
    # best keeps ggml's block unless its float32 error sum is strictly lower, so
    # per block it can only lose by float32-vs-float64 summation noise (1e-5 relative).
    assert np.all(e_best <= e_ggml * (1 + 1e-5))
    gain = 100 * (1 - np.sqrt(e_best.sum() / e_ggml.sum()))
    assert gain >= MIN_GAIN[t, kind], f"{t} {kind}: best is only {gain:.2f}% below ggml"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t", TYPES)
def test_best_never_worse_with_imatrix(t, kind):
    x = weights(kind, (4, 4096), seed=11)
    rng = np.random.default_rng(3)
    imatrix = (rng.lognormal(0.0, 1.0, x.shape[1]) ** 2).astype(np.float32)
    e_ggml = block_errors(x, t, quants.quantize(x, t, "ggml", imatrix=imatrix), imatrix)
    e_best = block_errors(x, t, quants.quantize(x, t, "best", imatrix=imatrix), imatrix)
    assert np.all(e_best <= e_ggml * (1 + 1e-5))
    assert e_best.sum() < e_ggml.sum()


@pytest.mark.parametrize("t", TYPES)
def test_best_respects_the_imatrix(t):
    # Columns the imatrix calls important must come out more accurate when the
    # search is told about them than when it is not.
    x = weights("gauss", (4, 2048), seed=5)
    imatrix = np.full(x.shape[1], 0.01, np.float32)
    imatrix[::7] = 100.0
    weighted = block_errors(x, t, quants.quantize(x, t, "best", imatrix=imatrix), imatrix).sum()
    plain = block_errors(x, t, quants.quantize(x, t, "best"), imatrix).sum()
    assert weighted < plain


@pytest.mark.parametrize("t", TYPES)
def test_best_never_worse_per_block_property(t):
    # Any data at ordinary magnitudes (float32 error sums neither over- nor
    # underflow there), with or without an imatrix, zero columns included.
    @given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 0.02, 1.0, 300.0]),
           df=st.sampled_from([1.5, 3.0, 30.0]), use_imatrix=st.booleans())
    @settings(max_examples=25)
    def run(seed, scale, df, use_imatrix):
        rng = np.random.default_rng(seed)
        x = (rng.standard_t(df, (2, 512)) * scale).astype(np.float32)
        imatrix = None
        if use_imatrix:
            imatrix = (rng.random(512) ** 2).astype(np.float32)
            imatrix[rng.random(512) < 0.2] = 0
        e_ggml = block_errors(x, t, quants.quantize(x, t, "ggml", imatrix=imatrix), imatrix)
        e_best = block_errors(x, t, quants.quantize(x, t, "best", imatrix=imatrix), imatrix)
        assert np.all(e_best <= e_ggml * (1 + 1e-5) + 1e-30)
    run()
