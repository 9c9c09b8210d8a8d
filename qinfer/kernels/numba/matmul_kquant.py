"""K-quant matmul kernels of the Numba backend (Q2_K .. Q6_K against Q8_K-style activations).

Same decomposition as csrc/dot_kquant.c: per 16-weight group j of a
super-block, weight = dw*sc[j]*u - dmw*mn[j] with an unsigned code u, so
    dot = da * (dw * sum_j sc[j]*sum16(u*q) - dmw * sum_j mn[j]*bsum[j])
with integer inner sums. Layouts: REFERENCE.md §1. Rows run in parallel.
"""
import numpy as np
from numba import njit, prange

F32 = np.float32
F16_TABLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


@njit(cache=True, inline="always")
def _f16(w, r, o):
    return F16_TABLE[np.int64(w[r, o]) | (np.int64(w[r, o + 1]) << 8)]


@njit(cache=True, parallel=True, fastmath=True)
def _mm_q2_k(w, q, d, s16, out):
    n_tok, n_in = q.shape
    for r in prange(w.shape[0]):
        for t in range(n_tok):
            acc = F32(0.0)
            for b in range(n_in // 256):
                o = b * 84
                sumi = 0
                summ = 0
                for j in range(16):
                    sc = np.int32(w[r, o + j])
                    base = o + 16 + 32 * (j // 8) + 16 * (j % 2)
                    shift = 2 * ((j % 8) // 2)
                    g = 0
                    for l in range(16):
                        g += ((np.int32(w[r, base + l]) >> shift) & 3) * np.int32(q[t, 256 * b + 16 * j + l])
                    sumi += (sc & 15) * g
                    summ += (sc >> 4) * s16[t, 16 * b + j]
                acc += d[t, b] * (_f16(w, r, o + 80) * F32(sumi) - _f16(w, r, o + 82) * F32(summ))
            out[t, r] = acc


@njit(cache=True, inline="always")
def _q3_scale(w, r, o, j):
    """Signed 6-bit scale of group j (Q3_K, scales at o + 96)."""
    s = o + 96
    low = (np.int32(w[r, s + j]) & 15) if j < 8 else (np.int32(w[r, s + j - 8]) >> 4)
    high = (np.int32(w[r, s + 8 + j % 4]) >> (2 * (j // 4))) & 3
    return (low | (high << 4)) - 32


@njit(cache=True, parallel=True, fastmath=True)
def _mm_q3_k(w, q, d, s16, out):
    n_tok, n_in = q.shape
    for r in prange(w.shape[0]):
        for t in range(n_tok):
            acc = F32(0.0)
            for b in range(n_in // 256):
                o = b * 110
                sumi = 0
                summ = 0
                for j in range(16):
                    sc = _q3_scale(w, r, o, j)
                    base = o + 32 + 32 * (j // 8) + 16 * (j % 2)
                    shift = 2 * ((j % 8) // 2)
                    hbit = j // 2          # element e = 16j + l: hmask bit e // 32
                    g = 0
                    for l in range(16):
                        e32 = 16 * (j % 2) + l
                        c = ((np.int32(w[r, base + l]) >> shift) & 3) | (((np.int32(w[r, o + e32]) >> hbit) & 1) << 2)
                        g += c * np.int32(q[t, 256 * b + 16 * j + l])
                    sumi += sc * g
                    summ += 4 * sc * s16[t, 16 * b + j]
                acc += d[t, b] * _f16(w, r, o + 108) * F32(sumi - summ)
            out[t, r] = acc


@njit(cache=True, inline="always")
def _scale_min_k4(w, r, s, g):
    """6-bit scale and min of 32-group g (Q4_K/Q5_K scales at byte s)."""
    if g < 4:
        return np.int32(w[r, s + g]) & 63, np.int32(w[r, s + g + 4]) & 63
    sc = (np.int32(w[r, s + g + 4]) & 15) | ((np.int32(w[r, s + g - 4]) >> 6) << 4)
    m = (np.int32(w[r, s + g + 4]) >> 4) | ((np.int32(w[r, s + g]) >> 6) << 4)
    return sc, m


@njit(cache=True, parallel=True, fastmath=True)
def _mm_q45_k(w, q, d, s16, out, five):
    n_tok, n_in = q.shape
    bb = 176 if five else 144
    qs0 = 48 if five else 16
    for r in prange(w.shape[0]):
        for t in range(n_tok):
            acc = F32(0.0)
            for b in range(n_in // 256):
                o = b * bb
                sumi = 0
                summ = 0
                for g in range(8):
                    sc, m = _scale_min_k4(w, r, o + 4, g)
                    base = o + qs0 + 32 * (g // 2)
                    shift = 4 * (g % 2)
                    acc_g = 0
                    for l in range(32):
                        c = (np.int32(w[r, base + l]) >> shift) & 15
                        if five:
                            c |= ((np.int32(w[r, o + 16 + l]) >> g) & 1) << 4
                        acc_g += c * np.int32(q[t, 256 * b + 32 * g + l])
                    sumi += sc * acc_g
                    summ += m * (s16[t, 16 * b + 2 * g] + s16[t, 16 * b + 2 * g + 1])
                acc += d[t, b] * (_f16(w, r, o) * F32(sumi) - _f16(w, r, o + 2) * F32(summ))
            out[t, r] = acc


@njit(cache=True, parallel=True, fastmath=True)
def _mm_q6_k(w, q, d, s16, out):
    n_tok, n_in = q.shape
    for r in prange(w.shape[0]):
        for t in range(n_tok):
            acc = F32(0.0)
            for b in range(n_in // 256):
                o = b * 210
                sumi = 0
                summ = 0
                for j in range(16):
                    sc = np.int32(np.int8(w[r, o + 192 + j]))
                    h = j // 8
                    k = (j % 8) // 2
                    lo = o + 64 * h + 32 * (k % 2) + 16 * (j % 2)
                    hi = o + 128 + 32 * h + 16 * (j % 2)
                    g = 0
                    for l in range(16):
                        c = ((np.int32(w[r, lo + l]) >> (4 * (k // 2))) & 15) | \
                            (((np.int32(w[r, hi + l]) >> (2 * k)) & 3) << 4)
                        g += c * np.int32(q[t, 256 * b + 16 * j + l])
                    sumi += sc * g
                    summ += 32 * sc * s16[t, 16 * b + j]
                acc += d[t, b] * _f16(w, r, o + 208) * F32(sumi - summ)
            out[t, r] = acc


def matmul(ggml_id, w, q, d, s16, out):
    if ggml_id == 10:
        _mm_q2_k(w, q, d, s16, out)
    elif ggml_id == 11:
        _mm_q3_k(w, q, d, s16, out)
    elif ggml_id in (12, 13):
        _mm_q45_k(w, q, d, s16, out, ggml_id == 13)
    else:
        _mm_q6_k(w, q, d, s16, out)
