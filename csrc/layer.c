/* Decoder-layer blocks: several ops in one call from Python.
 *
 * A generation step of a 1B model runs ~10 ops per layer; from Python each
 * costs tens of microseconds after a matmul has streamed megabytes through
 * the caches (the interpreter's own data comes back from DRAM). Here the
 * dense FFN block runs as one call, composed of the same C functions the
 * per-op path calls with the same arguments, so its results are bit for bit
 * those of the per-op path (tests/test_model.py). */
#include <string.h>

#include "qinfer.h"
#include "api/matmul.h"
#include "api/ops.h"
#include "api/layer.h"

static int64_t align64(int64_t n) { return (n + 63) & ~(int64_t)63; }

int64_t qi_ffn_block_work_size(const int *types, int64_t n_tok, int64_t dim, int64_t hidden) {
    if (n_tok < 0 || dim <= 0 || hidden <= 0) return QI_EINVAL;
    const int64_t gu = qi_matmul_multi_work_size(2, types, n_tok, dim);
    const int64_t dn = qi_matmul_work_size(types[2], n_tok, hidden);
    if (gu < 0 || dn < 0) return QI_EINVAL;
    const int64_t floats = align64(n_tok * dim * 4) * 2 + align64(n_tok * hidden * 4) * 3;
    return floats + align64(gu > dn ? gu : dn);
}

int qi_ffn_block_f32(float *x, int64_t n_tok, int64_t dim, const float *norm_w, float eps, const int *types,
                     const uint8_t *const *w, const int64_t *w_stride, int64_t hidden, uint8_t *work,
                     int64_t work_size, int n_threads) {
    const int64_t need = qi_ffn_block_work_size(types, n_tok, dim, hidden);
    if (need < 0 || work_size < need || work == NULL || x == NULL || norm_w == NULL) return QI_EINVAL;
    if (n_tok == 0) return QI_OK;
    uint8_t *p = work;
    float *h = (float *)p;   p += align64(n_tok * dim * 4);
    float *y = (float *)p;   p += align64(n_tok * dim * 4);
    float *g = (float *)p;   p += align64(n_tok * hidden * 4);
    float *u = (float *)p;   p += align64(n_tok * hidden * 4);
    float *a = (float *)p;   p += align64(n_tok * hidden * 4);
    const int64_t mwork = need - (p - work);
    int rc = qi_rms_norm_mt_f32(x, norm_w, h, n_tok, dim, eps, n_threads);
    if (rc) return rc;
    const int64_t n_out[2] = {hidden, hidden};
    float *const outs[2] = {g, u};
    rc = qi_matmul_multi(2, types, w, w_stride, n_out, dim, h, n_tok, outs, p, mwork, n_threads);
    if (rc) return rc;
    rc = qi_silu_mul_mt_f32(g, u, a, n_tok * hidden, n_threads);
    if (rc) return rc;
    rc = qi_matmul(types[2], w[2], w_stride[2], dim, hidden, a, n_tok, y, p, mwork, n_threads);
    if (rc) return rc;
    for (int64_t i = 0; i < n_tok * dim; i++) x[i] += y[i];
    return QI_OK;
}

/* Scratch of the attention block: h, q, k, v, attention output, wo output
 * (floats), the attention's score rows, then the matmuls' work. */
int64_t qi_attn_block_work_size(const int *types, int64_t n_tok, int64_t dim, int64_t n_head, int64_t n_head_kv,
                                int64_t head_dim, int64_t head_dim_v, int64_t n_kv, int n_threads) {
    if (n_tok < 0 || dim <= 0 || n_head <= 0 || n_head_kv <= 0 || head_dim <= 0 || head_dim_v <= 0 || n_kv < n_tok)
        return QI_EINVAL;
    const int64_t qkv = qi_matmul_multi_work_size(3, types, n_tok, dim);
    const int64_t wo = qi_matmul_work_size(types[3], n_tok, n_head * head_dim_v);
    if (qkv < 0 || wo < 0) return QI_EINVAL;
    const int threads = qi_attention_threads(n_tok, n_head, n_kv, head_dim, head_dim_v, n_threads);
    const int64_t floats = align64(n_tok * dim * 4) * 2 + align64(n_tok * n_head * head_dim * 4) +
                           align64(n_tok * n_head_kv * head_dim * 4) + align64(n_tok * n_head_kv * head_dim_v * 4) +
                           align64(n_tok * n_head * head_dim_v * 4) + align64((int64_t)threads * 4 * n_kv * 4);
    return floats + align64(qkv > wo ? qkv : wo);
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
    const int64_t need = qi_attn_block_work_size(types, n_tok, dim, n_head, n_head_kv, head_dim, head_dim_v, n_kv,
                                                 n_threads);
    if (need < 0 || work_size < need || work == NULL || x == NULL || norm_w == NULL || rope_cs == NULL ||
        k_cache == NULL || v_cache == NULL || pos0 < 0)
        return QI_EINVAL;
    if (n_tok == 0) return QI_OK;
    const int threads = qi_attention_threads(n_tok, n_head, n_kv, head_dim, head_dim_v, n_threads);
    uint8_t *p = work;
    float *h = (float *)p;   p += align64(n_tok * dim * 4);
    float *y = (float *)p;   p += align64(n_tok * dim * 4);
    float *q = (float *)p;   p += align64(n_tok * n_head * head_dim * 4);
    float *k = (float *)p;   p += align64(n_tok * n_head_kv * head_dim * 4);
    float *v = (float *)p;   p += align64(n_tok * n_head_kv * head_dim_v * 4);
    float *o = (float *)p;   p += align64(n_tok * n_head * head_dim_v * 4);
    float *sc = (float *)p;  p += align64((int64_t)threads * 4 * n_kv * 4);
    const int64_t mwork = need - (p - work);
    int rc = qi_rms_norm_mt_f32(x, norm_w, h, n_tok, dim, eps, n_threads);
    if (rc) return rc;
    const int64_t n_out[3] = {n_head * head_dim, n_head_kv * head_dim, n_head_kv * head_dim_v};
    float *const outs[3] = {q, k, v};
    rc = qi_matmul_multi(3, types, w, w_stride, n_out, dim, h, n_tok, outs, p, mwork, n_threads);
    if (rc) return rc;
    if ((rc = qi_rope_apply_f32(q, rope_cs, n_tok, n_head, head_dim))) return rc;
    if ((rc = qi_rope_apply_f32(k, rope_cs, n_tok, n_head_kv, head_dim))) return rc;
    store_rows(k_cache, kv_f16, pos0 * n_head_kv * head_dim, k, n_tok * n_head_kv * head_dim);
    store_rows(v_cache, kv_f16, pos0 * n_head_kv * head_dim_v, v, n_tok * n_head_kv * head_dim_v);
    rc = qi_attention_mt_f32(q, k_cache, v_cache, o, sc, n_tok, n_head, n_head_kv, head_dim, head_dim_v, pos0,
                             window, kv_f16, threads);
    if (rc) return rc;
    rc = qi_matmul(types[3], w[3], w_stride[3], dim, n_head * head_dim_v, o, n_tok, y, p, mwork, n_threads);
    if (rc) return rc;
    for (int64_t i = 0; i < n_tok * dim; i++) x[i] += y[i];
    return QI_OK;
}
