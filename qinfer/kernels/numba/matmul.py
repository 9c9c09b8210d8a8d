"""y = x @ W.T for the Numba backend, mirroring csrc/matmul.c.

Quantized weights: the activations are quantized once per call exactly like
the native core (csrc/act_quant.c: per 32 values for the 32-element formats,
per 256 with 16-value sums for the K-quants, q = round_half_even(x*127/amax)),
then every output row is an integer dot product per block with a float scale
per block; rows run in parallel (prange). The K-quant kernels live in
matmul_kquant.py. F16/BF16 weights go through a 64K-entry conversion table
in a jitted dot product; F32 weights use numpy's BLAS a slab of rows at a time
(float32 accumulation).
"""
import numba
import numpy as np
from numba import njit, prange

from . import matmul_kquant

F32 = np.float32
SLAB_BYTES = 4 << 20
# f16 / bf16 bit patterns -> float32 (exact); a table lookup replaces the
# branchy bit manipulation in the inner loops (numba freezes global arrays
# into the compiled code).
F16_TABLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
BF16_TABLE = (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32)


@njit(cache=True, inline="always")
def f16_at(w, r, o):
    return F16_TABLE[np.int64(w[r, o]) | (np.int64(w[r, o + 1]) << 8)]


@njit(cache=True, parallel=True, fastmath=True)
def _mm_half(w16, x, out, table):
    """F16 / BF16 weights (uint16 [n_out, n_in]) through a conversion table.
    fastmath lets LLVM reorder (vectorise) the float sum, as the SIMD kernels do."""
    for r in prange(w16.shape[0]):
        for t in range(x.shape[0]):
            acc = F32(0.0)
            for i in range(x.shape[1]):
                acc += table[w16[r, i]] * x[t, i]
            out[t, r] = acc


@njit(cache=True, parallel=True)  # no fastmath: must round exactly like csrc/act_quant.c
def quantize_act(x, block, q, d, s):
    """x f32 [n_tok, n] -> q int8 [n_tok, n], d f32 [n_tok, n/block] and
    s int32 [n_tok, n/16]: the integer sum of every 16 values."""
    n_tok, n = x.shape
    for t in prange(n_tok):
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


# ---- 32-element formats ---------------------------------------------------------
# Block layouts (REFERENCE.md §1); weight = dw*u + cw with u the unsigned code
# (Q4_0: cw = -8*dw, Q5_0: -16*dw, Q4_1/Q5_1: cw = m), so a block's dot product
# is dw*da*sum(u*q) + cw*da*sum(q).

@njit(cache=True, parallel=True, fastmath=True)
def _mm_q4(w, q, d, s16, out, with_min):
    n_tok, n_in = q.shape
    bb = 20 if with_min else 18
    qs0 = 4 if with_min else 2
    for r in prange(w.shape[0]):
        for t in range(n_tok):
            acc = F32(0.0)
            for b in range(n_in // 32):
                o = b * bb
                dw = f16_at(w, r, o)
                cw = f16_at(w, r, o + 2) if with_min else F32(-8.0) * dw
                isum = 0
                for j in range(16):
                    c = np.int32(w[r, o + qs0 + j])
                    isum += (c & 15) * np.int32(q[t, 32 * b + j]) + (c >> 4) * np.int32(q[t, 32 * b + 16 + j])
                da = d[t, b]
                acc += dw * da * F32(isum) + cw * (da * F32(s16[t, 2 * b] + s16[t, 2 * b + 1]))
            out[t, r] = acc


@njit(cache=True, parallel=True, fastmath=True)
def _mm_q5(w, q, d, s16, out, with_min):
    n_tok, n_in = q.shape
    bb = 24 if with_min else 22
    qh0 = 4 if with_min else 2
    for r in prange(w.shape[0]):
        for t in range(n_tok):
            acc = F32(0.0)
            for b in range(n_in // 32):
                o = b * bb
                dw = f16_at(w, r, o)
                cw = f16_at(w, r, o + 2) if with_min else F32(-16.0) * dw
                qh = (np.uint32(w[r, o + qh0]) | (np.uint32(w[r, o + qh0 + 1]) << 8) |
                      (np.uint32(w[r, o + qh0 + 2]) << 16) | (np.uint32(w[r, o + qh0 + 3]) << 24))
                isum = 0
                for j in range(16):
                    c = np.int32(w[r, o + qh0 + 4 + j])
                    lo = (c & 15) | np.int32(((qh >> j) & 1) << 4)
                    hi = (c >> 4) | np.int32(((qh >> (j + 16)) & 1) << 4)
                    isum += lo * np.int32(q[t, 32 * b + j]) + hi * np.int32(q[t, 32 * b + 16 + j])
                da = d[t, b]
                acc += dw * da * F32(isum) + cw * (da * F32(s16[t, 2 * b] + s16[t, 2 * b + 1]))
            out[t, r] = acc


@njit(cache=True, parallel=True, fastmath=True)
def _mm_q8_0(w, q, d, out):
    n_tok, n_in = q.shape
    for r in prange(w.shape[0]):
        for t in range(n_tok):
            acc = F32(0.0)
            for b in range(n_in // 32):
                o = b * 34
                isum = 0
                for j in range(32):
                    isum += np.int32(np.int8(w[r, o + 2 + j])) * np.int32(q[t, 32 * b + j])
                acc += f16_at(w, r, o) * d[t, b] * F32(isum)
            out[t, r] = acc


def _float_rows(qt, w):
    """F32 weight rows (a slab) as float32."""
    return w.view(np.float32)


def matmul(qt, w, x, out, n_threads=None):
    """out[:] = x @ W.T; arguments already validated (numpy_backend.Backend.matmul_args)."""
    n_tok, n_in = x.shape
    n_out = w.shape[0]
    if n_out == 0 or n_tok == 0:
        return out
    if isinstance(w, np.memmap):
        w = w.view(np.ndarray)   # same memory; numba types plain arrays only
    if qt.name in ("F16", "BF16"):
        _mm_half(w.view(np.uint16), x, out, F16_TABLE if qt.name == "F16" else BF16_TABLE)
        return out
    if qt.block_size == 1:
        slab = max(1, SLAB_BYTES // max(1, w.shape[1]))
        for r0 in range(0, n_out, slab):
            r1 = min(n_out, r0 + slab)
            out[:, r0:r1] = x @ _float_rows(qt, w[r0:r1]).T
        return out
    old = numba.get_num_threads()
    if n_threads:
        numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        block = 256 if qt.block_size == 256 else 32
        q = np.empty((n_tok, n_in), dtype=np.int8)
        d = np.empty((n_tok, n_in // block), dtype=np.float32)
        s16 = np.empty((n_tok, n_in // 16), dtype=np.int32)
        quantize_act(x, block, q, d, s16)
        res = out
        name = qt.name
        if name in ("Q4_0", "Q4_1"):
            _mm_q4(w, q, d, s16, res, name == "Q4_1")
        elif name in ("Q5_0", "Q5_1"):
            _mm_q5(w, q, d, s16, res, name == "Q5_1")
        elif name == "Q8_0":
            _mm_q8_0(w, q, d, res)
        else:
            matmul_kquant.matmul(qt.ggml_id, w, q, d, s16, res)
    finally:
        numba.set_num_threads(old)
    return out
