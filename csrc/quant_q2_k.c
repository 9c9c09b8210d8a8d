/* Q2_K: super-blocks of 256 weights, 84 bytes: scales[16] @0 (low nibble scale,
 * high nibble min of each 16-weight sub-block), qs[64] @16 (2-bit codes), d f16
 * @80, dmin f16 @82; x = d*sc*q - dmin*m. Quantizers: "ggml" reproduces
 * llama.cpp bit for bit (ref path without imatrix, _impl path with one); "best"
 * searches the same format for a lower weighted squared error. */
#include "qinfer.h"

#define Q2K_BYTES 84

static inline float q2k_half(const uint8_t *p) { return qi_fp16_to_fp32((uint16_t)(p[0] | (p[1] << 8))); }

static void dequantize_block_q2_k(const uint8_t *b, float *y) {
    const float d = q2k_half(b + 80), dmin = q2k_half(b + 82);
    for (int j = 0; j < 16; j++) {
        const float dl = d * (float)(b[j] & 15), ml = dmin * (float)(b[j] >> 4);
        /* sub-block j lives in half j/8, bit shift 2*((j%8)/2), bytes 16*(j%2).. */
        const uint8_t *q = b + 16 + 32 * (j / 8) + 16 * (j % 2);
        const int shift = 2 * ((j % 8) / 2);
        for (int l = 0; l < 16; l++) y[16 * j + l] = dl * (float)((q[l] >> shift) & 3) - ml;
    }
}

int qi_dequantize_q2_k(const uint8_t *in, float *out, int64_t n) {
    if (n % 256) return QI_EINVAL;
    for (int64_t i = 0; i < n / 256; i++) dequantize_block_q2_k(in + i * Q2K_BYTES, out + i * 256);
    return QI_OK;
}
