/* Q6_K: super-blocks of 256 weights, 210 bytes: ql[128] @0 (low nibbles),
 * qh[64] @128 (top 2 bits), scales int8[16] @192, d f16 @208; x = d*s*q with q
 * in -32..31. Quantizers: "ggml" reproduces llama.cpp bit for bit; "best"
 * searches the same format for a lower weighted squared error. */
#include "qinfer.h"

#define Q6K_BYTES 210

/* Stored code (0..63) of weight e: half h = e/128, group k = (e%128)/32. */
static inline int q6k_code(const uint8_t *b, int e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const int low = (b[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
    const int high = (b[128 + 32 * h + l] >> (2 * k)) & 3;
    return low | (high << 4);
}

static void dequantize_block_q6_k(const uint8_t *b, float *y) {
    const float d = qi_fp16_to_fp32((uint16_t)(b[208] | (b[209] << 8)));
    for (int j = 0; j < 16; j++) {
        const float dl = d * (float)(int8_t)b[192 + j];
        for (int l = 0; l < 16; l++) y[16 * j + l] = dl * (float)(q6k_code(b, 16 * j + l) - 32);
    }
}

int qi_dequantize_q6_k(const uint8_t *in, float *out, int64_t n) {
    if (n % 256) return QI_EINVAL;
    for (int64_t i = 0; i < n / 256; i++) dequantize_block_q6_k(in + i * Q6K_BYTES, out + i * 256);
    return QI_OK;
}
