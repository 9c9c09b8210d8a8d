/* Q8_K quantize/dequantize (quant_q8_k.c); the imatrix argument is ignored. */
int qi_quantize_q8_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_dequantize_q8_k(const uint8_t *in, float *out, int64_t n);
