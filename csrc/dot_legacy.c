/* Dot kernels of the 32-element formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 against
 * QI_ACT_Q8 activations (dot_kernels.h): scalar (one row) and NEON (plain
 * and dotprod, 4-row tiles); the AVX2 kernels are in dot_legacy_avx2.c, the
 * block layouts and the decomposition weight = dw*u + cw all use in
 * dot_legacy.h. Each decoded weight block is reused for up to QI_TILE
 * activation rows. */
#include "dot_legacy.h"

/* ---- scalar ------------------------------------------------------------- */

static inline void decode_scalar(int ty, const uint8_t *b, int *u) {
    if (ty == L_Q8_0) {
        for (int j = 0; j < 32; j++) u[j] = (int8_t)b[2 + j];
        return;
    }
    const uint8_t *qs = b + legacy_qs_offset(ty);
    for (int j = 0; j < 16; j++) {
        u[j] = qs[j] & 15;
        u[j + 16] = qs[j] >> 4;
    }
    if (legacy_has_high_bit(ty)) {
        const uint8_t *h = b + legacy_qh_offset(ty);
        const uint32_t qh = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        for (int j = 0; j < 32; j++) u[j] |= (int)((qh >> j) & 1) << 4;
    }
}

static inline void legacy_scalar(int ty, int64_t nb, const uint8_t *w, const uint8_t *a, size_t as,
                                 int na, float *s) {
    float acc[QI_TILE] = {0};
    int u[32];
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = w + i * legacy_block_bytes(ty);
        float dw, cw;
        legacy_block_scales(ty, qi_load_f16(b), legacy_has_min(ty) ? qi_load_f16(b + 2) : 0.f, &dw, &cw);
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

LEGACY_ALL(scalar, , legacy_scalar)

/* AVX2: dot_legacy_avx2.c */

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
    const uint8x16_t q = vld1q_u8(b + legacy_qs_offset(ty));
    uint8x16_t l = vandq_u8(q, vdupq_n_u8(15)), h = vshrq_n_u8(q, 4);
    if (legacy_has_high_bit(ty)) {
        const uint8_t *p = b + legacy_qh_offset(ty);
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

/* 4 weight rows x up to QI_TILE tokens (the structure of the AVX2 tiles,
 * dot_legacy_avx2.c): per block and token the 4 rows' int32 products are
 * folded by pairwise adds into one vector whose lane r is row r's block sum,
 * then one conversion and two FMAs against the rows' scales [dw0..dw3] and
 * offsets [cw0..cw3] serve the 4 rows. Each row's output is its own lane
 * whatever the other rows of the tile (a tail tile repeats row 0 and drops
 * it), so it does not depend on the grouping (threads, batch); the one-row
 * kernel is this tile with one row. ATTR/IDOT: with or without SDOT. */
#define LEGACY_NEON(SUFFIX, ATTR, IDOT)                                                            \
    ATTR static inline void tile_##SUFFIX(int ty, int64_t nb, const uint8_t *const w[4],          \
                                          const uint8_t *a, size_t as, int na, float32x4_t *out) {  \
        float32x4_t acc[QI_TILE];                                                                  \
        for (int t = 0; t < QI_TILE; t++) acc[t] = vdupq_n_f32(0.f);                               \
        const int bb = legacy_block_bytes(ty);                                                     \
        for (int64_t i = 0; i < nb; i++) {                                                         \
            int8x16_t lo[4], hi[4];                                                                \
            float dw[4], cw[4];                                                                    \
            for (int r = 0; r < 4; r++) {                                                          \
                const uint8_t *b = w[r] + i * bb;                                                  \
                legacy_block_scales(ty, f16_neon(b), legacy_has_min(ty) ? f16_neon(b + 2) : 0.f,   \
                                    &dw[r], &cw[r]);                                               \
                decode_neon(ty, b, &lo[r], &hi[r]);                                                \
            }                                                                                      \
            const float32x4_t dw4 = vld1q_f32(dw), cw4 = vld1q_f32(cw);                            \
            for (int t = 0; t < na; t++) {                                                         \
                const uint8_t *ab = a + t * as + i * QI_Q8_BYTES;                                  \
                const int8x16_t q0 = vld1q_s8((const int8_t *)(ab + 8));                           \
                const int8x16_t q1 = vld1q_s8((const int8_t *)(ab + 24));                          \
                int32x4_t p[4];                                                                    \
                for (int r = 0; r < 4; r++) p[r] = IDOT(IDOT(vdupq_n_s32(0), lo[r], q0), hi[r], q1); \
                const int32x4_t sum = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));  \
                acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(sum), vmulq_n_f32(dw4, qi_load_f32(ab))); \
                acc[t] = vfmaq_n_f32(acc[t], cw4, qi_load_f32(ab + 4));                            \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < na; t++) out[t] = acc[t];                                              \
    }                                                                                              \
    ATTR static inline void rows_##SUFFIX(int ty, int64_t nb, const uint8_t *w, size_t ws, int nw,   \
                                          const uint8_t *a, size_t as, int na, float *s) {          \
        for (int r0 = 0; r0 < nw; r0 += QI_LEGACY_ROWS) {                                          \
            const int k = nw - r0 < QI_LEGACY_ROWS ? nw - r0 : QI_LEGACY_ROWS;                     \
            const uint8_t *rows[4];                                                                \
            for (int r = 0; r < 4; r++) rows[r] = w + (size_t)(r0 + (r < k ? r : 0)) * ws;         \
            float32x4_t acc[QI_TILE];                                                              \
            tile_##SUFFIX(ty, nb, rows, a, as, na, acc);                                           \
            for (int t = 0; t < na; t++) {                                                         \
                float v[4];                                                                        \
                vst1q_f32(v, acc[t]);                                                              \
                for (int r = 0; r < k; r++) s[(r0 + r) * QI_TILE + t] = v[r];                      \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    ATTR static inline void legacy_##SUFFIX(int ty, int64_t nb, const uint8_t *w, const uint8_t *a, \
                                            size_t as, int na, float *s) {                         \
        float tile[QI_TILE];                                                                       \
        rows_##SUFFIX(ty, nb, w, 0, 1, a, as, na, tile);                                           \
        for (int t = 0; t < na; t++) s[t] = tile[t];                                               \
    }

LEGACY_NEON(neon, , idot16_neon)
LEGACY_NEON(dotprod, QI_TARGET_DOTPROD, idot16_dotprod)

LEGACY_ALL(neon, , legacy_neon)
LEGACY_ALL(dotprod, QI_TARGET_DOTPROD, legacy_dotprod)

#define LEGACY_ROWS_ENTRY(name, ty, suffix, attr)                                                  \
    attr void name##_rows_##suffix(int64_t nb, const uint8_t *w, size_t ws, int nw, const uint8_t *a, \
                                   size_t as, int na, float *s) {                                  \
        rows_##suffix(ty, nb, w, ws, nw, a, as, na, s);                                            \
    }
#define LEGACY_ROWS_ALL(suffix, attr)                        \
    LEGACY_ROWS_ENTRY(qi_dot_q4_0, L_Q4_0, suffix, attr)     \
    LEGACY_ROWS_ENTRY(qi_dot_q4_1, L_Q4_1, suffix, attr)     \
    LEGACY_ROWS_ENTRY(qi_dot_q5_0, L_Q5_0, suffix, attr)     \
    LEGACY_ROWS_ENTRY(qi_dot_q5_1, L_Q5_1, suffix, attr)     \
    LEGACY_ROWS_ENTRY(qi_dot_q8_0, L_Q8_0, suffix, attr)
LEGACY_ROWS_ALL(neon, )
LEGACY_ROWS_ALL(dotprod, QI_TARGET_DOTPROD)
#endif
