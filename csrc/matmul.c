/* The matmul driver: y = x @ W.T for every weight type (api/matmul.h).
 *
 * 1. The activation rows are converted once into the weight type's activation
 *    format (act_quant.c), split over threads when there are many tokens.
 * 2. The output rows are cut into chunks that threads take from a shared
 *    counter (dynamic balance on a busy machine). Inside a chunk, tokens go in
 *    groups of QI_TILE and each weight row is dotted with the whole group by
 *    one kernel call (float formats: up to QI_FLOAT_ROWS weight rows per call),
 *    so a weight block is read and decoded once per group;
 *    the chunk's weight rows stay in cache while the groups go by. With one
 *    token every weight byte is streamed once (generation is memory-bound). */
#include <stdatomic.h>

#include "dot_kernels.h"
#include "threadpool.h"

#if defined(QI_X86)
#  define AVX2(f) f##_avx2
#else
#  define AVX2(f) NULL
#endif
#if defined(QI_ARM64)
#  define NEON(f) f##_neon
#  define DOTPROD(f) f##_dotprod
#else
#  define NEON(f) NULL
#  define DOTPROD(f) NULL
#endif
#define KERNELS(f) {f##_scalar, AVX2(f), NEON(f), DOTPROD(f)}, {NULL, NULL, NULL, NULL}
/* The float kernels have no use for SDOT: NEON level 3 falls back to level 2. */
#define FLOAT_KERNELS(f) {f##_scalar, AVX2(f), NEON(f), NULL}, {NULL, AVX2(f##_rows), NULL, NULL}
/* The 32-element formats: 4-row tiles on AVX2 and NEON (dot_legacy*.c). */
#define LEGACY_KERNELS(f) {f##_scalar, AVX2(f), NEON(f), DOTPROD(f)}, \
    {NULL, AVX2(f##_rows), NEON(f##_rows), DOTPROD(f##_rows)}, QI_LEGACY_ROWS

static const qi_dot_type g_types[] = {
    {0, QI_ACT_F32, 1, 4, FLOAT_KERNELS(qi_dot_f32)},
    {1, QI_ACT_F32, 1, 2, FLOAT_KERNELS(qi_dot_f16)},
    {30, QI_ACT_F32, 1, 2, FLOAT_KERNELS(qi_dot_bf16)},
    {2, QI_ACT_Q8, 32, 18, LEGACY_KERNELS(qi_dot_q4_0)},
    {3, QI_ACT_Q8, 32, 20, LEGACY_KERNELS(qi_dot_q4_1)},
    {6, QI_ACT_Q8, 32, 22, LEGACY_KERNELS(qi_dot_q5_0)},
    {7, QI_ACT_Q8, 32, 24, LEGACY_KERNELS(qi_dot_q5_1)},
    {8, QI_ACT_Q8, 32, 34, LEGACY_KERNELS(qi_dot_q8_0)},
    {10, QI_ACT_Q8K, 256, 84, KERNELS(qi_dot_q2_k)},
    {11, QI_ACT_Q8K, 256, 110, KERNELS(qi_dot_q3_k)},
    {12, QI_ACT_Q8K, 256, 144, {qi_dot_q4_k_scalar, AVX2(qi_dot_q4_k), NEON(qi_dot_q4_k), DOTPROD(qi_dot_q4_k)},
     {NULL, AVX2(qi_dot_q4_k_rows), NULL, NULL}},
    {13, QI_ACT_Q8K, 256, 176, KERNELS(qi_dot_q5_k)},
    {14, QI_ACT_Q8K, 256, 210, KERNELS(qi_dot_q6_k)},
};

const qi_dot_type *qi_dot_type_get(int ggml_type) {
    for (size_t i = 0; i < sizeof(g_types) / sizeof(g_types[0]); i++)
        if (g_types[i].ggml_type == ggml_type) return &g_types[i];
    return NULL;
}

int qi_dot_level(const qi_dot_type *t) {
    for (int level = qi_simd_level(); level > 0; level--) {
        if (level == QI_SIMD_NEON_DOTPROD && t->dot[3] == NULL) continue;
        if (t->dot[level]) return level;
        if (level == QI_SIMD_NEON) break;   /* NEON never falls back to AVX2 */
    }
    return 0;
}

int64_t qi_act_row_bytes(int ggml_type, int64_t n_in) {
    const qi_dot_type *t = qi_dot_type_get(ggml_type);
    if (!t || n_in <= 0 || n_in % t->block) return QI_EINVAL;
    return (int64_t)qi_act_row_size(t->act, n_in);
}

int qi_act_quantize(int ggml_type, const float *x, uint8_t *out, int64_t n_tok, int64_t n_in) {
    if (qi_act_row_bytes(ggml_type, n_in) < 0 || n_tok < 0) return QI_EINVAL;
    qi_act_quantize_rows(qi_dot_type_get(ggml_type)->act, x, out, n_in, 0, n_tok);
    return QI_OK;
}

int64_t qi_matmul_work_size(int ggml_type, int64_t n_tok, int64_t n_in) {
    const int64_t rb = qi_act_row_bytes(ggml_type, n_in);
    if (rb < 0 || n_tok < 0) return QI_EINVAL;
    /* float activations are used in place */
    return qi_dot_type_get(ggml_type)->act == QI_ACT_F32 ? 0 : rb * n_tok;
}

typedef struct {
    int act;
    const float *x;
    uint8_t *work;
    int64_t n_in, n_tok;
} act_job;

static void act_task(void *p, int ith, int nth) {
    const act_job *j = p;
    qi_act_quantize_rows(j->act, j->x, j->work, j->n_in, j->n_tok * ith / nth, j->n_tok * (ith + 1) / nth);
}

typedef struct {
    qi_dot_fn fn;
    qi_dot_rows_fn rows;   /* NULL: one weight row per call */
    int rows_step;         /* weight rows per rows() call */
    const uint8_t *w, *act;
    int64_t w_stride, n_out, nb, n_tok, chunk, n_chunks;
    size_t act_stride;
    float *out;
    atomic_llong next;
} dot_job;

static void dot_chunk(const dot_job *j, int64_t c) {
    const int64_t r0 = c * j->chunk, r1 = r0 + j->chunk < j->n_out ? r0 + j->chunk : j->n_out;
    float s[QI_TILE], sr[QI_FLOAT_ROWS * QI_TILE];
    for (int64_t t0 = 0; t0 < j->n_tok; t0 += QI_TILE) {
        const int na = (int)(j->n_tok - t0 < QI_TILE ? j->n_tok - t0 : QI_TILE);
        const uint8_t *a = j->act + (size_t)t0 * j->act_stride;
        float *o = j->out + t0 * j->n_out;
        if (j->rows) {
            for (int64_t r = r0; r < r1; r += j->rows_step) {
                const int nw = (int)(r1 - r < j->rows_step ? r1 - r : j->rows_step);
                j->rows(j->nb, j->w + r * j->w_stride, (size_t)j->w_stride, nw, a, j->act_stride, na, sr);
                for (int k = 0; k < nw; k++)
                    for (int t = 0; t < na; t++) o[t * j->n_out + r + k] = sr[k * QI_TILE + t];
            }
            continue;
        }
        for (int64_t r = r0; r < r1; r++) {
            j->fn(j->nb, j->w + r * j->w_stride, a, j->act_stride, na, s);
            for (int t = 0; t < na; t++) o[t * j->n_out + r] = s[t];
        }
    }
}

static void dot_task(void *p, int ith, int nth) {
    dot_job *j = p;
    (void)ith;
    (void)nth;
    for (int64_t c; (c = atomic_fetch_add(&j->next, 1)) < j->n_chunks;) dot_chunk(j, c);
}

/* Below this many weight bytes x tokens a job is not worth waking threads. */
#define QI_MIN_PARALLEL_BYTES (256 * 1024)
/* Matrices one qi_matmul_multi call takes (Q, K, V; gate, up). */
#define QI_MATMUL_MULTI_MAX 4

/* Fills j for one matrix whose activations are already in `act` format. */
static void dot_job_init(dot_job *j, const qi_dot_type *t, const uint8_t *w, int64_t w_stride, int64_t n_out,
                         int64_t n_in, const uint8_t *act, int64_t n_tok, float *out, int nth) {
    const int level = qi_dot_level(t);
    j->fn = t->dot[level];
    j->rows = t->rows[level];
    j->rows_step = t->rows_per_call > 0 ? t->rows_per_call : QI_FLOAT_ROWS;
    j->w = w;
    j->act = act;
    j->w_stride = w_stride;
    j->n_out = n_out;
    j->nb = n_in / t->block;
    j->n_tok = n_tok;
    j->act_stride = qi_act_row_size(t->act, n_in);
    j->out = out;
    /* Chunks: 16 rows when tokens are many (weights reused across token
     * groups; with row tiles the multiple of the rows per call from 16 up:
     * 18 for the float formats, whose widest tile is 3 rows for 4 tokens),
     * 64 for generation; at least 4 chunks per thread to balance, and with
     * row tiles whole calls where the rows allow (a tail call repeats rows). */
    const int64_t step = j->rows ? j->rows_step : 1;
    int64_t chunk = n_tok >= QI_TILE ? (16 + step - 1) / step * step : 64;
    if (nth > 1 && (n_out + chunk - 1) / chunk < 4 * (int64_t)nth) {
        chunk = (n_out + 4 * nth - 1) / (4 * nth);
        if (chunk > step) chunk = (chunk + step - 1) / step * step;
        if (chunk < 1) chunk = 1;
    }
    j->chunk = chunk;
    j->n_chunks = (n_out + chunk - 1) / chunk;
    atomic_init(&j->next, 0);
}

/* Activations of x in format `act`, written to work (split over threads when tokens are many). */
static const uint8_t *quantize_acts(int act, const float *x, uint8_t *work, int64_t n_in, int64_t n_tok, int nth) {
    if (act == QI_ACT_F32) return (const uint8_t *)x;
    act_job aj = {act, x, work, n_in, n_tok};
    if (nth > 1 && n_tok >= 2 * nth) qi_pool_run(act_task, &aj, nth);
    else act_task(&aj, 0, 1);
    return work;
}

int qi_matmul(int ggml_type, const uint8_t *w, int64_t w_stride, int64_t n_out, int64_t n_in,
              const float *x, int64_t n_tok, float *out, uint8_t *work, int64_t work_size, int n_threads) {
    const qi_dot_type *t = qi_dot_type_get(ggml_type);
    if (!t || n_in <= 0 || n_in % t->block || n_out < 0 || n_tok < 0) return QI_EINVAL;
    const int64_t row_bytes = n_in / t->block * t->block_bytes;
    if (w_stride < row_bytes) return QI_EINVAL;
    const int64_t need = qi_matmul_work_size(ggml_type, n_tok, n_in);
    if (work_size < need || (need > 0 && work == NULL)) return QI_EINVAL;
    if (n_out == 0 || n_tok == 0) return QI_OK;

    const double bytes = (double)row_bytes * (double)n_out * (double)n_tok;
    int nth = n_threads < 1 ? 1 : n_threads;
    if (bytes < QI_MIN_PARALLEL_BYTES) nth = 1;

    dot_job j;
    dot_job_init(&j, t, w, w_stride, n_out, n_in, quantize_acts(t->act, x, work, n_in, n_tok, nth), n_tok, out, nth);
    if (nth > 1) qi_pool_run(dot_task, &j, nth);
    else dot_task(&j, 0, 1);
    return QI_OK;
}

/* ---- several matrices, one activation, one pool job ---------------------------
 * Q, K and V (and an FFN's gate and up) read the same input: one call
 * quantizes it once per activation format and runs every matrix's chunks from
 * one shared counter, so a generation step waits for the threads 4 times per
 * layer instead of 7 (each wait costs the slower thread's last chunk plus the
 * hand-off). Outputs equal separate qi_matmul calls bit for bit: the same
 * kernels, and no output depends on which rows share its chunk or tile. */
typedef struct {
    dot_job jobs[QI_MATMUL_MULTI_MAX];
    int64_t first[QI_MATMUL_MULTI_MAX + 1];   /* chunk index where each job starts */
    atomic_llong next;
} multi_job;

static void multi_task(void *p, int ith, int nth) {
    multi_job *mj = p;
    (void)ith;
    (void)nth;
    int m = 0;
    for (int64_t c; (c = atomic_fetch_add(&mj->next, 1)) < mj->first[QI_MATMUL_MULTI_MAX];) {
        while (c >= mj->first[m + 1]) m++;   /* chunks are taken in increasing order */
        dot_chunk(&mj->jobs[m], c - mj->first[m]);
    }
}

int64_t qi_matmul_multi_work_size(int n_mat, const int *types, int64_t n_tok, int64_t n_in) {
    if (n_mat < 1 || n_mat > QI_MATMUL_MULTI_MAX || n_tok < 0) return QI_EINVAL;
    int64_t q8 = 0, q8k = 0;
    for (int m = 0; m < n_mat; m++) {
        const int64_t need = qi_matmul_work_size(types[m], n_tok, n_in);
        if (need < 0) return QI_EINVAL;
        if (qi_dot_type_get(types[m])->act == QI_ACT_Q8) q8 = need;
        else if (qi_dot_type_get(types[m])->act == QI_ACT_Q8K) q8k = need;
    }
    return q8 + q8k;
}

int qi_matmul_multi(int n_mat, const int *types, const uint8_t *const *w, const int64_t *w_stride,
                    const int64_t *n_out, int64_t n_in, const float *x, int64_t n_tok, float *const *out,
                    uint8_t *work, int64_t work_size, int n_threads) {
    const int64_t need = qi_matmul_multi_work_size(n_mat, types, n_tok, n_in);
    if (need < 0 || n_in <= 0 || work_size < need || (need > 0 && work == NULL)) return QI_EINVAL;
    double bytes = 0;
    for (int m = 0; m < n_mat; m++) {
        const qi_dot_type *t = qi_dot_type_get(types[m]);
        if (n_in % t->block || n_out[m] < 0 || w_stride[m] < n_in / t->block * t->block_bytes) return QI_EINVAL;
        bytes += (double)(n_in / t->block * t->block_bytes) * (double)n_out[m] * (double)n_tok;
    }
    if (n_tok == 0) return QI_OK;
    int nth = n_threads < 1 ? 1 : n_threads;
    if (bytes < QI_MIN_PARALLEL_BYTES) nth = 1;

    /* one quantized copy of x per activation format: Q8 first, then Q8K */
    const uint8_t *acts[3] = {(const uint8_t *)x, NULL, NULL};
    int64_t used = 0;
    for (int f = QI_ACT_Q8; f <= QI_ACT_Q8K; f++)
        for (int m = 0; m < n_mat; m++)
            if (qi_dot_type_get(types[m])->act == f) {
                acts[f] = quantize_acts(f, x, work + used, n_in, n_tok, nth);
                used += (int64_t)qi_act_row_size(f, n_in) * n_tok;
                break;
            }
    multi_job mj;
    mj.first[0] = 0;
    for (int m = 0; m < QI_MATMUL_MULTI_MAX; m++) {
        if (m < n_mat) {
            const qi_dot_type *t = qi_dot_type_get(types[m]);
            dot_job_init(&mj.jobs[m], t, w[m], w_stride[m], n_out[m], n_in, acts[t->act], n_tok, out[m], nth);
        }
        mj.first[m + 1] = mj.first[m] + (m < n_mat ? mj.jobs[m].n_chunks : 0);
    }
    atomic_init(&mj.next, 0);
    if (nth > 1) qi_pool_run(multi_task, &mj, nth);
    else multi_task(&mj, 0, 1);
    return QI_OK;
}
