/* Q3_K dequantize and quantizers (quant_q3_k.c). */
int qi_dequantize_q3_k(const uint8_t *in, float *out, int64_t n);
