/* Decoder-layer blocks (layer.c). The dense SwiGLU FFN with its residual, in place:
 * x += down(silu(gate(rms_norm(x) * norm_w)) * up(rms_norm(x) * norm_w)).
 * types/w/w_stride: gate, up, down (gate/up [hidden, dim], down [dim, hidden]).
 * work: qi_ffn_block_work_size bytes. Equal bit for bit to the per-op calls
 * (qi_rms_norm_mt_f32, qi_matmul_multi, qi_silu_mul_mt_f32, qi_matmul, an add). */
int64_t qi_ffn_block_work_size(const int *types, int64_t n_tok, int64_t dim, int64_t hidden);
int qi_ffn_block_f32(float *x, int64_t n_tok, int64_t dim, const float *norm_w, float eps, const int *types,
                     const uint8_t *const *w, const int64_t *w_stride, int64_t hidden, uint8_t *work,
                     int64_t work_size, int n_threads);
/* The attention block with its residual, in place: h = rms_norm(x) * norm_w;
 * q, k, v = wq h, wk h, wv h (one qi_matmul_multi); RoPE of q and k from the
 * table rope_cs (qi_rope_table of the positions pos0..); k and v stored at
 * positions pos0.. of this layer's caches ([n_ctx, n_head_kv, head_dim(_v)],
 * f16 rounded to nearest even, or f32); attention over positions 0..pos0+n_tok-1
 * (causal, optional window) on qi_attention_threads threads; x += wo o.
 * types/w/w_stride: wq, wk, wv, wo. Equal bit for bit to the per-op calls. */
int64_t qi_attn_block_work_size(const int *types, int64_t n_tok, int64_t dim, int64_t n_head, int64_t n_head_kv,
                                int64_t head_dim, int64_t head_dim_v, int64_t n_kv, int n_threads);
int qi_attn_block_f32(float *x, int64_t n_tok, int64_t dim, const float *norm_w, float eps, const int *types,
                      const uint8_t *const *w, const int64_t *w_stride, int64_t n_head, int64_t n_head_kv,
                      int64_t head_dim, int64_t head_dim_v, const double *rope_cs, void *k_cache, void *v_cache,
                      int kv_f16, int64_t pos0, int64_t window, uint8_t *work, int64_t work_size, int n_threads);
