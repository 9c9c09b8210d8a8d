/* NEON dot kernels of the K-quants (decomposition in dot_kquant.c), with and
 * without the ARMv8.2 dot-product instruction (SDOT).
 *
 * Per super-block the codes are unpacked into 256 bytes once; per activation
 * row each 16-weight group gives one int32x4 partial dot product (SDOT, or
 * vmull_s8 + pairwise add), multiplied by its scale and accumulated in int32;
 * the offsets come from the row's bsums. */
#include "dot_kernels.h"

#if defined(QI_ARM64)

static inline float f16_neon(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

static inline uint8x16_t shr_mask(uint8x16_t v, int n, int mask) {
    /* variable shift: vshlq with a negative count shifts right */
    return vandq_u8(vshlq_u8(v, vdupq_n_s8((int8_t)-n)), vdupq_n_u8((uint8_t)mask));
}

static inline void codes_neon(int ty, const uint8_t *b, uint8_t *u) {
    for (int half = 0; half < 2; half++) {   /* 16-byte halves of each 32-byte run */
        const int o = 16 * half;
        switch (ty) {
        case 10: case 11: {
            const uint8_t *qs = b + (ty == 10 ? 16 : 32);
            const uint8x16_t hm = ty == 11 ? vld1q_u8(b + o) : vdupq_n_u8(0);
            for (int h = 0; h < 2; h++) {
                const uint8x16_t q = vld1q_u8(qs + 32 * h + o);
                for (int k = 0; k < 4; k++) {
                    uint8x16_t c = shr_mask(q, 2 * k, 3);
                    if (ty == 11) c = vorrq_u8(c, vshlq_n_u8(shr_mask(hm, 4 * h + k, 1), 2));
                    vst1q_u8(u + 128 * h + 32 * k + o, c);
                }
            }
            break;
        }
        case 12: case 13: {
            const uint8_t *qs = b + (ty == 12 ? 16 : 48);
            const uint8x16_t qh = ty == 13 ? vld1q_u8(b + 16 + o) : vdupq_n_u8(0);
            for (int c = 0; c < 4; c++) {
                const uint8x16_t q = vld1q_u8(qs + 32 * c + o);
                uint8x16_t lo = vandq_u8(q, vdupq_n_u8(15)), hi = vshrq_n_u8(q, 4);
                if (ty == 13) {
                    lo = vorrq_u8(lo, vshlq_n_u8(shr_mask(qh, 2 * c, 1), 4));
                    hi = vorrq_u8(hi, vshlq_n_u8(shr_mask(qh, 2 * c + 1, 1), 4));
                }
                vst1q_u8(u + 64 * c + o, lo);
                vst1q_u8(u + 64 * c + 32 + o, hi);
            }
            break;
        }
        default:
            for (int h = 0; h < 2; h++) {
                const uint8x16_t ql0 = vld1q_u8(b + 64 * h + o), ql1 = vld1q_u8(b + 64 * h + 32 + o);
                const uint8x16_t qh = vld1q_u8(b + 128 + 32 * h + o);
                const uint8x16_t m15 = vdupq_n_u8(15);
                vst1q_u8(u + 128 * h + o, vorrq_u8(vandq_u8(ql0, m15), vshlq_n_u8(shr_mask(qh, 0, 3), 4)));
                vst1q_u8(u + 128 * h + 32 + o, vorrq_u8(vandq_u8(ql1, m15), vshlq_n_u8(shr_mask(qh, 2, 3), 4)));
                vst1q_u8(u + 128 * h + 64 + o, vorrq_u8(vshrq_n_u8(ql0, 4), vshlq_n_u8(shr_mask(qh, 4, 3), 4)));
                vst1q_u8(u + 128 * h + 96 + o, vorrq_u8(vshrq_n_u8(ql1, 4), vshlq_n_u8(shr_mask(qh, 6, 3), 4)));
            }
            break;
        }
    }
}

static inline int32x4_t idot16_neon(int8x16_t u, int8x16_t q) {
    const int16x8_t p0 = vmull_s8(vget_low_s8(u), vget_low_s8(q));
    const int16x8_t p1 = vmull_s8(vget_high_s8(u), vget_high_s8(q));
    return vpadalq_s16(vpaddlq_s16(p0), p1);
}

QI_TARGET_DOTPROD static inline int32x4_t idot16_dotprod(int8x16_t u, int8x16_t q) {
    return vdotq_s32(vdupq_n_s32(0), u, q);
}

#define KQ_NEON(SUFFIX, ATTR, IDOT)                                                               \
    ATTR static void kq_##SUFFIX(int ty, int64_t nb, const uint8_t *w, const uint8_t *a,          \
                                 size_t as, int na, float *s) {                                   \
        uint8_t u[256];                                                                           \
        int16_t sc[16], mn[16];                                                                   \
        float acc[QI_TILE] = {0};                                                                 \
        const int bb = qi_kq_block_bytes(ty);                                                    \
        int d_at, dm_at;                                                                         \
        qi_kq_scale_offsets(ty, &d_at, &dm_at);                                                  \
        for (int64_t i = 0; i < nb; i++) {                                                        \
            const uint8_t *b = w + i * bb;                                                        \
            qi_kq_scales(ty, b, sc, mn);                                                          \
            const float dw = f16_neon(b + d_at), dmw = f16_neon(b + dm_at);                                 \
            codes_neon(ty, b, u);                                                                 \
            const int16x8_t mn0 = vld1q_s16(mn), mn1 = vld1q_s16(mn + 8);                         \
            for (int t = 0; t < na; t++) {                                                        \
                const uint8_t *ab = a + t * as + i * QI_Q8K_BYTES;                                \
                const int8_t *q = (const int8_t *)(ab + QI_Q8K_QS);                               \
                int32x4_t isum = vdupq_n_s32(0);                                                  \
                for (int j = 0; j < 16; j++)                                                      \
                    isum = vmlaq_n_s32(isum, IDOT(vreinterpretq_s8_u8(vld1q_u8(u + 16 * j)),      \
                                                  vld1q_s8(q + 16 * j)), sc[j]);                  \
                const int16_t *bs = (const int16_t *)(ab + QI_Q8K_BSUMS);                         \
                const int32x4_t m = vmlal_s16(vmlal_s16(vmlal_s16(vmull_s16(                      \
                    vget_low_s16(mn0), vld1_s16(bs)), vget_high_s16(mn0), vld1_s16(bs + 4)),      \
                    vget_low_s16(mn1), vld1_s16(bs + 8)), vget_high_s16(mn1), vld1_s16(bs + 12)); \
                acc[t] += qi_load_f32(ab) * (dw * (float)vaddvq_s32(isum) - dmw * (float)vaddvq_s32(m)); \
            }                                                                                     \
        }                                                                                         \
        for (int t = 0; t < na; t++) s[t] = acc[t];                                               \
    }
KQ_NEON(neon, , idot16_neon)
KQ_NEON(dotprod, QI_TARGET_DOTPROD, idot16_dotprod)

#define KQ_ENTRIES(name, ty)                                                                     \
    void name##_neon(int64_t nb, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) { \
        kq_neon(ty, nb, w, a, as, na, s);                                                        \
    }                                                                                            \
    QI_TARGET_DOTPROD void name##_dotprod(int64_t nb, const uint8_t *w, const uint8_t *a,        \
                                          size_t as, int na, float *s) {                         \
        kq_dotprod(ty, nb, w, a, as, na, s);                                                     \
    }
KQ_ENTRIES(qi_dot_q2_k, 10)
KQ_ENTRIES(qi_dot_q3_k, 11)
KQ_ENTRIES(qi_dot_q4_k, 12)
KQ_ENTRIES(qi_dot_q5_k, 13)
KQ_ENTRIES(qi_dot_q6_k, 14)

#endif
