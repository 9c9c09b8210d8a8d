/* Q6_K quantize/dequantize (quant_q6_k.c). */
int qi_quantize_q6_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q6_k_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_dequantize_q6_k(const uint8_t *in, float *out, int64_t n);
/* The "best" scale search of Q3_K and Q6_K and the block error every "best"
 * quantizer scores with (quant_q3_k_q6_k_best.c; algorithm in
 * qinfer/quants/q3_k_q6_k_best.py). x, w: the 256 weights and error weights of
 * one super-block; scales: its 16 ideal sub-block scales. */
float qi_ksym_signed_max(const float *v, int n);
float qi_ksym_fit_scale(const float *x, const float *w, int qmin, int qmax, const float *grid, int ngrid);
float qi_ksym_search(const float *x, const float *w, const float *scales, int qmin, int qmax, int smin, int smax, const float *divisors, int ndiv, uint16_t *d_bits, int8_t *s_out, int8_t *q_out);
float qi_kq_block_error(const float *x, const float *w, const float *y);
int qi_kq_prefer(float err_new, float err_old);
