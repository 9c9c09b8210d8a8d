/* F32 / F16 / BF16 conversions (quant_float.c). */
int qi_quantize_f32_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_f16_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_quantize_bf16_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix);
int qi_dequantize_f32(const uint8_t *in, float *out, int64_t n);
int qi_dequantize_f16(const uint8_t *in, float *out, int64_t n);
int qi_dequantize_bf16(const uint8_t *in, float *out, int64_t n);
