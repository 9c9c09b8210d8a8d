/* Q6_K dequantize and quantizers (quant_q6_k.c). */
int qi_dequantize_q6_k(const uint8_t *in, float *out, int64_t n);
