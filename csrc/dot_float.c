/* Dot kernels of F32 / F16 / BF16 weights against float activations.
 *
 * Unlike ggml (which rounds activations to F16 for F16 weights) activations
 * stay float32: the weight is widened once per element and reused for up to
 * QI_TILE tokens, so the conversion costs nothing extra and no precision is
 * lost. Accumulation is in float32 (8 or 4 lanes, then a horizontal sum). */
#include "dot_kernels.h"

/* ---- scalar ------------------------------------------------------------- */

#define SCALAR_FLOAT_DOT(name, load)                                                      \
    void name##_scalar(int64_t n, const uint8_t *w, const uint8_t *a, size_t a_stride,    \
                       int na, float *s) {                                                 \
        for (int t = 0; t < na; t++) {                                                     \
            const float *x = (const float *)(a + t * a_stride);                           \
            float acc = 0.f;                                                               \
            for (int64_t i = 0; i < n; i++) acc += load(w, i) * x[i];                      \
            s[t] = acc;                                                                    \
        }                                                                                  \
    }

static inline float ld_f32(const uint8_t *w, int64_t i) { return qi_load_f32(w + 4 * i); }
static inline float ld_f16(const uint8_t *w, int64_t i) { return qi_load_f16(w + 2 * i); }
static inline float ld_bf16(const uint8_t *w, int64_t i) { return qi_bf16_to_fp32(qi_load_u16(w + 2 * i)); }

SCALAR_FLOAT_DOT(qi_dot_f32, ld_f32)
SCALAR_FLOAT_DOT(qi_dot_f16, ld_f16)
SCALAR_FLOAT_DOT(qi_dot_bf16, ld_bf16)

/* ---- AVX2 --------------------------------------------------------------- */
#if defined(QI_X86)
#define F_F32 0
#define F_F16 1
#define F_BF16 2

QI_TARGET_AVX2 static inline __m256 load8(int fmt, const uint8_t *w, int64_t i) {
    if (fmt == F_F32) return _mm256_loadu_ps((const float *)w + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * i));
    if (fmt == F_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

QI_TARGET_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

QI_TARGET_AVX2 static inline float load1(int fmt, const uint8_t *w, int64_t i) {
    return fmt == F_F32 ? ld_f32(w, i) : fmt == F_F16 ? ld_f16(w, i) : ld_bf16(w, i);
}

/* NA tokens at once; two accumulators per token hide the FMA latency. */
#define FLOAT_TILE_AVX2(NA)                                                                \
    QI_TARGET_AVX2 static inline void float_tile##NA(int fmt, int64_t n, const uint8_t *w, \
                                                     const uint8_t *a, size_t as, float *s) { \
        __m256 acc0[NA], acc1[NA];                                                         \
        for (int t = 0; t < NA; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();              \
        int64_t i = 0;                                                                     \
        for (; i + 16 <= n; i += 16) {                                                     \
            const __m256 w0 = load8(fmt, w, i), w1 = load8(fmt, w, i + 8);                 \
            for (int t = 0; t < NA; t++) {                                                 \
                const float *x = (const float *)(a + t * as);                              \
                acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), acc0[t]);            \
                acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), acc1[t]);        \
            }                                                                              \
        }                                                                                  \
        for (; i + 8 <= n; i += 8) {                                                       \
            const __m256 w0 = load8(fmt, w, i);                                            \
            for (int t = 0; t < NA; t++)                                                   \
                acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps((const float *)(a + t * as) + i), acc0[t]); \
        }                                                                                  \
        for (int t = 0; t < NA; t++) {                                                     \
            const float *x = (const float *)(a + t * as);                                  \
            float r = hsum8(_mm256_add_ps(acc0[t], acc1[t]));                              \
            for (int64_t j = i; j < n; j++) r += load1(fmt, w, j) * x[j];                  \
            s[t] = r;                                                                      \
        }                                                                                  \
    }
FLOAT_TILE_AVX2(1)
FLOAT_TILE_AVX2(2)
FLOAT_TILE_AVX2(3)
FLOAT_TILE_AVX2(4)

QI_TARGET_AVX2 static inline void float_dot_avx2(int fmt, int64_t n, const uint8_t *w, const uint8_t *a,
                                                 size_t as, int na, float *s) {
    switch (na) {
    case 1: float_tile1(fmt, n, w, a, as, s); break;
    case 2: float_tile2(fmt, n, w, a, as, s); break;
    case 3: float_tile3(fmt, n, w, a, as, s); break;
    default: float_tile4(fmt, n, w, a, as, s); break;
    }
}

QI_TARGET_AVX2 void qi_dot_f32_avx2(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float_dot_avx2(F_F32, n, w, a, as, na, s);
}
QI_TARGET_AVX2 void qi_dot_f16_avx2(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float_dot_avx2(F_F16, n, w, a, as, na, s);
}
QI_TARGET_AVX2 void qi_dot_bf16_avx2(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float_dot_avx2(F_BF16, n, w, a, as, na, s);
}
#endif

/* ---- NEON --------------------------------------------------------------- */
#if defined(QI_ARM64)
#define F_F32 0
#define F_F16 1
#define F_BF16 2

static inline float32x4_t load4(int fmt, const uint8_t *w, int64_t i) {
    if (fmt == F_F32) return vld1q_f32((const float *)w + i);
    const uint16x4_t h = vld1_u16((const uint16_t *)w + i);
    if (fmt == F_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

static inline float load1(int fmt, const uint8_t *w, int64_t i) {
    return fmt == F_F32 ? ld_f32(w, i) : fmt == F_F16 ? ld_f16(w, i) : ld_bf16(w, i);
}

#define FLOAT_TILE_NEON(NA)                                                                \
    static inline void float_tile##NA(int fmt, int64_t n, const uint8_t *w,                \
                                      const uint8_t *a, size_t as, float *s) {             \
        float32x4_t acc0[NA], acc1[NA];                                                    \
        for (int t = 0; t < NA; t++) acc0[t] = acc1[t] = vdupq_n_f32(0.f);                 \
        int64_t i = 0;                                                                     \
        for (; i + 8 <= n; i += 8) {                                                       \
            const float32x4_t w0 = load4(fmt, w, i), w1 = load4(fmt, w, i + 4);            \
            for (int t = 0; t < NA; t++) {                                                 \
                const float *x = (const float *)(a + t * as);                              \
                acc0[t] = vfmaq_f32(acc0[t], w0, vld1q_f32(x + i));                        \
                acc1[t] = vfmaq_f32(acc1[t], w1, vld1q_f32(x + i + 4));                    \
            }                                                                              \
        }                                                                                  \
        for (int t = 0; t < NA; t++) {                                                     \
            const float *x = (const float *)(a + t * as);                                  \
            float r = vaddvq_f32(vaddq_f32(acc0[t], acc1[t]));                             \
            for (int64_t j = i; j < n; j++) r += load1(fmt, w, j) * x[j];                  \
            s[t] = r;                                                                      \
        }                                                                                  \
    }
FLOAT_TILE_NEON(1)
FLOAT_TILE_NEON(2)
FLOAT_TILE_NEON(3)
FLOAT_TILE_NEON(4)

static inline void float_dot_neon(int fmt, int64_t n, const uint8_t *w, const uint8_t *a,
                                  size_t as, int na, float *s) {
    switch (na) {
    case 1: float_tile1(fmt, n, w, a, as, s); break;
    case 2: float_tile2(fmt, n, w, a, as, s); break;
    case 3: float_tile3(fmt, n, w, a, as, s); break;
    default: float_tile4(fmt, n, w, a, as, s); break;
    }
}

void qi_dot_f32_neon(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float_dot_neon(F_F32, n, w, a, as, na, s);
}
void qi_dot_f16_neon(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float_dot_neon(F_F16, n, w, a, as, na, s);
}
void qi_dot_bf16_neon(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float_dot_neon(F_BF16, n, w, a, as, na, s);
}
#endif
