/* Q8_K (292 bytes per 256 values: d f32 @0, qs int8[256] @4, bsums int16[16]
 * @260): ggml's quantize_row_q8_K_ref and dequantize_row_q8_K, as
 * qinfer/quants/q8_k.py documents (zero blocks get zero bsums). */
#include "qinfer.h"
#include "kq_scalar.h"
#include "api/quant_q8_k.h"

int qi_quantize_q8_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;   /* activations: no importance weighting */
    if (n_per_row % 256) return QI_EINVAL;
    for (int64_t i = 0; i < nrows * (n_per_row / 256); i++, x += 256, out += 292) {
        float amax = 0, top = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); top = x[j]; }
        int8_t *qs = (int8_t *)(out + 4);
        float d = 0;
        if (amax == 0) {
            memset(qs, 0, 256);
        } else {
            const float iscale = -127.f / top;
            for (int j = 0; j < 256; j++) {
                const int v = nearest_int(iscale * x[j]);
                qs[j] = (int8_t)(v < 127 ? v : 127);
            }
            d = 1 / iscale;
        }
        memcpy(out, &d, 4);
        for (int j = 0; j < 16; j++) {
            int16_t sum = 0;
            for (int l = 0; l < 16; l++) sum = (int16_t)(sum + qs[16 * j + l]);
            memcpy(out + 260 + 2 * j, &sum, 2);
        }
    }
    return QI_OK;
}

int qi_dequantize_q8_k(const uint8_t *in, float *out, int64_t n) {
    if (n % 256) return QI_EINVAL;
    for (int64_t i = 0; i < n / 256; i++, in += 292) {
        float d;
        memcpy(&d, in, 4);
        const int8_t *qs = (const int8_t *)(in + 4);
        for (int j = 0; j < 256; j++) *out++ = d * (float)qs[j];
    }
    return QI_OK;
}
