/* AVX2 twins of kq_search.c's make_qkx2/qkx3 and make_qx quants: eight
 * sub-blocks per call, one per lane (layout and exactness rules: kq_avx2.h).
 * Each lane runs the scalar function's float32 operations in its order; the
 * scalar early returns and "keep if strictly better" updates become masks. */
#include "kq_avx2.h"

#if defined(QI_X86)

#define MAX_N 32

/* unit: all weights are 1 (w * v skipped, see qi_all_ones); a compile-time
 * constant in each of the two inlined copies. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void
qkx_x8(int n, int nmax, const float *xt, const float *wt, int32_t *Lt, float *scale_out, float *min_out, float rmin,
       float rdelta, int nstep, int use_mad, int empty_if_le, const int unit) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256i vzero = _mm256_setzero_si256();
    __m256i laux[MAX_N];
    __m256 mn = _mm256_loadu_ps(xt), mx = mn;
    __m256 sum_w = _mm256_loadu_ps(wt);
    __m256 sum_x = _mm256_mul_ps(sum_w, mn);
    for (int l = 1; l < n; l++) {
        const __m256 x = _mm256_loadu_ps(xt + 8 * l), w = _mm256_loadu_ps(wt + 8 * l);
        mn = _mm256_blendv_ps(mn, x, _mm256_cmp_ps(x, mn, _CMP_LT_OQ));
        mx = _mm256_blendv_ps(mx, x, _mm256_cmp_ps(x, mx, _CMP_GT_OQ));
        sum_w = _mm256_add_ps(sum_w, w);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w, x));
    }
    mn = _mm256_blendv_ps(mn, zero, _mm256_cmp_ps(mn, zero, _CMP_GT_OQ));
    /* lanes the scalar code returns from at once: codes 0, scale 0, min -mn */
    const __m256 empty = empty_if_le ? _mm256_cmp_ps(mx, mn, _CMP_LE_OQ) : _mm256_cmp_ps(mx, mn, _CMP_EQ_OQ);
    const __m256 mn_empty = mn;
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(mx, mn));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.f), iscale);
    __m256 best = zero;
    for (int l = 0; l < n; l++) {
        const __m256 x = _mm256_loadu_ps(xt + 8 * l), w = _mm256_loadu_ps(wt + 8 * l);
        const __m256i q = qi_clamp8(qi_nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(x, mn))), 0, nmax);
        if (Lt) _mm256_storeu_si256((__m256i *)(Lt + 8 * l), q);
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(q)), mn), x);
        diff = use_mad ? qi_abs8(diff) : _mm256_mul_ps(diff, diff);
        best = _mm256_add_ps(best, unit ? diff : _mm256_mul_ps(w, diff));
    }
    for (int step = 0; step <= nstep; step++) {
        const float num = rmin + rdelta * (float)step + (float)nmax;
        iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(mx, mn));
        __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int l = 0; l < n; l++) {
            const __m256 x = _mm256_loadu_ps(xt + 8 * l), w = _mm256_loadu_ps(wt + 8 * l);
            const __m256i q = qi_clamp8(qi_nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(x, mn))), 0, nmax);
            laux[l] = q;
            const __m256 lf = _mm256_cvtepi32_ps(q), wl = unit ? lf : _mm256_mul_ps(w, lf);
            sum_l = _mm256_add_ps(sum_l, wl);
            sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, lf));
            sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, x));
        }
        const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
        const __m256 dpos = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
        if (!_mm256_movemask_ps(dpos)) continue;
        __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
        __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
        const __m256 mpos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
        this_min = _mm256_blendv_ps(this_min, zero, mpos);
        this_scale = _mm256_blendv_ps(this_scale, _mm256_div_ps(sum_xl, sum_l2), mpos);
        __m256 cur = zero;
        for (int l = 0; l < n; l++) {
            const __m256 x = _mm256_loadu_ps(xt + 8 * l), w = _mm256_loadu_ps(wt + 8 * l);
            __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(laux[l])), this_min), x);
            diff = use_mad ? qi_abs8(diff) : _mm256_mul_ps(diff, diff);
            cur = _mm256_add_ps(cur, unit ? diff : _mm256_mul_ps(w, diff));
        }
        const __m256 better = _mm256_and_ps(dpos, _mm256_cmp_ps(cur, best, _CMP_LT_OQ));
        if (!_mm256_movemask_ps(better)) continue;
        if (Lt) {
            const __m256i bm = _mm256_castps_si256(better);
            for (int l = 0; l < n; l++) {
                __m256i *p = (__m256i *)(Lt + 8 * l);
                _mm256_storeu_si256(p, _mm256_blendv_epi8(_mm256_loadu_si256(p), laux[l], bm));
            }
        }
        best = _mm256_blendv_ps(best, cur, better);
        scale = _mm256_blendv_ps(scale, this_scale, better);
        mn = _mm256_blendv_ps(mn, this_min, better);
    }
    if (Lt && _mm256_movemask_ps(empty)) {
        const __m256i em = _mm256_castps_si256(empty);
        for (int l = 0; l < n; l++) {
            __m256i *p = (__m256i *)(Lt + 8 * l);
            _mm256_storeu_si256(p, _mm256_blendv_epi8(_mm256_loadu_si256(p), vzero, em));
        }
    }
    scale = _mm256_blendv_ps(scale, zero, empty);
    mn = _mm256_blendv_ps(mn, mn_empty, empty);
    _mm256_storeu_ps(scale_out, scale);
    _mm256_storeu_ps(min_out, _mm256_xor_ps(mn, _mm256_set1_ps(-0.f)));   /* -mn, also for mn = +0 */
}

QI_TARGET_AVX2 void qi_kq_make_qkx_x8_avx2(int n, int nmax, const float *xt, const float *wt, int32_t *Lt,
                                           float *scale_out, float *min_out, float rmin, float rdelta, int nstep,
                                           int use_mad, int empty_if_le) {
    if (qi_all_ones(wt, 8 * n))
        qkx_x8(n, nmax, xt, wt, Lt, scale_out, min_out, rmin, rdelta, nstep, use_mad, empty_if_le, 1);
    else
        qkx_x8(n, nmax, xt, wt, Lt, scale_out, min_out, rmin, rdelta, nstep, use_mad, empty_if_le, 0);
}

QI_TARGET_AVX2 void qi_kq_make_qx_x8_avx2(int n, int nmax, const float *xt, const float *wt, int32_t *Lt,
                                          float *scale_out) {
    const __m256 zero = _mm256_setzero_ps();
    __m256i laux[MAX_N];
    __m256 top = zero, amax = zero;
    for (int l = 0; l < n; l++) {
        const __m256 x = _mm256_loadu_ps(xt + 8 * l), ax = qi_abs8(x);
        const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
        amax = _mm256_blendv_ps(amax, ax, gt);
        top = _mm256_blendv_ps(top, x, gt);
    }
    /* lanes the scalar code returns from at once: codes 0, scale 0 */
    const __m256 empty = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps(-(float)nmax), top);
    __m256 sumlx = zero, suml2 = zero;
    for (int l = 0; l < n; l++) {
        const __m256 x = _mm256_loadu_ps(xt + 8 * l);
        const __m256 w = wt ? _mm256_loadu_ps(wt + 8 * l) : _mm256_mul_ps(x, x);
        const __m256i q = qi_clamp8(qi_nearest_int8(_mm256_mul_ps(iscale, x)), -nmax, nmax - 1);
        _mm256_storeu_si256((__m256i *)(Lt + 8 * l), _mm256_add_epi32(q, _mm256_set1_epi32(nmax)));
        const __m256 lf = _mm256_cvtepi32_ps(q);
        sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, x), lf));
        suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));
    }
    /* scale = suml2 != 0 ? sumlx / suml2 : 0 */
    __m256 scale = _mm256_and_ps(_mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ));
    __m256 best = _mm256_mul_ps(scale, sumlx);
    for (int step = -9; step <= 9; step++) {
        if (step == 0) continue;
        iscale = _mm256_div_ps(_mm256_set1_ps(-((float)nmax + 0.1f * (float)step)), top);
        sumlx = suml2 = zero;
        for (int l = 0; l < n; l++) {
            const __m256 x = _mm256_loadu_ps(xt + 8 * l);
            const __m256 w = wt ? _mm256_loadu_ps(wt + 8 * l) : _mm256_mul_ps(x, x);
            const __m256i q = qi_clamp8(qi_nearest_int8(_mm256_mul_ps(iscale, x)), -nmax, nmax - 1);
            laux[l] = q;
            const __m256 lf = _mm256_cvtepi32_ps(q);
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, x), lf));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));
        }
        const __m256 better = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
                                            _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
        if (!_mm256_movemask_ps(better)) continue;
        const __m256i bm = _mm256_castps_si256(better), bias = _mm256_set1_epi32(nmax);
        for (int l = 0; l < n; l++) {
            __m256i *p = (__m256i *)(Lt + 8 * l);
            _mm256_storeu_si256(p, _mm256_blendv_epi8(_mm256_loadu_si256(p), _mm256_add_epi32(laux[l], bias), bm));
        }
        const __m256 s = _mm256_div_ps(sumlx, suml2);
        scale = _mm256_blendv_ps(scale, s, better);
        best = _mm256_blendv_ps(best, _mm256_mul_ps(s, sumlx), better);
    }
    if (_mm256_movemask_ps(empty)) {
        const __m256i em = _mm256_castps_si256(empty);
        for (int l = 0; l < n; l++) {
            __m256i *p = (__m256i *)(Lt + 8 * l);
            _mm256_storeu_si256(p, _mm256_blendv_epi8(_mm256_loadu_si256(p), _mm256_setzero_si256(), em));
        }
    }
    _mm256_storeu_ps(scale_out, _mm256_blendv_ps(scale, zero, empty));
}

QI_TARGET_AVX2 void qi_kq_make_qx16_avx2(int nmax, const float *x, const float *qw, int8_t *L, float *scales) {
    float xt[128], wt[128];
    int32_t Lt[128];
    for (int g = 0; g < 2; g++) {
        qi_kq_transpose8(x, 16, g, xt);
        if (qw) qi_kq_transpose8(qw, 16, g, wt);
        qi_kq_make_qx_x8_avx2(16, nmax, xt, qw ? wt : NULL, Lt, scales + 8 * g);
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 16; l++) L[16 * (8 * g + j) + l] = (int8_t)Lt[8 * l + j];
    }
}

QI_TARGET_AVX2 void qi_kq_make_qkx16_avx2(int nmax, const float *x, const float *w, uint8_t *L, float *scales,
                                          float *mins, float rmin, float rdelta, int nstep, int use_mad,
                                          int empty_if_le) {
    float xt[128], wt[128];
    int32_t Lt[128];
    for (int g = 0; g < 2; g++) {
        qi_kq_transpose8(x, 16, g, xt);
        qi_kq_transpose8(w, 16, g, wt);
        qi_kq_make_qkx_x8_avx2(16, nmax, xt, wt, Lt, scales + 8 * g, mins + 8 * g, rmin, rdelta, nstep, use_mad,
                               empty_if_le);
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 16; l++) L[16 * (8 * g + j) + l] = (uint8_t)Lt[8 * l + j];
    }
}

/* make_q3_quants of kq_search.c (weights x^2) for the two groups of eight
 * sub-blocks of 16 (xt: group g at xt + 128 g), interleaved so the two
 * groups' dependency chains overlap. The refinement passes visit the weights
 * in order, each lane carrying its own running sums; a lane whose pass
 * changed nothing stops there (scalar: break) and is masked out of the passes
 * the other lanes still run. */
QI_TARGET_AVX2 static void make_q3_x16(int nmax, const float *xt, int32_t *Lt, float *scale_out) {
    const __m256 zero = _mm256_setzero_ps();
    __m256i Lv[2][16];
    __m256 sumlx[2], suml2[2], active[2], empty[2];
    for (int g = 0; g < 2; g++) {
        const float *xg = xt + 128 * g;
        __m256 top = zero, amax = zero;
        for (int l = 0; l < 16; l++) {
            const __m256 x = _mm256_loadu_ps(xg + 8 * l), ax = qi_abs8(x);
            const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
            amax = _mm256_blendv_ps(amax, ax, gt);
            top = _mm256_blendv_ps(top, x, gt);
        }
        empty[g] = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
        const __m256 iscale = _mm256_div_ps(_mm256_set1_ps(-(float)nmax), top);
        sumlx[g] = suml2[g] = zero;
        for (int l = 0; l < 16; l++) {
            const __m256 x = _mm256_loadu_ps(xg + 8 * l), w = _mm256_mul_ps(x, x);
            Lv[g][l] = qi_clamp8(qi_nearest_int8(_mm256_mul_ps(iscale, x)), -nmax, nmax - 1);
            const __m256 lf = _mm256_cvtepi32_ps(Lv[g][l]);
            sumlx[g] = _mm256_add_ps(sumlx[g], _mm256_mul_ps(_mm256_mul_ps(w, x), lf));
            suml2[g] = _mm256_add_ps(suml2[g], _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));
        }
        active[g] = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    }
    for (int pass = 0; pass < 5; pass++) {
        __m256 changed[2] = {zero, zero};
        for (int l = 0; l < 16; l++)
            for (int g = 0; g < 2; g++) {
                const __m256 x = _mm256_loadu_ps(xt + 128 * g + 8 * l), w = _mm256_mul_ps(x, x), wx = _mm256_mul_ps(w, x);
                const __m256 lf = _mm256_cvtepi32_ps(Lv[g][l]);
                const __m256 slx0 = _mm256_sub_ps(sumlx[g], _mm256_mul_ps(wx, lf));
                const __m256 sl20 = _mm256_sub_ps(suml2[g], _mm256_mul_ps(_mm256_mul_ps(w, lf), lf));
                const __m256i new_l = qi_clamp8(qi_nearest_int8(_mm256_div_ps(_mm256_mul_ps(x, sl20), slx0)), -nmax, nmax - 1);
                const __m256 nf = _mm256_cvtepi32_ps(new_l);
                const __m256 slx = _mm256_add_ps(slx0, _mm256_mul_ps(wx, nf));
                const __m256 sl2 = _mm256_add_ps(sl20, _mm256_mul_ps(_mm256_mul_ps(w, nf), nf));
                __m256 take = _mm256_and_ps(active[g], _mm256_cmp_ps(slx0, zero, _CMP_GT_OQ));
                take = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(new_l, Lv[g][l])), take);
                take = _mm256_and_ps(take, _mm256_cmp_ps(sl2, zero, _CMP_GT_OQ));
                take = _mm256_and_ps(take, _mm256_cmp_ps(_mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2[g]),
                                                         _mm256_mul_ps(_mm256_mul_ps(sumlx[g], sumlx[g]), sl2), _CMP_GT_OQ));
                Lv[g][l] = _mm256_blendv_epi8(Lv[g][l], new_l, _mm256_castps_si256(take));
                sumlx[g] = _mm256_blendv_ps(sumlx[g], slx, take);
                suml2[g] = _mm256_blendv_ps(suml2[g], sl2, take);
                changed[g] = _mm256_or_ps(changed[g], take);
            }
        active[0] = _mm256_and_ps(active[0], changed[0]);
        active[1] = _mm256_and_ps(active[1], changed[1]);
        if (!_mm256_movemask_ps(_mm256_or_ps(active[0], active[1]))) break;
    }
    const __m256i bias = _mm256_set1_epi32(nmax);
    for (int g = 0; g < 2; g++) {
        const __m256i em = _mm256_castps_si256(empty[g]);
        for (int l = 0; l < 16; l++)
            _mm256_storeu_si256((__m256i *)(Lt + 128 * g + 8 * l), _mm256_andnot_si256(em, _mm256_add_epi32(Lv[g][l], bias)));
        const __m256 scale = _mm256_and_ps(_mm256_div_ps(sumlx[g], suml2[g]), _mm256_cmp_ps(suml2[g], zero, _CMP_GT_OQ));
        _mm256_storeu_ps(scale_out + 8 * g, _mm256_andnot_ps(empty[g], scale));
    }
}

QI_TARGET_AVX2 void qi_kq_make_q3_16_avx2(int nmax, const float *x, int8_t *L, float *scales) {
    float xt[256];
    int32_t Lt[256];
    qi_kq_transpose8(x, 16, 0, xt);
    qi_kq_transpose8(x, 16, 1, xt + 128);
    make_q3_x16(nmax, xt, Lt, scales);
    for (int g = 0; g < 2; g++)
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 16; l++) L[16 * (8 * g + j) + l] = (int8_t)Lt[128 * g + 8 * l + j];
}

#endif /* QI_X86 */
