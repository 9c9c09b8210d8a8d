/* Q3_K: super-blocks of 256 weights, 110 bytes: hmask[32] @0 (third code bit,
 * byte e%32 bit e/32), qs[64] @32 (low 2 bits), scales[12] @96 (16 six-bit
 * sub-scales, +32 bias), d f16 @108; x = d*s*q with q in -4..3. Quantizers:
 * "ggml" reproduces llama.cpp bit for bit; "best" searches the same format
 * for a lower weighted squared error. */
#include "qinfer.h"

#define Q3K_BYTES 110

static inline int q3k_scale(const uint8_t *sc, int j) {
    int low = j < 8 ? (sc[j] & 15) : (sc[j - 8] >> 4);
    return (low | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

static void dequantize_block_q3_k(const uint8_t *b, float *y) {
    const float d = qi_fp16_to_fp32((uint16_t)(b[108] | (b[109] << 8)));
    for (int j = 0; j < 16; j++) {
        const float dl = d * (float)q3k_scale(b + 96, j);
        const uint8_t *q = b + 32 + 32 * (j / 8) + 16 * (j % 2);
        const int shift = 2 * ((j % 8) / 2);
        for (int l = 0; l < 16; l++) {
            const int e = 16 * j + l;
            const int v = ((q[l] >> shift) & 3) - (((b[e % 32] >> (e / 32)) & 1) ? 0 : 4);
            y[e] = dl * (float)v;
        }
    }
}

int qi_dequantize_q3_k(const uint8_t *in, float *out, int64_t n) {
    if (n % 256) return QI_EINVAL;
    for (int64_t i = 0; i < n / 256; i++) dequantize_block_q3_k(in + i * Q3K_BYTES, out + i * 256);
    return QI_OK;
}
