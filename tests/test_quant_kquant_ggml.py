"""quantizer="ggml" writes llama.cpp's bytes for every K-quant (Q2_K..Q6_K).

The oracle is llama.cpp itself (through llama-cpp-python, tests/support/
llamacpp_quant.py): without an importance matrix it runs the reference
quantizers (quantize_row_*_ref), with one the *_impl paths. Row lengths are
those of Mistral-7B's matrices (4096 and 14336) plus a single super-block.
"""
import numpy as np
import pytest

import llamacpp_quant
from backends import available
from qinfer import quants
from qinfer.convert.recipes import fallback_type


TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# at least 2 rows: llama.cpp leaves 1-row tensors unquantized. Rows of 320 are no
# multiple of 256: llama.cpp falls back to a 32-block type (convert/recipes.py).
SHAPES = [(3, 256), (2, 4096), (2, 14336), (2, 320)]


def weights(kind, shape, seed):
    rng = np.random.default_rng(seed)
    if kind == "gauss":
        x = rng.standard_normal(shape) * 0.02
    elif kind == "student_t":
        x = rng.standard_t(3, shape) * 0.02
    else:  # a few input channels (columns) much larger than the rest
        x = rng.standard_normal(shape) * 0.02
        x[:, rng.choice(shape[1], max(1, shape[1] // 64), replace=False)] *= 20
    return x.astype(np.float32)


def imatrix_for(n, seed):
    # mean squared activations: positive, heavy-tailed across columns
    return (np.random.default_rng(seed).lognormal(0.0, 1.0, n) ** 2).astype(np.float32)


@pytest.mark.parametrize("with_imatrix", [False, True], ids=["ref", "imatrix"])
@pytest.mark.parametrize("t", TYPES)
def test_ggml_bytes_equal_llamacpp(t, with_imatrix):
    tensors, imatrix = {}, {}
    for i, shape in enumerate(SHAPES):
        for kind in ("gauss", "student_t", "outlier"):
            name = f"{kind}_{shape[1]}"
            tensors[name] = weights(kind, shape, seed=100 * i + len(kind))
            imatrix[name] = imatrix_for(shape[1], seed=i)
    ref = llamacpp_quant.llamacpp_quantize(tensors, t, imatrix=imatrix if with_imatrix else None)
    for name, x in tensors.items():
        type_name, raw = ref[name]
        assert type_name == fallback_type(t, x.shape[1])
        expected = np.frombuffer(raw, dtype=np.uint8)
        for backend in available():
            ours = quants.quantize(x, type_name, "ggml", imatrix=imatrix[name] if with_imatrix else None,
                                   backend=backend).reshape(-1)
            diff = np.nonzero(ours != expected)[0]
            assert diff.size == 0, f"{t} {name} {backend}: {diff.size} bytes differ, first at {diff[:5]}"
