"""Random but valid weight rows of every matmul weight type, for kernel tests.

Every code, nibble, high bit and sub-scale byte is uniformly random (so all
values a decoder can meet occur, e.g. Q8_0 codes of -128 and Q6_K scales of
-128); only the f16 super-scales are set to finite values of a realistic size,
so the oracle (gguf.quants.dequantize) sees no inf/NaN.
"""
import numpy as np

# Byte offsets of the f16 scale fields per type (REFERENCE §1): (d offsets, scale range).
_F16_FIELDS = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
}


def random_rows(qt, n_rows, n_in, rng):
    """uint8 [n_rows, qt.row_bytes(n_in)] of type qt (a qinfer QuantType)."""
    if qt.name == "F32":
        return rng.standard_normal((n_rows, n_in)).astype(np.float32).view(np.uint8)
    if qt.name == "F16":
        return rng.standard_normal((n_rows, n_in)).astype(np.float16).view(np.uint8)
    if qt.name == "BF16":
        f = rng.standard_normal((n_rows, n_in)).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    nb = n_in // qt.block_size
    raw = rng.integers(0, 256, size=(n_rows, nb, qt.type_size), dtype=np.uint8)
    # K-quant super-scales multiply 6-bit sub-scales: keep the products O(1).
    size = 0.02 if qt.block_size == 256 else 0.1
    for off in _F16_FIELDS[qt.name]:
        d = (rng.uniform(0.2, 1.0, size=(n_rows, nb)) * size).astype(np.float16)
        raw[:, :, off:off + 2] = d.view(np.uint8).reshape(n_rows, nb, 2)
    return raw.reshape(n_rows, nb * qt.type_size)
