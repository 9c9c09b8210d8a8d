/* `best` search for the legacy formats with AVX2: a block's 32 values are four
 * 8-lane registers, and every block sum is the lane-ordered sum of
 * qinfer/quants/legacy_best.py (running sums per lane over the four registers,
 * then lanes j+4, j+2, j+1 folded in), so the bytes equal the scalar twin in
 * quant_legacy_best.c. Only IEEE-exact operations (add, mul, div, round to
 * nearest even, min/max), no FMA. Weights of 1 (no importance matrix) take a
 * path without the multiplications by w, which are exact and so change nothing. */
#include "qinfer.h"
#include "quant_legacy_best.h"

#ifdef QI_X86

#define QK QI_LEGACY_QK
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* Per-lane running sums s = ((v0 + v1) + v2) + v3. */
static ALWAYS_INLINE QI_TARGET_AVX2 __m256 quarters(const __m256 *v) {
    return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(v[0], v[1]), v[2]), v[3]);
}

/* Fold two lane-sum registers at once: a_j = s_j + s_{j+4}, b_j = a_j + a_{j+2},
 * total = b_0 + b_1; *ta from sa, *tb from sb. */
static ALWAYS_INLINE QI_TARGET_AVX2 void fold2(__m256 sa, __m256 sb, float *ta, float *tb) {
    const __m256 a = _mm256_add_ps(_mm256_permute2f128_ps(sa, sb, 0x20), _mm256_permute2f128_ps(sa, sb, 0x31));
    const __m256 b = _mm256_add_ps(a, _mm256_permute_ps(a, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m256 c = _mm256_add_ps(b, _mm256_permute_ps(b, _MM_SHUFFLE(2, 3, 0, 1)));
    *ta = _mm256_cvtss_f32(c);
    *tb = _mm_cvtss_f32(_mm256_extractf128_ps(c, 1));
}

static ALWAYS_INLINE QI_TARGET_AVX2 float fold1(__m256 s) {
    float t, unused;
    fold2(s, s, &t, &unused);
    return t;
}

static inline float f16r(float v) { return qi_fp16_to_fp32(qi_fp32_to_fp16(v)); }

static ALWAYS_INLINE QI_TARGET_AVX2 __m256 round_clamp(__m256 v, __m256 lo, __m256 hi) {
    return _mm256_min_ps(_mm256_max_ps(_mm256_round_ps(v, RNE), lo), hi);
}

/* sum of (w*diff)*diff, diff = x - (d*l + m) (m == NULL: x - d*l). */
static ALWAYS_INLINE QI_TARGET_AVX2 float err(const __m256 *X, const __m256 *W, int has_w, __m256 D,
                                              const __m256 *M, const __m256 *L) {
    __m256 v[4];
    for (int q = 0; q < 4; q++) {
        __m256 y = _mm256_mul_ps(D, L[q]);
        if (M) y = _mm256_add_ps(y, *M);
        const __m256 diff = _mm256_sub_ps(X[q], y);
        v[q] = _mm256_mul_ps(has_w ? _mm256_mul_ps(W[q], diff) : diff, diff);
    }
    return fold1(quarters(v));
}

/* sxl = sum (w*x)*l, sll = sum (w*l)*l */
static ALWAYS_INLINE QI_TARGET_AVX2 void sym_sums(const __m256 *WX, const __m256 *W, int has_w, const __m256 *L,
                                                  float *sxl, float *sll) {
    __m256 a[4], b[4];
    for (int q = 0; q < 4; q++) {
        a[q] = _mm256_mul_ps(WX[q], L[q]);
        b[q] = _mm256_mul_ps(has_w ? _mm256_mul_ps(W[q], L[q]) : L[q], L[q]);
    }
    fold2(quarters(a), quarters(b), sxl, sll);
}

static ALWAYS_INLINE QI_TARGET_AVX2 int sym_stored(const __m256 *X, const __m256 *W, int has_w, float d,
                                                   __m256 lo, __m256 hi, float *ds, __m256 *L, float *e) {
    d = f16r(d);
    if (!(d != 0) || !isfinite(d)) return 0;
    const __m256 D = _mm256_set1_ps(d);
    for (int q = 0; q < 4; q++) L[q] = round_clamp(_mm256_div_ps(X[q], D), lo, hi);
    *ds = d;
    *e = err(X, W, has_w, D, NULL, L);
    return 1;
}

static ALWAYS_INLINE QI_TARGET_AVX2 void best_sym(const float *x, const float *w, int has_w, int lo_i, int hi_i,
                                                  qi_sym_trials tr, float *d, float *l) {
    const __m256 lo = _mm256_set1_ps((float)lo_i), hi = _mm256_set1_ps((float)hi_i);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 X[4], W[4], WX[4], L0[4], L1[4], L2[4], Lt[4];
    __m256 amax = _mm256_setzero_ps();
    for (int q = 0; q < 4; q++) {
        X[q] = _mm256_loadu_ps(x + 8 * q);
        W[q] = has_w ? _mm256_loadu_ps(w + 8 * q) : _mm256_set1_ps(1.0f);
        WX[q] = has_w ? _mm256_mul_ps(W[q], X[q]) : X[q];
        L0[q] = _mm256_loadu_ps(l + 8 * q);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, X[q]));
    }
    float best_e = err(X, W, has_w, _mm256_set1_ps(*d), NULL, L0);
    /* signed absmax: the first element whose |x| is the largest */
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    const float am = _mm_cvtss_f32(m4);
    if (am == 0) return;
    const __m256 AM = _mm256_set1_ps(am);
    float mx = 0;
    for (int q = 0; q < 4; q++) {
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, X[q]), AM, _CMP_EQ_OQ));
        if (hit) { mx = x[8 * q + __builtin_ctz(hit)]; break; }
    }
    float score = -INFINITY, td = 0;
    for (int k = 0; k < tr.n; k++) {
        const float t = tr.t0 + tr.step * (float)k;
        const __m256 iscale = _mm256_set1_ps(-t / mx);
        for (int q = 0; q < 4; q++) Lt[q] = round_clamp(_mm256_mul_ps(iscale, X[q]), lo, hi);
        float sxl, sll;
        sym_sums(WX, W, has_w, Lt, &sxl, &sll);
        if (!(sll > 0)) continue;
        const float dk = sxl / sll, s = dk * sxl;
        if (s > score) { score = s; td = dk; }
    }
    if (!(score > -INFINITY)) return;
    float d1, e1;
    if (!sym_stored(X, W, has_w, td, lo, hi, &d1, L1, &e1)) return;
    float sxl, sll, d2, e2;
    sym_sums(WX, W, has_w, L1, &sxl, &sll);
    const int v2 = sll > 0 && sym_stored(X, W, has_w, sxl / sll, lo, hi, &d2, L2, &e2);
    const __m256 *Lb = NULL;
    if (e1 < best_e) { best_e = e1; *d = d1; Lb = L1; }
    if (v2 && e2 < best_e) { *d = d2; Lb = L2; }
    if (Lb)
        for (int q = 0; q < 4; q++) _mm256_storeu_ps(l + 8 * q, Lb[q]);
}

QI_TARGET_AVX2 void qi_legacy_best_sym_avx2(const float *x, const float *w, int lo, int hi, qi_sym_trials tr,
                                            float *d, float *l) {
    if (w) best_sym(x, w, 1, lo, hi, tr, d, l);
    else best_sym(x, NULL, 0, lo, hi, tr, d, l);
}

/* LS (d, m) of codes L; 0 if the normal equations are singular. */
static ALWAYS_INLINE QI_TARGET_AVX2 int asym_ls(const __m256 *WX, const __m256 *W, int has_w, const __m256 *L,
                                                float sw, float sx, float *d, float *m, float *sxl_out) {
    __m256 a[4], b[4], c[4];
    for (int q = 0; q < 4; q++) {
        const __m256 wl = has_w ? _mm256_mul_ps(W[q], L[q]) : L[q];
        a[q] = wl;
        b[q] = _mm256_mul_ps(wl, L[q]);
        c[q] = _mm256_mul_ps(WX[q], L[q]);
    }
    float sl, sl2;
    fold2(quarters(a), quarters(b), &sl, &sl2);
    const float sxl = fold1(quarters(c));
    const float D = sw * sl2 - sl * sl;
    if (!(D > 0)) return 0;
    *d = (sw * sxl - sx * sl) / D;
    *m = (sl2 * sx - sl * sxl) / D;
    *sxl_out = sxl;
    return 1;
}

static ALWAYS_INLINE QI_TARGET_AVX2 int asym_stored(const __m256 *X, const __m256 *W, int has_w, float d, float m,
                                                    __m256 nmax, float *ds, float *ms, __m256 *L, float *e) {
    d = f16r(d);
    m = f16r(m);
    if (!(d > 0) || !isfinite(d) || !isfinite(m)) return 0;
    const __m256 D = _mm256_set1_ps(d), M = _mm256_set1_ps(m), zero = _mm256_setzero_ps();
    for (int q = 0; q < 4; q++) L[q] = round_clamp(_mm256_div_ps(_mm256_sub_ps(X[q], M), D), zero, nmax);
    *ds = d; *ms = m;
    *e = err(X, W, has_w, D, &M, L);
    return 1;
}

static ALWAYS_INLINE QI_TARGET_AVX2 void best_asym(const float *x, const float *w, int has_w, int nmax_i,
                                                   float *d, float *m, float *l) {
    static const float TRIM_A[4] = {0.0f, 0.0f, 0.5f, 0.5f}, TRIM_B[4] = {0.0f, 0.5f, 0.0f, 0.5f};
    const float nmax = (float)nmax_i;
    const __m256 NMAX = _mm256_set1_ps(nmax), zero = _mm256_setzero_ps();
    __m256 X[4], W[4], WX[4], L0[4], L1[4], L2[4], Lt[4];
    for (int q = 0; q < 4; q++) {
        X[q] = _mm256_loadu_ps(x + 8 * q);
        W[q] = has_w ? _mm256_loadu_ps(w + 8 * q) : _mm256_set1_ps(1.0f);
        WX[q] = has_w ? _mm256_mul_ps(W[q], X[q]) : X[q];
        L0[q] = _mm256_loadu_ps(l + 8 * q);
    }
    const __m256 M0 = _mm256_set1_ps(*m);
    float best_e = err(X, W, has_w, _mm256_set1_ps(*d), &M0, L0);
    __m256 vmn = _mm256_min_ps(_mm256_min_ps(X[0], X[1]), _mm256_min_ps(X[2], X[3]));
    __m256 vmx = _mm256_max_ps(_mm256_max_ps(X[0], X[1]), _mm256_max_ps(X[2], X[3]));
    __m128 a = _mm_min_ps(_mm256_castps256_ps128(vmn), _mm256_extractf128_ps(vmn, 1));
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(vmx), _mm256_extractf128_ps(vmx, 1));
    a = _mm_min_ps(a, _mm_movehl_ps(a, a));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    const float mn = _mm_cvtss_f32(_mm_min_ss(a, _mm_shuffle_ps(a, a, 1)));
    const float mx = _mm_cvtss_f32(_mm_max_ss(b, _mm_shuffle_ps(b, b, 1)));
    const float r = mx - mn;
    if (!(r > 0)) return;
    const float step = r / nmax;
    float sw, sx;
    if (has_w) fold2(quarters(W), quarters(WX), &sw, &sx);
    else { sw = (float)QK; sx = fold1(quarters(X)); }
    float score = -INFINITY, td = 0, tm = 0;
    for (int k = 0; k < 4; k++) {
        const float lo_v = mn + TRIM_A[k] * step, hi_v = mx - TRIM_B[k] * step;
        const float width = hi_v - lo_v;
        if (!(width > 0)) continue;
        const __m256 LO = _mm256_set1_ps(lo_v), IC = _mm256_set1_ps(nmax / width);
        for (int q = 0; q < 4; q++) Lt[q] = round_clamp(_mm256_mul_ps(_mm256_sub_ps(X[q], LO), IC), zero, NMAX);
        float dk, mk, sxl;
        if (!asym_ls(WX, W, has_w, Lt, sw, sx, &dk, &mk, &sxl)) continue;
        const float s = dk * sxl + mk * sx;
        if (dk > 0 && s > score) { score = s; td = dk; tm = mk; }
    }
    if (!(score > -INFINITY)) return;
    float d1, m1, e1;
    if (!asym_stored(X, W, has_w, td, tm, NMAX, &d1, &m1, L1, &e1)) return;
    float d2, m2, e2, dr, mr, sxl;
    const int v2 = asym_ls(WX, W, has_w, L1, sw, sx, &dr, &mr, &sxl) &&
                   asym_stored(X, W, has_w, dr, mr, NMAX, &d2, &m2, L2, &e2);
    const __m256 *Lb = NULL;
    if (e1 < best_e) { best_e = e1; *d = d1; *m = m1; Lb = L1; }
    if (v2 && e2 < best_e) { *d = d2; *m = m2; Lb = L2; }
    if (Lb)
        for (int q = 0; q < 4; q++) _mm256_storeu_ps(l + 8 * q, Lb[q]);
}

QI_TARGET_AVX2 void qi_legacy_best_asym_avx2(const float *x, const float *w, int nmax, float *d, float *m, float *L) {
    if (w) best_asym(x, w, 1, nmax, d, m, L);
    else best_asym(x, NULL, 0, nmax, d, m, L);
}

#endif
