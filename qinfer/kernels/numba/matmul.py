"""y = x @ W.T for the Numba backend, mirroring csrc/matmul.c.

Quantized weights: the activations are quantized once per call exactly like
the native core (csrc/act_quant.c: per 32 values for the 32-element formats,
per 256 with 16-value sums for the K-quants, q = round_half_even(x*127/amax)),
then every output row is an integer dot product per block with a float scale
per block, written as LLVM vector IR (matmul_ir.py); chunks of rows run on
the calling thread and row_pool's workers. F16/BF16 weights are converted to
float32 a slab at a time in registers (no table) and dotted with fastmath;
F32 weights use numpy's BLAS a slab of rows at a time.

The weights are one flat read-only byte array plus a row stride (also for a
memory-mapped slice with padded rows), indexed with unsigned integers: signed
indices make Numba emit a negative-index wraparound test per load.
"""
import numba
import numpy as np
from numba import njit

from . import matmul_ir
from .row_pool import claim, finish, run
from .vector_ir import HARDWARE_F16, half_to_float

F32 = np.float32
U = np.uintp
SLAB_BYTES = 4 << 20
CHUNK = 256          # F16/BF16: floats converted per slab (stays in L1)


def flat_rows(w):
    """(flat read-only uint8 view spanning the rows of w, row stride in bytes).

    One array type for every caller (plain, memmap, padded slice, writable or
    not), so each kernel is compiled for a single signature."""
    n_out, row = w.shape
    if w.flags.c_contiguous:   # the common case, without as_strided's ~50 us per call
        flat = w.reshape(-1)
        flat.flags.writeable = False
        return flat, row
    if n_out > 1 and w.strides[0] < row:   # reversed or overlapping rows: no flat view spans them
        w = np.ascontiguousarray(w)
    stride = w.strides[0] if n_out > 1 else row
    span = (n_out - 1) * stride + row
    flat = np.lib.stride_tricks.as_strided(w, shape=(span,), strides=(1,), writeable=False)
    return flat, stride


@njit(cache=True)  # no fastmath: must round exactly like csrc/act_quant.c; serial: O(n_in) work
def quantize_act(x, block, q, d, s):
    """x f32 [n_tok, n] -> q int8 [n_tok, n], d f32 [n_tok, n/block] and
    s int32 [n_tok, n/16]: the integer sum of every 16 values."""
    n_tok, n = x.shape
    for t in range(n_tok):
        for b in range(n // block):
            amax = F32(0.0)
            for i in range(b * block, (b + 1) * block):
                a = abs(x[t, i])
                if a > amax:
                    amax = a
            d[t, b] = amax / F32(127.0)
            idv = F32(127.0) / amax if amax > F32(0.0) else F32(0.0)
            for g in range(b * block // 16, (b + 1) * block // 16):
                acc = 0
                for i in range(16 * g, 16 * g + 16):
                    v = np.int32(np.rint(x[t, i] * idv))
                    q[t, i] = v
                    acc += v
                s[t, g] = acc


# ---- F16 / BF16 ---------------------------------------------------------------

@njit(cache=True, inline="always")
def _half_to_f32(h, bf16):
    """float32 of f16 / bf16 bits h (uint32), exact and branch-free (vectorisable).
    f16 in hardware where Numba's target has it; otherwise the 15 magnitude
    bits moved to float32's exponent/mantissa position give the value
    * 2**-112 (subnormals included) and an exact multiply by 2**112 rescales
    it; exponent 31 (inf/NaN) is forced to float32's 255."""
    if bf16:
        return np.uint32(h << 16).view(np.float32)
    if HARDWARE_F16:   # vcvtph2ps on 8 values (NaN payloads may gain the quiet bit)
        return half_to_float(np.uint16(h))
    inf_nan = (((h & 0x7C00) + 0x400) >> 15) & 1          # exponent 31, without a branch
    bits = ((h & 0x8000) << 16) | ((h & 0x7FFF) << 13) | (inf_nan * 0x7F800000)
    return np.uint32(bits).view(np.float32) * F32(5.192296858534828e33)


@njit(cache=True, nogil=True)
def _mm_half(w, stride, x, out, bf16, state, chunk_rows):
    """F16 / BF16 weights: each CHUNK of a row is converted into a float32
    scratch, then dotted with every token by _dot_f32 (fastmath). The store in
    between keeps the exact 2**112 rescaling out of fastmath's reach."""
    n_tok, n_in = x.shape
    buf = np.empty(CHUNK, np.float32)
    acc = np.empty(n_tok, np.float32)
    while True:
        r0, r1 = claim(state, chunk_rows, out.shape[1])
        if r0 >= r1:
            break
        for r in range(r0, r1):
            acc[:] = 0
            for c0 in range(0, n_in, CHUNK):
                n = min(CHUNK, n_in - c0)
                o = r * stride + c0
                for i in range(n):
                    buf[U(i)] = _half_to_f32(np.uint32(w[U(o + i)]), bf16)
                for t in range(n_tok):
                    acc[t] += _dot_f32(buf, x[t], c0, n)
            for t in range(n_tok):
                out[t, r] = acc[t]
        finish(state, r1 - r0)


@njit(cache=True, fastmath=True)
def _dot_f32(a, x, x0, n):
    s = F32(0.0)
    for i in range(n):
        s += a[U(i)] * x[U(x0 + i)]
    return s


def matmul(qt, w, x, out, n_threads=None):
    """out[:] = x @ W.T; arguments already validated (numpy_backend.Backend.matmul_args)."""
    n_tok, n_in = x.shape
    n_out = w.shape[0]
    if n_out == 0 or n_tok == 0:
        return out
    if isinstance(w, np.memmap):
        w = w.view(np.ndarray)   # same memory; numba types plain arrays only
    if qt.block_size == 1 and qt.name not in ("F16", "BF16"):
        slab = max(1, SLAB_BYTES // max(1, w.shape[1]))
        for r0 in range(0, n_out, slab):
            r1 = min(n_out, r0 + slab)
            out[:, r0:r1] = x @ w[r0:r1].view(np.float32).T
        return out
    flat, stride = weight_rows(qt, w)
    return matmul_rows(qt, flat, stride, n_out, x, out, n_threads)


def weight_rows(qt, w):
    """(flat, stride): the rows of w as the kernels take them (flat_rows), for
    every type but F32; a model works this out once per matrix."""
    flat, stride = flat_rows(w)
    if qt.name in ("F16", "BF16") and stride % 2:
        # rows of a padded buffer at odd offsets: not a uint16 array
        flat, stride = flat_rows(np.ascontiguousarray(w))
    return flat, stride


def matmul_rows(qt, flat, stride, n_out, x, out, n_threads=None):
    """matmul() on weight rows already in weight_rows() form."""
    n_tok, n_in = x.shape
    if n_out == 0 or n_tok == 0:
        return out
    n_threads = n_threads or numba.get_num_threads()
    if qt.name in ("F16", "BF16"):
        run(_mm_half, (flat.view(np.uint16), stride // 2, x, out, qt.name == "BF16"), n_out, n_threads)
        return out
    block = matmul_ir.BLOCK[qt.name]
    q = np.empty((n_tok, n_in), dtype=np.int8)
    d = np.empty((n_tok, n_in // block), dtype=np.float32)
    s16 = np.empty((n_tok, n_in // 16), dtype=np.int32)
    quantize_act(x, block, q, d, s16)
    return matmul_ir.matmul(qt.name, flat, stride, q, d, s16, out, n_threads)
