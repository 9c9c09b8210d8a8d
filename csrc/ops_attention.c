/* Causal grouped-query attention of new tokens over a KV cache.
 *
 * q:   float [n_tok, n_head, d]        (RoPE applied)
 * k:   [n_ctx, n_head_kv, d]           float or f16 (kv_f16 = 1)
 * v:   [n_ctx, n_head_kv, dv]          same type as k
 * out: float [n_tok, n_head, dv]
 * Query t sits at position pos0 + t and sees cache positions
 * max(0, pos - window + 1) .. pos (window <= 0: all of 0 .. pos). Query head h
 * reads KV head h / (n_head / n_head_kv). Only heads h0 <= h < h1 are
 * computed, so callers can split heads across threads. scratch holds
 * QI_ATTN_QB * (pos0 + n_tok) floats.
 *
 * Per query: scores = q.k * 1/sqrt(d), softmax (max-subtracted, double
 * denominator), then the probability-weighted sum of V rows.
 *
 * Queries that read the same KV head go in blocks of up to QI_ATTN_QB
 * (token, head) pairs: the heads of a GQA group for one generated token, or
 * neighbouring tokens of a prompt. Each K and V row is loaded and converted
 * once per block and used by every query of it, and the block's V sums stay
 * in registers across the rows (the per-query loop re-read and re-converted
 * every row and stored the sums back each time: ~2x the instructions). A
 * query's positions outside its own causal/window range get probability 0,
 * which adds exactly +0 to its sums. */
#include <stdatomic.h>

#include "qinfer.h"
#include "threadpool.h"
#include "vec_exp.h"

#define QI_ATTN_QB 4

/* s[a * ss + j] = q[a] . K row j, for a < nq, j < n (K row j at k0 + j * ks bytes). */
typedef void (*scores_fn)(const float *const *q, int nq, const char *k0, size_t ks, int64_t n, int64_t d,
                          float *s, int64_t ss);
/* o[a][c] = sum_j p[a * ps + j] * V row j [c], for a < nq, c < dv (o overwritten). */
typedef void (*values_fn)(float *const *o, int nq, const float *p, int64_t ps, const char *v0, size_t vs,
                          int64_t n, int64_t dv);

static inline float load1(const char *row, int64_t i, int f16) {
    return f16 ? qi_fp16_to_fp32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

/* ---- scalar ------------------------------------------------------------------ */

static inline void scores_scalar(const float *const *q, int nq, const char *k0, size_t ks, int64_t n, int64_t d,
                                 float *s, int64_t ss, int f16) {
    for (int64_t j = 0; j < n; j++) {
        const char *kr = k0 + (size_t)j * ks;
        for (int a = 0; a < nq; a++) {
            float t = 0.0f;
            for (int64_t i = 0; i < d; i++) t += q[a][i] * load1(kr, i, f16);
            s[a * ss + j] = t;
        }
    }
}

static inline void values_scalar(float *const *o, int nq, const float *p, int64_t ps, const char *v0, size_t vs,
                                 int64_t n, int64_t dv, int f16) {
    for (int a = 0; a < nq; a++) memset(o[a], 0, (size_t)dv * sizeof(float));
    for (int64_t j = 0; j < n; j++) {
        const char *vr = v0 + (size_t)j * vs;
        for (int a = 0; a < nq; a++)
            for (int64_t c = 0; c < dv; c++) o[a][c] += p[a * ps + j] * load1(vr, c, f16);
    }
}

static void scores_f32_scalar(const float *const *q, int nq, const char *k0, size_t ks, int64_t n, int64_t d,
                              float *s, int64_t ss) { scores_scalar(q, nq, k0, ks, n, d, s, ss, 0); }
static void scores_f16_scalar(const float *const *q, int nq, const char *k0, size_t ks, int64_t n, int64_t d,
                              float *s, int64_t ss) { scores_scalar(q, nq, k0, ks, n, d, s, ss, 1); }
static void values_f32_scalar(float *const *o, int nq, const float *p, int64_t ps, const char *v0, size_t vs,
                              int64_t n, int64_t dv) { values_scalar(o, nq, p, ps, v0, vs, n, dv, 0); }
static void values_f16_scalar(float *const *o, int nq, const float *p, int64_t ps, const char *v0, size_t vs,
                              int64_t n, int64_t dv) { values_scalar(o, nq, p, ps, v0, vs, n, dv, 1); }

/* ---- AVX2 ---------------------------------------------------------------------- */
#if defined(QI_X86)
QI_TARGET_AVX2 static inline __m256 load8_avx2(const char *row, int64_t i, int f16) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)))
               : _mm256_loadu_ps((const float *)row + i);
}

QI_TARGET_AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* NQ is a constant in each caller, so the accumulators live in registers. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void
scores_avx2_n(const float *const *q, const char *k0, size_t ks, int64_t n, int64_t d, float *s, int64_t ss,
              int f16, const int NQ) {
    for (int64_t j = 0; j < n; j++) {
        const char *kr = k0 + (size_t)j * ks;
        __m256 acc[QI_ATTN_QB];
        for (int a = 0; a < NQ; a++) acc[a] = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 8 <= d; i += 8) {
            const __m256 kv = load8_avx2(kr, i, f16);
            for (int a = 0; a < NQ; a++) acc[a] = _mm256_fmadd_ps(_mm256_loadu_ps(q[a] + i), kv, acc[a]);
        }
        for (int a = 0; a < NQ; a++) {
            float t = hsum256(acc[a]);
            for (int64_t c = i; c < d; c++) t += q[a][c] * load1(kr, c, f16);
            s[a * ss + j] = t;
        }
    }
}

QI_TARGET_AVX2 static inline __attribute__((always_inline)) void
values_avx2_n(float *const *o, const float *p, int64_t ps, const char *v0, size_t vs, int64_t n, int64_t dv,
              int f16, const int NQ) {
    int64_t c = 0;
    for (; c + 16 <= dv; c += 16) {
        __m256 lo[QI_ATTN_QB], hi[QI_ATTN_QB];
        for (int a = 0; a < NQ; a++) lo[a] = hi[a] = _mm256_setzero_ps();
        for (int64_t j = 0; j < n; j++) {
            const char *vr = v0 + (size_t)j * vs;
            const __m256 x0 = load8_avx2(vr, c, f16), x1 = load8_avx2(vr, c + 8, f16);
            for (int a = 0; a < NQ; a++) {
                const __m256 pb = _mm256_broadcast_ss(p + a * ps + j);
                lo[a] = _mm256_fmadd_ps(pb, x0, lo[a]);
                hi[a] = _mm256_fmadd_ps(pb, x1, hi[a]);
            }
        }
        for (int a = 0; a < NQ; a++) {
            _mm256_storeu_ps(o[a] + c, lo[a]);
            _mm256_storeu_ps(o[a] + c + 8, hi[a]);
        }
    }
    for (; c + 8 <= dv; c += 8) {
        __m256 acc[QI_ATTN_QB];
        for (int a = 0; a < NQ; a++) acc[a] = _mm256_setzero_ps();
        for (int64_t j = 0; j < n; j++) {
            const __m256 x = load8_avx2(v0 + (size_t)j * vs, c, f16);
            for (int a = 0; a < NQ; a++) acc[a] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + a * ps + j), x, acc[a]);
        }
        for (int a = 0; a < NQ; a++) _mm256_storeu_ps(o[a] + c, acc[a]);
    }
    for (; c < dv; c++)
        for (int a = 0; a < NQ; a++) {
            float t = 0.0f;
            for (int64_t j = 0; j < n; j++) t = fmaf(p[a * ps + j], load1(v0 + (size_t)j * vs, c, f16), t);
            o[a][c] = t;
        }
}

#define ATTN_AVX2(kind, F16)                                                                              \
    QI_TARGET_AVX2 static void scores_##kind##_avx2(const float *const *q, int nq, const char *k0, size_t ks, \
                                                    int64_t n, int64_t d, float *s, int64_t ss) {          \
        switch (nq) {                                                                                     \
        case 1: scores_avx2_n(q, k0, ks, n, d, s, ss, F16, 1); break;                                     \
        case 2: scores_avx2_n(q, k0, ks, n, d, s, ss, F16, 2); break;                                     \
        case 3: scores_avx2_n(q, k0, ks, n, d, s, ss, F16, 3); break;                                     \
        default: scores_avx2_n(q, k0, ks, n, d, s, ss, F16, 4); break;                                    \
        }                                                                                                 \
    }                                                                                                     \
    QI_TARGET_AVX2 static void values_##kind##_avx2(float *const *o, int nq, const float *p, int64_t ps,    \
                                                    const char *v0, size_t vs, int64_t n, int64_t dv) {    \
        switch (nq) {                                                                                     \
        case 1: values_avx2_n(o, p, ps, v0, vs, n, dv, F16, 1); break;                                    \
        case 2: values_avx2_n(o, p, ps, v0, vs, n, dv, F16, 2); break;                                    \
        case 3: values_avx2_n(o, p, ps, v0, vs, n, dv, F16, 3); break;                                    \
        default: values_avx2_n(o, p, ps, v0, vs, n, dv, F16, 4); break;                                   \
        }                                                                                                 \
    }
ATTN_AVX2(f32, 0)
ATTN_AVX2(f16, 1)
#endif

/* ---- NEON ---------------------------------------------------------------------- */
#if defined(QI_ARM64)
static inline float32x4_t load4_neon(const char *row, int64_t i, int f16) {
    return f16 ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)row + i)))
               : vld1q_f32((const float *)row + i);
}

static inline __attribute__((always_inline)) void
scores_neon_n(const float *const *q, const char *k0, size_t ks, int64_t n, int64_t d, float *s, int64_t ss,
              int f16, const int NQ) {
    for (int64_t j = 0; j < n; j++) {
        const char *kr = k0 + (size_t)j * ks;
        float32x4_t acc[QI_ATTN_QB];
        for (int a = 0; a < NQ; a++) acc[a] = vdupq_n_f32(0.0f);
        int64_t i = 0;
        for (; i + 4 <= d; i += 4) {
            const float32x4_t kv = load4_neon(kr, i, f16);
            for (int a = 0; a < NQ; a++) acc[a] = vfmaq_f32(acc[a], vld1q_f32(q[a] + i), kv);
        }
        for (int a = 0; a < NQ; a++) {
            float t = vaddvq_f32(acc[a]);
            for (int64_t c = i; c < d; c++) t += q[a][c] * load1(kr, c, f16);
            s[a * ss + j] = t;
        }
    }
}

static inline __attribute__((always_inline)) void
values_neon_n(float *const *o, const float *p, int64_t ps, const char *v0, size_t vs, int64_t n, int64_t dv,
              int f16, const int NQ) {
    int64_t c = 0;
    for (; c + 8 <= dv; c += 8) {
        float32x4_t lo[QI_ATTN_QB], hi[QI_ATTN_QB];
        for (int a = 0; a < NQ; a++) lo[a] = hi[a] = vdupq_n_f32(0.0f);
        for (int64_t j = 0; j < n; j++) {
            const char *vr = v0 + (size_t)j * vs;
            const float32x4_t x0 = load4_neon(vr, c, f16), x1 = load4_neon(vr, c + 4, f16);
            for (int a = 0; a < NQ; a++) {
                lo[a] = vfmaq_n_f32(lo[a], x0, p[a * ps + j]);
                hi[a] = vfmaq_n_f32(hi[a], x1, p[a * ps + j]);
            }
        }
        for (int a = 0; a < NQ; a++) {
            vst1q_f32(o[a] + c, lo[a]);
            vst1q_f32(o[a] + c + 4, hi[a]);
        }
    }
    for (; c < dv; c++)
        for (int a = 0; a < NQ; a++) {
            float t = 0.0f;
            for (int64_t j = 0; j < n; j++) t = fmaf(p[a * ps + j], load1(v0 + (size_t)j * vs, c, f16), t);
            o[a][c] = t;
        }
}

#define ATTN_NEON(kind, F16)                                                                              \
    static void scores_##kind##_neon(const float *const *q, int nq, const char *k0, size_t ks, int64_t n,   \
                                     int64_t d, float *s, int64_t ss) {                                   \
        switch (nq) {                                                                                     \
        case 1: scores_neon_n(q, k0, ks, n, d, s, ss, F16, 1); break;                                     \
        case 2: scores_neon_n(q, k0, ks, n, d, s, ss, F16, 2); break;                                     \
        case 3: scores_neon_n(q, k0, ks, n, d, s, ss, F16, 3); break;                                     \
        default: scores_neon_n(q, k0, ks, n, d, s, ss, F16, 4); break;                                    \
        }                                                                                                 \
    }                                                                                                     \
    static void values_##kind##_neon(float *const *o, int nq, const float *p, int64_t ps, const char *v0,   \
                                     size_t vs, int64_t n, int64_t dv) {                                  \
        switch (nq) {                                                                                     \
        case 1: values_neon_n(o, p, ps, v0, vs, n, dv, F16, 1); break;                                    \
        case 2: values_neon_n(o, p, ps, v0, vs, n, dv, F16, 2); break;                                    \
        case 3: values_neon_n(o, p, ps, v0, vs, n, dv, F16, 3); break;                                    \
        default: values_neon_n(o, p, ps, v0, vs, n, dv, F16, 4); break;                                   \
        }                                                                                                 \
    }
ATTN_NEON(f32, 0)
ATTN_NEON(f16, 1)
#endif

/* ---- the blocked loop ---------------------------------------------------------- */

int qi_attention_f32(const float *q, const void *k, const void *v, float *out, float *scratch,
                     int64_t n_tok, int64_t n_head, int64_t n_head_kv, int64_t d, int64_t dv,
                     int64_t pos0, int64_t window, int64_t h0, int64_t h1, int kv_f16) {
    if (n_tok < 0 || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || d <= 0 || dv <= 0 ||
        pos0 < 0 || h0 < 0 || h1 > n_head || h0 > h1)
        return QI_EINVAL;
    scores_fn scores = kv_f16 ? scores_f16_scalar : scores_f32_scalar;
    values_fn values = kv_f16 ? values_f16_scalar : values_f32_scalar;
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) {
        scores = kv_f16 ? scores_f16_avx2 : scores_f32_avx2;
        values = kv_f16 ? values_f16_avx2 : values_f32_avx2;
    }
#endif
#if defined(QI_ARM64)
    if (qi_simd_level() != QI_SIMD_SCALAR) {
        scores = kv_f16 ? scores_f16_neon : scores_f32_neon;
        values = kv_f16 ? values_f16_neon : values_f32_neon;
    }
#endif
    const size_t esize = kv_f16 ? 2 : 4;
    const size_t ks = (size_t)(n_head_kv * d) * esize, vs = (size_t)(n_head_kv * dv) * esize;
    const char *kb = (const char *)k, *vb = (const char *)v;
    const int64_t group = n_head / n_head_kv, ss = pos0 + n_tok;
    const float scale = 1.0f / sqrtf((float)d);
    for (int64_t hs = h0, he; hs < h1; hs = he) {
        const int64_t g = hs / group;
        he = (g + 1) * group < h1 ? (g + 1) * group : h1;
        const int64_t nh = he - hs;
        /* queries (t, h), t-major, QI_ATTN_QB at a time */
        for (int64_t b = 0; b < n_tok * nh; b += QI_ATTN_QB) {
            const int nq = (int)(n_tok * nh - b < QI_ATTN_QB ? n_tok * nh - b : QI_ATTN_QB);
            const float *qp[QI_ATTN_QB];
            float *op[QI_ATTN_QB];
            int64_t lo[QI_ATTN_QB], hi[QI_ATTN_QB], span_lo = INT64_MAX, span_hi = -1;
            for (int a = 0; a < nq; a++) {
                const int64_t t = (b + a) / nh, h = hs + (b + a) % nh, p = pos0 + t;
                qp[a] = q + (t * n_head + h) * d;
                op[a] = out + (t * n_head + h) * dv;
                lo[a] = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
                hi[a] = p;
                span_lo = lo[a] < span_lo ? lo[a] : span_lo;
                span_hi = hi[a] > span_hi ? hi[a] : span_hi;
            }
            const int64_t n = span_hi - span_lo + 1;
            scores(qp, nq, kb + (size_t)(span_lo * n_head_kv + g) * (size_t)d * esize, ks, n, d, scratch, ss);
            for (int a = 0; a < nq; a++) {
                float *sc = scratch + a * ss;
                const int64_t j0 = lo[a] - span_lo, j1 = hi[a] - span_lo + 1;
                float mx = -INFINITY;
                for (int64_t j = j0; j < j1; j++) {
                    sc[j] *= scale;
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                qi_vec_exp_shifted(sc + j0, j1 - j0, mx);
                double sum = 0.0;
                for (int64_t j = j0; j < j1; j++) sum += sc[j];
                const float inv = (float)(1.0 / sum);
                for (int64_t j = 0; j < n; j++) sc[j] = (j >= j0 && j < j1) ? sc[j] * inv : 0.0f;
            }
            values(op, nq, scratch, ss, vb + (size_t)(span_lo * n_head_kv + g) * (size_t)dv * esize, vs, n, dv);
        }
    }
    return QI_OK;
}

/* The same attention with heads split over the thread pool: a generation
 * step's attention is too small to pay for Python threads (tens of us per
 * hand-off) but not for the pool's spinning workers. scratch holds
 * n_threads * QI_ATTN_QB * (pos0 + n_tok) floats: each thread's share of
 * qi_attention_f32's scratch. */
typedef struct {
    const float *q;
    const void *k, *v;
    float *out, *scratch;
    int64_t n_tok, n_head, n_head_kv, d, dv, pos0, window;
    int kv_f16;
    atomic_int rc;
} attn_job;

static void attn_task(void *p, int ith, int nth) {
    attn_job *j = p;
    const int64_t h0 = j->n_head * ith / nth, h1 = j->n_head * (ith + 1) / nth;
    if (h0 == h1) return;
    const int rc = qi_attention_f32(j->q, j->k, j->v, j->out,
                                    j->scratch + (size_t)ith * QI_ATTN_QB * (size_t)(j->pos0 + j->n_tok),
                                    j->n_tok, j->n_head, j->n_head_kv, j->d, j->dv, j->pos0, j->window, h0, h1,
                                    j->kv_f16);
    if (rc != QI_OK) atomic_store(&j->rc, rc);
}
/* Below this many multiply-adds (~20 us) waking the pool's workers costs
 * more than it saves: one thread. Otherwise up to one thread per head. */
int qi_attention_threads(int64_t n_tok, int64_t n_head, int64_t n_kv, int64_t d, int64_t dv, int n_threads) {
    const double work = (double)n_tok * (double)n_head * (double)n_kv * (double)(d + dv);
    if (work < 65536.0 || n_threads <= 1) return 1;
    return n_threads < n_head ? n_threads : (int)n_head;
}

int qi_attention_mt_f32(const float *q, const void *k, const void *v, float *out, float *scratch,
                        int64_t n_tok, int64_t n_head, int64_t n_head_kv, int64_t d, int64_t dv,
                        int64_t pos0, int64_t window, int kv_f16, int n_threads) {
    if (n_tok < 0 || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || n_threads < 1) return QI_EINVAL;
    attn_job j = {q, k, v, out, scratch, n_tok, n_head, n_head_kv, d, dv, pos0, window, kv_f16, 0};
    atomic_init(&j.rc, QI_OK);
    const int nth = n_threads < n_head ? n_threads : (int)n_head;
    if (nth > 1) qi_pool_run(attn_task, &j, nth);
    else attn_task(&j, 0, 1);
    return atomic_load(&j.rc);
}
