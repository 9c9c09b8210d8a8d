/* Transformer ops (ops_norm.c, ops_rope.c, ops_attention.c); semantics in qinfer/kernels/ops.py. */
int qi_rms_norm_f32(const float *x, const float *w, float *out, int64_t n_rows, int64_t d, float eps);
int qi_softmax_f32(const float *x, float *out, int64_t n_rows, int64_t m);
int qi_silu_mul_f32(const float *gate, const float *up, float *out, int64_t n);
int qi_rope_norm_f32(float *x, const int32_t *pos, int64_t n_tok, int64_t n_head, int64_t d, float base);
int qi_attention_f32(const float *q, const void *k, const void *v, float *out, float *scratch,
                     int64_t n_tok, int64_t n_head, int64_t n_head_kv, int64_t d, int64_t dv,
                     int64_t pos0, int64_t window, int64_t h0, int64_t h1, int kv_f16);
int qi_attention_mt_f32(const float *q, const void *k, const void *v, float *out, float *scratch,
                        int64_t n_tok, int64_t n_head, int64_t n_head_kv, int64_t d, int64_t dv,
                        int64_t pos0, int64_t window, int kv_f16, int n_threads);
int qi_rope_table(const int32_t *pos, int64_t n_tok, int64_t d, float base, double *cs);
int qi_rope_apply_f32(float *x, const double *cs, int64_t n_tok, int64_t n_head, int64_t d);
int qi_rms_norm_mt_f32(const float *x, const float *w, float *out, int64_t n_rows, int64_t d, float eps,
                       int n_threads);
int qi_silu_mul_mt_f32(const float *gate, const float *up, float *out, int64_t n, int n_threads);
int qi_moe_route_f32(const float *h, const float *router, int64_t n_rows, int64_t d, int64_t n_expert,
                     int64_t k, int64_t *experts, float *weights);
/* Threads qi_attention_mt_f32 is worth running on (1 for a small attention); its
 * scratch then holds that many * 4 * (pos0 + n_tok) floats. */
int qi_attention_threads(int64_t n_tok, int64_t n_head, int64_t n_kv, int64_t d, int64_t dv, int n_threads);
