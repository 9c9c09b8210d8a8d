"""One-token y = W @ x for the quantized types of the Numba backend: rows
decoded to float32 scratch, then float dot products.

The integer kernels of matmul.py end every block (16-32 codes) in a horizontal
reduction, which LLVM cannot keep out of the block loop. Here each weight row
is decoded a CHUNK at a time into a float32 scratch buffer that stays in L1/L2:
a loop per block (16-32 codes) with no reduction (broadcast the block's scale,
unpack the codes, convert, one fused multiply-add, store), which LLVM
vectorises at 8 floats per instruction. The chunk is then dotted with the
activations in one fastmath loop whose running sums stay in vector registers
and are reduced once per chunk.

The activations are first replaced by their quantized values (q * d per block,
exactly what matmul.py and the C core multiply with), so a token computed alone
gives the numbers a batch gives up to float summation order; only the order of
the float additions differs from the integer kernels.

Decoded weights equal gguf-py's dequantization: w = d*u + m per block or
group, d and m products of f16 scales and small integers (exact in float32),
so the one fused multiply-add rounds once.
"""
import numpy as np
from numba import njit

from .matmul_kquant import f16_at, i32, q3_scale, u8
from .row_pool import claim, finish, run

F32 = np.float32
U = np.uintp
CHUNK = 4096     # floats decoded per row and step (a multiple of 256): 16 KB of scratch
BIT = np.uint32(1) << np.arange(32, dtype=np.uint32)   # Q5 high-bit masks

# The types decoded here: the others' integer kernels (matmul.py,
# matmul_kquant.py) measured as fast or faster (benches/README.md).
TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q3_K")


@njit(cache=True, inline="always")
def high_bit(bits, mask, value):
    """value (int32) if bits & mask else 0: codes built in 32-bit lanes (a
    uint8 code made LLVM pack the 32-bit mask test down to bytes and back)."""
    return np.int32(value) if np.uint32(np.uint32(bits) & np.uint32(mask)) != 0 else np.int32(0)


# ---- 32-value blocks ------------------------------------------------------------
# Layouts: REFERENCE.md §1 (see matmul.py). nb blocks from byte o into buf[0:32*nb].

@njit(cache=True, fastmath={"contract"})
def _decode_q4(w, o, buf, nb, with_min, lane):
    bb = 20 if with_min else 18
    for b in range(nb):
        ob = o + bb * b
        dw = f16_at(w, ob)
        cw = f16_at(w, ob + 2) if with_min else F32(-8.0) * dw
        qs = ob + (4 if with_min else 2)
        for j in range(lane):
            c = w[U(qs + j)]
            buf[U(32 * b + j)] = dw * F32(u8(c & 15)) + cw
            buf[U(32 * b + 16 + j)] = dw * F32(u8(c >> 4)) + cw


@njit(cache=True, fastmath={"contract"})
def _decode_q5(w, o, buf, nb, with_min, lane):
    bb = 24 if with_min else 22
    for b in range(nb):
        ob = o + bb * b
        dw = f16_at(w, ob)
        cw = f16_at(w, ob + 2) if with_min else F32(-16.0) * dw
        qh0 = ob + (4 if with_min else 2)
        qh = (np.uint32(w[U(qh0)]) | (np.uint32(w[U(qh0 + 1)]) << 8) |
              (np.uint32(w[U(qh0 + 2)]) << 16) | (np.uint32(w[U(qh0 + 3)]) << 24))
        for j in range(lane):
            c = w[U(qh0 + 4 + j)]
            lo = i32(c & 15) | high_bit(qh, BIT[U(j)], 16)
            hi = i32(c >> 4) | high_bit(qh, BIT[U(j + 16)], 16)
            buf[U(32 * b + j)] = dw * F32(lo) + cw
            buf[U(32 * b + 16 + j)] = dw * F32(hi) + cw


# ---- Q3_K super-blocks of 256 (layout: matmul_kquant.py) ----------------------------
# Group j's weights are dj*(u - 4) with dj = d*scale_j (signed 6-bit scale).

@njit(cache=True, inline="always")
def _q3_half(w, ob, buf, e, d, h, lane):
    """Half h (a literal after inlining: constant hmask bits 4h..4h+3) of a
    Q3_K super-block at byte ob into buf[e:e+128]."""
    m0, m1, m2, m3 = 1 << (4 * h), 2 << (4 * h), 4 << (4 * h), 8 << (4 * h)
    for jj in range(2):
        j = 8 * h + jj
        d0, d1 = d * F32(q3_scale(w, ob, j)), d * F32(q3_scale(w, ob, j + 2))
        d2, d3 = d * F32(q3_scale(w, ob, j + 4)), d * F32(q3_scale(w, ob, j + 6))
        base = ob + 32 + 32 * h + 16 * jj
        e0 = e + 16 * jj
        for l in range(lane):
            c = w[U(base + l)]
            hb = w[U(ob + 16 * jj + l)]
            buf[U(e0 + l)] = d0 * F32(i32(c & 3) | high_bit(hb, m0, 4)) - F32(4.0) * d0
            buf[U(e0 + 32 + l)] = d1 * F32(i32((c >> 2) & 3) | high_bit(hb, m1, 4)) - F32(4.0) * d1
            buf[U(e0 + 64 + l)] = d2 * F32(i32((c >> 4) & 3) | high_bit(hb, m2, 4)) - F32(4.0) * d2
            buf[U(e0 + 96 + l)] = d3 * F32(i32(c >> 6) | high_bit(hb, m3, 4)) - F32(4.0) * d3


@njit(cache=True, fastmath={"contract"})
def _decode_q3_k(w, o, buf, nb, lane):
    for b in range(nb):
        ob = o + 110 * b
        d = f16_at(w, ob + 108)
        _q3_half(w, ob, buf, 256 * b, d, 0, lane)
        _q3_half(w, ob, buf, 256 * b + 128, d, 1, lane)


@njit(cache=True, fastmath=True)
def _dot(a, x, x0, n):
    """a[0:n] . x[x0:x0+n]: fastmath lets LLVM keep 4 vectors of running sums."""
    s = F32(0.0)
    for i in range(n):
        s += a[U(i)] * x[U(x0 + i)]
    return s


# One kernel per family (a shared kernel with a run-time type switch took
# ~50 s to compile: LLVM optimises every decoder inside the parallel loop).
# Each participating thread (row_pool) has its own scratch and claims chunks
# of rows; each row is decoded `chunk` values at a time and dotted.

@njit(cache=True, nogil=True)
def _matvec_q4(w, stride, xh, out, chunk, with_min, lane, state, chunk_rows):
    bb = 20 if with_min else 18
    buf = np.empty(chunk, np.float32)
    while True:
        r0, r1 = claim(state, chunk_rows, out.shape[0])
        if r0 >= r1:
            break
        for r in range(r0, r1):
            acc = F32(0.0)
            for c0 in range(0, xh.shape[0], chunk):
                n = min(chunk, xh.shape[0] - c0)
                _decode_q4(w, r * stride + c0 // 32 * bb, buf, n // 32, with_min, lane)
                acc += _dot(buf, xh, c0, n)
            out[r] = acc
        finish(state, r1 - r0)


@njit(cache=True, nogil=True)
def _matvec_q5(w, stride, xh, out, chunk, with_min, lane, state, chunk_rows):
    bb = 24 if with_min else 22
    buf = np.empty(chunk, np.float32)
    while True:
        r0, r1 = claim(state, chunk_rows, out.shape[0])
        if r0 >= r1:
            break
        for r in range(r0, r1):
            acc = F32(0.0)
            for c0 in range(0, xh.shape[0], chunk):
                n = min(chunk, xh.shape[0] - c0)
                _decode_q5(w, r * stride + c0 // 32 * bb, buf, n // 32, with_min, lane)
                acc += _dot(buf, xh, c0, n)
            out[r] = acc
        finish(state, r1 - r0)


@njit(cache=True, nogil=True)
def _matvec_q3_k(w, stride, xh, out, chunk, lane, state, chunk_rows):
    buf = np.empty(chunk, np.float32)
    while True:
        r0, r1 = claim(state, chunk_rows, out.shape[0])
        if r0 >= r1:
            break
        for r in range(r0, r1):
            acc = F32(0.0)
            for c0 in range(0, xh.shape[0], chunk):
                n = min(chunk, xh.shape[0] - c0)
                _decode_q3_k(w, r * stride + c0 // 256 * 110, buf, n // 256, lane)
                acc += _dot(buf, xh, c0, n)
            out[r] = acc
        finish(state, r1 - r0)


@njit(cache=True)  # no fastmath: the same rounding as matmul.quantize_act and csrc/act_quant.c
def dequantized_act(x, block):
    """x f32 [n] -> its block-quantized values q*d (q = round_half_even(x*127/amax))."""
    xh = np.empty_like(x)
    for b in range(x.shape[0] // block):
        amax = F32(0.0)
        for i in range(b * block, (b + 1) * block):
            a = abs(x[i])
            if a > amax:
                amax = a
        d = amax / F32(127.0)
        idv = F32(127.0) / amax if amax > F32(0.0) else F32(0.0)
        for i in range(b * block, (b + 1) * block):
            xh[i] = d * F32(np.int32(np.rint(x[i] * idv)))
    return xh


def matvec(name, flat, stride, x, out, n_threads, lane):
    """out[0] = W @ x[0] for W of type `name` (one of TYPES) given as flat
    bytes + row stride (matmul.flat_rows); on up to n_threads threads."""
    xh = dequantized_act(x[0], 256 if name == "Q3_K" else 32)
    n_out = out.shape[1]
    if name in ("Q4_0", "Q4_1"):
        run(_matvec_q4, (flat, stride, xh, out[0], CHUNK, name == "Q4_1", lane), n_out, n_threads)
    elif name in ("Q5_0", "Q5_1"):
        run(_matvec_q5, (flat, stride, xh, out[0], CHUNK, name == "Q5_1", lane), n_out, n_threads)
    else:
        run(_matvec_q3_k, (flat, stride, xh, out[0], CHUNK, lane), n_out, n_threads)
    return out
