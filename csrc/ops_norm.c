/* Row-wise ops of the transformer: RMSNorm, softmax, SiLU gate.
 * They touch each activation once, so they are memory-light next to the
 * matmuls; plain C (which compilers vectorise) is enough, except for exp,
 * which compilers leave as a libm call per element (vec_exp.h). Sums of
 * squares and softmax denominators accumulate in double, as ggml's ggml_float
 * does. */
#include "qinfer.h"
#include "threadpool.h"
#include "vec_exp.h"

int qi_rms_norm_f32(const float *x, const float *w, float *out, int64_t n_rows, int64_t d, float eps) {
    if (n_rows < 0 || d <= 0) return QI_EINVAL;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * d;
        float *o = out + r * d;
        double ss = 0.0;
        for (int64_t i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        const float scale = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
        for (int64_t i = 0; i < d; i++) o[i] = xr[i] * scale * w[i];
    }
    return QI_OK;
}

int qi_softmax_f32(const float *x, float *out, int64_t n_rows, int64_t m) {
    if (n_rows < 0 || m <= 0) return QI_EINVAL;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * m;
        float *o = out + r * m;
        float mx = -INFINITY;
        for (int64_t i = 0; i < m; i++) mx = xr[i] > mx ? xr[i] : mx;
        double s = 0.0;
        for (int64_t i = 0; i < m; i++) { o[i] = expf(xr[i] - mx); s += o[i]; }
        const float inv = (float)(1.0 / s);
        for (int64_t i = 0; i < m; i++) o[i] *= inv;
    }
    return QI_OK;
}

#if defined(QI_X86)
QI_TARGET_AVX2 static int64_t silu_mul_avx2(const float *gate, const float *up, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = qi_exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    return i;
}

QI_TARGET_AVX2 static int64_t exp_shifted_avx2(float *x, int64_t n, float shift) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, qi_exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(shift))));
    return i;
}
#endif

#if defined(QI_ARM64)
static int64_t silu_mul_neon(const float *gate, const float *up, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t g = vld1q_f32(gate + i);
        const float32x4_t s = vdivq_f32(g, vaddq_f32(vdupq_n_f32(1.0f), qi_exp_neon(vnegq_f32(g))));
        vst1q_f32(out + i, vmulq_f32(s, vld1q_f32(up + i)));
    }
    return i;
}

static int64_t exp_shifted_neon(float *x, int64_t n, float shift) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, qi_exp_neon(vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(shift))));
    return i;
}
#endif

void qi_vec_exp_shifted(float *x, int64_t n, float shift) {
    int64_t i = 0;
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) i = exp_shifted_avx2(x, n, shift);
#endif
#if defined(QI_ARM64)
    if (qi_simd_level() != QI_SIMD_SCALAR) i = exp_shifted_neon(x, n, shift);
#endif
    for (; i < n; i++) x[i] = expf(x[i] - shift);
}

int qi_silu_mul_f32(const float *gate, const float *up, float *out, int64_t n) {
    if (n < 0) return QI_EINVAL;
    int64_t i = 0;
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) i = silu_mul_avx2(gate, up, out, n);
#endif
#if defined(QI_ARM64)
    if (qi_simd_level() != QI_SIMD_SCALAR) i = silu_mul_neon(gate, up, out, n);
#endif
    for (; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
    return QI_OK;
}

/* ---- the same row ops split over the thread pool ----------------------------
 * A prompt's RMSNorm / SiLU run on one thread otherwise: at 2 threads they
 * were ~3% of a 1B model's prompt. Rows (or, for SiLU, runs of 64 elements)
 * are split evenly; each piece is the single-thread function on its range, so
 * results do not depend on the thread count. Small inputs stay on the caller
 * (waking workers costs a few microseconds). */
#define QI_OPS_MIN_PARALLEL (1 << 16)

typedef struct {
    const float *a, *b;
    float *out;
    int64_t n_rows, d;
    float eps;
} rows_job;

static void rms_task(void *p, int ith, int nth) {
    const rows_job *j = p;
    const int64_t r0 = j->n_rows * ith / nth, r1 = j->n_rows * (ith + 1) / nth;
    if (r1 > r0) qi_rms_norm_f32(j->a + r0 * j->d, j->b, j->out + r0 * j->d, r1 - r0, j->d, j->eps);
}

static void silu_task(void *p, int ith, int nth) {
    const rows_job *j = p;
    const int64_t runs = (j->d + 63) / 64, i0 = runs * ith / nth * 64, i1e = runs * (ith + 1) / nth * 64;
    const int64_t i1 = i1e < j->d ? i1e : j->d;
    if (i1 > i0) qi_silu_mul_f32(j->a + i0, j->b + i0, j->out + i0, i1 - i0);
}

int qi_rms_norm_mt_f32(const float *x, const float *w, float *out, int64_t n_rows, int64_t d, float eps,
                       int n_threads) {
    if (n_rows < 0 || d <= 0 || n_threads < 1) return QI_EINVAL;
    rows_job j = {x, w, out, n_rows, d, eps};
    if (n_threads > 1 && n_rows > 1 && n_rows * d >= QI_OPS_MIN_PARALLEL)
        qi_pool_run(rms_task, &j, n_threads < n_rows ? n_threads : (int)n_rows);
    else
        rms_task(&j, 0, 1);
    return QI_OK;
}

int qi_silu_mul_mt_f32(const float *gate, const float *up, float *out, int64_t n, int n_threads) {
    if (n < 0 || n_threads < 1) return QI_EINVAL;
    rows_job j = {gate, up, out, 1, n, 0.0f};
    if (n_threads > 1 && n >= QI_OPS_MIN_PARALLEL) qi_pool_run(silu_task, &j, n_threads);
    else silu_task(&j, 0, 1);
    return QI_OK;
}

/* MoE routing (qinfer/kernels/ops.py, moe_route): per row, logits = router . h
 * and their softmax in double, the k most probable experts (on exactly equal
 * probabilities the lower id first, like a stable sort) in descending order,
 * and their probabilities renormalised to sum 1. One row's result never
 * depends on the other rows. */
int qi_moe_route_f32(const float *h, const float *router, int64_t n_rows, int64_t d, int64_t n_expert,
                     int64_t k, int64_t *experts, float *weights) {
    if (n_rows < 0 || d <= 0 || n_expert <= 0 || n_expert > 256 || k <= 0 || k > n_expert) return QI_EINVAL;
    double p[256];
    unsigned char taken[256];
    for (int64_t r = 0; r < n_rows; r++) {
        const float *x = h + r * d;
        double mx = -INFINITY;
        for (int64_t e = 0; e < n_expert; e++) {
            const float *w = router + e * d;
            double s = 0.0;
            for (int64_t i = 0; i < d; i++) s += (double)x[i] * (double)w[i];
            p[e] = s;
            mx = s > mx ? s : mx;
            taken[e] = 0;
        }
        double total = 0.0;
        for (int64_t e = 0; e < n_expert; e++) { p[e] = exp(p[e] - mx); total += p[e]; }
        double chosen = 0.0;
        for (int64_t j = 0; j < k; j++) {
            int64_t best = -1;
            for (int64_t e = 0; e < n_expert; e++)
                if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
            taken[best] = 1;
            experts[r * k + j] = best;
            chosen += p[best] / total;
        }
        for (int64_t j = 0; j < k; j++)
            weights[r * k + j] = (float)((p[experts[r * k + j]] / total) / chosen);
    }
    return QI_OK;
}
