/* Internal (not part of the cffi API): NEON twins of the hottest K-quant
 * search kernels (kq_search_neon.c), for arm64: the asymmetric (Q2_K, Q4_K,
 * Q5_K) fits and scoring, the symmetric (Q3_K, Q6_K) "best" fit and scoring.
 * Same layout and exactness rules as kq_avx2.h: rows of eight transposed sub-blocks, each lane doing its
 * sub-block's scalar float32 operations in the scalar order (no fused
 * multiply-add: -ffp-contract=off and no fused intrinsics; vdivq_f32 is
 * correctly rounded like '/'). A row of eight is handled as two independent
 * halves of four lanes. The C test runner checks the bytes against the scalar
 * path under qemu. */
#ifndef QINFER_KQ_NEON_H
#define QINFER_KQ_NEON_H

#include "kq_avx2.h"

#if defined(QI_ARM64)

/* Same contracts as qi_kq_make_qkx_x8_avx2 and qi_kq_asym_score_avx2 (kq_avx2.h). */
void qi_kq_make_qkx_x8_neon(int n, int nmax, const float *xt, const float *wt, int32_t *Lt, float *scale,
                            float *the_min, float rmin, float rdelta, int nstep, int use_mad, int empty_if_le);
float qi_kq_asym_score_neon(const float *xt, const float *wt, int n_sub, int nmax, int smax,
                            const float *scales, const float *mins, const int8_t *moves, int nmoves,
                            float d, float dmin, float best_err, uint8_t *c_sc, uint8_t *c_m, uint8_t *c_q);

/* Same contracts as qi_ksym_fit_scales_avx2 and qi_ksym_score_avx2 (Q3_K/Q6_K best). */
void qi_ksym_fit_scales_neon(const float *x, const float *w, int qmin, int qmax, const float *grid, int ngrid,
                             float *scales);
float qi_ksym_score_neon(const float *xt, const float *wt, const float *scales, int qmin, int qmax, int smin,
                         int smax, float d, float best_err, int8_t *s_out, int8_t *q_out);

#endif /* QI_ARM64 */
#endif /* QINFER_KQ_NEON_H */
