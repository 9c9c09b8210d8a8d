/* F32 / F16 / BF16 row conversions. Encoding is scalar (exact RNE, identical on
 * every CPU); F16 decoding uses F16C or NEON's fcvt when available, which are
 * exact for every finite half and infinity. */
#include "qinfer.h"

int qi_quantize_f32_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    memcpy(out, x, (size_t)(nrows * n_per_row) * sizeof(float));
    return QI_OK;
}

int qi_quantize_f16_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    uint16_t *o = (uint16_t *)out;
    for (int64_t i = 0; i < nrows * n_per_row; i++) o[i] = qi_fp32_to_fp16(x[i]);
    return QI_OK;
}

int qi_quantize_bf16_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    (void)imatrix;
    uint16_t *o = (uint16_t *)out;
    for (int64_t i = 0; i < nrows * n_per_row; i++) o[i] = qi_fp32_to_bf16(x[i]);
    return QI_OK;
}

int qi_dequantize_f32(const uint8_t *in, float *out, int64_t n) {
    memcpy(out, in, (size_t)n * sizeof(float));
    return QI_OK;
}

#if defined(QI_X86)
QI_TARGET_AVX2 static void f16_to_f32_avx2(const uint16_t *h, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) out[i] = qi_fp16_to_fp32(h[i]);
}
#endif

int qi_dequantize_f16(const uint8_t *in, float *out, int64_t n) {
    const uint16_t *h = (const uint16_t *)in;
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) { f16_to_f32_avx2(h, out, n); return QI_OK; }
#endif
#if defined(QI_ARM64)
    if (qi_simd_level() != QI_SIMD_SCALAR) {
        int64_t i = 0;
        for (; i + 4 <= n; i += 4)
            vst1q_f32(out + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i))));
        for (; i < n; i++) out[i] = qi_fp16_to_fp32(h[i]);
        return QI_OK;
    }
#endif
    for (int64_t i = 0; i < n; i++) out[i] = qi_fp16_to_fp32(h[i]);
    return QI_OK;
}

int qi_dequantize_bf16(const uint8_t *in, float *out, int64_t n) {
    const uint16_t *h = (const uint16_t *)in;
    for (int64_t i = 0; i < n; i++) out[i] = qi_bf16_to_fp32(h[i]);
    return QI_OK;
}
