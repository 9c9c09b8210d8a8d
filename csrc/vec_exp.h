/* exp on SIMD vectors, for the activation ops (SiLU gate, attention softmax).
 *
 * libm's expf is a function call per element and was the cost of those ops
 * (SiLU over a 256-token prompt of a 1B model: ~3% of the prompt's time).
 * Here exp(x) = 2^n * exp(r) with n = round(x / ln 2) and r = x - n ln 2
 * (ln 2 split in two constants so r stays exact), exp(r) by Cephes' degree-6
 * minimax polynomial on |r| <= ln2/2: within 2 ulp of expf on the clamped
 * range. Inputs are clamped to [-87.3, 88.7] so 2^n stays a normal float:
 * below, the result is ~1e-38 instead of a denormal or 0 (no softmax
 * weight or SiLU output moves by a representable amount); above, ~3e38
 * instead of inf. The scalar SIMD level keeps libm's expf. */
#ifndef QI_VEC_EXP_H
#define QI_VEC_EXP_H

#include "qinfer.h"

#define QI_EXP_HI 88.7f
#define QI_EXP_LO -87.3f
#define QI_EXP_LOG2E 1.44269504088896341f
#define QI_EXP_C1 0.693359375f
#define QI_EXP_C2 -2.12194440e-4f
#define QI_EXP_P0 1.9875691500e-4f
#define QI_EXP_P1 1.3981999507e-3f
#define QI_EXP_P2 8.3334519073e-3f
#define QI_EXP_P3 4.1665795894e-2f
#define QI_EXP_P4 1.6666665459e-1f
#define QI_EXP_P5 5.0000001201e-1f

#if defined(QI_X86)
QI_TARGET_AVX2 static inline __m256 qi_exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(QI_EXP_LO)), _mm256_set1_ps(QI_EXP_HI));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(QI_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(QI_EXP_C1), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(QI_EXP_C2), r);
    __m256 p = _mm256_set1_ps(QI_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QI_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QI_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QI_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QI_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QI_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n: n + 127 into the exponent field */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

#if defined(QI_ARM64)
static inline float32x4_t qi_exp_neon(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(QI_EXP_LO)), vdupq_n_f32(QI_EXP_HI));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, QI_EXP_LOG2E));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(QI_EXP_C1));
    r = vfmsq_f32(r, n, vdupq_n_f32(QI_EXP_C2));
    float32x4_t p = vdupq_n_f32(QI_EXP_P0);
    p = vfmaq_f32(vdupq_n_f32(QI_EXP_P1), p, r);
    p = vfmaq_f32(vdupq_n_f32(QI_EXP_P2), p, r);
    p = vfmaq_f32(vdupq_n_f32(QI_EXP_P3), p, r);
    p = vfmaq_f32(vdupq_n_f32(QI_EXP_P4), p, r);
    p = vfmaq_f32(vdupq_n_f32(QI_EXP_P5), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}
#endif

/* x[i] = exp(x[i] - shift) for i < n, at the current SIMD level. */
void qi_vec_exp_shifted(float *x, int64_t n, float shift);

#endif
