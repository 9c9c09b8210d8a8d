/* The "best" scale search of the asymmetric K-quants (Q2_K, Q4_K, Q5_K):
 * x = d*sc_j*q - dmin*m_j. qinfer/quants/kq_asym_best.py documents the
 * algorithm and is the reference this reproduces bit for bit (float32 in the
 * same order, sequential sums, strict comparisons, first candidate wins). */
#include "qinfer.h"
#include "kq_scalar.h"
#include "api/kq_search.h"
#include "kq_avx2.h"
#include "kq_neon.h"

static float first_max(const float *v, int n) {
    float top = 0;
    for (int j = 0; j < n; j++) if (v[j] > top) top = v[j];
    return top;
}

static int round_code(float v, float step, int smax) {
    return step != 0 ? clampi(nearest_int(v / step), 0, smax) : 0;
}

static inline int weight_code(float x, float dl, float ml, float inv, int nmax) {
    return dl != 0 ? clampi(nearest_int((x + ml) * inv), 0, nmax) : 0;
}

#define MAX_SUB 16
#define MAX_MOVES 32

typedef struct {
    const float *x, *w, *scales, *mins;
    int n_sub, n, nmax, smax, nmoves;
    const int8_t *moves;       /* nmoves (dsc, dm) pairs */
    float best_err;
    uint8_t sc[MAX_SUB], m[MAX_SUB], q[256];
    uint16_t d_bits, dmin_bits;
    int simd;                  /* score with qi_kq_asym_score_avx2 / _neon over xt, wt */
    float xt[256], wt[256];    /* x, w in groups of eight sub-blocks, transposed (kq_avx2.h) */
} search_t;

/* Score the super-scales (d_bits, dmin_bits); keep them if strictly better. */
static void evaluate(search_t *s, uint16_t d_bits, uint16_t dmin_bits) {
    const float d = qi_fp16_to_fp32(d_bits), dmin = qi_fp16_to_fp32(dmin_bits);
    const int n = s->n;
    uint8_t c_sc[MAX_SUB] = {0}, c_m[MAX_SUB] = {0}, c_q[256] = {0};
    float total = 0;
#if defined(QI_X86)
    if (s->simd) {
        total = qi_kq_asym_score_avx2(s->xt, s->wt, s->n_sub, s->nmax, s->smax, s->scales, s->mins, s->moves,
                                      s->nmoves, d, dmin, s->best_err, c_sc, c_m, c_q);
        goto keep;
    }
#elif defined(QI_ARM64)
    if (s->simd) {
        total = qi_kq_asym_score_neon(s->xt, s->wt, s->n_sub, s->nmax, s->smax, s->scales, s->mins, s->moves,
                                      s->nmoves, d, dmin, s->best_err, c_sc, c_m, c_q);
        goto keep;
    }
#endif
    for (int j = 0; j < s->n_sub; j++) {
        const float *xj = s->x + n * j, *wj = s->w + n * j;
        const int sc0 = round_code(s->scales[j], d, s->smax), m0 = round_code(s->mins[j], dmin, s->smax);
        int sc[MAX_MOVES], m[MAX_MOVES];
        float dl[MAX_MOVES], ml[MAX_MOVES], inv[MAX_MOVES], err[MAX_MOVES];
        for (int t = 0; t < s->nmoves; t++) {
            sc[t] = clampi(sc0 + s->moves[2 * t], 0, s->smax);
            m[t] = clampi(m0 + s->moves[2 * t + 1], 0, s->smax);
            dl[t] = d * (float)sc[t];
            ml[t] = dmin * (float)m[t];
            inv[t] = dl[t] != 0 ? 1.f / dl[t] : 0.f;
            err[t] = 0;
        }
        /* the candidates side by side: each sum still runs over l in order */
        for (int l = 0; l < n; l++)
            for (int t = 0; t < s->nmoves; t++) {
                const float diff = xj[l] - (dl[t] * (float)weight_code(xj[l], dl[t], ml[t], inv[t], s->nmax) - ml[t]);
                err[t] += wj[l] * diff * diff;
            }
        float err_j = INFINITY;
        int tb = 0;
        for (int t = 0; t < s->nmoves; t++)
            if (err[t] < err_j) { err_j = err[t]; tb = t; }
        if (err_j < INFINITY) {
            c_sc[j] = (uint8_t)sc[tb];
            c_m[j] = (uint8_t)m[tb];
            for (int l = 0; l < n; l++) c_q[n * j + l] = (uint8_t)weight_code(xj[l], dl[tb], ml[tb], inv[tb], s->nmax);
        }
        total += err_j;
    }
#if defined(QI_X86) || defined(QI_ARM64)
keep:
#endif
    if (total < s->best_err) {
        s->best_err = total;
        s->d_bits = d_bits;
        s->dmin_bits = dmin_bits;
        memcpy(s->sc, c_sc, sizeof c_sc);
        memcpy(s->m, c_m, sizeof c_m);
        memcpy(s->q, c_q, sizeof c_q);
    }
}

/* Weighted least squares (d, dmin) for the current winner's codes; 0 if unusable. */
static int refit(const search_t *s, float *d_out, float *dmin_out) {
    float saa = 0, sab = 0, sbb = 0, sxa = 0, sxb = 0;
    for (int i = 0; i < s->n_sub * s->n; i++) {
        const int j = i / s->n;
        const float a = (float)((int)s->sc[j] * (int)s->q[i]), b = (float)s->m[j], wi = s->w[i], xi = s->x[i];
        saa += wi * a * a;
        sab += wi * a * b;
        sbb += wi * b * b;
        sxa += wi * xi * a;
        sxb += wi * xi * b;
    }
    const float det = saa * sbb - sab * sab;
    if (!(det > 0)) return 0;
    const float d = (sxa * sbb - sxb * sab) / det, dmin = (sxa * sab - sxb * saa) / det;
    if (!(d > 0 && dmin >= 0)) return 0;
    *d_out = d;
    *dmin_out = dmin;
    return 1;
}

float qi_kq_asym_search(const float *x, const float *w, int n_sub, int nmax, int smax,
                        float rmin, float rdelta, int nstep, const float *divisors, int ndiv,
                        const int8_t *moves, int nmoves, int refits,
                        uint8_t *sc, uint8_t *m, uint16_t *d_bits, uint16_t *dmin_bits, uint8_t *q) {
    search_t s;
    float scales[MAX_SUB], mins[MAX_SUB];
    uint8_t Ltmp[256], Laux[256];
    const int n = 256 / n_sub;
    if (n_sub > MAX_SUB || nmoves > MAX_MOVES) return NAN;
    s.simd = 0;
#if defined(QI_X86)
    s.simd = qi_simd_level() == QI_SIMD_AVX2 && n_sub % 8 == 0;
#elif defined(QI_ARM64)
    s.simd = qi_simd_level() >= QI_SIMD_NEON && n_sub % 8 == 0;
#endif
    for (int g = 0; s.simd && g < n_sub / 8; g++) {
        float *xt = s.xt + 8 * n * g, *wt = s.wt + 8 * n * g;
        qi_kq_transpose8(x, n, g, xt);
        qi_kq_transpose8(w, n, g, wt);
#if defined(QI_X86)
        qi_kq_make_qkx_x8_avx2(n, nmax, xt, wt, NULL, scales + 8 * g, mins + 8 * g, rmin, rdelta, nstep, 0, 1);
#elif defined(QI_ARM64)
        qi_kq_make_qkx_x8_neon(n, nmax, xt, wt, NULL, scales + 8 * g, mins + 8 * g, rmin, rdelta, nstep, 0, 1);
#endif
    }
    for (int j = 0; j < n_sub && !s.simd; j++)
        scales[j] = qi_kq_make_qkx3_quants(n, nmax, x + n * j, w + n * j, Ltmp, &mins[j], Laux, rmin, rdelta, nstep, 0);
    s.x = x; s.w = w; s.scales = scales; s.mins = mins;
    s.n_sub = n_sub; s.n = n; s.nmax = nmax; s.smax = smax; s.nmoves = nmoves; s.moves = moves;
    s.best_err = INFINITY;
    s.d_bits = s.dmin_bits = 0;
    memset(s.sc, 0, sizeof s.sc);
    memset(s.m, 0, sizeof s.m);
    memset(s.q, 0, sizeof s.q);
    const float max_scale = first_max(scales, n_sub), max_min = first_max(mins, n_sub);
    for (int a = 0; a < ndiv; a++)
        for (int c = 0; c < ndiv; c++)
            evaluate(&s, qi_fp32_to_fp16(max_scale / divisors[a]), qi_fp32_to_fp16(max_min / divisors[c]));
    for (int r = 0; r < refits; r++) {
        float d, dmin;
        if (refit(&s, &d, &dmin)) evaluate(&s, qi_fp32_to_fp16(d), qi_fp32_to_fp16(dmin));
    }
    memcpy(sc, s.sc, (size_t)n_sub);
    memcpy(m, s.m, (size_t)n_sub);
    memcpy(q, s.q, 256);
    *d_bits = s.d_bits;
    *dmin_bits = s.dmin_bits;
    return s.best_err;
}
