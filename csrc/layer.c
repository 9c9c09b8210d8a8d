/* Decoder-layer blocks: several ops in one call from Python.
 *
 * A generation step of a 1B model runs ~10 ops per layer; from Python each
 * costs tens of microseconds after a matmul has streamed megabytes through
 * the caches (the interpreter's own data comes back from DRAM). Here a
 * layer's attention and a dense FFN each run as one call, composed of the
 * same C functions the per-op path calls with the same arguments, so the
 * results are bit for bit those of the per-op path
 * (tests/test_model_llamacpp.py). */
#include <string.h>

#include "qinfer.h"
#include "api/matmul.h"
#include "api/ops.h"
#include "api/layer.h"

static int64_t align64(int64_t n) { return (n + 63) & ~(int64_t)63; }

/* A block's scratch: n float arrays of the given lengths, each at a 64-byte
 * aligned byte offset (off[0..n-1]), then the matmuls' work (off[n], sized
 * for the larger of the two calls). Returns the total bytes, or < 0. The
 * work-size functions and the blocks both lay it out here. */
static int64_t lay_out(const int64_t *floats, int n, int64_t matmul_a, int64_t matmul_b, int64_t *off) {
    if (matmul_a < 0 || matmul_b < 0) return QI_EINVAL;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        off[i] = at;
        at += align64(floats[i] * 4);
    }
    off[n] = at;
    return at + align64(matmul_a > matmul_b ? matmul_a : matmul_b);
}

/* FFN scratch: h, y [n_tok, dim]; g, u, a [n_tok, hidden]. */
static int64_t ffn_layout(const int *types, int64_t n_tok, int64_t dim, int64_t hidden, int64_t off[6]) {
    if (n_tok < 0 || dim <= 0 || hidden <= 0) return QI_EINVAL;
    const int64_t floats[5] = {n_tok * dim, n_tok * dim, n_tok * hidden, n_tok * hidden, n_tok * hidden};
    return lay_out(floats, 5, qi_matmul_multi_work_size(2, types, n_tok, dim),
                   qi_matmul_work_size(types[2], n_tok, hidden), off);
}

int64_t qi_ffn_block_work_size(const int *types, int64_t n_tok, int64_t dim, int64_t hidden) {
    int64_t off[6];
    return ffn_layout(types, n_tok, dim, hidden, off);
}

int qi_ffn_block_f32(float *x, int64_t n_tok, int64_t dim, const float *norm_w, float eps, const int *types,
                     const uint8_t *const *w, const int64_t *w_stride, int64_t hidden, uint8_t *work,
                     int64_t work_size, int n_threads) {
    int64_t off[6];
    const int64_t need = ffn_layout(types, n_tok, dim, hidden, off);
    if (need < 0 || work_size < need || work == NULL || x == NULL || norm_w == NULL) return QI_EINVAL;
    if (n_tok == 0) return QI_OK;
    float *h = (float *)(work + off[0]), *y = (float *)(work + off[1]);
    float *g = (float *)(work + off[2]), *u = (float *)(work + off[3]), *a = (float *)(work + off[4]);
    uint8_t *mw = work + off[5];
    const int64_t mwork = need - off[5];
    int rc = qi_rms_norm_mt_f32(x, norm_w, h, n_tok, dim, eps, n_threads);
    if (rc) return rc;
    const int64_t n_out[2] = {hidden, hidden};
    float *const outs[2] = {g, u};
    rc = qi_matmul_multi(2, types, w, w_stride, n_out, dim, h, n_tok, outs, mw, mwork, n_threads);
    if (rc) return rc;
    rc = qi_silu_mul_mt_f32(g, u, a, n_tok * hidden, n_threads);
    if (rc) return rc;
    rc = qi_matmul(types[2], w[2], w_stride[2], dim, hidden, a, n_tok, y, mw, mwork, n_threads);
    if (rc) return rc;
    for (int64_t i = 0; i < n_tok * dim; i++) x[i] += y[i];
    return QI_OK;
}

/* Attention scratch: h, y [n_tok, dim]; q, k, v; the attention output; the
 * attention's score rows (QI_ATTN_QB = 4 per thread). */
static int64_t attn_layout(const int *types, int64_t n_tok, int64_t dim, int64_t n_head, int64_t n_head_kv,
                           int64_t head_dim, int64_t head_dim_v, int64_t n_kv, int threads, int64_t off[8]) {
    if (n_tok < 0 || dim <= 0 || n_head <= 0 || n_head_kv <= 0 || head_dim <= 0 || head_dim_v <= 0 || n_kv < n_tok)
        return QI_EINVAL;
    const int64_t floats[7] = {n_tok * dim, n_tok * dim, n_tok * n_head * head_dim, n_tok * n_head_kv * head_dim,
                               n_tok * n_head_kv * head_dim_v, n_tok * n_head * head_dim_v,
                               (int64_t)threads * 4 * n_kv};
    return lay_out(floats, 7, qi_matmul_multi_work_size(3, types, n_tok, dim),
                   qi_matmul_work_size(types[3], n_tok, n_head * head_dim_v), off);
}

int64_t qi_attn_block_work_size(const int *types, int64_t n_tok, int64_t dim, int64_t n_head, int64_t n_head_kv,
                                int64_t head_dim, int64_t head_dim_v, int64_t n_kv, int n_threads) {
    int64_t off[8];
    return attn_layout(types, n_tok, dim, n_head, n_head_kv, head_dim, head_dim_v, n_kv,
                       qi_attention_threads(n_tok, n_head, n_kv, head_dim, head_dim_v, n_threads), off);
}

static void store_rows(void *cache, int kv_f16, int64_t first, const float *src, int64_t n) {
    if (kv_f16) {
        uint16_t *dst = (uint16_t *)cache + first;
        for (int64_t i = 0; i < n; i++) dst[i] = qi_fp32_to_fp16(src[i]);
    } else {
        memcpy((float *)cache + first, src, (size_t)n * sizeof(float));
    }
}

int qi_attn_block_f32(float *x, int64_t n_tok, int64_t dim, const float *norm_w, float eps, const int *types,
                      const uint8_t *const *w, const int64_t *w_stride, int64_t n_head, int64_t n_head_kv,
                      int64_t head_dim, int64_t head_dim_v, const double *rope_cs, void *k_cache, void *v_cache,
                      int kv_f16, int64_t pos0, int64_t window, uint8_t *work, int64_t work_size, int n_threads) {
    const int64_t n_kv = pos0 + n_tok;
    const int threads = qi_attention_threads(n_tok, n_head, n_kv, head_dim, head_dim_v, n_threads);
    int64_t off[8];
    const int64_t need = attn_layout(types, n_tok, dim, n_head, n_head_kv, head_dim, head_dim_v, n_kv, threads, off);
    if (need < 0 || work_size < need || work == NULL || x == NULL || norm_w == NULL || rope_cs == NULL ||
        k_cache == NULL || v_cache == NULL || pos0 < 0)
        return QI_EINVAL;
    if (n_tok == 0) return QI_OK;
    float *h = (float *)(work + off[0]), *y = (float *)(work + off[1]);
    float *q = (float *)(work + off[2]), *k = (float *)(work + off[3]), *v = (float *)(work + off[4]);
    float *o = (float *)(work + off[5]), *sc = (float *)(work + off[6]);
    uint8_t *mw = work + off[7];
    const int64_t mwork = need - off[7];
    int rc = qi_rms_norm_mt_f32(x, norm_w, h, n_tok, dim, eps, n_threads);
    if (rc) return rc;
    const int64_t n_out[3] = {n_head * head_dim, n_head_kv * head_dim, n_head_kv * head_dim_v};
    float *const outs[3] = {q, k, v};
    rc = qi_matmul_multi(3, types, w, w_stride, n_out, dim, h, n_tok, outs, mw, mwork, n_threads);
    if (rc) return rc;
    if ((rc = qi_rope_apply_f32(q, rope_cs, n_tok, n_head, head_dim))) return rc;
    if ((rc = qi_rope_apply_f32(k, rope_cs, n_tok, n_head_kv, head_dim))) return rc;
    store_rows(k_cache, kv_f16, pos0 * n_head_kv * head_dim, k, n_tok * n_head_kv * head_dim);
    store_rows(v_cache, kv_f16, pos0 * n_head_kv * head_dim_v, v, n_tok * n_head_kv * head_dim_v);
    rc = qi_attention_mt_f32(q, k_cache, v_cache, o, sc, n_tok, n_head, n_head_kv, head_dim, head_dim_v, pos0,
                             window, kv_f16, threads);
    if (rc) return rc;
    rc = qi_matmul(types[3], w[3], w_stride[3], dim, n_head * head_dim_v, o, n_tok, y, mw, mwork, n_threads);
    if (rc) return rc;
    for (int64_t i = 0; i < n_tok * dim; i++) x[i] += y[i];
    return QI_OK;
}
