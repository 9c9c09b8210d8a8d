"""Backend matmul y = x @ W.T for every weight type, against external oracles.

Oracle: gguf-py's dequantize of the weight rows, multiplied by the float32
activations in float64. Weight rows are random valid blocks (every code and
sub-scale byte random, tests/support/random_blocks.py), so all values a
decoder can meet occur.

Tolerance (per output, derived, not tuned): the native and Numba kernels
quantize each block of activations (32 values for the 32-element formats, 256
for K-quants, none for F32/F16/BF16) to multiples of delta = amax/127, with
round-half-even, so each activation moves by at most delta/2 (+ a few ulps from
the scale arithmetic); integer block sums are exact and the rest is float32
accumulation over the blocks. Hence
    |y - y_exact| <= sum_i |w_i| (delta_i/2 + 4u|x_i|) + (nb + 16) 4u sum_i |w_i x_i|
with u = 2**-24 and nb the number of blocks. A single mis-decoded weight
changes y by ~|w_i x_i|, far above delta/2 * |w_i|, so decoding errors fail.
On top, ggml's own acceptance thresholds (REFERENCE.md §8) are checked:
NMSE < 5e-4 over >= 64 outputs (test-backend-ops MUL_MAT) and, for quantized real data,
|dot - exact float dot| / n < 0.02 (0.04 for Q2_K) (test-quantize-fns).
"""
import threading

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize as gguf_dequantize
from hypothesis import given, settings, strategies as st

from backends import available
from random_blocks import random_rows
import qinfer.quants as quants
from qinfer.errors import QinferError, UnsupportedError
from qinfer.kernels import get_backend
from qinfer.quants import get_type

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
FAST = [b for b in ("native", "numba") if b in available()]
U = 2.0 ** -24


def oracle_weights(qt, w, n_in):
    gt = getattr(gguf.GGMLQuantizationType, qt.name)
    return gguf_dequantize(np.ascontiguousarray(w), gt).reshape(w.shape[0], n_in).astype(np.float64)


def error_bound(qt, wd, x):
    """Per-output bound of |y - x @ wd.T| for the quantized-activation kernels (module doc)."""
    x64 = x.astype(np.float64)
    ax, aw = np.abs(x64), np.abs(wd)
    if qt.block_size == 1:
        delta = np.zeros_like(x64)
    else:
        blk = qt.block_size
        amax = ax.reshape(x.shape[0], -1, blk).max(axis=2)
        delta = np.repeat(amax / 127.0, blk, axis=1)
    nb = x.shape[1] // qt.block_size
    return (delta / 2 + 4 * U * ax) @ aw.T + (nb + 16) * 4 * U * (ax @ aw.T)


def check_against_oracle(qt, w, x, y):
    wd = oracle_weights(qt, w, x.shape[1])
    exact = x.astype(np.float64) @ wd.T
    bound = error_bound(qt, wd, x)
    err = np.abs(y - exact)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"{qt.name}: |err| {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"
    # NMSE is a statistic over many outputs; one or two near-cancelling dot
    # products make it meaningless, so (like ggml's MUL_MAT cases) it needs size.
    if y.size >= 64:
        nmse = float(((y - exact) ** 2).sum() / (exact ** 2).sum())
        assert nmse < 5e-4, f"{qt.name}: NMSE {nmse:.3g}"


shapes = st.tuples(st.integers(1, 40),        # n_out
                   st.integers(1, 3),         # blocks per row (K-quants: of 256)
                   st.integers(1, 9),         # n_tok (covers the 4-token tiles and tails)
                   st.sampled_from([1, 2]),   # threads
                   st.integers(0, 2**32 - 1))  # seed


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("type_name", TYPES)
@settings(max_examples=12)
@given(shape=shapes)
def test_matmul_matches_oracle(backend, type_name, shape):
    n_out, n_blocks, n_tok, threads, seed = shape
    qt = get_type(type_name)
    rng = np.random.default_rng(seed)
    # float weights: any length, including odd ones (SIMD tails)
    n_in = qt.block_size * n_blocks if qt.block_size > 1 else int(rng.integers(1, 300))
    w = random_rows(qt, n_out, n_in, rng)
    x = (rng.standard_normal((n_tok, n_in)) * rng.uniform(0.01, 10)).astype(np.float32)
    y = get_backend(backend).matmul(qt, w, x, n_threads=threads)
    assert y.shape == (n_tok, n_out) and y.dtype == np.float32
    check_against_oracle(qt, w, x, y)


@pytest.fixture
def native_scalar():
    if "native" not in available():
        pytest.skip("native core not built")
    from qinfer._native import lib
    old = lib.qi_simd_level()
    assert lib.qi_set_simd_level(0) == 0
    yield get_backend("native")
    lib.qi_set_simd_level(old)


@pytest.mark.parametrize("type_name", TYPES)
def test_native_scalar_path(native_scalar, type_name):
    qt = get_type(type_name)
    rng = np.random.default_rng(7)
    n_in = 2 * qt.block_size if qt.block_size > 1 else 77
    w = random_rows(qt, 11, n_in, rng)
    x = rng.standard_normal((6, n_in)).astype(np.float32)
    check_against_oracle(qt, w, x, native_scalar.matmul(qt, w, x, n_threads=2))


@pytest.mark.skipif(len(FAST) < 2, reason="needs native and numba")
@pytest.mark.parametrize("type_name", TYPES)
def test_native_and_numba_agree(type_name):
    """Both quantize activations identically, so only float summation order differs:
    |diff| <= (nb + 16) * 8u * sum|w x| (twice the accumulation term of the bound)."""
    qt = get_type(type_name)
    rng = np.random.default_rng(3)
    n_in = 3 * qt.block_size if qt.block_size > 1 else 100
    w = random_rows(qt, 17, n_in, rng)
    x = rng.standard_normal((5, n_in)).astype(np.float32)
    a = get_backend("native").matmul(qt, w, x)
    b = get_backend("numba").matmul(qt, w, x)
    wd = oracle_weights(qt, w, n_in)
    mag = np.abs(x.astype(np.float64)) @ np.abs(wd).T
    # float types: numba goes through BLAS with a different blocking; same bound applies
    assert np.all(np.abs(a - b) <= (n_in // qt.block_size + 16) * 8 * U * mag + 1e-30)


@pytest.mark.parametrize("type_name", ["F32", "F16", "Q4_0", "Q5_1", "Q8_0", "Q6_K"])
def test_numpy_reference_matmul(type_name):
    """The numpy backend (the oracle of the runtime) computes the exact product of
    qinfer's own dequantization; it must equal gguf-py's within float64 rounding."""
    qt = get_type(type_name)
    rng = np.random.default_rng(11)
    n_in = 2 * qt.block_size if qt.block_size > 1 else 40
    w = random_rows(qt, 9, n_in, rng)
    x = rng.standard_normal((3, n_in)).astype(np.float32)
    try:
        y = get_backend("numpy").matmul(qt, w, x)
    except UnsupportedError as exc:
        pytest.skip(f"numpy reference has no {type_name} dequantizer yet: {exc}")
    exact = x.astype(np.float64) @ oracle_weights(qt, w, n_in).T
    np.testing.assert_allclose(y, exact, rtol=1e-6, atol=1e-6 * np.abs(exact).max())


# ggml test-quantize-fns data and thresholds (REFERENCE.md §8).
GGML_DOT_LIMIT = {"Q2_K": 0.04}


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("type_name", [t for t in TYPES if t not in ("F32", "F16", "BF16")])
def test_ggml_vec_dot_threshold(backend, type_name):
    n = 4096
    i = np.arange(n, dtype=np.float32)
    wf = (0.1 + 2 * np.cos(i)).astype(np.float32)[None, :]
    xf = (0.1 + 2 * np.cos(i + 1)).astype(np.float32)[None, :]
    w = None
    for quantizer_backend in ("native", "numba", "numpy"):   # whichever has it (ggml's algorithm)
        try:
            w = quants.quantize(wf, type_name, quantizer="ggml", backend=quantizer_backend)
            break
        except QinferError:
            continue
    if w is None:
        pytest.skip(f"no {type_name} quantizer available yet")
    y = get_backend(backend).matmul(type_name, w, xf)
    err = abs(float(y[0, 0]) - float(wf[0].astype(np.float64) @ xf[0])) / n
    assert err < GGML_DOT_LIMIT.get(type_name, 0.02), err


@pytest.mark.parametrize("backend", FAST)
def test_strided_memmap_rows_and_out(backend, tmp_path):
    """Weights as a slice of a memory-mapped file whose rows are padded (no copy)."""
    qt = get_type("Q4_K")
    rng = np.random.default_rng(5)
    w = random_rows(qt, 6, 512, rng)
    path = tmp_path / "w.bin"
    padded = np.zeros((6, w.shape[1] + 40), dtype=np.uint8)
    padded[:, :w.shape[1]] = w
    padded.tofile(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r", shape=padded.shape)[:, :w.shape[1]]
    x = rng.standard_normal((3, 512)).astype(np.float32)
    out = np.full((3, 6), np.nan, dtype=np.float32)
    y = get_backend(backend).matmul(qt, mm, x, out=out)
    assert y is out
    check_against_oracle(qt, w, x, y)


@pytest.mark.parametrize("backend", FAST + ["numpy"])
def test_bad_arguments(backend):
    be = get_backend(backend)
    qt = get_type("Q8_0")
    w = random_rows(qt, 4, 64, np.random.default_rng(0))
    x = np.zeros((2, 64), dtype=np.float32)
    with pytest.raises(UnsupportedError, match="multiple of 32"):
        be.matmul(qt, w, np.zeros((2, 48), dtype=np.float32))
    with pytest.raises(QinferError, match="bytes do not hold"):
        be.matmul(qt, w[:, :34], x)
    with pytest.raises(QinferError, match="shape"):
        be.matmul(qt, w, x, out=np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(QinferError, match="2-D"):
        be.matmul(qt, w, x[0])
    with pytest.raises(UnsupportedError, match="Q8_K"):
        be.matmul("Q8_K", np.zeros((1, 292), np.uint8), np.zeros((1, 256), np.float32))


@pytest.mark.skipif("native" not in FAST, reason="native core not built")
def test_native_threads_give_identical_bits():
    """Each output is one kernel call whatever the thread split, so results are bitwise equal."""
    qt = get_type("Q5_K")
    rng = np.random.default_rng(9)
    w = random_rows(qt, 300, 1024, rng)
    x = rng.standard_normal((7, 1024)).astype(np.float32)
    be = get_backend("native")
    ref = be.matmul(qt, w, x, n_threads=1)
    for threads in (2, 3, 8):
        assert np.array_equal(be.matmul(qt, w, x, n_threads=threads), ref)


@pytest.mark.skipif("native" not in FAST, reason="native core not built")
@pytest.mark.parametrize("type_name", TYPES)
@settings(max_examples=4, deadline=None)
@given(n_out=st.integers(1, 11), n_tok=st.integers(2, 9), seed=st.integers(0, 2**32 - 1))
def test_native_outputs_do_not_depend_on_the_batch(type_name, n_out, n_tok, seed):
    """Every output is computed by the same operations whichever tile (tokens x
    weight rows) it lands in, so a token's row of a batched product equals,
    bit for bit, the product of that token alone (generation after a prompt
    sees the same numbers as the prompt)."""
    qt = get_type(type_name)
    rng = np.random.default_rng(seed)
    n_in = 2 * qt.block_size if qt.block_size > 1 else int(rng.integers(1, 100))
    w = random_rows(qt, n_out, n_in, rng)
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    be = get_backend("native")
    batched = be.matmul(qt, w, x, n_threads=1)
    for t in range(n_tok):
        assert np.array_equal(be.matmul(qt, w, x[t:t + 1], n_threads=1)[0], batched[t]), t


@pytest.mark.parametrize("backend", FAST)
def test_concurrent_callers(backend):
    """Two Python threads share the backend's threads. Native: one call gets
    the C pool, the other runs on its own thread. Numba: each call has its
    own row counter in row_pool, so neither takes or waits for the other's
    rows. Either way each caller gets exactly its one-thread result."""
    qt = get_type("Q4_0")
    rng = np.random.default_rng(2)
    w = random_rows(qt, 256, 2048, rng)
    xs = [rng.standard_normal((n, 2048)).astype(np.float32) for n in (1, 4)]
    be = get_backend(backend)
    refs = [be.matmul(qt, w, x, n_threads=1) for x in xs]
    results, errors = [None, None], []

    def run(k):
        try:
            for _ in range(30):
                if not np.array_equal(be.matmul(qt, w, xs[k], n_threads=2), refs[k]):
                    errors.append(k)
            results[k] = True
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and not errors and all(results)


LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]


@pytest.mark.skipif("native" not in FAST, reason="native core not built")
@pytest.mark.parametrize("type_name", LEGACY)
@settings(max_examples=6, deadline=None)
@given(n_out=st.integers(5, 23), start=st.integers(0, 4), count=st.integers(1, 5),
       n_tok=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_native_outputs_do_not_depend_on_the_other_rows(type_name, n_out, start, count, n_tok, seed):
    """The AVX2 kernels of the 32-element formats compute 4 weight rows per call
    (a tail call repeats a row to fill its tile); every row's output must be the
    same bits whichever rows share its tile: a slice of the matrix, starting at
    any row, gives exactly the matching columns of the whole product."""
    qt = get_type(type_name)
    rng = np.random.default_rng(seed)
    w = random_rows(qt, n_out, 3 * qt.block_size, rng)
    x = rng.standard_normal((n_tok, 3 * qt.block_size)).astype(np.float32)
    be = get_backend("native")
    full = be.matmul(qt, w, x, n_threads=1)
    lo, hi = min(start, n_out - 1), min(start + count, n_out)
    part = be.matmul(qt, w[lo:hi], x, n_threads=1)
    assert np.array_equal(part, full[:, lo:hi])


@pytest.mark.skipif("native" not in FAST, reason="native core not built")
@pytest.mark.parametrize("type_name", LEGACY)
def test_native_legacy_threads_give_identical_bits(type_name):
    """Chunk boundaries move with the thread count (203 rows: 28-row chunks for
    one token and 2 threads, 20 for 3, 12 for 6 tokens and 5 threads; the last
    chunk ends in a partial 4-row tile); outputs stay bitwise equal, for prompt
    and single tokens. 203 x 4096 is above the size below which the driver
    stays on one thread."""
    qt = get_type(type_name)
    rng = np.random.default_rng(21)
    w = random_rows(qt, 203, 4096, rng)
    be = get_backend("native")
    for n_tok in (1, 6):
        x = rng.standard_normal((n_tok, 4096)).astype(np.float32)
        ref = be.matmul(qt, w, x, n_threads=1)
        check_against_oracle(qt, w, x, ref)
        for threads in (2, 3, 5):
            assert np.array_equal(be.matmul(qt, w, x, n_threads=threads), ref), threads


# ---- K-quant prompt kernels (session 3): extreme codes and scales -----------
# The AVX2 Q4_K/Q5_K kernel takes two weight rows per pass and adds two int16
# maddubs results before the scale multiply (csrc/dot_kquant_pair_avx2.c):
# exact only while |sum| <= 2*2*31*127 = 15748 < 2^15, and the int32 sums of a
# super-block must not overflow either. Random blocks never come near those
# bounds; these rows do: every code at its maximum and every 6-bit scale/min
# at 63 (Q6_K: int8 scales of 127 and -128), against activations that all
# quantize to +127 or -127.
K_QUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# f16 fields (d, dmin) per type, as in tests/support/random_blocks.py
K_F16_AT = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def extreme_rows(qt, n_rows, n_in):
    nb = n_in // qt.block_size
    raw = np.full((n_rows, nb, qt.type_size), 0xFF, dtype=np.uint8)
    if qt.name == "Q6_K":
        raw[1::2, :, 192:208] = 0x80  # scale -128 on odd rows, -1 (0xFF) on even ones
        raw[2::4, :, 192:208] = 0x7F  # and 127
    one = np.array([1.0], dtype=np.float16).view(np.uint8)
    for off in K_F16_AT[qt.name]:
        raw[:, :, off:off + 2] = one
    return raw.reshape(n_rows, nb * qt.type_size)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("type_name", K_QUANTS)
@pytest.mark.parametrize("n_tok", [1, 4, 6])
def test_kquant_extreme_codes_and_scales(backend, type_name, n_tok):
    qt = get_type(type_name)
    n_in = 3 * 256
    w = extreme_rows(qt, 7, n_in)   # 7: the last row of a pair kernel is paired with itself
    sign = np.where(np.arange(n_tok)[:, None] % 2 == 0, 1.0, -1.0)
    x = np.broadcast_to(sign * 0.5, (n_tok, n_in)).astype(np.float32)
    y = get_backend(backend).matmul(qt, w, x, n_threads=1)
    check_against_oracle(qt, w, x, y)


# ---- Numba kernels in LLVM vector IR (qinfer/kernels/numba/matmul_ir.py) ----------
# Every (row, token) dot product of the quantized types is one IR function;
# the tests above check their values, these what they do not reach: rows of
# model width, a token's independence from its batch and from the thread
# split, and the half-to-float fallback of targets without F16C.

try:
    from qinfer.kernels.numba import matmul_ir, vector_ir
except ImportError:   # numba not installed: the tests below skip
    matmul_ir = vector_ir = None


@pytest.mark.skipif(matmul_ir is None, reason="numba not installed")
@pytest.mark.parametrize("type_name", matmul_ir.TYPES if matmul_ir else [])
def test_numba_outputs_do_not_depend_on_the_batch(type_name):
    """Rows of 4096 + 256 values match the oracle; each token of a batch of 5
    gets the bits it gets alone, on 1 or 2 threads (the same IR function
    computes every (row, token) pair whatever the batch and split)."""
    qt = get_type(type_name)
    rng = np.random.default_rng(21)
    n_in = 4096 + 256
    w = random_rows(qt, 37, n_in, rng)
    x = rng.standard_normal((5, n_in)).astype(np.float32)
    be = get_backend("numba")
    batch = be.matmul(qt, w, x, n_threads=2)
    check_against_oracle(qt, w, x, batch)
    for t in range(5):
        assert np.array_equal(be.matmul(qt, w, x[t:t + 1], n_threads=1)[0], batch[t]), t


@pytest.mark.skipif(matmul_ir is None, reason="numba not installed")
def test_numba_kernels_without_hardware_f16(tmp_path):
    """A target without F16C (NUMBA_CPU_FEATURES without +f16c) converts the
    block scales by bit construction instead of fpext: compiled fresh in a
    subprocess, the kernels still match the oracle."""
    import os
    import platform
    import subprocess
    import sys
    if platform.machine().lower() in ("aarch64", "arm64"):
        pytest.skip("arm64 always converts in hardware")
    names = ["Q4_0", "Q5_1", "Q8_0", "Q2_K", "Q4_K", "Q6_K"]
    script = f"""
import sys
import numpy as np
sys.path[:0] = {[os.path.dirname(__file__), os.path.join(os.path.dirname(__file__), "support")]!r}
from qinfer.kernels.numba import vector_ir
assert not vector_ir.HARDWARE_F16
from test_matmul import check_against_oracle, random_rows, get_backend, get_type
rng = np.random.default_rng(5)
for name in {names!r}:
    qt = get_type(name)
    w = random_rows(qt, 19, 512, rng)
    # f16 scales of every kind: the random blocks' normal values plus subnormals, inf-free
    x = rng.standard_normal((2, 512)).astype(np.float32)
    check_against_oracle(qt, w, x, get_backend("numba").matmul(qt, w, x, n_threads=1))
print("ok")
"""
    env = dict(os.environ, NUMBA_CPU_FEATURES="+avx2,+fma,+sse4.2,+popcnt,+avx,+sse4.1,+ssse3",
               NUMBA_CACHE_DIR=str(tmp_path))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


@pytest.mark.skipif(len(FAST) < 2, reason="needs native and numba")
@pytest.mark.parametrize("type_name", TYPES)
@settings(max_examples=5, deadline=None)
@given(n_out=st.integers(1, 70), n_blocks=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_native_and_numba_agree_one_token(type_name, n_out, n_blocks, seed):
    """A generation step: both backends multiply by the same quantized
    activations, so only float summation order differs (same bound as
    test_native_and_numba_agree: twice the accumulation term)."""
    qt = get_type(type_name)
    rng = np.random.default_rng(seed)
    n_in = qt.block_size * n_blocks if qt.block_size > 1 else 50 * n_blocks
    w = random_rows(qt, n_out, n_in, rng)
    x = (rng.standard_normal((1, n_in)) * rng.uniform(0.01, 10)).astype(np.float32)
    a = get_backend("native").matmul(qt, w, x)
    b = get_backend("numba").matmul(qt, w, x, n_threads=2)
    mag = np.abs(x.astype(np.float64)) @ np.abs(oracle_weights(qt, w, n_in)).T
    assert np.all(np.abs(a - b) <= (n_in // qt.block_size + 16) * 8 * U * mag + 1e-30)


@pytest.mark.skipif(vector_ir is None, reason="numba not installed")
@pytest.mark.parametrize("features, expected", [("+avx2,+fma,+f16c", True), ("+avx2,+fma", False)])
def test_numba_hardware_f16_follows_the_target_features(monkeypatch, features, expected):
    """Half-to-float in hardware only when Numba's target has it (x86: F16C);
    without it LLVM would emit a call Numba cannot link."""
    import platform
    if platform.machine().lower() in ("aarch64", "arm64"):
        pytest.skip("arm64 always converts in hardware")
    monkeypatch.setattr(vector_ir.numba.config, "CPU_FEATURES", features)
    assert vector_ir._hardware_f16() is expected


@pytest.mark.skipif(matmul_ir is None, reason="numba not installed")
@pytest.mark.parametrize("type_name", ["Q4_0", "Q8_0", "Q4_K", "Q6_K", "BF16"])
def test_numba_threads_give_identical_bits(type_name):
    """Rows are claimed in chunks by whichever thread is free (row_pool); each
    row is computed by the same operations, so any split gives the same bits."""
    qt = get_type(type_name)
    rng = np.random.default_rng(13)
    n_in = 2 * max(qt.block_size, 256)
    w = random_rows(qt, 203, n_in, rng)
    be = get_backend("numba")
    for n_tok in (1, 5):
        x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
        ref = be.matmul(qt, w, x, n_threads=1)
        for threads in (2, 3):
            assert np.array_equal(be.matmul(qt, w, x, n_threads=threads), ref), (n_tok, threads)


# The AVX2 legacy tiles add int16 maddubs results of two half blocks and then
# of two rows' pairs (csrc/dot_legacy_avx2.c): exact while the sum stays below
# 2^15 (Q5: a pair 2*31*127 = 7874, four of them 31496; Q8_0 sums in int32).
# Random blocks rarely reach it; these
# rows do: every code at its extreme (nibbles 15, all high bits set, Q8_0 codes
# -128 and 127), against activations that all quantize to +127 or -127.
LEGACY_CODE_BYTES = {"Q4_0": (2, 18, 0xFF), "Q4_1": (4, 20, 0xFF), "Q5_0": (2, 22, 0xFF),
                     "Q5_1": (4, 24, 0xFF), "Q8_0": (2, 34, None)}


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("type_name", LEGACY)
def test_legacy_extreme_codes(backend, type_name):
    qt = get_type(type_name)
    rng = np.random.default_rng(17)
    w = random_rows(qt, 9, 4 * 32, rng).copy()
    start, size, fill = LEGACY_CODE_BYTES[type_name]
    blocks = w.reshape(9, 4, size)
    if fill is None:   # Q8_0: half the rows all -128, half all +127
        blocks[:, :, start:] = np.where(np.arange(9)[:, None, None] % 2, 0x80, 0x7F).astype(np.uint8)
    else:              # every nibble and (Q5) every high bit set
        blocks[:, :, start:] = fill
    x = np.ones((5, 4 * 32), dtype=np.float32)
    x[1::2] *= -1.0    # tokens of all +1 and all -1: q = +-127 everywhere
    check_against_oracle(qt, w, x, get_backend(backend).matmul(qt, w, x))


# ---- several matrices in one call (native qi_matmul_multi) -------------------
# Q/K/V and gate/up go through one C call in the forward pass; it must give
# exactly what separate calls give, for any mix of types (Q4_K_M mixes Q4_K,
# Q6_K; Mixtral's attention adds Q8_0) and thread count.

@pytest.mark.skipif("native" not in available(), reason="the C core is not built")
@settings(max_examples=25, deadline=None)
@given(types=st.lists(st.sampled_from(["Q4_K", "Q6_K", "Q8_0", "Q4_0", "F16", "Q5_1"]), min_size=2, max_size=4),
       n_outs=st.lists(st.integers(0, 70), min_size=4, max_size=4), n_tok=st.sampled_from([1, 3, 6]),
       threads=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2**31))
def test_matmul_group_equals_separate_calls(types, n_outs, n_tok, threads, seed):
    rng = np.random.default_rng(seed)
    be = get_backend("native")
    n_in = 512
    mats = [(get_type(t), random_rows(get_type(t), n_out, n_in, rng)) for t, n_out in zip(types, n_outs)]
    x = rng.standard_normal((n_tok, n_in)).astype(np.float32)
    outs = be.bind_matmul_group(mats, n_in, n_threads=threads)(x)
    assert len(outs) == len(mats)
    for (qt, w), y in zip(mats, outs):
        np.testing.assert_array_equal(y, be.bind_matmul(qt, w, n_in, n_threads=1)(x))


@pytest.mark.skipif("native" not in available(), reason="the C core is not built")
def test_matmul_group_refuses_bad_arguments():
    from qinfer._native import ffi, lib

    rng = np.random.default_rng(1)
    qt = get_type("Q8_0")
    w = random_rows(qt, 4, 64, rng)
    with pytest.raises(QinferError, match="activations of shape"):
        get_backend("native").bind_matmul_group([(qt, w), (qt, w)], 64)(np.zeros((1, 32), np.float32))
    types = ffi.new("int[]", [8] * 5)
    assert lib.qi_matmul_multi_work_size(5, types, 1, 64) < 0      # more than 4 matrices
    assert lib.qi_matmul_multi_work_size(2, ffi.new("int[]", [8, 15]), 1, 64) < 0   # Q8_K weights
