/* `best` search for the legacy formats with AVX2, eight blocks at once.
 *
 * The eight blocks are transposed so that register lane b holds block b and
 * column i (C[i]) holds element i of every block: then each block's arithmetic
 * is exactly the scalar twin's (quant_legacy_best.c, specified in
 * qinfer/quants/legacy_best.py), lane by lane, and per-block decisions become
 * blends instead of branches. The lane-ordered block sum of the specification
 * is computed from the columns in its own order: s_j = ((c_j + c_{j+8}) +
 * c_{j+16}) + c_{j+24}, then s_j + s_{j+4}, then the j, j+2 and the last pair.
 * Only IEEE-exact operations (add, mul, div, round, min/max, conversions), no
 * FMA. llama.cpp's reference quantization (candidate 0) is computed here too
 * when there is no importance matrix, with C's conversions reproduced. */
#include "qinfer.h"
#include "quant_legacy_best.h"

#ifdef QI_X86

#define QK QI_LEGACY_QK
#define AI static inline __attribute__((always_inline)) QI_TARGET_AVX2
#define RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define TRUNC (_MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)

/* In-place 8x8 transpose: r[i] lane b <-> r[b] lane i. */
AI void tr8(__m256 *r) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Columns of 8 blocks whose rows start at p[b]. */
AI void load_cols(const float *const *p, __m256 *C) {
    for (int q = 0; q < 4; q++) {
        __m256 r[8];
        for (int b = 0; b < 8; b++) r[b] = _mm256_loadu_ps(p[b] + 8 * q);
        tr8(r);
        for (int i = 0; i < 8; i++) C[8 * q + i] = r[i];
    }
}

/* The specification's fold of the eight lane sums s_j. */
AI __m256 fold8(const __m256 *s) {
    const __m256 a0 = _mm256_add_ps(s[0], s[4]), a1 = _mm256_add_ps(s[1], s[5]);
    const __m256 a2 = _mm256_add_ps(s[2], s[6]), a3 = _mm256_add_ps(s[3], s[7]);
    return _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
}

/* lane-ordered sum of the columns C */
AI __m256 colsum(const __m256 *C) {
    __m256 s[8];
    for (int j = 0; j < 8; j++)
        s[j] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(C[j], C[j + 8]), C[j + 16]), C[j + 24]);
    return fold8(s);
}

AI __m256 f16r(__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }

AI __m256 is_finite(__m256 v) {
    return _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), v), _mm256_set1_ps(INFINITY), _CMP_LT_OQ);
}

/* Operands in this order (max_ps/min_ps return the second one when unordered or
 * equal), NaN and -0 come through as in the scalar clampf(rintf(v), lo, hi). */
AI __m256 round_clamp(__m256 v, __m256 lo, __m256 hi) {
    return _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_round_ps(v, RNE)));
}

AI __m256 sel(__m256 mask, __m256 yes, __m256 no) { return _mm256_blendv_ps(no, yes, mask); }

/* 1/d where d != 0, else 0 (ggml's id) */
AI __m256 inv_or_zero(__m256 d) {
    return _mm256_and_ps(_mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ), _mm256_div_ps(_mm256_set1_ps(1.0f), d));
}

/* C's (int) of a float (cvttss2si) and then the integer kept in `bits` bits:
 * sign-extended (int8_t) or masked (uint8_t / the stored nibbles). */
AI __m256i trunc_i(__m256 v) { return _mm256_cvttps_epi32(v); }
AI __m256i as_int8(__m256i q) { return _mm256_srai_epi32(_mm256_slli_epi32(q, 24), 24); }

typedef struct {
    __m256 X[QK], W[QK], WXbuf[QK];
    const __m256 *WX;       /* w*x: WXbuf, or X itself for weights of 1 */
    int has_w;
} blocks8;

/* sum of (w*diff)*diff, diff = x - (d*l + m) (asym) or x - d*l */
AI __m256 err(const blocks8 *B, __m256 D, const __m256 *M, const __m256 *L) {
    __m256 s[8];
    for (int j = 0; j < 8; j++) {
        for (int k = 0; k < 4; k++) {
            const int i = j + 8 * k;
            __m256 y = _mm256_mul_ps(D, L[i]);
            if (M) y = _mm256_add_ps(y, *M);
            const __m256 diff = _mm256_sub_ps(B->X[i], y);
            const __m256 e = _mm256_mul_ps(B->has_w ? _mm256_mul_ps(B->W[i], diff) : diff, diff);
            s[j] = k ? _mm256_add_ps(s[j], e) : e;
        }
    }
    return fold8(s);
}

/* ---- symmetric types ------------------------------------------------------ */

/* sxl = sum (w*x)*l, sll = sum (w*l)*l */
AI void sym_sums(const blocks8 *B, const __m256 *L, __m256 *sxl, __m256 *sll) {
    __m256 a[8], b[8];
    for (int j = 0; j < 8; j++)
        for (int k = 0; k < 4; k++) {
            const int i = j + 8 * k;
            const __m256 p = _mm256_mul_ps(B->WX[i], L[i]);
            const __m256 q = _mm256_mul_ps(B->has_w ? _mm256_mul_ps(B->W[i], L[i]) : L[i], L[i]);
            a[j] = k ? _mm256_add_ps(a[j], p) : p;
            b[j] = k ? _mm256_add_ps(b[j], q) : q;
        }
    *sxl = fold8(a);
    *sll = fold8(b);
}

/* Scale rounded to fp16 and the codes from it; returns the valid lanes. */
AI __m256 sym_stored(const blocks8 *B, __m256 d, __m256 valid, __m256 lo, __m256 hi, __m256 *ds, __m256 *L) {
    const __m256 one = _mm256_set1_ps(1.0f);
    d = f16r(_mm256_and_ps(valid, d));
    valid = _mm256_and_ps(valid, _mm256_and_ps(_mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ), is_finite(d)));
    d = sel(valid, d, one);
    const __m256 id = _mm256_div_ps(one, d);
    for (int i = 0; i < QK; i++) L[i] = round_clamp(_mm256_mul_ps(B->X[i], id), lo, hi);
    *ds = d;
    return valid;
}

AI void best_sym(const qi_legacy_fmt *f, const blocks8 *B, __m256 mx, __m256 *D, __m256 *L) {
    const __m256 lo = _mm256_set1_ps((float)f->lo), hi = _mm256_set1_ps((float)f->hi), zero = _mm256_setzero_ps();
    __m256 best_e = err(B, *D, NULL, L);
    const __m256 nz = _mm256_cmp_ps(mx, zero, _CMP_NEQ_OQ);
    const __m256 mxs = sel(nz, mx, _mm256_set1_ps(1.0f));
    __m256 score = _mm256_set1_ps(-INFINITY), td = zero;
    for (int k = 0; k < f->tr.n; k++) {
        const float t = f->tr.t0 + f->tr.step * (float)k;
        const __m256 iscale = _mm256_div_ps(_mm256_set1_ps(-t), mxs);
        __m256 a[8], b[8];
        for (int j = 0; j < 8; j++)
            for (int kk = 0; kk < 4; kk++) {
                const int i = j + 8 * kk;
                const __m256 l = round_clamp(_mm256_mul_ps(iscale, B->X[i]), lo, hi);
                const __m256 p = _mm256_mul_ps(B->WX[i], l);
                const __m256 q = _mm256_mul_ps(B->has_w ? _mm256_mul_ps(B->W[i], l) : l, l);
                a[j] = kk ? _mm256_add_ps(a[j], p) : p;
                b[j] = kk ? _mm256_add_ps(b[j], q) : q;
            }
        const __m256 sxl = fold8(a), sll = fold8(b);
        const __m256 ok = _mm256_cmp_ps(sll, zero, _CMP_GT_OQ);
        const __m256 dk = _mm256_div_ps(sxl, sel(ok, sll, _mm256_set1_ps(1.0f)));
        const __m256 s = _mm256_mul_ps(dk, sxl);
        const __m256 better = _mm256_and_ps(ok, _mm256_cmp_ps(s, score, _CMP_GT_OQ));
        score = sel(better, s, score);
        td = sel(better, dk, td);
    }
    const __m256 found = _mm256_and_ps(nz, _mm256_cmp_ps(score, _mm256_set1_ps(-INFINITY), _CMP_GT_OQ));
    __m256 d1, L1[QK], d2, L2[QK], sxl, sll;
    const __m256 v1 = sym_stored(B, td, found, lo, hi, &d1, L1);
    sym_sums(B, L1, &sxl, &sll);
    const __m256 ok = _mm256_and_ps(v1, _mm256_cmp_ps(sll, zero, _CMP_GT_OQ));
    const __m256 v2 = sym_stored(B, _mm256_div_ps(sxl, sel(ok, sll, _mm256_set1_ps(1.0f))), ok, lo, hi, &d2, L2);
    const __m256 take = _mm256_and_ps(v2, _mm256_cmp_ps(err(B, d2, NULL, L2), best_e, _CMP_LT_OQ));
    *D = sel(take, d2, *D);
    for (int i = 0; i < QK; i++) L[i] = sel(take, L2[i], L[i]);
}

/* llama.cpp's quantize_row_q{8,4,5}_0_ref: stored d and signed codes; mx the signed absmax. */
AI void ggml_sym(const qi_legacy_fmt *f, const blocks8 *B, __m256 *D, __m256 *L, __m256 *mx_out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps(), mx = _mm256_setzero_ps();
    for (int i = 0; i < QK; i++) {
        const __m256 a = _mm256_andnot_ps(sign, B->X[i]);
        const __m256 gt = _mm256_cmp_ps(a, amax, _CMP_GT_OQ);
        amax = sel(gt, a, amax);
        mx = sel(gt, B->X[i], mx);
    }
    *mx_out = mx;
    if (f->q8) {
        const __m256 d = _mm256_div_ps(amax, _mm256_set1_ps(127.0f)), id = inv_or_zero(d);
        const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
        for (int i = 0; i < QK; i++) {
            /* roundf: truncate, then one step away from zero when the fraction is >= 1/2 */
            const __m256 v = _mm256_mul_ps(B->X[i], id);
            const __m256 t = _mm256_round_ps(v, TRUNC);
            const __m256 big = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), half, _CMP_GE_OQ);
            const __m256 r = _mm256_add_ps(t, _mm256_and_ps(big, _mm256_or_ps(one, _mm256_and_ps(sign, v))));
            L[i] = _mm256_cvtepi32_ps(as_int8(trunc_i(r)));
        }
        *D = f16r(d);
        return;
    }
    const __m256 d = _mm256_div_ps(mx, _mm256_set1_ps((float)-f->nmax)), id = inv_or_zero(d);
    const __m256 bias = _mm256_set1_ps((float)f->nmax + 0.5f);
    const __m256i top = _mm256_set1_epi32(2 * f->nmax - 1), mask = _mm256_set1_epi32((1 << f->bits) - 1);
    const __m256i off = _mm256_set1_epi32(f->offset);
    for (int i = 0; i < QK; i++) {
        __m256i q = as_int8(trunc_i(_mm256_add_ps(_mm256_mul_ps(B->X[i], id), bias)));
        q = _mm256_min_epi32(q, top);
        L[i] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(q, mask), off));
    }
    *D = f16r(d);
}

/* ---- Q4_1 / Q5_1 ----------------------------------------------------------- */

/* LS (d, m) of codes L, or (L == NULL) of the trial codes rint((x - lo)*ic)
 * clamped to 0..nmax, computed on the fly; returns the lanes where the normal
 * equations are regular. */
AI __m256 asym_ls(const blocks8 *B, const __m256 *L, __m256 lo, __m256 ic, __m256 nmax,
                  __m256 sw, __m256 sx, __m256 *d, __m256 *m, __m256 *sxl_out) {
    __m256 a[8], b[8], c[8];
    for (int j = 0; j < 8; j++)
        for (int k = 0; k < 4; k++) {
            const int i = j + 8 * k;
            const __m256 l = L ? L[i] : round_clamp(_mm256_mul_ps(_mm256_sub_ps(B->X[i], lo), ic), _mm256_setzero_ps(), nmax);
            const __m256 wl = B->has_w ? _mm256_mul_ps(B->W[i], l) : l;
            const __m256 p = _mm256_mul_ps(wl, l), q = _mm256_mul_ps(B->WX[i], l);
            a[j] = k ? _mm256_add_ps(a[j], wl) : wl;
            b[j] = k ? _mm256_add_ps(b[j], p) : p;
            c[j] = k ? _mm256_add_ps(c[j], q) : q;
        }
    const __m256 sl = fold8(a), sl2 = fold8(b), sxl = fold8(c);
    const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sw, sl2), _mm256_mul_ps(sl, sl));
    const __m256 ok = _mm256_cmp_ps(D, _mm256_setzero_ps(), _CMP_GT_OQ);
    const __m256 Ds = sel(ok, D, _mm256_set1_ps(1.0f));
    *d = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sw, sxl), _mm256_mul_ps(sx, sl)), Ds);
    *m = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, sx), _mm256_mul_ps(sl, sxl)), Ds);
    *sxl_out = sxl;
    return ok;
}

AI __m256 asym_stored(const blocks8 *B, __m256 d, __m256 m, __m256 valid, __m256 nmax,
                      __m256 *ds, __m256 *ms, __m256 *L) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    d = f16r(_mm256_and_ps(valid, d));
    m = f16r(_mm256_and_ps(valid, m));
    valid = _mm256_and_ps(valid, _mm256_and_ps(_mm256_cmp_ps(d, zero, _CMP_GT_OQ),
                                               _mm256_and_ps(is_finite(d), is_finite(m))));
    d = sel(valid, d, one);
    m = _mm256_and_ps(valid, m);
    const __m256 id = _mm256_div_ps(one, d);
    for (int i = 0; i < QK; i++) L[i] = round_clamp(_mm256_mul_ps(_mm256_sub_ps(B->X[i], m), id), zero, nmax);
    *ds = d;
    *ms = m;
    return valid;
}

AI void best_asym(const qi_legacy_fmt *f, const blocks8 *B, __m256 mn, __m256 mx, __m256 *D, __m256 *M, __m256 *L) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), nmax = _mm256_set1_ps((float)f->nmax);
    __m256 best_e = err(B, *D, M, L);
    const __m256 r = _mm256_sub_ps(mx, mn);
    const __m256 spread = _mm256_cmp_ps(r, zero, _CMP_GT_OQ);
    const __m256 step = _mm256_div_ps(r, nmax);
    const __m256 sw = B->has_w ? colsum(B->W) : _mm256_set1_ps((float)QK), sx = colsum(B->WX);
    __m256 score = _mm256_set1_ps(-INFINITY), td = zero, tm = zero;
    for (int k = 0; k < QI_N_TRIMS; k++) {
        const __m256 lo_v = _mm256_add_ps(mn, _mm256_mul_ps(_mm256_set1_ps(QI_TRIM_A[k]), step));
        const __m256 hi_v = _mm256_sub_ps(mx, _mm256_mul_ps(_mm256_set1_ps(QI_TRIM_B[k]), step));
        const __m256 width = _mm256_sub_ps(hi_v, lo_v);
        const __m256 ok = _mm256_and_ps(spread, _mm256_cmp_ps(width, zero, _CMP_GT_OQ));
        const __m256 ic = _mm256_div_ps(nmax, sel(ok, width, one));
        __m256 dk, mk, sxl;
        const __m256 regular = asym_ls(B, NULL, lo_v, ic, nmax, sw, sx, &dk, &mk, &sxl);
        const __m256 s = _mm256_add_ps(_mm256_mul_ps(dk, sxl), _mm256_mul_ps(mk, sx));
        const __m256 better = _mm256_and_ps(_mm256_and_ps(ok, regular),
                                            _mm256_and_ps(_mm256_cmp_ps(dk, zero, _CMP_GT_OQ), _mm256_cmp_ps(s, score, _CMP_GT_OQ)));
        score = sel(better, s, score);
        td = sel(better, dk, td);
        tm = sel(better, mk, tm);
    }
    const __m256 found = _mm256_cmp_ps(score, _mm256_set1_ps(-INFINITY), _CMP_GT_OQ);
    __m256 d1, m1, L1[QK], d2, m2, L2[QK], dr, mr, sxl;
    const __m256 v1 = asym_stored(B, td, tm, found, nmax, &d1, &m1, L1);
    const __m256 regular = asym_ls(B, L1, zero, one, nmax, sw, sx, &dr, &mr, &sxl);
    const __m256 v2 = asym_stored(B, dr, mr, _mm256_and_ps(v1, regular), nmax, &d2, &m2, L2);
    const __m256 take = _mm256_and_ps(v2, _mm256_cmp_ps(err(B, d2, &m2, L2), best_e, _CMP_LT_OQ));
    *D = sel(take, d2, *D);
    *M = sel(take, m2, *M);
    for (int i = 0; i < QK; i++) L[i] = sel(take, L2[i], L[i]);
}

/* llama.cpp's quantize_row_q{4,5}_1_ref: stored d, m and codes; mn, mx of each block. */
AI void ggml_asym(const qi_legacy_fmt *f, const blocks8 *B, __m256 *D, __m256 *M, __m256 *L, __m256 *mn_out, __m256 *mx_out) {
    __m256 mn = _mm256_set1_ps(3.40282347e38f), mx = _mm256_set1_ps(-3.40282347e38f);
    for (int i = 0; i < QK; i++) {
        mn = _mm256_min_ps(B->X[i], mn);     /* x < min ? x : min, as the C loop */
        mx = _mm256_max_ps(B->X[i], mx);
    }
    const __m256 d = _mm256_div_ps(_mm256_sub_ps(mx, mn), _mm256_set1_ps((float)f->nmax)), id = inv_or_zero(d);
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256i byte = _mm256_set1_epi32(0xFF), fifteen = _mm256_set1_epi32(15), mask5 = _mm256_set1_epi32(31);
    for (int i = 0; i < QK; i++) {
        __m256i q = _mm256_and_si256(trunc_i(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(B->X[i], mn), id), half)), byte);
        /* (uint8_t) value 0..255, then Q4_1 clamps to 15 (already 4 bits) and
         * Q5_1 stores the low 5 bits */
        q = f->bits == 4 ? _mm256_min_epi32(q, fifteen) : _mm256_and_si256(q, mask5);
        L[i] = _mm256_cvtepi32_ps(q);
    }
    *D = f16r(d);
    *M = f16r(mn);
    *mn_out = mn;
    *mx_out = mx;
}

/* ---- packing ------------------------------------------------------------------ */

/* fp16 bits of eight scales that are fp16 values already (exact), NaN as
 * qi_fp32_to_fp16 writes it. */
AI __m128i f16_bits(__m256 v) {
    const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    const __m128i nan = _mm256_castsi256_si128(_mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    const __m128i nan16 = _mm_packs_epi32(nan, nan);
    return _mm_blendv_epi8(h, _mm_set1_epi16(0x7e00), nan16);
}

/* One block from its stored codes q[0..31] (offset added) and fp16 bits of d, m. */
AI void pack(const qi_legacy_fmt *f, uint8_t *b, uint16_t d, uint16_t m, const int32_t *q) {
    memcpy(b, &d, 2);
    int pos = 2;
    if (f->has_min) { memcpy(b + 2, &m, 2); pos = 4; }
    const __m128i q0 = _mm_loadu_si128((const __m128i *)q), q1 = _mm_loadu_si128((const __m128i *)(q + 4));
    const __m128i q2 = _mm_loadu_si128((const __m128i *)(q + 8)), q3 = _mm_loadu_si128((const __m128i *)(q + 12));
    const __m128i q4 = _mm_loadu_si128((const __m128i *)(q + 16)), q5 = _mm_loadu_si128((const __m128i *)(q + 20));
    const __m128i q6 = _mm_loadu_si128((const __m128i *)(q + 24)), q7 = _mm_loadu_si128((const __m128i *)(q + 28));
    const __m128i lo = _mm_packs_epi16(_mm_packs_epi32(q0, q1), _mm_packs_epi32(q2, q3));   /* codes 0..15 */
    const __m128i hi = _mm_packs_epi16(_mm_packs_epi32(q4, q5), _mm_packs_epi32(q6, q7));   /* codes 16..31 */
    if (f->q8) {
        _mm_storeu_si128((__m128i *)(b + 2), lo);
        _mm_storeu_si128((__m128i *)(b + 18), hi);
        return;
    }
    if (f->bits == 5) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)q), c = _mm256_loadu_si256((const __m256i *)(q + 8));
        const __m256i e = _mm256_loadu_si256((const __m256i *)(q + 16)), g = _mm256_loadu_si256((const __m256i *)(q + 24));
        const uint32_t qh = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(a, 27))) |
                            (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(c, 27))) << 8 |
                            (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(e, 27))) << 16 |
                            (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(g, 27))) << 24;
        memcpy(b + pos, &qh, 4);
        pos += 4;
    }
    const __m128i nib = _mm_set1_epi8(15);
    const __m128i v = _mm_or_si128(_mm_and_si128(lo, nib), _mm_slli_epi16(_mm_and_si128(hi, nib), 4));
    _mm_storeu_si128((__m128i *)(b + pos), v);
}

/* Columns back to rows, as integers with the format's offset added. */
AI void store_codes(const qi_legacy_fmt *f, const __m256 *L, int32_t (*q)[QK]) {
    const __m256i off = _mm256_set1_epi32(f->offset);
    for (int k = 0; k < 4; k++) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = L[8 * k + i];
        tr8(r);
        for (int b = 0; b < 8; b++)
            _mm256_storeu_si256((__m256i *)(q[b] + 8 * k), _mm256_add_epi32(_mm256_cvtps_epi32(r[b]), off));
    }
}

AI void run8(const qi_legacy_fmt *f, const float *x, const float *const *w, int has_w,
             const float *d0, const float *m0, const float *l0, int search, uint8_t *out) {
    blocks8 B;
    const float *rows[8];
    B.has_w = has_w;
    for (int b = 0; b < 8; b++) rows[b] = x + QK * b;
    load_cols(rows, B.X);
    B.WX = B.X;
    if (has_w) {
        load_cols(w, B.W);
        for (int i = 0; i < QK; i++) B.WXbuf[i] = _mm256_mul_ps(B.W[i], B.X[i]);
        B.WX = B.WXbuf;
    }
    __m256 D, M = _mm256_setzero_ps(), L[QK], mn, mx;
    if (d0) {
        const float *lr[8];
        for (int b = 0; b < 8; b++) lr[b] = l0 + QK * b;
        load_cols(lr, L);
        D = _mm256_loadu_ps(d0);
        M = _mm256_loadu_ps(m0);
    }
    if (f->has_min) {
        if (d0) {
            mn = _mm256_set1_ps(3.40282347e38f);
            mx = _mm256_set1_ps(-3.40282347e38f);
            for (int i = 0; i < QK; i++) { mn = _mm256_min_ps(B.X[i], mn); mx = _mm256_max_ps(B.X[i], mx); }
        } else {
            ggml_asym(f, &B, &D, &M, L, &mn, &mx);
        }
        if (search) best_asym(f, &B, mn, mx, &D, &M, L);
    } else {
        if (d0) {
            const __m256 sign = _mm256_set1_ps(-0.0f);
            __m256 amax = _mm256_setzero_ps();
            mx = _mm256_setzero_ps();
            for (int i = 0; i < QK; i++) {
                const __m256 a = _mm256_andnot_ps(sign, B.X[i]), gt = _mm256_cmp_ps(a, amax, _CMP_GT_OQ);
                amax = sel(gt, a, amax);
                mx = sel(gt, B.X[i], mx);
            }
        } else {
            ggml_sym(f, &B, &D, L, &mx);
        }
        if (search) best_sym(f, &B, mx, &D, L);
    }
    int32_t q[8][QK];
    uint16_t dv[8], mv[8];
    store_codes(f, L, q);
    _mm_storeu_si128((__m128i *)dv, f16_bits(D));
    _mm_storeu_si128((__m128i *)mv, f16_bits(M));
    for (int b = 0; b < 8; b++) pack(f, out + b * f->type_size, dv[b], mv[b], q[b]);
}

QI_TARGET_AVX2 void qi_legacy_best8_avx2(const qi_legacy_fmt *f, const float *x, const float *const *w,
                                         const float *d0, const float *m0, const float *l0, uint8_t *out) {
    if (w) run8(f, x, w, 1, d0, m0, l0, 1, out);
    else run8(f, x, NULL, 0, d0, m0, l0, 1, out);
}

QI_TARGET_AVX2 void qi_legacy_ggml8_avx2(const qi_legacy_fmt *f, const float *x, uint8_t *out) {
    run8(f, x, NULL, 0, NULL, NULL, NULL, 0, out);
}

#endif
