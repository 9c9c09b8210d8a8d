/* AVX2 paths of quant_q45_k.c's "ggml" quantizer (also the first half of
 * "best"): the eight sub-block fits of a super-block run side by side, one
 * per lane, with the scalar float32 operations in the scalar order
 * (kq_avx2.h). */
#include "kq_avx2.h"

#if defined(QI_X86)

QI_TARGET_AVX2 void qi_q45k_fit_avx2(const float *x, const float *qw, int nmax, float rmin, float rdelta,
                                     int nstep, uint8_t *L, float *scales, float *mins, float *sw) {
    float xt[256], wt[256];
    int32_t Lt[256];
    qi_kq_transpose8(x, 32, 0, xt);
    if (!qw) {
        /* quantize_row_q{4,5}_K_ref: w = sqrt(mean x^2 of the sub-block) + |x| */
        __m256 sum_x2 = _mm256_setzero_ps();
        for (int l = 0; l < 32; l++) {
            const __m256 v = _mm256_loadu_ps(xt + 8 * l);
            sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(v, v));
        }
        const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.f)));
        for (int l = 0; l < 32; l++) _mm256_storeu_ps(wt + 8 * l, _mm256_add_ps(av_x, qi_abs8(_mm256_loadu_ps(xt + 8 * l))));
        qi_kq_make_qkx_x8_avx2(32, nmax, xt, wt, Lt, scales, mins, rmin, rdelta, nstep, 0, 0);
    } else {
        /* quantize_row_q{4,5}_K_impl: w = qw * sqrt(sigma2 + x^2), sigma2 from the whole super-block */
        float sum_x2 = 0, qwt[256];
        for (int l = 0; l < 256; l++) sum_x2 += x[l] * x[l];
        const __m256 sigma2 = _mm256_set1_ps(2 * sum_x2 / 256);
        qi_kq_transpose8(qw, 32, 0, qwt);
        __m256 sumw = _mm256_setzero_ps();
        for (int l = 0; l < 32; l++) {
            const __m256 v = _mm256_loadu_ps(xt + 8 * l);
            const __m256 w = _mm256_mul_ps(_mm256_loadu_ps(qwt + 8 * l), _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(v, v))));
            _mm256_storeu_ps(wt + 8 * l, w);
            sumw = _mm256_add_ps(sumw, w);
        }
        _mm256_storeu_ps(sw, sumw);
        qi_kq_make_qkx_x8_avx2(32, nmax, xt, wt, Lt, scales, mins, -0.9f, 0.05f, 36, 0, 1);
    }
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)Lt[8 * l + j];
}

QI_TARGET_AVX2 void qi_kq_requant_asym_avx2(const float *x, int n_sub, const float *dl, const float *ml, int nmax,
                                            uint8_t *L) {
    const int n = 256 / n_sub;
    float xt[256];
    int32_t q[256];
    for (int g = 0; g < n_sub / 8; g++) {
        const __m256 d = _mm256_loadu_ps(dl + 8 * g), m = _mm256_loadu_ps(ml + 8 * g);
        const __m256 nz = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ);
        const int lanes = _mm256_movemask_ps(nz);
        if (!lanes) continue;
        qi_kq_transpose8(x, n, g, xt);
        for (int l = 0; l < n; l++) {
            const __m256 v = _mm256_loadu_ps(xt + 8 * l);
            _mm256_storeu_si256((__m256i *)(q + 8 * l),
                                qi_clamp8(qi_nearest_int8(_mm256_div_ps(_mm256_add_ps(v, m), d)), 0, nmax));
        }
        for (int j = 0; j < 8; j++)
            if (lanes >> j & 1)
                for (int l = 0; l < n; l++) L[n * (8 * g + j) + l] = (uint8_t)q[8 * l + j];
    }
}

#endif /* QI_X86 */
