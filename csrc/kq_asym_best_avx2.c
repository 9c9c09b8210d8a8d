/* AVX2 twin of kq_asym_best.c's candidate scoring (evaluate): eight
 * sub-blocks per vector, one per lane, each lane summing its weights' errors
 * in the scalar order with the scalar float32 operations (kq_avx2.h). The
 * moves are tried one after the other, each over all l, so a lane's
 * comparisons ("first candidate wins": replace only when strictly better)
 * happen in the scalar order too. */
#include "kq_avx2.h"

#if defined(QI_X86)

/* round_code of kq_asym_best.c for eight values: step != 0 ? clamp(nearest_int(v / step), 0, smax) : 0 */
QI_TARGET_AVX2 static inline __m256i round_code8(const float *v, float step, int smax) {
    if (!(step != 0)) return _mm256_setzero_si256();
    return qi_clamp8(qi_nearest_int8(_mm256_div_ps(_mm256_loadu_ps(v), _mm256_set1_ps(step))), 0, smax);
}

/* weight_code of kq_asym_best.c: dl != 0 ? clamp(nearest_int((x + ml) * inv), 0, nmax) : 0 (nz: dl != 0) */
QI_TARGET_AVX2 static inline __m256i weight_code8(__m256 x, __m256 ml, __m256 inv, __m256 nz, int nmax) {
    const __m256i q = qi_clamp8(qi_nearest_int8(_mm256_mul_ps(_mm256_add_ps(x, ml), inv)), 0, nmax);
    return _mm256_and_si256(q, _mm256_castps_si256(nz));
}

/* Error of each lane for one move (dl, ml, inv, nz) over its n weights; unit:
 * all weights 1 (w * diff skipped, exact: see qi_all_ones), a compile-time
 * constant in each inlined copy. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) __m256
move_error8(const float *xg, const float *wg, int n, __m256 dl, __m256 ml, __m256 inv, __m256 nz, int nmax, const int unit) {
    __m256 err = _mm256_setzero_ps();
    for (int l = 0; l < n; l++) {
        const __m256 x = _mm256_loadu_ps(xg + 8 * l);
        const __m256 q = _mm256_cvtepi32_ps(weight_code8(x, ml, inv, nz, nmax));
        const __m256 diff = _mm256_sub_ps(x, _mm256_sub_ps(_mm256_mul_ps(dl, q), ml));
        const __m256 wd = unit ? diff : _mm256_mul_ps(_mm256_loadu_ps(wg + 8 * l), diff);
        err = _mm256_add_ps(err, _mm256_mul_ps(wd, diff));
    }
    return err;
}

QI_TARGET_AVX2 float qi_kq_asym_score_avx2(const float *xt, const float *wt, int n_sub, int nmax, int smax,
                                           const float *scales, const float *mins, const int8_t *moves, int nmoves,
                                           float d, float dmin, float best_err, uint8_t *c_sc, uint8_t *c_m,
                                           uint8_t *c_q) {
    const int n = 256 / n_sub, groups = n_sub / 8;
    const __m256 vd = _mm256_set1_ps(d), vdmin = _mm256_set1_ps(dmin), one = _mm256_set1_ps(1.f);
    const __m256 zero = _mm256_setzero_ps();
    /* the winning move of each lane: codes, min step, inverse step, dl != 0, error */
    __m256i w_sc[2], w_m[2];
    __m256 w_ml[2], w_inv[2], w_nz[2], w_err[2];
    float err_j[16];
    for (int g = 0; g < groups; g++) {
        const float *xg = xt + 8 * n * g, *wg = wt + 8 * n * g;
        const __m256i sc0 = round_code8(scales + 8 * g, d, smax), m0 = round_code8(mins + 8 * g, dmin, smax);
        const int unit = qi_all_ones(wg, 8 * n);
        __m256 best = _mm256_set1_ps(INFINITY);
        w_sc[g] = w_m[g] = _mm256_setzero_si256();
        w_ml[g] = w_inv[g] = w_nz[g] = zero;
        for (int t = 0; t < nmoves; t++) {
            const __m256i sc = qi_clamp8(_mm256_add_epi32(sc0, _mm256_set1_epi32(moves[2 * t])), 0, smax);
            const __m256i m = qi_clamp8(_mm256_add_epi32(m0, _mm256_set1_epi32(moves[2 * t + 1])), 0, smax);
            const __m256 dl = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(sc)), ml = _mm256_mul_ps(vdmin, _mm256_cvtepi32_ps(m));
            const __m256 nz = _mm256_cmp_ps(dl, zero, _CMP_NEQ_UQ);
            const __m256 inv = _mm256_and_ps(_mm256_div_ps(one, dl), nz);
            const __m256 err = unit ? move_error8(xg, wg, n, dl, ml, inv, nz, nmax, 1)
                                    : move_error8(xg, wg, n, dl, ml, inv, nz, nmax, 0);
            const __m256 better = _mm256_cmp_ps(err, best, _CMP_LT_OQ);
            if (!_mm256_movemask_ps(better)) continue;
            const __m256i bi = _mm256_castps_si256(better);
            best = _mm256_blendv_ps(best, err, better);
            w_sc[g] = _mm256_blendv_epi8(w_sc[g], sc, bi);
            w_m[g] = _mm256_blendv_epi8(w_m[g], m, bi);
            w_ml[g] = _mm256_blendv_ps(w_ml[g], ml, better);
            w_inv[g] = _mm256_blendv_ps(w_inv[g], inv, better);
            w_nz[g] = _mm256_blendv_ps(w_nz[g], nz, better);
        }
        w_err[g] = best;
        _mm256_storeu_ps(err_j + 8 * g, best);
    }
    float total = 0;
    for (int j = 0; j < n_sub; j++) total += err_j[j];
    if (!(total < best_err)) return total;
    /* codes of the winners, only for a pair that will be kept; a sub-block
     * whose every move scored NaN or infinity keeps zero codes */
    int32_t q[256];
    for (int g = 0; g < groups; g++) {
        const float *xg = xt + 8 * n * g;
        const __m256 valid = _mm256_cmp_ps(w_err[g], _mm256_set1_ps(INFINITY), _CMP_LT_OQ);
        const __m256i vi = _mm256_castps_si256(valid);
        int32_t sc[8], m[8];
        _mm256_storeu_si256((__m256i *)sc, _mm256_and_si256(w_sc[g], vi));
        _mm256_storeu_si256((__m256i *)m, _mm256_and_si256(w_m[g], vi));
        const __m256 nz = _mm256_and_ps(w_nz[g], valid);
        for (int l = 0; l < n; l++)
            _mm256_storeu_si256((__m256i *)(q + 8 * l), weight_code8(_mm256_loadu_ps(xg + 8 * l), w_ml[g], w_inv[g], nz, nmax));
        for (int j = 0; j < 8; j++) {
            c_sc[8 * g + j] = (uint8_t)sc[j];
            c_m[8 * g + j] = (uint8_t)m[j];
            for (int l = 0; l < n; l++) c_q[n * (8 * g + j) + l] = (uint8_t)q[8 * l + j];
        }
    }
    return total;
}

#endif /* QI_X86 */
