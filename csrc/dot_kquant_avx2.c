/* AVX2 dot kernels of the K-quants with 16-weight groups, Q2_K, Q3_K and
 * Q6_K (decomposition in dot_kquant.c); Q4_K and Q5_K, whose scales cover 32
 * weights, go two rows at a time (dot_kquant_pair_avx2.c). Both were measured
 * both ways: for these three types the pair layout gained nothing (Q2_K,
 * Q3_K) or lost 12% (Q6_K) with 4 activation rows, as only a whole-chunk
 * scale lets the pair add its two halves before the scale multiply.
 *
 * A super-block is taken 32 codes (one "chunk") at a time: chunk k holds the
 * weights 32k..32k+31, i.e. the 16-groups 2k and 2k+1. Its codes are unpacked
 * from the packed bits straight into a register (shifts and masks, no trip
 * through memory) and used at once for every activation row of the tile:
 *     maddubs(u, q)        u8 x s8 -> int16 pair sums (<= 2*63*127, no saturation)
 *     madd(., scale_k)     -> int32 of sc[j]*partial sums, scale_k = (sc[2k] x8, sc[2k+1] x8)
 * accumulated in int32 over the super-block (|sum| <= 8 * 2*16002*128 < 2^31).
 * scale_k comes from one in-lane byte shuffle of the super-block's scales
 * (kq_scale_state), which costs less than a cross-lane permute.
 * The offsets sum_j mn[j]*bsums[j] are one madd with the row's bsums. For
 * Q3_K and Q6_K (offset factor = d) they are subtracted in int32 before the
 * single conversion to float (exact: |mn*bsums| pair sums < 2^25); Q2_K has
 * its own dmin and takes a second float multiply-add.
 * Loads of the same packed bytes by neighbouring chunks are merged by the
 * compiler, so each weight byte is read once per super-block. */
#include "dot_kernels.h"

#if defined(QI_X86)

QI_TARGET_AVX2 static inline __m256i load32(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* (v >> n) & mask on bytes (the 16-bit shift's spill is masked away). */
QI_TARGET_AVX2 static inline __m256i shr_mask(__m256i v, int n, int mask) {
    return _mm256_and_si256(_mm256_srli_epi16(v, n), _mm256_set1_epi8((char)mask));
}

/* Bit k of every byte of v, moved to bit `to`. */
QI_TARGET_AVX2 static inline __m256i bit_to(__m256i v, int k, int to) {
    if (k >= to) return shr_mask(v, k - to, 1 << to);
    return _mm256_and_si256(_mm256_slli_epi16(v, to - k), _mm256_set1_epi8((char)(1 << to)));
}

/* The 32 codes of chunk k (elements 32k..32k+31) of super-block b, layouts as
 * in qi_kq_codes_scalar. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) __m256i chunk_codes(int ty, const uint8_t *b, int k) {
    switch (ty) {
    case 10: case 11: {
        const uint8_t *qs = b + (ty == 10 ? 16 : 32);
        __m256i c = shr_mask(load32(qs + 32 * (k / 4)), 2 * (k % 4), 3);
        if (ty == 11) c = _mm256_or_si256(c, bit_to(load32(b), k, 2));
        return c;
    }
    default: {
        const int h = k / 4, kk = k % 4;
        const __m256i lo = shr_mask(load32(b + 64 * h + 32 * (kk % 2)), 4 * (kk / 2), 15);
        /* bits 2kk, 2kk+1 of qh to bits 4, 5 */
        const __m256i qh = load32(b + 128 + 32 * h);
        const __m256i hi = 2 * kk >= 4 ? shr_mask(qh, 2 * kk - 4, 0x30)
                                       : _mm256_and_si256(_mm256_slli_epi16(qh, 4 - 2 * kk), _mm256_set1_epi8(0x30));
        return _mm256_or_si256(lo, hi);
    }
    }
}

/* Per super-block scale state: `src` (and `src2`) from which one in-lane byte
 * shuffle per chunk gives the chunk's int16 scale vector, scale_k =
 * (sc[2k] x8 | sc[2k+1] x8), and `mn`, the 16 group offsets as int16.
 * Everything is built in registers: writing scales to memory with narrow
 * stores and reloading them wide stalls store forwarding (measured: a quarter
 * of the Q4_K time in the first version). The byte formulas are those of
 * qi_kq_scales in dot_kquant.c, on 32-bit words. */
typedef struct { __m256i src, src2, mn; } kq_scale_state;

/* Shuffle patterns (0x80 = zero byte):
 * PICK_U8_PAIR[k]: from 16 unsigned byte scales in both lanes, byte 2k
 *   zero-extended in the low lane, byte 2k+1 in the high lane (Q2_K);
 * PICK_I16[m]: from 8 int16 scales in both lanes, int16 2m in the low lane,
 *   2m+1 in the high lane (Q3_K/Q6_K, signed scales widened beforehand). */
#define Z 0x80
#define PAIR(lo, hi) lo, Z, lo, Z, lo, Z, lo, Z, lo, Z, lo, Z, lo, Z, lo, Z, hi, Z, hi, Z, hi, Z, hi, Z, hi, Z, hi, Z, hi, Z, hi, Z
static const uint8_t PICK_U8_PAIR[8][32] __attribute__((aligned(32))) = {
    {PAIR(0, 1)}, {PAIR(2, 3)}, {PAIR(4, 5)}, {PAIR(6, 7)},
    {PAIR(8, 9)}, {PAIR(10, 11)}, {PAIR(12, 13)}, {PAIR(14, 15)},
};
#undef PAIR
#define PAIR16(lo, hi) lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, \
                       hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1
static const uint8_t PICK_I16[4][32] __attribute__((aligned(32))) = {
    {PAIR16(0, 2)}, {PAIR16(4, 6)}, {PAIR16(8, 10)}, {PAIR16(12, 14)},
};
#undef PAIR16
#undef Z

QI_TARGET_AVX2 static inline __m256i pick(__m256i v, const uint8_t *pattern) {
    return _mm256_shuffle_epi8(v, _mm256_load_si256((const __m256i *)pattern));
}

QI_TARGET_AVX2 static inline __attribute__((always_inline)) void scales_avx2(int ty, const uint8_t *b, kq_scale_state *st) {
    switch (ty) {
    case 10: {
        const __m128i v = _mm_loadu_si128((const __m128i *)b);
        st->src = _mm256_broadcastsi128_si256(_mm_and_si128(v, _mm_set1_epi8(15)));
        st->mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)));
        break;
    }
    case 11: {
        uint32_t w0, w1, t;
        memcpy(&w0, b + 96, 4);
        memcpy(&w1, b + 100, 4);
        memcpy(&t, b + 104, 4);
        const __m128i v = _mm_setr_epi32(
            (int)((w0 & 0x0f0f0f0fu) | ((t << 4) & 0x30303030u)),
            (int)((w1 & 0x0f0f0f0fu) | ((t << 2) & 0x30303030u)),
            (int)(((w0 >> 4) & 0x0f0f0f0fu) | (t & 0x30303030u)),
            (int)(((w1 >> 4) & 0x0f0f0f0fu) | ((t >> 2) & 0x30303030u)));
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_sub_epi8(v, _mm_set1_epi8(32)));
        st->src = _mm256_permute2x128_si256(sc, sc, 0x00);
        st->src2 = _mm256_permute2x128_si256(sc, sc, 0x11);
        st->mn = _mm256_slli_epi16(sc, 2);
        break;
    }
    default: {
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 192)));
        st->src = _mm256_permute2x128_si256(sc, sc, 0x00);
        st->src2 = _mm256_permute2x128_si256(sc, sc, 0x11);
        st->mn = _mm256_slli_epi16(sc, 5);
        break;
    }
    }
}

QI_TARGET_AVX2 static inline __attribute__((always_inline)) __m256i chunk_scale(int ty, const kq_scale_state *st, int k) {
    switch (ty) {
    case 10: return pick(st->src, PICK_U8_PAIR[k]);
    default: return pick(k < 4 ? st->src : st->src2, PICK_I16[k % 4]);
    }
}

QI_TARGET_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* An empty asm that claims to modify v: GCC can no longer reassociate the
 * running int32 sums into a tree of all 8*NA products, which (seen in the
 * generated code for NA = 4) keeps ~30 vectors alive and spills them. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void keep_in_register(__m256i *v) {
    __asm__("" : "+x"(*v));
}

/* Offset factor equal to d: offsets folded into the integer sum. */
static inline int offsets_in_int(int ty) { return ty == 11 || ty == 14; }

/* s[t] for NA activation rows; ty and NA are constants after inlining, and the
 * chunk loop is unrolled explicitly (GCC keeps it rolled for NA = 4 otherwise,
 * with variable shifts and branches), so the accumulators live in registers. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void kq_rows(int ty, int NA, int64_t nb, const uint8_t *w,
                                                                         const uint8_t *a, size_t as, float *s) {
    __m256 acc[QI_TILE];
    for (int t = 0; t < NA; t++) acc[t] = _mm256_setzero_ps();
    const int bb = qi_kq_block_bytes(ty);
    int d_at, dm_at;
    qi_kq_scale_offsets(ty, &d_at, &dm_at);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = w + i * bb;
        kq_scale_state st;
        scales_avx2(ty, b, &st);
        __m256i isum[QI_TILE];
        for (int t = 0; t < NA; t++) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m256i u = chunk_codes(ty, b, k);
            const __m256i scale = chunk_scale(ty, &st, k);
            for (int t = 0; t < NA; t++) {
                const uint8_t *q = a + t * as + i * QI_Q8K_BYTES + QI_Q8K_QS;
                const __m256i p = _mm256_maddubs_epi16(u, load32(q + 32 * k));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, scale));
                keep_in_register(&isum[t]);
            }
        }
        if (offsets_in_int(ty)) {
            const __m256 dw = _mm256_set1_ps(_cvtsh_ss(qi_load_u16(b + d_at)));
            for (int t = 0; t < NA; t++) {
                const uint8_t *ab = a + t * as + i * QI_Q8K_BYTES;
                const __m256i m = _mm256_madd_epi16(st.mn, load32(ab + QI_Q8K_BSUMS));
                const __m256 p = _mm256_cvtepi32_ps(_mm256_sub_epi32(isum[t], m));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_broadcast_ss((const float *)ab), dw), p, acc[t]);
            }
        } else {
            /* d and dmin are adjacent (dm_at == d_at + 2 for Q2_K): one
             * conversion of both */
            uint32_t d2;
            memcpy(&d2, b + d_at, 4);
            const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)d2));
            const __m256 dw = _mm256_broadcastss_ps(dd), dmw = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
            for (int t = 0; t < NA; t++) {
                const uint8_t *ab = a + t * as + i * QI_Q8K_BYTES;
                const __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(st.mn, load32(ab + QI_Q8K_BSUMS)));
                /* acc += da * (dw * isum - dmw * m) */
                const __m256 v = _mm256_fmsub_ps(dw, _mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dmw, m));
                acc[t] = _mm256_fmadd_ps(_mm256_broadcast_ss((const float *)ab), v, acc[t]);
            }
        }
    }
    for (int t = 0; t < NA; t++) s[t] = hsum8(acc[t]);
}

QI_TARGET_AVX2 static inline __attribute__((always_inline)) void kq_avx2(int ty, int64_t nb, const uint8_t *w, const uint8_t *a,
                                                                         size_t as, int na, float *s) {
    switch (na) {
    case 1: kq_rows(ty, 1, nb, w, a, as, s); break;
    case 2: kq_rows(ty, 2, nb, w, a, as, s); break;
    case 3: kq_rows(ty, 3, nb, w, a, as, s); break;
    default: kq_rows(ty, 4, nb, w, a, as, s); break;
    }
}

#define KQ_AVX2(name, ty)                                                                      \
    QI_TARGET_AVX2 void name##_avx2(int64_t nb, const uint8_t *w, const uint8_t *a, size_t as, \
                                    int na, float *s) {                                        \
        kq_avx2(ty, nb, w, a, as, na, s);                                                      \
    }
KQ_AVX2(qi_dot_q2_k, 10)
KQ_AVX2(qi_dot_q3_k, 11)
KQ_AVX2(qi_dot_q6_k, 14)

#endif
