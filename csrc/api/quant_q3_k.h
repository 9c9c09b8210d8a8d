/* Q3_K quantize/dequantize (quant_q3_k.c). */
int qi_quantize_q3_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q3_k_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_dequantize_q3_k(const uint8_t *in, float *out, int64_t n);
