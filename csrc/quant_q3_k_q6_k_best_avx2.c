/* AVX2 twins for the symmetric K-quants Q3_K and Q6_K (16 sub-blocks of 16
 * weights, two groups of eight lanes): quant_q3_k_q6_k_best.c's sub-block
 * fit (qi_ksym_fit_scale) and candidate scoring (inside qi_ksym_search), and
 * ggml's requantization from the stored steps. Each lane performs its
 * sub-block's scalar float32 operations in the scalar order (kq_avx2.h). */
#include "kq_avx2.h"

#if defined(QI_X86)

/* qi_ksym_signed_max for eight lanes: the value of largest magnitude, first one on ties */
QI_TARGET_AVX2 static inline __m256 signed_max8(const float *vt, int n) {
    __m256 amax = _mm256_setzero_ps(), top = _mm256_setzero_ps();
    for (int l = 0; l < n; l++) {
        const __m256 v = _mm256_loadu_ps(vt + 8 * l), a = qi_abs8(v);
        const __m256 gt = _mm256_cmp_ps(a, amax, _CMP_GT_OQ);
        amax = _mm256_blendv_ps(amax, a, gt);
        top = _mm256_blendv_ps(top, v, gt);
    }
    return top;
}

QI_TARGET_AVX2 void qi_ksym_fit_scales_avx2(const float *x, const float *w, int qmin, int qmax, const float *grid,
                                            int ngrid, float *scales) {
    const __m256 zero = _mm256_setzero_ps();
    float xt[128], wt[128];
    for (int g = 0; g < 2; g++) {
        qi_kq_transpose8(x, 16, g, xt);
        qi_kq_transpose8(w, 16, g, wt);
        const __m256 top = signed_max8(xt, 16);
        const __m256 empty = _mm256_cmp_ps(qi_abs8(top), _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
        __m256 scale = zero, best = zero;
        for (int k = 0; k < ngrid; k++) {
            const __m256 iscale = _mm256_div_ps(_mm256_set1_ps(grid[k]), top);
            __m256 sumlx = zero, suml2 = zero;
            for (int l = 0; l < 16; l++) {
                const __m256 xv = _mm256_loadu_ps(xt + 8 * l), wv = _mm256_loadu_ps(wt + 8 * l);
                const __m256 lf = _mm256_cvtepi32_ps(qi_clamp8(qi_nearest_int8(_mm256_mul_ps(iscale, xv)), qmin, qmax));
                sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wv, xv), lf));
                suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wv, lf), lf));
            }
            const __m256 better = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
                                                _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
            const __m256 s = _mm256_div_ps(sumlx, suml2);
            scale = _mm256_blendv_ps(scale, s, better);
            best = _mm256_blendv_ps(best, _mm256_mul_ps(s, sumlx), better);
        }
        _mm256_storeu_ps(scales + 8 * g, _mm256_blendv_ps(scale, zero, empty));
    }
}

/* code_sym of quant_q3_k_q6_k_best.c: dl != 0 ? clamp(nearest_int(x * inv), qmin, qmax) : 0 (nz: dl != 0) */
QI_TARGET_AVX2 static inline __m256i code_sym8(__m256 x, __m256 inv, __m256 nz, int qmin, int qmax) {
    const __m256i q = qi_clamp8(qi_nearest_int8(_mm256_mul_ps(x, inv)), qmin, qmax);
    return _mm256_and_si256(q, _mm256_castps_si256(nz));
}

QI_TARGET_AVX2 float qi_ksym_score_avx2(const float *xt, const float *wt, const float *scales, int qmin, int qmax,
                                        int smin, int smax, float d, float best_err, int8_t *s_out, int8_t *q_out) {
    static const int deltas[3] = {0, -1, 1};
    const __m256 zero = _mm256_setzero_ps(), vd = _mm256_set1_ps(d), one = _mm256_set1_ps(1.f);
    __m256i w_s[2];
    __m256 w_inv[2], w_nz[2], w_err[2];
    float err_j[16];
    for (int g = 0; g < 2; g++) {
        const float *xg = xt + 128 * g, *wg = wt + 128 * g;
        const __m256i s0 = d != 0 ? qi_clamp8(qi_nearest_int8(_mm256_div_ps(_mm256_loadu_ps(scales + 8 * g), vd)), smin, smax)
                                  : _mm256_setzero_si256();
        __m256 best = _mm256_set1_ps(INFINITY);
        w_s[g] = _mm256_setzero_si256();
        w_inv[g] = w_nz[g] = zero;
        for (int t = 0; t < 3; t++) {
            const __m256i s = qi_clamp8(_mm256_add_epi32(s0, _mm256_set1_epi32(deltas[t])), smin, smax);
            const __m256 dl = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(s));
            const __m256 nz = _mm256_cmp_ps(dl, zero, _CMP_NEQ_UQ);
            const __m256 inv = _mm256_and_ps(_mm256_div_ps(one, dl), nz);
            __m256 err = zero;
            for (int l = 0; l < 16; l++) {
                const __m256 xv = _mm256_loadu_ps(xg + 8 * l), wv = _mm256_loadu_ps(wg + 8 * l);
                const __m256 q = _mm256_cvtepi32_ps(code_sym8(xv, inv, nz, qmin, qmax));
                const __m256 diff = _mm256_sub_ps(xv, _mm256_mul_ps(dl, q));
                err = _mm256_add_ps(err, _mm256_mul_ps(_mm256_mul_ps(wv, diff), diff));
            }
            const __m256 better = _mm256_cmp_ps(err, best, _CMP_LT_OQ);
            best = _mm256_blendv_ps(best, err, better);
            w_s[g] = _mm256_blendv_epi8(w_s[g], s, _mm256_castps_si256(better));
            w_inv[g] = _mm256_blendv_ps(w_inv[g], inv, better);
            w_nz[g] = _mm256_blendv_ps(w_nz[g], nz, better);
        }
        w_err[g] = best;
        _mm256_storeu_ps(err_j + 8 * g, best);
    }
    float total = 0;
    for (int j = 0; j < 16; j++) total += err_j[j];
    if (!(total < best_err)) return total;
    /* codes of the winners; a sub-block whose every candidate scored NaN or infinity keeps zeros */
    int32_t q[128], s[8];
    for (int g = 0; g < 2; g++) {
        const __m256 valid = _mm256_cmp_ps(w_err[g], _mm256_set1_ps(INFINITY), _CMP_LT_OQ);
        const __m256 nz = _mm256_and_ps(w_nz[g], valid);
        _mm256_storeu_si256((__m256i *)s, _mm256_and_si256(w_s[g], _mm256_castps_si256(valid)));
        for (int l = 0; l < 16; l++)
            _mm256_storeu_si256((__m256i *)(q + 8 * l), code_sym8(_mm256_loadu_ps(xt + 128 * g + 8 * l), w_inv[g], nz, qmin, qmax));
        for (int j = 0; j < 8; j++) {
            s_out[8 * g + j] = (int8_t)s[j];
            for (int l = 0; l < 16; l++) q_out[16 * (8 * g + j) + l] = (int8_t)q[8 * l + j];
        }
    }
    return total;
}

QI_TARGET_AVX2 void qi_kq_requant_sym_avx2(const float *x, const float *dl, int qmin, int qmax, int8_t *L) {
    float xt[128];
    int32_t q[128];
    for (int g = 0; g < 2; g++) {
        const __m256 d = _mm256_loadu_ps(dl + 8 * g);
        const int lanes = _mm256_movemask_ps(_mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ));
        if (!lanes) continue;
        qi_kq_transpose8(x, 16, g, xt);
        for (int l = 0; l < 16; l++) {
            const __m256i v = qi_clamp8(qi_nearest_int8(_mm256_div_ps(_mm256_loadu_ps(xt + 8 * l), d)), qmin, qmax);
            _mm256_storeu_si256((__m256i *)(q + 8 * l), _mm256_sub_epi32(v, _mm256_set1_epi32(qmin)));
        }
        for (int j = 0; j < 8; j++)
            if (lanes >> j & 1)
                for (int l = 0; l < 16; l++) L[16 * (8 * g + j) + l] = (int8_t)q[8 * l + j];
    }
}

#endif /* QI_X86 */
