/* Q4_K / Q5_K quantize/dequantize (quant_q45_k.c). */
int qi_quantize_q4_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q4_k_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_dequantize_q4_k(const uint8_t *in, float *out, int64_t n);
int qi_quantize_q5_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q5_k_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_dequantize_q5_k(const uint8_t *in, float *out, int64_t n);
