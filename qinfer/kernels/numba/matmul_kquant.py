"""K-quant matmul kernels of the Numba backend (Q2_K .. Q6_K against Q8_K-style activations).

Same decomposition as csrc/dot_kquant.c: per 16-weight group j of a
super-block, weight = dw*sc[j]*u - dmw*mn[j] with an unsigned code u, so
    dot = da * (dw * sum_j sc[j]*sum16(u*q) - dmw * sum_j mn[j]*bsum[j])
with integer inner sums. Layouts: REFERENCE.md §1. Chunks of rows run on the
calling thread and row_pool's workers.

The weights arrive as one flat byte array with a row stride, indices are
unsigned and the innermost loops over a group's codes run `lane` (16, passed
at run time) or 2*lane times so that LLVM vectorises them (see matmul.py's
module doc for why each of these matters).
"""
import platform

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .row_pool import claim, finish, run

F32 = np.float32
U = np.uintp
F16_TABLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


def _hardware_f16():
    """Whether LLVM converts half to float in one instruction for Numba's target:
    arm64 always, x86 with F16C. Elsewhere LLVM would call a runtime helper
    that Numba does not link (a crash), so the table is used instead."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    if numba.config.CPU_FEATURES:   # NUMBA_CPU_FEATURES overrides the host's
        return "+f16c" in numba.config.CPU_FEATURES.split(",")
    return bool(llvm.get_host_cpu_features().get("f16c", False))


HARDWARE_F16 = _hardware_f16()


@intrinsic
def half_to_float(typingctx, bits):
    """float32 of IEEE half bits (uint16) by LLVM's fpext: vcvtph2ps with F16C,
    fcvt on arm64 (only used when HARDWARE_F16)."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    return sig, codegen


@njit(cache=True, inline="always")
def i32(v):
    """Back to int32: Numba widens integer arithmetic to int64, LLVM then narrows it again."""
    return np.int32(v)


@njit(cache=True, inline="always")
def u8(v):
    """Back to uint8 after each step of a code's bit fiddling: without it LLVM
    vectorises the int64 arithmetic Numba emits in 64-bit lanes."""
    return np.uint8(v)


@njit(cache=True, inline="always")
def f16_at(w, o):
    """The f16 at byte o of the flat weights, as float32 (once per block).
    In hardware where it can be: the 256 KB table's random reads compete
    with the weights for the caches."""
    bits = np.uint16(np.uint16(w[U(o)]) | np.uint16(np.uint16(w[U(o + 1)]) << 8))
    if HARDWARE_F16:
        return half_to_float(bits)
    return F16_TABLE[bits]


@njit(cache=True, inline="always")
def mac(acc, code, qv):
    """acc + code*qv in int32 (int16 operands: the pattern LLVM turns into vpmaddwd)."""
    return i32(acc + i32(np.int16(code) * np.int16(qv)))


@njit(cache=True, inline="always")
def bit_set(byte, mask):
    """1 if byte & mask else 0 (uint8): a mask test instead of a variable
    shift, which LLVM would vectorise in 64-bit lanes (for the same reason
    the test is made on the 32-bit truncation of the 64-bit `&`)."""
    return u8(1) if np.uint32(byte & mask) != 0 else u8(0)


# The 2-bit formats: a 128-element half h of a super-block keeps its codes in
# 32 bytes (shift 2k selects elements 32k..32k+31), 16 bytes per 16-group j =
# 8h + 2k + jj. Q3_K adds bit 4h+k of hmask byte 16jj+l as bit 2 of the code.

@njit(cache=True, nogil=True, fastmath=True)
def _mm_q23_k(w, stride, q, d, s16, out, three, lane, state, chunk_rows):
    n_tok, n_in = q.shape
    bb = 110 if three else 84
    qs0 = 32 if three else 16
    while True:
        r0, r1 = claim(state, chunk_rows, out.shape[1])
        if r0 >= r1:
            break
        for r in range(r0, r1):
            for t in range(n_tok):
                qt = q[t]
                acc = F32(0.0)
                for b in range(n_in // 256):
                    o = r * stride + b * bb
                    sumi = i32(0)
                    summ = i32(0)
                    for h in range(2):
                        m0, m1, m2, m3 = 1 << (4 * h), 2 << (4 * h), 4 << (4 * h), 8 << (4 * h)
                        for jj in range(2):
                            base = o + qs0 + 32 * h + 16 * jj
                            e0 = 256 * b + 128 * h + 16 * jj
                            g0 = g1 = g2 = g3 = i32(0)
                            if three:
                                for l in range(lane):
                                    c = w[U(base + l)]
                                    hb = w[U(o + 16 * jj + l)]
                                    g0 = mac(g0, u8(u8(c & 3) | u8(bit_set(hb, m0) << 2)), qt[U(e0 + l)])
                                    g1 = mac(g1, u8(u8(u8(c >> 2) & 3) | u8(bit_set(hb, m1) << 2)), qt[U(e0 + 32 + l)])
                                    g2 = mac(g2, u8(u8(u8(c >> 4) & 3) | u8(bit_set(hb, m2) << 2)), qt[U(e0 + 64 + l)])
                                    g3 = mac(g3, u8(u8(c >> 6) | u8(bit_set(hb, m3) << 2)), qt[U(e0 + 96 + l)])
                            else:
                                for l in range(lane):
                                    c = w[U(base + l)]
                                    g0 = mac(g0, u8(c & 3), qt[U(e0 + l)])
                                    g1 = mac(g1, u8(u8(c >> 2) & 3), qt[U(e0 + 32 + l)])
                                    g2 = mac(g2, u8(u8(c >> 4) & 3), qt[U(e0 + 64 + l)])
                                    g3 = mac(g3, u8(c >> 6), qt[U(e0 + 96 + l)])
                            for k in range(4):
                                j = 8 * h + 2 * k + jj
                                g = g0 if k == 0 else g1 if k == 1 else g2 if k == 2 else g3
                                if three:
                                    sc = q3_scale(w, o, j)
                                    sumi = i32(sumi + sc * g)
                                    summ = i32(summ + 4 * sc * s16[t, 16 * b + j])
                                else:
                                    sc = np.int32(w[U(o + j)])
                                    sumi = i32(sumi + (sc & 15) * g)
                                    summ = i32(summ + (sc >> 4) * s16[t, 16 * b + j])
                    if three:
                        acc += d[t, b] * f16_at(w, o + 108) * F32(sumi - summ)
                    else:
                        acc += d[t, b] * (f16_at(w, o + 80) * F32(sumi) - f16_at(w, o + 82) * F32(summ))
                out[t, r] = acc
        finish(state, r1 - r0)


@njit(cache=True, inline="always")
def q3_scale(w, o, j):
    """Signed 6-bit scale of group j (Q3_K, scales at o + 96)."""
    s = o + 96
    low = (np.int32(w[U(s + j)]) & 15) if j < 8 else (np.int32(w[U(s + j - 8)]) >> 4)
    high = (np.int32(w[U(s + 8 + j % 4)]) >> (2 * (j // 4))) & 3
    return (low | (high << 4)) - 32


@njit(cache=True, inline="always")
def scale_min_k4(w, s, g):
    """6-bit scale and min of 32-group g (Q4_K/Q5_K scales at byte s)."""
    if g < 4:
        return np.int32(w[U(s + g)]) & 63, np.int32(w[U(s + g + 4)]) & 63
    sc = (np.int32(w[U(s + g + 4)]) & 15) | ((np.int32(w[U(s + g - 4)]) >> 6) << 4)
    m = (np.int32(w[U(s + g + 4)]) >> 4) | ((np.int32(w[U(s + g)]) >> 6) << 4)
    return sc, m


# Q4_K/Q5_K: 32-group pair p (groups 2p, 2p+1) shares the 32 code bytes at
# qs + 32p (low and high nibble); Q5_K's fifth bit of element 32g+l is bit g
# of qh byte l. One loop over l covers all eight groups with each code
# multiplied by its 6-bit group scale first (sc*u <= 63*31 fits int16), so the
# super-block needs a single integer reduction.

@njit(cache=True, inline="always")
def _k4_code(w, qs, qh, l, p, hi, five):
    """Code of element 64p + 32hi + l (every step truncated, see u8)."""
    c = w[U(qs + 32 * p + l)]
    u = u8(c >> 4) if hi else u8(c & 15)
    if five:
        u = u8(u | u8(u8(u8(w[U(qh + l)] >> (2 * p + hi)) & 1) << 4))
    return u


@njit(cache=True, inline="always")
def _q45_sum(w, qt, qs, qh, e0, sc, five, lane):
    """sum over the super-block of sc[group] * u * q (one int32 reduction)."""
    s0, s1, s2, s3, s4, s5, s6, s7 = sc
    sumi = i32(0)
    for l in range(2 * lane):
        sumi = mac(sumi, s0 * _k4_code(w, qs, qh, l, 0, 0, five), qt[U(e0 + l)])
        sumi = mac(sumi, s1 * _k4_code(w, qs, qh, l, 0, 1, five), qt[U(e0 + 32 + l)])
        sumi = mac(sumi, s2 * _k4_code(w, qs, qh, l, 1, 0, five), qt[U(e0 + 64 + l)])
        sumi = mac(sumi, s3 * _k4_code(w, qs, qh, l, 1, 1, five), qt[U(e0 + 96 + l)])
        sumi = mac(sumi, s4 * _k4_code(w, qs, qh, l, 2, 0, five), qt[U(e0 + 128 + l)])
        sumi = mac(sumi, s5 * _k4_code(w, qs, qh, l, 2, 1, five), qt[U(e0 + 160 + l)])
        sumi = mac(sumi, s6 * _k4_code(w, qs, qh, l, 3, 0, five), qt[U(e0 + 192 + l)])
        sumi = mac(sumi, s7 * _k4_code(w, qs, qh, l, 3, 1, five), qt[U(e0 + 224 + l)])
    return sumi


@njit(cache=True, nogil=True, fastmath=True)
def _mm_q45_k(w, stride, q, d, s16, out, five, lane, state, chunk_rows):
    n_tok, n_in = q.shape
    bb = 176 if five else 144
    qs0 = 48 if five else 16
    while True:
        r0, r1 = claim(state, chunk_rows, out.shape[1])
        if r0 >= r1:
            break
        for r in range(r0, r1):
            for t in range(n_tok):
                qt = q[t]
                acc = F32(0.0)
                for b in range(n_in // 256):
                    o = r * stride + b * bb
                    s0, m0 = scale_min_k4(w, o + 4, 0)
                    s1, m1 = scale_min_k4(w, o + 4, 1)
                    s2, m2 = scale_min_k4(w, o + 4, 2)
                    s3, m3 = scale_min_k4(w, o + 4, 3)
                    s4, m4 = scale_min_k4(w, o + 4, 4)
                    s5, m5 = scale_min_k4(w, o + 4, 5)
                    s6, m6 = scale_min_k4(w, o + 4, 6)
                    s7, m7 = scale_min_k4(w, o + 4, 7)
                    sb = 16 * b
                    summ = i32(m0 * (s16[t, sb] + s16[t, sb + 1]) + m1 * (s16[t, sb + 2] + s16[t, sb + 3])
                               + m2 * (s16[t, sb + 4] + s16[t, sb + 5]) + m3 * (s16[t, sb + 6] + s16[t, sb + 7])
                               + m4 * (s16[t, sb + 8] + s16[t, sb + 9]) + m5 * (s16[t, sb + 10] + s16[t, sb + 11])
                               + m6 * (s16[t, sb + 12] + s16[t, sb + 13]) + m7 * (s16[t, sb + 14] + s16[t, sb + 15]))
                    sc = (s0, s1, s2, s3, s4, s5, s6, s7)
                    if five:   # a literal flag per call: a branch inside the loop would stop the vectoriser
                        sumi = _q45_sum(w, qt, o + qs0, o + 16, 256 * b, sc, True, lane)
                    else:
                        sumi = _q45_sum(w, qt, o + qs0, o + 16, 256 * b, sc, False, lane)
                    acc += d[t, b] * (f16_at(w, o) * F32(sumi) - f16_at(w, o + 2) * F32(summ))
                out[t, r] = acc
        finish(state, r1 - r0)


# Q6_K: half h keeps low nibbles in ql = 64 bytes at 64h and 2-bit highs in
# qh = 32 bytes at 128 + 32h; element 128h + 32k + l takes ql[l + 32(k%2)]'s
# nibble k//2 and qh[l]'s bits 2k, 2k+1. Group j = 8h + 2k + (l >= 16).

@njit(cache=True, nogil=True, fastmath=True)
def _mm_q6_k(w, stride, q, d, s16, out, lane, state, chunk_rows):
    n_tok, n_in = q.shape
    while True:
        r0, r1 = claim(state, chunk_rows, out.shape[1])
        if r0 >= r1:
            break
        for r in range(r0, r1):
            for t in range(n_tok):
                qt = q[t]
                acc = F32(0.0)
                for b in range(n_in // 256):
                    o = r * stride + b * 210
                    sumi = i32(0)
                    summ = i32(0)
                    for h in range(2):
                        for jj in range(2):
                            ql = o + 64 * h + 16 * jj
                            qh = o + 128 + 32 * h + 16 * jj
                            e0 = 256 * b + 128 * h + 16 * jj
                            g0 = g1 = g2 = g3 = i32(0)
                            for l in range(lane):
                                a = w[U(ql + l)]
                                c = w[U(ql + 32 + l)]
                                hb = w[U(qh + l)]
                                g0 = mac(g0, u8(u8(a & 15) | u8(u8(hb & 3) << 4)), qt[U(e0 + l)])
                                g1 = mac(g1, u8(u8(c & 15) | u8(u8(u8(hb >> 2) & 3) << 4)), qt[U(e0 + 32 + l)])
                                g2 = mac(g2, u8(u8(a >> 4) | u8(u8(u8(hb >> 4) & 3) << 4)), qt[U(e0 + 64 + l)])
                                g3 = mac(g3, u8(u8(c >> 4) | u8(u8(hb >> 6) << 4)), qt[U(e0 + 96 + l)])
                            for k in range(4):
                                j = 8 * h + 2 * k + jj
                                sc = np.int32(np.int8(w[U(o + 192 + j)]))
                                sumi = i32(sumi + sc * (g0 if k == 0 else g1 if k == 1 else g2 if k == 2 else g3))
                                summ = i32(summ + 32 * sc * s16[t, 16 * b + j])
                    acc += d[t, b] * f16_at(w, o + 208) * F32(sumi - summ)
                out[t, r] = acc
        finish(state, r1 - r0)


def matmul(ggml_id, w, stride, q, d, s16, out, lane, n_threads):
    n_out = out.shape[1]
    if ggml_id in (10, 11):
        run(_mm_q23_k, (w, stride, q, d, s16, out, ggml_id == 11, lane), n_out, n_threads)
    elif ggml_id in (12, 13):
        run(_mm_q45_k, (w, stride, q, d, s16, out, ggml_id == 13, lane), n_out, n_threads)
    else:
        run(_mm_q6_k, (w, stride, q, d, s16, out, lane), n_out, n_threads)
