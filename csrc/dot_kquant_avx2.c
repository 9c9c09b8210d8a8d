/* AVX2 dot kernels of the K-quants (decomposition in dot_kquant.c).
 *
 * Per super-block: the codes are unpacked with shifts and masks into 256
 * bytes (8 registers, kept in an L1-resident buffer), the 16 group scales are
 * broadcast into 8 int16 vectors; then per activation row
 *     maddubs(u, q)        u8 x s8 -> int16 pair sums (<= 2*63*127, no saturation)
 *     madd(., scales)      -> int32 of sc[j]*partial sums
 * and the offsets come from one madd of mn[16] with the row's bsums. The
 * decoding is done once for up to QI_TILE activation rows. */
#include "dot_kernels.h"

#if defined(QI_X86)

QI_TARGET_AVX2 static inline __m256i load32(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
QI_TARGET_AVX2 static inline void store32(uint8_t *p, __m256i v) { _mm256_store_si256((__m256i *)p, v); }

/* (v >> n) & mask on bytes (the 16-bit shift's spill is masked away). */
QI_TARGET_AVX2 static inline __m256i shr_mask(__m256i v, int n, int mask) {
    return _mm256_and_si256(_mm256_srli_epi16(v, n), _mm256_set1_epi8((char)mask));
}

/* bit k of every byte of v, moved to bit `to` */
QI_TARGET_AVX2 static inline __m256i bit_to(__m256i v, int k, int to) {
    const __m256i b = shr_mask(v, k, 1);
    return _mm256_slli_epi16(b, to);
}

QI_TARGET_AVX2 static inline __attribute__((always_inline)) void codes_avx2(int ty, const uint8_t *b, uint8_t *u) {
    switch (ty) {
    case 10: case 11: {
        const uint8_t *qs = b + (ty == 10 ? 16 : 32);
        const __m256i hm = ty == 11 ? load32(b) : _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = load32(qs + 32 * h);
            for (int k = 0; k < 4; k++) {
                __m256i c = shr_mask(q, 2 * k, 3);
                if (ty == 11) c = _mm256_or_si256(c, bit_to(hm, 4 * h + k, 2));
                store32(u + 128 * h + 32 * k, c);
            }
        }
        break;
    }
    case 12: case 13: {
        const uint8_t *qs = b + (ty == 12 ? 16 : 48);
        const __m256i qh = ty == 13 ? load32(b + 16) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q = load32(qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, _mm256_set1_epi8(15)), hi = shr_mask(q, 4, 15);
            if (ty == 13) {
                lo = _mm256_or_si256(lo, bit_to(qh, 2 * c, 4));
                hi = _mm256_or_si256(hi, bit_to(qh, 2 * c + 1, 4));
            }
            store32(u + 64 * c, lo);
            store32(u + 64 * c + 32, hi);
        }
        break;
    }
    default:
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = load32(b + 64 * h), ql1 = load32(b + 64 * h + 32);
            const __m256i qh = load32(b + 128 + 32 * h);
            const __m256i m15 = _mm256_set1_epi8(15);
            store32(u + 128 * h, _mm256_or_si256(_mm256_and_si256(ql0, m15), _mm256_slli_epi16(shr_mask(qh, 0, 3), 4)));
            store32(u + 128 * h + 32, _mm256_or_si256(_mm256_and_si256(ql1, m15), _mm256_slli_epi16(shr_mask(qh, 2, 3), 4)));
            store32(u + 128 * h + 64, _mm256_or_si256(shr_mask(ql0, 4, 15), _mm256_slli_epi16(shr_mask(qh, 4, 3), 4)));
            store32(u + 128 * h + 96, _mm256_or_si256(shr_mask(ql1, 4, 15), _mm256_slli_epi16(shr_mask(qh, 6, 3), 4)));
        }
        break;
    }
}

/* The 16 group scales and offsets of a super-block as int16 vectors, built in
 * registers: writing them to memory with narrow stores and reloading them
 * wide stalls store forwarding (measured: a quarter of the Q4_K time). The
 * byte formulas are those of qi_kq_scales in dot_kquant.c on 32-bit words. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void scales_avx2(int ty, const uint8_t *b,
                                                                             __m256i *sc, __m256i *mn) {
    switch (ty) {
    case 10: {
        const __m128i v = _mm_loadu_si128((const __m128i *)b);
        *sc = _mm256_cvtepu8_epi16(_mm_and_si128(v, _mm_set1_epi8(15)));
        *mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)));
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
        *sc = _mm256_cvtepi8_epi16(_mm_sub_epi8(v, _mm_set1_epi8(32)));
        *mn = _mm256_slli_epi16(*sc, 2);
        break;
    }
    case 12: case 13: {
        uint32_t q0, q1, q2;
        memcpy(&q0, b + 4, 4);
        memcpy(&q1, b + 8, 4);
        memcpy(&q2, b + 12, 4);
        const __m128i v = _mm_setr_epi32(
            (int)(q0 & 0x3f3f3f3fu), (int)((q2 & 0x0f0f0f0fu) | ((q0 >> 2) & 0x30303030u)),
            (int)(q1 & 0x3f3f3f3fu), (int)(((q2 >> 4) & 0x0f0f0f0fu) | ((q1 >> 2) & 0x30303030u)));
        /* 8 scales then 8 mins, one per 32 weights: duplicate each for its two groups */
        *sc = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v));
        *mn = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v, v));
        break;
    }
    default:
        *sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 192)));
        *mn = _mm256_slli_epi16(*sc, 5);
        break;
    }
}

/* scv[k]: int16 lanes 0..7 = sc[2k], lanes 8..15 = sc[2k+1] (the groups of the
 * two 16-byte halves of the k-th 32 codes), for madd with maddubs results.
 * Each int32 of `pairs` holds one scale twice; a cross-lane permute of int32
 * then broadcasts it. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void group_scales(__m256i s, __m256i *scv) {
    const __m256i lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(s));
    const __m256i hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(s, 1));
    const __m256i m16 = _mm256_set1_epi32(0xffff);
    const __m256i plo = _mm256_or_si256(_mm256_and_si256(lo, m16), _mm256_slli_epi32(lo, 16));
    const __m256i phi = _mm256_or_si256(_mm256_and_si256(hi, m16), _mm256_slli_epi32(hi, 16));
    for (int k = 0; k < 4; k++) {
        const __m256i idx = _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1);
        scv[k] = _mm256_permutevar8x32_epi32(plo, idx);
        scv[k + 4] = _mm256_permutevar8x32_epi32(phi, idx);
    }
}

QI_TARGET_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define KQ_TILE_AVX2(NA)                                                                         \
    QI_TARGET_AVX2 static inline __attribute__((always_inline)) void kq_tile##NA(int ty, int64_t nb, const uint8_t *w,          \
                                                  const uint8_t *a, size_t as, float *s) {       \
        _Alignas(32) uint8_t u[256];                                                             \
        __m256 acc[NA];                                                                          \
        for (int t = 0; t < NA; t++) acc[t] = _mm256_setzero_ps();                               \
        const int bb = qi_kq_block_bytes(ty);                                                    \
        int d_at, dm_at;                                                                         \
        qi_kq_scale_offsets(ty, &d_at, &dm_at);                                                  \
        for (int64_t i = 0; i < nb; i++) {                                                       \
            const uint8_t *b = w + i * bb;                                                       \
            __m256i scales, mnv;                                                                 \
            scales_avx2(ty, b, &scales, &mnv);                                                   \
            const float dw = _cvtsh_ss(qi_load_u16(b + d_at)), dmw = _cvtsh_ss(qi_load_u16(b + dm_at));                 \
            codes_avx2(ty, b, u);                                                                \
            __m256i scv[8];                                                                      \
            group_scales(scales, scv);                                                           \
            for (int t = 0; t < NA; t++) {                                                       \
                const uint8_t *ab = a + t * as + i * QI_Q8K_BYTES;                               \
                const uint8_t *q = ab + QI_Q8K_QS;                                               \
                __m256i isum0 = _mm256_setzero_si256(), isum1 = _mm256_setzero_si256();          \
                for (int k = 0; k < 8; k += 2) {                                                 \
                    const __m256i p0 = _mm256_maddubs_epi16(load32(u + 32 * k), load32(q + 32 * k)); \
                    const __m256i p1 = _mm256_maddubs_epi16(load32(u + 32 * k + 32), load32(q + 32 * k + 32)); \
                    isum0 = _mm256_add_epi32(isum0, _mm256_madd_epi16(p0, scv[k]));              \
                    isum1 = _mm256_add_epi32(isum1, _mm256_madd_epi16(p1, scv[k + 1]));          \
                }                                                                                \
                const __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mnv, load32(ab + QI_Q8K_BSUMS))); \
                const float da = qi_load_f32(ab);                                                \
                const __m256 p = _mm256_cvtepi32_ps(_mm256_add_epi32(isum0, isum1));             \
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(da * dw), p, acc[t]);                    \
                acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(da * dmw), m, acc[t]);                  \
            }                                                                                    \
        }                                                                                        \
        for (int t = 0; t < NA; t++) s[t] = hsum8(acc[t]);                                       \
    }
KQ_TILE_AVX2(1)
KQ_TILE_AVX2(2)
KQ_TILE_AVX2(3)
KQ_TILE_AVX2(4)

QI_TARGET_AVX2 static inline __attribute__((always_inline)) void kq_avx2(int ty, int64_t nb, const uint8_t *w, const uint8_t *a,
                                          size_t as, int na, float *s) {
    switch (na) {
    case 1: kq_tile1(ty, nb, w, a, as, s); break;
    case 2: kq_tile2(ty, nb, w, a, as, s); break;
    case 3: kq_tile3(ty, nb, w, a, as, s); break;
    default: kq_tile4(ty, nb, w, a, as, s); break;
    }
}

#define KQ_AVX2(name, ty)                                                                      \
    QI_TARGET_AVX2 void name##_avx2(int64_t nb, const uint8_t *w, const uint8_t *a, size_t as, \
                                    int na, float *s) {                                        \
        kq_avx2(ty, nb, w, a, as, na, s);                                                      \
    }
KQ_AVX2(qi_dot_q2_k, 10)
KQ_AVX2(qi_dot_q3_k, 11)
KQ_AVX2(qi_dot_q4_k, 12)
KQ_AVX2(qi_dot_q5_k, 13)
KQ_AVX2(qi_dot_q6_k, 14)

#endif
