/* Q2_K dequantize and quantizers (quant_q2_k.c). */
int qi_dequantize_q2_k(const uint8_t *in, float *out, int64_t n);
