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

/* Errors of each lane for k (1..3) moves that share the min step ml (so
 * x + ml, the first operation of their codes, is computed once), over the n
 * weights in order; unit: all weights 1 (w * diff skipped, exact: see
 * qi_all_ones). k and unit are compile-time constants in each inlined copy. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void
moves_error8(const float *xg, const float *wg, int n, const __m256 *dl, __m256 ml, const __m256 *inv, const __m256 *nz,
             int nmax, const int k, const int unit, __m256 *err) {
    __m256 e[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int l = 0; l < n; l++) {
        const __m256 x = _mm256_loadu_ps(xg + 8 * l), xm = _mm256_add_ps(x, ml);
        const __m256 w = unit ? x : _mm256_loadu_ps(wg + 8 * l);
        for (int c = 0; c < k; c++) {
            const __m256i qi = qi_clamp8(qi_nearest_int8(_mm256_mul_ps(xm, inv[c])), 0, nmax);
            const __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(qi, _mm256_castps_si256(nz[c])));
            const __m256 diff = _mm256_sub_ps(x, _mm256_sub_ps(_mm256_mul_ps(dl[c], q), ml));
            const __m256 wd = unit ? diff : _mm256_mul_ps(w, diff);
            e[c] = _mm256_add_ps(e[c], _mm256_mul_ps(wd, diff));
        }
    }
    for (int c = 0; c < k; c++) err[c] = e[c];
}

QI_TARGET_AVX2 static void moves_error8_any(const float *xg, const float *wg, int n, const __m256 *dl, __m256 ml,
                                            const __m256 *inv, const __m256 *nz, int nmax, int k, int unit,
                                            __m256 *err) {
    if (unit) {
        if (k == 3) moves_error8(xg, wg, n, dl, ml, inv, nz, nmax, 3, 1, err);
        else if (k == 2) moves_error8(xg, wg, n, dl, ml, inv, nz, nmax, 2, 1, err);
        else moves_error8(xg, wg, n, dl, ml, inv, nz, nmax, 1, 1, err);
    } else {
        if (k == 3) moves_error8(xg, wg, n, dl, ml, inv, nz, nmax, 3, 0, err);
        else if (k == 2) moves_error8(xg, wg, n, dl, ml, inv, nz, nmax, 2, 0, err);
        else moves_error8(xg, wg, n, dl, ml, inv, nz, nmax, 1, 0, err);
    }
}

#define MAX_MOVES 32

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
    /* every move's codes, steps and error for the current group */
    __m256i sc[MAX_MOVES], m[MAX_MOVES];
    __m256 dl[MAX_MOVES], ml[MAX_MOVES], inv[MAX_MOVES], nz[MAX_MOVES], err[MAX_MOVES];
    if (nmoves > MAX_MOVES) return NAN;
    for (int g = 0; g < groups; g++) {
        const float *xg = xt + 8 * n * g, *wg = wt + 8 * n * g;
        const __m256i sc0 = round_code8(scales + 8 * g, d, smax), m0 = round_code8(mins + 8 * g, dmin, smax);
        const int unit = qi_all_ones(wg, 8 * n);
        for (int t = 0; t < nmoves; t++) {
            sc[t] = qi_clamp8(_mm256_add_epi32(sc0, _mm256_set1_epi32(moves[2 * t])), 0, smax);
            m[t] = qi_clamp8(_mm256_add_epi32(m0, _mm256_set1_epi32(moves[2 * t + 1])), 0, smax);
            dl[t] = _mm256_mul_ps(vd, _mm256_cvtepi32_ps(sc[t]));
            ml[t] = _mm256_mul_ps(vdmin, _mm256_cvtepi32_ps(m[t]));
            nz[t] = _mm256_cmp_ps(dl[t], zero, _CMP_NEQ_UQ);
            inv[t] = _mm256_and_ps(_mm256_div_ps(one, dl[t]), nz[t]);
        }
        /* errors, up to three moves with the same min change per pass over the weights */
        int done[MAX_MOVES] = {0};
        for (int t = 0; t < nmoves; t++) {
            if (done[t]) continue;
            int idx[3], k = 0;
            for (int u = t; u < nmoves && k < 3; u++)
                if (!done[u] && moves[2 * u + 1] == moves[2 * t + 1]) { idx[k++] = u; done[u] = 1; }
            __m256 gdl[3], ginv[3], gnz[3], gerr[3];
            for (int c = 0; c < k; c++) { gdl[c] = dl[idx[c]]; ginv[c] = inv[idx[c]]; gnz[c] = nz[idx[c]]; }
            moves_error8_any(xg, wg, n, gdl, ml[t], ginv, gnz, nmax, k, unit, gerr);
            for (int c = 0; c < k; c++) err[idx[c]] = gerr[c];
        }
        /* the moves compared in their order: replace only where strictly better */
        __m256 best = _mm256_set1_ps(INFINITY);
        w_sc[g] = w_m[g] = _mm256_setzero_si256();
        w_ml[g] = w_inv[g] = w_nz[g] = zero;
        for (int t = 0; t < nmoves; t++) {
            const __m256 better = _mm256_cmp_ps(err[t], best, _CMP_LT_OQ);
            const __m256i bi = _mm256_castps_si256(better);
            best = _mm256_blendv_ps(best, err[t], better);
            w_sc[g] = _mm256_blendv_epi8(w_sc[g], sc[t], bi);
            w_m[g] = _mm256_blendv_epi8(w_m[g], m[t], bi);
            w_ml[g] = _mm256_blendv_ps(w_ml[g], ml[t], better);
            w_inv[g] = _mm256_blendv_ps(w_inv[g], inv[t], better);
            w_nz[g] = _mm256_blendv_ps(w_nz[g], nz[t], better);
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
