"""One-token y = W @ x for the quantized types of the Numba backend: rows
decoded to float32 scratch, then float dot products.

The integer kernels of matmul.py end every block (16-32 codes) in a horizontal
reduction, which LLVM cannot keep out of the block loop. Here each weight row
is decoded a CHUNK at a time into a float32 scratch buffer that stays in L1:
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
from numba import njit, prange

from .matmul_kquant import f16_at, i32, q3_scale, scale_min_k4, u8

F32 = np.float32
U = np.uintp
CHUNK = 4096     # floats decoded per row and step (a multiple of 256): 16 KB of scratch
BIT = np.uint32(1) << np.arange(32, dtype=np.uint32)   # Q5 high-bit masks

# kind: (bytes per block, values per block); the kind numbers index this table.
LAYOUT = {"Q8_0": (0, 34, 32), "Q4_0": (1, 18, 32), "Q4_1": (2, 20, 32), "Q5_0": (3, 22, 32),
          "Q5_1": (4, 24, 32), "Q2_K": (5, 84, 256), "Q3_K": (6, 110, 256), "Q4_K": (7, 144, 256),
          "Q5_K": (8, 176, 256), "Q6_K": (9, 210, 256)}


@njit(cache=True, inline="always")
def high_bit(bits, mask, value):
    """value (int32) if bits & mask else 0: codes built in 32-bit lanes (a
    uint8 code made LLVM pack the 32-bit mask test down to bytes and back)."""
    return np.int32(value) if np.uint32(np.uint32(bits) & np.uint32(mask)) != 0 else np.int32(0)


# ---- 32-value blocks ------------------------------------------------------------
# Layouts: REFERENCE.md §1 (see matmul.py). nb blocks from byte o into buf[0:32*nb].

@njit(cache=True, fastmath={"contract"})
def _decode_q8_0(w, o, buf, nb, lane):
    wi = w.view(np.int8)
    for b in range(nb):
        ob = o + 34 * b
        dw = f16_at(w, ob)
        for j in range(2 * lane):
            buf[U(32 * b + j)] = dw * F32(wi[U(ob + 2 + j)])


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


# ---- K-quant super-blocks of 256 (layouts: matmul_kquant.py) ----------------------
# Group j's weights are dj*u + mj with dj = d*scale_j and mj = -dmin*min_j
# (Q2_K, Q4_K, Q5_K) or -offset*dj (Q3_K: 4, Q6_K: 32).

@njit(cache=True, fastmath={"contract"})
def _decode_q2_k(w, o, buf, nb, lane):
    for b in range(nb):
        ob = o + 84 * b
        d = f16_at(w, ob + 80)
        dm = -f16_at(w, ob + 82)
        for h in range(2):
            for jj in range(2):
                j = 8 * h + jj        # group of shift k: j + 2k
                s0, s1, s2, s3 = w[U(ob + j)], w[U(ob + j + 2)], w[U(ob + j + 4)], w[U(ob + j + 6)]
                d0, d1, d2, d3 = d * F32(s0 & 15), d * F32(s1 & 15), d * F32(s2 & 15), d * F32(s3 & 15)
                m0, m1, m2, m3 = dm * F32(s0 >> 4), dm * F32(s1 >> 4), dm * F32(s2 >> 4), dm * F32(s3 >> 4)
                base = ob + 16 + 32 * h + 16 * jj
                e0 = 256 * b + 128 * h + 16 * jj
                for l in range(lane):
                    c = w[U(base + l)]
                    buf[U(e0 + l)] = d0 * F32(u8(c & 3)) + m0
                    buf[U(e0 + 32 + l)] = d1 * F32(u8(u8(c >> 2) & 3)) + m1
                    buf[U(e0 + 64 + l)] = d2 * F32(u8(u8(c >> 4) & 3)) + m2
                    buf[U(e0 + 96 + l)] = d3 * F32(u8(c >> 6)) + m3


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


@njit(cache=True, inline="always")
def _q45_code(w, qs, qh, l, p, hi, five):
    """Code (int32) of element 64p + 32hi + l of a Q4_K/Q5_K super-block (p, hi
    and five literals after inlining: constant shifts and masks)."""
    c = w[U(qs + 32 * p + l)]
    u = i32(c >> 4) if hi else i32(c & 15)
    if five:
        u = u | high_bit(w[U(qh + l)], 1 << (2 * p + hi), 16)
    return u


@njit(cache=True, inline="always")
def _q45_pair(w, ob, qs, qh, buf, e, d, dm, p, five, lane):
    """Groups 2p, 2p+1 (p and five literals after inlining) of the Q4_K/Q5_K
    super-block at byte ob into buf[e+64p : e+64p+64]: one loop over their 32
    code bytes (low nibbles, high nibbles)."""
    sa, na = scale_min_k4(w, ob + 4, 2 * p)
    sb, nb = scale_min_k4(w, ob + 4, 2 * p + 1)
    da, db = d * F32(sa), d * F32(sb)
    ma, mb = dm * F32(na), dm * F32(nb)
    e0 = e + 64 * p
    for l in range(2 * lane):
        buf[U(e0 + l)] = da * F32(_q45_code(w, qs, qh, l, p, 0, five)) + ma
        buf[U(e0 + 32 + l)] = db * F32(_q45_code(w, qs, qh, l, p, 1, five)) + mb


@njit(cache=True, inline="always")
def _q45_block(w, ob, buf, e, five, lane):
    d = f16_at(w, ob)
    dm = -f16_at(w, ob + 2)
    qs = ob + (48 if five else 16)
    _q45_pair(w, ob, qs, ob + 16, buf, e, d, dm, 0, five, lane)
    _q45_pair(w, ob, qs, ob + 16, buf, e, d, dm, 1, five, lane)
    _q45_pair(w, ob, qs, ob + 16, buf, e, d, dm, 2, five, lane)
    _q45_pair(w, ob, qs, ob + 16, buf, e, d, dm, 3, five, lane)


@njit(cache=True, fastmath={"contract"})
def _decode_q45_k(w, o, buf, nb, five, lane):
    if five:   # literal flags below: a branch inside the code loops would stop the vectoriser
        for b in range(nb):
            _q45_block(w, o + 176 * b, buf, 256 * b, True, lane)
    else:
        for b in range(nb):
            _q45_block(w, o + 144 * b, buf, 256 * b, False, lane)


@njit(cache=True, fastmath={"contract"})
def _decode_q6_k(w, o, buf, nb, lane):
    for b in range(nb):
        ob = o + 210 * b
        d = f16_at(w, ob + 208)
        for h in range(2):
            for jj in range(2):
                j = ob + 192 + 8 * h + jj    # scale byte of shift k: j + 2k
                d0, d1 = d * F32(np.int8(w[U(j)])), d * F32(np.int8(w[U(j + 2)]))
                d2, d3 = d * F32(np.int8(w[U(j + 4)])), d * F32(np.int8(w[U(j + 6)]))
                ql = ob + 64 * h + 16 * jj
                qh = ob + 128 + 32 * h + 16 * jj
                e0 = 256 * b + 128 * h + 16 * jj
                for l in range(lane):
                    a = w[U(ql + l)]
                    c = w[U(ql + 32 + l)]
                    hb = w[U(qh + l)]
                    buf[U(e0 + l)] = d0 * F32(u8(u8(a & 15) | u8(u8(hb & 3) << 4))) - F32(32.0) * d0
                    buf[U(e0 + 32 + l)] = (d1 * F32(u8(u8(c & 15) | u8(u8(u8(hb >> 2) & 3) << 4)))
                                           - F32(32.0) * d1)
                    buf[U(e0 + 64 + l)] = (d2 * F32(u8(u8(a >> 4) | u8(u8(u8(hb >> 4) & 3) << 4)))
                                           - F32(32.0) * d2)
                    buf[U(e0 + 96 + l)] = d3 * F32(u8(u8(c >> 4) | u8(u8(hb >> 6) << 4))) - F32(32.0) * d3


@njit(cache=True)
def _decode(kind, w, o, buf, n, lane):
    """n values of a row's weights of type `kind` (LAYOUT) from byte o into buf[0:n]."""
    if kind == 0:
        _decode_q8_0(w, o, buf, n // 32, lane)
    elif kind <= 2:
        _decode_q4(w, o, buf, n // 32, kind == 2, lane)
    elif kind <= 4:
        _decode_q5(w, o, buf, n // 32, kind == 4, lane)
    elif kind == 5:
        _decode_q2_k(w, o, buf, n // 256, lane)
    elif kind == 6:
        _decode_q3_k(w, o, buf, n // 256, lane)
    elif kind <= 8:
        _decode_q45_k(w, o, buf, n // 256, kind == 8, lane)
    else:
        _decode_q6_k(w, o, buf, n // 256, lane)


@njit(cache=True, fastmath=True)
def _dot(a, x, x0, n):
    """a[0:n] . x[x0:x0+n]: fastmath lets LLVM keep 4 vectors of running sums."""
    s = F32(0.0)
    for i in range(n):
        s += a[U(i)] * x[U(x0 + i)]
    return s


@njit(cache=True, parallel=True)
def _matvec(kind, w, stride, block_bytes, block_values, xh, out, chunk, n_job, lane):
    """out[r] = row r of W . xh, `chunk` values of a row decoded at a time; rows
    split into n_job contiguous runs (one per thread, each with its own scratch)."""
    n_in = xh.shape[0]
    n_out = out.shape[0]
    for job in prange(n_job):
        buf = np.empty(chunk, np.float32)
        for r in range(job * n_out // n_job, (job + 1) * n_out // n_job):
            acc = F32(0.0)
            for c0 in range(0, n_in, chunk):
                n = min(chunk, n_in - c0)
                _decode(kind, w, r * stride + (c0 // block_values) * block_bytes, buf, n, lane)
                acc += _dot(buf, xh, c0, n)
            out[r] = acc


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
    """out[0] = W @ x[0] for W of quantized type `name` (a LAYOUT key) given as
    flat bytes + row stride (matmul.flat_rows); runs on n_threads threads."""
    kind, block_bytes, block_values = LAYOUT[name]
    xh = dequantized_act(x[0], 256 if block_values == 256 else 32)
    n_job = max(1, min(n_threads, out.shape[1] // 16))
    _matvec(kind, flat, stride, block_bytes, block_values, xh, out[0], CHUNK, n_job, lane)
    return out
