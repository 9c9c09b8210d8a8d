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
 * min(h1 - h0, n_head / n_head_kv) * (pos0 + n_tok) floats (the scores of
 * one query row for each head of a KV group).
 *
 * Per query: scores = q.k * 1/sqrt(d), softmax (max-subtracted, double
 * denominator), then the probability-weighted sum of V rows. The dot products
 * and V accumulation are the whole cost; they have AVX2/F16C and NEON paths. */
#include <stdatomic.h>

#include "qinfer.h"
#include "threadpool.h"
#include "vec_exp.h"

typedef float (*dot_fn)(const float *a, const void *b, int64_t n);
typedef void (*axpy_fn)(float *y, float a, const void *x, int64_t n);

static float dot_f32(const float *a, const void *bv, int64_t n) {
    const float *b = (const float *)bv;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static float dot_f16(const float *a, const void *bv, int64_t n) {
    const uint16_t *b = (const uint16_t *)bv;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * qi_fp16_to_fp32(b[i]);
    return s;
}

static void axpy_f32(float *y, float a, const void *xv, int64_t n) {
    const float *x = (const float *)xv;
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void axpy_f16(float *y, float a, const void *xv, int64_t n) {
    const uint16_t *x = (const uint16_t *)xv;
    for (int64_t i = 0; i < n; i++) y[i] += a * qi_fp16_to_fp32(x[i]);
}

#if defined(QI_X86)
QI_TARGET_AVX2 static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

QI_TARGET_AVX2 static float dot_f32_avx2(const float *a, const void *bv, int64_t n) {
    const float *b = (const float *)bv;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

QI_TARGET_AVX2 static float dot_f16_avx2(const float *a, const void *bv, int64_t n) {
    const uint16_t *b = (const uint16_t *)bv;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i),
                               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8),
                               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8))), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i),
                               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * qi_fp16_to_fp32(b[i]);
    return s;
}

QI_TARGET_AVX2 static void axpy_f32_avx2(float *y, float a, const void *xv, int64_t n) {
    const float *x = (const float *)xv;
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

QI_TARGET_AVX2 static void axpy_f16_avx2(float *y, float a, const void *xv, int64_t n) {
    const uint16_t *x = (const uint16_t *)xv;
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                                _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * qi_fp16_to_fp32(x[i]);
}
#endif

#if defined(QI_ARM64)
static float dot_f32_neon(const float *a, const void *bv, int64_t n) {
    const float *b = (const float *)bv;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static float dot_f16_neon(const float *a, const void *bv, int64_t n) {
    const uint16_t *b = (const uint16_t *)bv;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(b + i))));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(b + i + 4))));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) s += a[i] * qi_fp16_to_fp32(b[i]);
    return s;
}

static void axpy_f32_neon(float *y, float a, const void *xv, int64_t n) {
    const float *x = (const float *)xv;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] += a * x[i];
}

static void axpy_f16_neon(float *y, float a, const void *xv, int64_t n) {
    const uint16_t *x = (const uint16_t *)xv;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))), a));
    for (; i < n; i++) y[i] += a * qi_fp16_to_fp32(x[i]);
}
#endif

int qi_attention_f32(const float *q, const void *k, const void *v, float *out, float *scratch,
                     int64_t n_tok, int64_t n_head, int64_t n_head_kv, int64_t d, int64_t dv,
                     int64_t pos0, int64_t window, int64_t h0, int64_t h1, int kv_f16) {
    if (n_tok < 0 || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || d <= 0 || dv <= 0 ||
        pos0 < 0 || h0 < 0 || h1 > n_head || h0 > h1)
        return QI_EINVAL;
    dot_fn dot = kv_f16 ? dot_f16 : dot_f32;
    axpy_fn axpy = kv_f16 ? axpy_f16 : axpy_f32;
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) {
        dot = kv_f16 ? dot_f16_avx2 : dot_f32_avx2;
        axpy = kv_f16 ? axpy_f16_avx2 : axpy_f32_avx2;
    }
#endif
#if defined(QI_ARM64)
    if (qi_simd_level() != QI_SIMD_SCALAR) {
        dot = kv_f16 ? dot_f16_neon : dot_f32_neon;
        axpy = kv_f16 ? axpy_f16_neon : axpy_f32_neon;
    }
#endif
    const size_t esize = kv_f16 ? 2 : 4;
    const char *kb = (const char *)k, *vb = (const char *)v;
    const int64_t group = n_head / n_head_kv;
    const float scale = 1.0f / sqrtf((float)d);
    for (int64_t t = 0; t < n_tok; t++) {
        const int64_t p = pos0 + t;
        const int64_t lo = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
        const int64_t n_pos = p - lo + 1;
        /* The query heads that share a KV head go together, position by
         * position, so each K and V row is fetched from memory once and
         * re-read from L1 by the other heads of the group. */
        for (int64_t hs = h0, he; hs < h1; hs = he) {
            const int64_t g = hs / group;
            he = (g + 1) * group < h1 ? (g + 1) * group : h1;
            for (int64_t j = lo; j <= p; j++) {
                const char *kr = kb + (size_t)((j * n_head_kv + g) * d) * esize;
                for (int64_t h = hs; h < he; h++)
                    scratch[(h - hs) * n_pos + j - lo] = dot(q + (t * n_head + h) * d, kr, d) * scale;
            }
            for (int64_t h = hs; h < he; h++) {
                float *sc = scratch + (h - hs) * n_pos, mx = -INFINITY;
                for (int64_t j = 0; j < n_pos; j++) mx = sc[j] > mx ? sc[j] : mx;
                qi_vec_exp_shifted(sc, n_pos, mx);
                double sum = 0.0;
                for (int64_t j = 0; j < n_pos; j++) sum += sc[j];
                const float inv = (float)(1.0 / sum);
                for (int64_t j = 0; j < n_pos; j++) sc[j] *= inv;
                memset(out + (t * n_head + h) * dv, 0, (size_t)dv * sizeof(float));
            }
            for (int64_t j = lo; j <= p; j++) {
                const char *vr = vb + (size_t)((j * n_head_kv + g) * dv) * esize;
                for (int64_t h = hs; h < he; h++)
                    axpy(out + (t * n_head + h) * dv, scratch[(h - hs) * n_pos + j - lo], vr, dv);
            }
        }
    }
    return QI_OK;
}

/* The same attention with heads split over the thread pool: a generation
 * step's attention is too small to pay for Python threads (tens of us per
 * hand-off) but not for the pool's spinning workers. scratch holds
 * n_threads * (n_head / n_head_kv) * (pos0 + n_tok) floats: each thread's
 * share of qi_attention_f32's scratch. */
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
    const int rc = qi_attention_f32(j->q, j->k, j->v, j->out, j->scratch + (size_t)ith * (size_t)(j->n_head / j->n_head_kv * (j->pos0 + j->n_tok)),
                                    j->n_tok, j->n_head, j->n_head_kv, j->d, j->dv, j->pos0, j->window, h0, h1,
                                    j->kv_f16);
    if (rc != QI_OK) atomic_store(&j->rc, rc);
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
