/* Dot kernels of the 32-element formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 against
 * QI_ACT_Q8 activations (dot_kernels.h).
 *
 * Every weight block is decoded to 32 codes u and two floats (dw, cw) with
 * weight = dw*u + cw: Q4_0 u = nibble, cw = -8*dw; Q5_0 u = 5-bit code,
 * cw = -16*dw; Q4_1/Q5_1 cw = m; Q8_0 u = the signed int8, cw = 0. With an
 * activation block (da, sa = da*sum(q), q) the block's dot product is
 *     dw*da*sum(u*q) + cw*sa,
 * so offsets and mins cost one multiply-add per block and the integer part is
 * unsigned x signed (maddubs on AVX2, no sign trick) except for Q8_0. Each
 * decoded weight block is reused for up to QI_TILE activation rows. */
#include "dot_kernels.h"

enum { L_Q4_0, L_Q4_1, L_Q5_0, L_Q5_1, L_Q8_0 };

static inline int block_bytes(int ty) {
    switch (ty) {
    case L_Q4_0: return 18;
    case L_Q4_1: return 20;
    case L_Q5_0: return 22;
    case L_Q5_1: return 24;
    default: return 34;
    }
}

static inline int has_min(int ty) { return ty == L_Q4_1 || ty == L_Q5_1; }

/* dw and cw of a block (see above) from its f16 fields d and m, converted by
 * the caller (hardware conversion in the SIMD paths). */
static inline void block_scales(int ty, float d, float m, float *dw, float *cw) {
    *dw = d;
    switch (ty) {
    case L_Q4_0: *cw = -8.f * d; break;
    case L_Q5_0: *cw = -16.f * d; break;
    case L_Q4_1: case L_Q5_1: *cw = m; break;
    default: *cw = 0.f; break;
    }
}

/* Byte offset of the packed nibbles and of the 32 high bits (Q5_*). */
static inline int qs_offset(int ty) {
    return ty == L_Q4_0 ? 2 : ty == L_Q4_1 ? 4 : ty == L_Q5_0 ? 6 : ty == L_Q5_1 ? 8 : 2;
}
static inline int qh_offset(int ty) { return ty == L_Q5_0 ? 2 : 4; }

/* ---- scalar ------------------------------------------------------------- */

static inline void decode_scalar(int ty, const uint8_t *b, int *u) {
    if (ty == L_Q8_0) {
        for (int j = 0; j < 32; j++) u[j] = (int8_t)b[2 + j];
        return;
    }
    const uint8_t *qs = b + qs_offset(ty);
    for (int j = 0; j < 16; j++) {
        u[j] = qs[j] & 15;
        u[j + 16] = qs[j] >> 4;
    }
    if (ty == L_Q5_0 || ty == L_Q5_1) {
        const uint8_t *h = b + qh_offset(ty);
        const uint32_t qh = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        for (int j = 0; j < 32; j++) u[j] |= (int)((qh >> j) & 1) << 4;
    }
}

static inline void legacy_scalar(int ty, int64_t nb, const uint8_t *w, const uint8_t *a, size_t as,
                                 int na, float *s) {
    float acc[QI_TILE] = {0};
    int u[32];
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = w + i * block_bytes(ty);
        float dw, cw;
        block_scales(ty, qi_load_f16(b), has_min(ty) ? qi_load_f16(b + 2) : 0.f, &dw, &cw);
        decode_scalar(ty, b, u);
        for (int t = 0; t < na; t++) {
            const uint8_t *ab = a + t * as + i * QI_Q8_BYTES;
            const int8_t *q = (const int8_t *)(ab + 8);
            int isum = 0;
            for (int j = 0; j < 32; j++) isum += u[j] * q[j];
            acc[t] += dw * qi_load_f32(ab) * (float)isum + cw * qi_load_f32(ab + 4);
        }
    }
    for (int t = 0; t < na; t++) s[t] = acc[t];
}

#define LEGACY_ENTRY(name, ty, suffix, attr, impl)                                           \
    attr void name##_##suffix(int64_t nb, const uint8_t *w, const uint8_t *a, size_t as,     \
                              int na, float *s) {                                            \
        impl(ty, nb, w, a, as, na, s);                                                       \
    }
#define LEGACY_ALL(suffix, attr, impl)                      \
    LEGACY_ENTRY(qi_dot_q4_0, L_Q4_0, suffix, attr, impl)   \
    LEGACY_ENTRY(qi_dot_q4_1, L_Q4_1, suffix, attr, impl)   \
    LEGACY_ENTRY(qi_dot_q5_0, L_Q5_0, suffix, attr, impl)   \
    LEGACY_ENTRY(qi_dot_q5_1, L_Q5_1, suffix, attr, impl)   \
    LEGACY_ENTRY(qi_dot_q8_0, L_Q8_0, suffix, attr, impl)

LEGACY_ALL(scalar, , legacy_scalar)

/* ---- AVX2 --------------------------------------------------------------- */
#if defined(QI_X86)

/* 32 codes of a block as bytes in element order. */
QI_TARGET_AVX2 static inline __m256i decode_avx2(int ty, const uint8_t *b) {
    if (ty == L_Q8_0) return _mm256_loadu_si256((const __m256i *)(b + 2));
    const __m128i q = _mm_loadu_si128((const __m128i *)(b + qs_offset(ty)));
    __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
    if (ty == L_Q5_0 || ty == L_Q5_1) {
        uint32_t qh;
        memcpy(&qh, b + qh_offset(ty), 4);
        /* byte j <- byte j/8 of qh, then test bit j%8 */
        const __m256i spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32((int)qh),
            _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                             2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        u = _mm256_or_si256(u, _mm256_and_si256(set, _mm256_set1_epi8(16)));
    }
    return u;
}

QI_TARGET_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* sum(u*q) as 8 int32 lanes; for Q8_0 u is signed and the sign moves onto q. */
QI_TARGET_AVX2 static inline __m256i idot32_avx2(int ty, __m256i u, __m256i q) {
    __m256i p;
    if (ty == L_Q8_0) p = _mm256_maddubs_epi16(_mm256_sign_epi8(u, u), _mm256_sign_epi8(q, u));
    else p = _mm256_maddubs_epi16(u, q);
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

#define LEGACY_TILE_AVX2(NA)                                                                  \
    QI_TARGET_AVX2 static inline void legacy_tile##NA(int ty, int64_t nb, const uint8_t *w,   \
                                                      const uint8_t *a, size_t as, float *s) { \
        __m256 acc[NA];                                                                       \
        float bias[NA];                                                                       \
        for (int t = 0; t < NA; t++) { acc[t] = _mm256_setzero_ps(); bias[t] = 0.f; }         \
        const int bb = block_bytes(ty);                                                       \
        for (int64_t i = 0; i < nb; i++) {                                                    \
            const uint8_t *b = w + i * bb;                                                    \
            float dw, cw;                                                                     \
            block_scales(ty, _cvtsh_ss(qi_load_u16(b)),                                       \
                         has_min(ty) ? _cvtsh_ss(qi_load_u16(b + 2)) : 0.f, &dw, &cw);        \
            const __m256i u = decode_avx2(ty, b);                                             \
            for (int t = 0; t < NA; t++) {                                                    \
                const uint8_t *ab = a + t * as + i * QI_Q8_BYTES;                             \
                const __m256i q = _mm256_loadu_si256((const __m256i *)(ab + 8));              \
                const __m256 p = _mm256_cvtepi32_ps(idot32_avx2(ty, u, q));                   \
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * qi_load_f32(ab)), p, acc[t]);    \
                if (ty != L_Q8_0) bias[t] += cw * qi_load_f32(ab + 4);                        \
            }                                                                                 \
        }                                                                                     \
        for (int t = 0; t < NA; t++) s[t] = hsum8(acc[t]) + bias[t];                          \
    }
LEGACY_TILE_AVX2(1)
LEGACY_TILE_AVX2(2)
LEGACY_TILE_AVX2(3)
LEGACY_TILE_AVX2(4)

QI_TARGET_AVX2 static inline void legacy_avx2(int ty, int64_t nb, const uint8_t *w, const uint8_t *a,
                                              size_t as, int na, float *s) {
    switch (na) {
    case 1: legacy_tile1(ty, nb, w, a, as, s); break;
    case 2: legacy_tile2(ty, nb, w, a, as, s); break;
    case 3: legacy_tile3(ty, nb, w, a, as, s); break;
    default: legacy_tile4(ty, nb, w, a, as, s); break;
    }
}

LEGACY_ALL(avx2, QI_TARGET_AVX2, legacy_avx2)
#endif

/* ---- NEON (plain and dotprod) ------------------------------------------- */
#if defined(QI_ARM64)

static inline float f16_neon(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

/* Codes of elements 0..15 and 16..31 (int8: every code fits). */
static inline void decode_neon(int ty, const uint8_t *b, int8x16_t *lo, int8x16_t *hi) {
    if (ty == L_Q8_0) {
        *lo = vld1q_s8((const int8_t *)(b + 2));
        *hi = vld1q_s8((const int8_t *)(b + 18));
        return;
    }
    const uint8x16_t q = vld1q_u8(b + qs_offset(ty));
    uint8x16_t l = vandq_u8(q, vdupq_n_u8(15)), h = vshrq_n_u8(q, 4);
    if (ty == L_Q5_0 || ty == L_Q5_1) {
        const uint8_t *p = b + qh_offset(ty);
        static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t bit = vld1q_u8(bits);
        const uint8x16_t b01 = vcombine_u8(vdup_n_u8(p[0]), vdup_n_u8(p[1]));
        const uint8x16_t b23 = vcombine_u8(vdup_n_u8(p[2]), vdup_n_u8(p[3]));
        l = vorrq_u8(l, vandq_u8(vtstq_u8(b01, bit), vdupq_n_u8(16)));
        h = vorrq_u8(h, vandq_u8(vtstq_u8(b23, bit), vdupq_n_u8(16)));
    }
    *lo = vreinterpretq_s8_u8(l);
    *hi = vreinterpretq_s8_u8(h);
}

static inline int32x4_t idot16_neon(int32x4_t acc, int8x16_t u, int8x16_t q) {
    const int16x8_t p0 = vmull_s8(vget_low_s8(u), vget_low_s8(q));
    const int16x8_t p1 = vmull_s8(vget_high_s8(u), vget_high_s8(q));
    return vpadalq_s16(vpadalq_s16(acc, p0), p1);
}

QI_TARGET_DOTPROD static inline int32x4_t idot16_dotprod(int32x4_t acc, int8x16_t u, int8x16_t q) {
    return vdotq_s32(acc, u, q);
}

/* ATTR/IDOT: the same loop with or without the SDOT instruction. */
#define LEGACY_NEON(SUFFIX, ATTR, IDOT)                                                          \
    ATTR static inline void legacy_##SUFFIX(int ty, int64_t nb, const uint8_t *w, const uint8_t *a, \
                                            size_t as, int na, float *s) {                       \
        float32x4_t acc[QI_TILE];                                                                \
        float bias[QI_TILE];                                                                     \
        for (int t = 0; t < QI_TILE; t++) { acc[t] = vdupq_n_f32(0.f); bias[t] = 0.f; }          \
        const int bb = block_bytes(ty);                                                          \
        for (int64_t i = 0; i < nb; i++) {                                                       \
            const uint8_t *b = w + i * bb;                                                       \
            float dw, cw;                                                                        \
            block_scales(ty, f16_neon(b), has_min(ty) ? f16_neon(b + 2) : 0.f, &dw, &cw);        \
            int8x16_t lo, hi;                                                                    \
            decode_neon(ty, b, &lo, &hi);                                                        \
            for (int t = 0; t < na; t++) {                                                       \
                const uint8_t *ab = a + t * as + i * QI_Q8_BYTES;                                \
                const int8_t *q = (const int8_t *)(ab + 8);                                      \
                int32x4_t p = IDOT(vdupq_n_s32(0), lo, vld1q_s8(q));                             \
                p = IDOT(p, hi, vld1q_s8(q + 16));                                               \
                acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(p), dw * qi_load_f32(ab));            \
                bias[t] += cw * qi_load_f32(ab + 4);                                             \
            }                                                                                    \
        }                                                                                        \
        for (int t = 0; t < na; t++) s[t] = vaddvq_f32(acc[t]) + bias[t];                        \
    }

LEGACY_NEON(neon, , idot16_neon)
LEGACY_NEON(dotprod, QI_TARGET_DOTPROD, idot16_dotprod)

LEGACY_ALL(neon, , legacy_neon)
LEGACY_ALL(dotprod, QI_TARGET_DOTPROD, legacy_dotprod)
#endif
