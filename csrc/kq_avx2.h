/* Internal (not part of the cffi API): AVX2 twins of the K-quant search
 * helpers, working on eight sub-blocks at once, one per 32-bit lane.
 *
 * Layout: a group of eight sub-blocks of n weights is held transposed,
 * xt[8*l + j] = weight l of sub-block j, so the vector at row l carries the
 * l-th weight of every sub-block. Every per-sub-block sum then runs over l in
 * the scalar code's order inside its own lane; nothing is reassociated, and
 * each lane performs exactly the float32 operations of the scalar code
 * (no FMA: the sources are compiled with -ffp-contract=off and fused
 * intrinsics are not used). Branches on data become lane masks with the
 * scalar comparison (ordered strict compares for '<' '>', unordered for '!=').
 * The callers choose these paths when qi_simd_level() is QI_SIMD_AVX2; the
 * C test runner (csrc/tests) checks that the bytes equal the scalar path's. */
#ifndef QINFER_KQ_AVX2_H
#define QINFER_KQ_AVX2_H

#include "qinfer.h"

/* Transpose sub-blocks 8g..8g+7 of n weights each (sub-block j at v + n*j)
 * into rows of eight (plain C: the NEON paths of kq_neon.h use it too). */
static inline void qi_kq_transpose8(const float *v, int n, int g, float *vt) {
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < n; l++) vt[8 * l + j] = v[n * (8 * g + j) + l];
}

#if defined(QI_X86)

/* ggml's nearest_int on eight lanes: same float add, same bit extraction. */
QI_TARGET_AVX2 static inline __m256i qi_nearest_int8(__m256 f) {
    const __m256i bits = _mm256_castps_si256(_mm256_add_ps(f, _mm256_set1_ps(12582912.f)));
    return _mm256_sub_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

QI_TARGET_AVX2 static inline __m256i qi_clamp8(__m256i v, int lo, int hi) {
    return _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi));
}

/* fabsf: clear the sign bit, exactly. */
QI_TARGET_AVX2 static inline __m256 qi_abs8(__m256 v) {
    return _mm256_andnot_ps(_mm256_set1_ps(-0.f), v);
}

/* 1 if all n floats are exactly 1: then w * v == v for every v (including
 * -0, infinities and NaN), so the kernels may skip those products and stay exact. */
QI_TARGET_AVX2 static inline int qi_all_ones(const float *w, int n) {
    __m256 eq = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int i = 0; i < n; i += 8)
        eq = _mm256_and_ps(eq, _mm256_cmp_ps(_mm256_loadu_ps(w + i), _mm256_set1_ps(1.f), _CMP_EQ_OQ));
    return _mm256_movemask_ps(eq) == 0xff;
}

/* kq_search_avx2.c: make_qkx2_quants (empty_if_le 0) / make_qkx3_quants
 * (empty_if_le 1) of kq_search.c for eight sub-blocks: xt, wt transposed (weights required), Lt
 * (NULL: not wanted) receives the codes as n rows of eight int32; scale[j],
 * the_min[j] the results of sub-block j. */
void qi_kq_make_qkx_x8_avx2(int n, int nmax, const float *xt, const float *wt, int32_t *Lt, float *scale,
                            float *the_min, float rmin, float rdelta, int nstep, int use_mad, int empty_if_le);

/* make_qx_quants of kq_search.c for eight sub-blocks (wt NULL: x^2);
 * Lt receives the biased codes (l + nmax) as n rows of eight int32. */
void qi_kq_make_qx_x8_avx2(int n, int nmax, const float *xt, const float *wt, int32_t *Lt, float *scale);

/* make_qx_quants of sixteen sub-blocks of 16 in element order (qw NULL: x^2):
 * biased codes into L[256], scales[16]. */
void qi_kq_make_qx16_avx2(int nmax, const float *x, const float *qw, int8_t *L, float *scales);

/* make_qkx2/qkx3 (empty_if_le) of sixteen sub-blocks of 16 in element order:
 * codes into L[256], scales[16], mins[16] (the_min of each). */
void qi_kq_make_qkx16_avx2(int nmax, const float *x, const float *w, uint8_t *L, float *scales, float *mins,
                           float rmin, float rdelta, int nstep, int use_mad, int empty_if_le);

/* make_q3_quants of sixteen sub-blocks of 16 in element order: biased codes
 * into L[256], scales[16]. */
void qi_kq_make_q3_16_avx2(int nmax, const float *x, int8_t *L, float *scales);

/* kq_asym_best_avx2.c: one candidate pair (d, dmin) of the asymmetric "best"
 * search (kq_asym_best.c, evaluate) for n_sub sub-blocks (8 or 16) of 256/n_sub
 * weights; xt, wt: the groups of eight transposed one after the other.
 * Returns the total error; when it is below best_err also writes the
 * winning codes c_sc, c_m (n_sub each) and c_q (256, element order). */
float qi_kq_asym_score_avx2(const float *xt, const float *wt, int n_sub, int nmax, int smax,
                            const float *scales, const float *mins, const int8_t *moves, int nmoves,
                            float d, float dmin, float best_err, uint8_t *c_sc, uint8_t *c_m, uint8_t *c_q);

/* quant_q45_k_avx2.c: ggml's Q4_K/Q5_K per-sub-block fit of one super-block,
 * quantize_row_q{4,5}_K_ref's (qw NULL: make_qkx2 with rmin, rdelta, nstep)
 * or _impl's (make_qkx3, also the sub-block weight sums sw); L: the codes. */
void qi_q45k_fit_avx2(const float *x, const float *qw, int nmax, float rmin, float rdelta, int nstep,
                      uint8_t *L, float *scales, float *mins, float *sw);
/* Codes of eight sub-blocks of 32 (n_sub 8) or sixteen of 16 (n_sub 16) from their
 * stored steps: L = clamp(nearest_int((x + ml) / dl), 0, nmax) where dl != 0;
 * sub-blocks with dl == 0 keep their L. */
void qi_kq_requant_asym_avx2(const float *x, int n_sub, const float *dl, const float *ml, int nmax, uint8_t *L);

/* Q3_K/Q6_K (quant_q3_k_q6_k_best_avx2.c), sixteen sub-blocks of 16 in
 * element order: qi_ksym_fit_scale of every sub-block into scales[16]; */
void qi_ksym_fit_scales_avx2(const float *x, const float *w, int qmin, int qmax, const float *grid, int ngrid,
                             float *scales);
/* one super-scale d of qi_ksym_search (xt, wt: both groups transposed): the
 * total error, and when below best_err the winners' s_out[16], q_out[256]; */
float qi_ksym_score_avx2(const float *xt, const float *wt, const float *scales, int qmin, int qmax, int smin,
                         int smax, float d, float best_err, int8_t *s_out, int8_t *q_out);
/* ggml's codes from the stored steps dl[16]: L = clamp(nearest_int(x / dl), qmin, qmax) - qmin
 * where dl != 0, unchanged elsewhere. */
void qi_kq_requant_sym_avx2(const float *x, const float *dl, int qmin, int qmax, int8_t *L);

#endif /* QI_X86 */
#endif /* QINFER_KQ_AVX2_H */
