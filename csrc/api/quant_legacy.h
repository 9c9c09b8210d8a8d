/* Legacy 32-element block formats Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (quant_legacy.c). */
int qi_quantize_q8_0_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q4_0_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q5_0_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q4_1_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q5_1_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q8_0_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q4_0_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q5_0_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q4_1_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_q5_1_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_dequantize_q8_0(const uint8_t *in, float *out, int64_t n);
int qi_dequantize_q4_0(const uint8_t *in, float *out, int64_t n);
int qi_dequantize_q5_0(const uint8_t *in, float *out, int64_t n);
int qi_dequantize_q4_1(const uint8_t *in, float *out, int64_t n);
int qi_dequantize_q5_1(const uint8_t *in, float *out, int64_t n);
