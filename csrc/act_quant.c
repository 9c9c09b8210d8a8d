/* Activation quantizers of the matmul (formats in dot_kernels.h).
 *
 * Every SIMD path produces the same bytes as the scalar one: the block
 * maximum is exact, the scale is the same two float operations
 * (d = amax/127, id = 127/amax), each value is one float multiply (no FMA)
 * rounded half to even (scalar: the 1.5*2^23 trick, AVX2: cvtps_epi32, NEON:
 * vcvtnq), and the integer sums are exact. csrc/tests checks this. */
#include "dot_kernels.h"

size_t qi_act_row_size(int act, int64_t n) {
    switch (act) {
    case QI_ACT_F32: return (size_t)n * sizeof(float);
    case QI_ACT_Q8: return (size_t)(n / 32) * QI_Q8_BYTES;
    case QI_ACT_Q8K: return (size_t)(n / 256) * QI_Q8K_BYTES;
    default: return 0;
    }
}

/* Round half to even; exact for |f| < 2^22 (|f| <= 127 here). */
static inline int rne(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline void scale_of(float amax, float *d, float *id) {
    *d = amax / 127.f;
    *id = amax > 0.f ? 127.f / amax : 0.f;
}

/* n values -> int8 q, returns the integer sum. */
static int quantize_scalar(const float *x, int n, float id, int8_t *q) {
    int sum = 0;
    for (int i = 0; i < n; i++) {
        q[i] = (int8_t)rne(x[i] * id);
        sum += q[i];
    }
    return sum;
}

static float amax_scalar(const float *x, int n) {
    float m = 0.f;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        m = a > m ? a : m;
    }
    return m;
}

static void q8_row_scalar(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += QI_Q8_BYTES) {
        float d, id;
        scale_of(amax_scalar(x, 32), &d, &id);
        const int sum = quantize_scalar(x, 32, id, (int8_t *)(out + 8));
        const float s = d * (float)sum;
        memcpy(out, &d, 4);
        memcpy(out + 4, &s, 4);
    }
}

static void q8k_row_scalar(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++, x += 256, out += QI_Q8K_BYTES) {
        float d, id;
        scale_of(amax_scalar(x, 256), &d, &id);
        memcpy(out, &d, 4);
        for (int j = 0; j < 16; j++) {
            const int16_t bs = (int16_t)quantize_scalar(x + 16 * j, 16, id, (int8_t *)(out + QI_Q8K_QS + 16 * j));
            memcpy(out + QI_Q8K_BSUMS + 2 * j, &bs, 2);
        }
    }
}

#if defined(QI_X86)
QI_TARGET_AVX2 static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

QI_TARGET_AVX2 static inline int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

QI_TARGET_AVX2 static float amax_avx2(const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    return hmax8(m);
}

/* 32 values -> 32 int8 in order; *isum gets the 8 int32 partial sums added. */
QI_TARGET_AVX2 static inline __m256i quantize32_avx2(const float *x, __m256 id, __m256i *isum) {
    __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    __m256i e = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    *isum = _mm256_add_epi32(*isum, _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, e)));
    /* packs work per 128-bit lane; the final permute restores element order. */
    __m256i ab = _mm256_packs_epi32(a, b), ce = _mm256_packs_epi32(c, e);
    __m256i q = _mm256_packs_epi16(ab, ce);
    return _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

QI_TARGET_AVX2 static void q8_row_avx2(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += QI_Q8_BYTES) {
        float d, id;
        scale_of(amax_avx2(x, 32), &d, &id);
        __m256i isum = _mm256_setzero_si256();
        _mm256_storeu_si256((__m256i *)(out + 8), quantize32_avx2(x, _mm256_set1_ps(id), &isum));
        const float s = d * (float)hsum8i(isum);
        memcpy(out, &d, 4);
        memcpy(out + 4, &s, 4);
    }
}

QI_TARGET_AVX2 static void q8k_row_avx2(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++, x += 256, out += QI_Q8K_BYTES) {
        float d, id;
        scale_of(amax_avx2(x, 256), &d, &id);
        memcpy(out, &d, 4);
        const __m256 vid = _mm256_set1_ps(id);
        for (int j = 0; j < 8; j++) {
            __m256i lo = _mm256_setzero_si256();
            __m256i q = quantize32_avx2(x + 32 * j, vid, &lo);
            _mm256_storeu_si256((__m256i *)(out + QI_Q8K_QS + 32 * j), q);
            /* the two 16-value sums: widen each half of q and add */
            const int16_t s0 = (int16_t)hsum8i(_mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)), _mm256_set1_epi16(1)));
            const int16_t s1 = (int16_t)hsum8i(_mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1)), _mm256_set1_epi16(1)));
            memcpy(out + QI_Q8K_BSUMS + 4 * j, &s0, 2);
            memcpy(out + QI_Q8K_BSUMS + 4 * j + 2, &s1, 2);
        }
    }
}
#endif

#if defined(QI_ARM64)
static float amax_neon(const float *x, int n) {
    float32x4_t m = vdupq_n_f32(0.f);
    for (int i = 0; i < n; i += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    return vmaxvq_f32(m);
}

/* 16 values -> 16 int8; returns their sum. */
static inline int quantize16_neon(const float *x, float id, int8_t *q) {
    int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x), id));
    int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4), id));
    int32x4_t c = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8), id));
    int32x4_t e = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 12), id));
    int16x8_t ab = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
    int16x8_t ce = vcombine_s16(vmovn_s32(c), vmovn_s32(e));
    vst1q_s8(q, vcombine_s8(vmovn_s16(ab), vmovn_s16(ce)));
    return vaddvq_s32(vaddq_s32(vaddq_s32(a, b), vaddq_s32(c, e)));
}

static void q8_row_neon(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += QI_Q8_BYTES) {
        float d, id;
        scale_of(amax_neon(x, 32), &d, &id);
        const int sum = quantize16_neon(x, id, (int8_t *)(out + 8)) +
                        quantize16_neon(x + 16, id, (int8_t *)(out + 24));
        const float s = d * (float)sum;
        memcpy(out, &d, 4);
        memcpy(out + 4, &s, 4);
    }
}

static void q8k_row_neon(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++, x += 256, out += QI_Q8K_BYTES) {
        float d, id;
        scale_of(amax_neon(x, 256), &d, &id);
        memcpy(out, &d, 4);
        for (int j = 0; j < 16; j++) {
            const int16_t bs = (int16_t)quantize16_neon(x + 16 * j, id, (int8_t *)(out + QI_Q8K_QS + 16 * j));
            memcpy(out + QI_Q8K_BSUMS + 2 * j, &bs, 2);
        }
    }
}
#endif

void qi_act_quantize_rows(int act, const float *x, uint8_t *out, int64_t n, int64_t t0, int64_t t1) {
    const size_t rs = qi_act_row_size(act, n);
    const int level = qi_simd_level();
    for (int64_t t = t0; t < t1; t++) {
        const float *xr = x + t * n;
        uint8_t *o = out + (size_t)t * rs;
        if (act == QI_ACT_F32) { memcpy(o, xr, rs); continue; }
#if defined(QI_X86)
        if (level == QI_SIMD_AVX2) {
            if (act == QI_ACT_Q8) q8_row_avx2(xr, o, n); else q8k_row_avx2(xr, o, n);
            continue;
        }
#endif
#if defined(QI_ARM64)
        if (level != QI_SIMD_SCALAR) {
            if (act == QI_ACT_Q8) q8_row_neon(xr, o, n); else q8k_row_neon(xr, o, n);
            continue;
        }
#endif
        (void)level;
        if (act == QI_ACT_Q8) q8_row_scalar(xr, o, n); else q8k_row_scalar(xr, o, n);
    }
}
