/* Q3_K: super-blocks of 256 weights, 110 bytes: hmask[32] @0 (third code bit,
 * byte e%32 bit e/32), qs[64] @32 (low 2 bits), scales[12] @96 (16 six-bit
 * sub-scales, +32 bias), d f16 @108; x = d*s*q with q in -4..3. Quantizers:
 * "ggml" reproduces llama.cpp bit for bit; "best" searches the same format
 * for a lower weighted squared error. */
#include "qinfer.h"
#include "kq_scalar.h"
#include "api/kq_search.h"
#include "api/quant_q6_k.h"
#include "kq_avx2.h"
#include "kq_neon.h"

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

/* codes L (0..7 = q+4) in element order -> hmask and qs of one block */
static void pack_codes_q3_k(const int8_t *L, uint8_t *b) {
    /* hmask byte l, bit k: code 32k + l > 3 (branch-free: the bits are data) */
    for (int l = 0; l < 32; l++) {
        unsigned m = 0;
        for (int k = 0; k < 8; k++) m |= (unsigned)(L[32 * k + l] > 3) << k;
        b[l] = (uint8_t)m;
    }
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const int8_t *c = L + 128 * h + l;
            b[32 + 32 * h + l] = (uint8_t)((c[0] & 3) | ((c[32] & 3) << 2) | ((c[64] & 3) << 4) | ((c[96] & 3) << 6));
        }
}

/* 16 biased sub-scales (0..63) -> the 12 scale bytes */
static void pack_scales_q3_k(const int *biased, uint8_t *sc) {
    memset(sc, 0, 12);
    for (int j = 0; j < 16; j++) {
        const int l = biased[j];
        if (j < 8) sc[j] = (uint8_t)(l & 15);
        else sc[j - 8] |= (uint8_t)((l & 15) << 4);
        sc[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
}

/* Requantization from the stored d and sub-scales (by division), packing:
 * the common tail of quantize_row_q3_K_ref and quantize_row_q3_K_impl. */
static void finish_ggml_q3_k(const float *x, const int *biased, uint16_t d_bits, int8_t *L, uint8_t *b) {
    pack_scales_q3_k(biased, b + 96);
    const float d_all = qi_fp16_to_fp32(d_bits);
    float dl[16];
    for (int j = 0; j < 16; j++) dl[j] = d_all * (float)q3k_scale(b + 96, j);
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) qi_kq_requant_sym_avx2(x, dl, -4, 3, L);
    else
#endif
    for (int j = 0; j < 16; j++) {
        const float d = dl[j];
        if (!d) continue;
        for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(clampi(nearest_int(x[16 * j + i] / d), -4, 3) + 4);
    }
    pack_codes_q3_k(L, b);
    b[108] = (uint8_t)(d_bits & 0xff);
    b[109] = (uint8_t)(d_bits >> 8);
}

static void ggml_block_q3_k(const float *x, const float *qw, uint8_t *b) {
    float scales[16];
    int8_t L[256];
    int biased[16];
    uint16_t d_bits;
    if (!qw) {                                   /* quantize_row_q3_K_ref */
#if defined(QI_X86)
        if (qi_simd_level() == QI_SIMD_AVX2) qi_kq_make_q3_16_avx2(4, x, L, scales);
        else
#endif
        for (int j = 0; j < 16; j++) scales[j] = qi_kq_make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        const float max_scale = qi_ksym_signed_max(scales, 16);
        if (max_scale != 0) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                const int8_t l = (int8_t)nearest_int(iscale * scales[j]);   /* int8 first, as ggml */
                biased[j] = clampi(l, -32, 31) + 32;
            }
            d_bits = qi_fp32_to_fp16(1 / iscale);
        } else {
            for (int j = 0; j < 16; j++) biased[j] = 0;
            d_bits = 0;
        }
    } else {                                     /* quantize_row_q3_K_impl */
        float sumx2 = 0, w[256], sw[16];
        int8_t Ls[16];
        for (int i = 0; i < 256; i++) sumx2 += x[i] * x[i];
        const float sigma2 = 2 * sumx2 / 256;
        for (int j = 0; j < 16; j++) {
            float sumw = 0;
            for (int l = 0; l < 16; l++) w[16 * j + l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            for (int l = 0; l < 16; l++) sumw += w[16 * j + l];
            sw[j] = sumw;
        }
#if defined(QI_X86)
        if (qi_simd_level() == QI_SIMD_AVX2) qi_kq_make_qx16_avx2(4, x, w, L, scales);
        else
#endif
        for (int j = 0; j < 16; j++) scales[j] = qi_kq_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, w + 16 * j);
        d_bits = qi_fp32_to_fp16(qi_kq_make_qx_quants(16, 32, scales, Ls, sw));
        for (int j = 0; j < 16; j++) biased[j] = Ls[j];
    }
    finish_ggml_q3_k(x, biased, d_bits, L, b);
}

int qi_quantize_q3_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (n_per_row % 256) return QI_EINVAL;
    const int64_t nb = n_per_row / 256;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            ggml_block_q3_k(x + r * n_per_row + 256 * i, imatrix ? imatrix + 256 * i : NULL,
                            out + (r * nb + i) * Q3K_BYTES);
    return QI_OK;
}

/* Grid of the sub-block fit and super-scale divisors: see qinfer/quants/q3_k.py. */
#define Q3K_NGRID 40
#define Q3K_NDIV 6
static const float q3k_divisors[Q3K_NDIV] = {-32.f, -31.f, -30.f, -29.f, 31.f, 30.f};

static void best_block_q3_k(const float *x, const float *qw, const float *grid, uint8_t *b) {
    float w[256], y[256], scales[16];
    for (int i = 0; i < 256; i++) w[i] = qw ? qw[i] : 1.f;
    ggml_block_q3_k(x, qw, b);
    dequantize_block_q3_k(b, y);
    const float err_g = qi_kq_block_error(x, w, y);
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) qi_ksym_fit_scales_avx2(x, w, -4, 3, grid, Q3K_NGRID, scales);
    else
#elif defined(QI_ARM64)
    if (qi_simd_level() >= QI_SIMD_NEON) qi_ksym_fit_scales_neon(x, w, -4, 3, grid, Q3K_NGRID, scales);
    else
#endif
    for (int j = 0; j < 16; j++) scales[j] = qi_ksym_fit_scale(x + 16 * j, w + 16 * j, -4, 3, grid, Q3K_NGRID);
    uint16_t d_bits;
    int8_t s[16], q[256];
    int biased[16];
    const float err = qi_ksym_search(x, w, scales, -4, 3, -32, 31, q3k_divisors, Q3K_NDIV, &d_bits, s, q);
    if (!qi_kq_prefer(err, err_g)) return;
    for (int i = 0; i < 256; i++) q[i] = (int8_t)(q[i] + 4);
    for (int j = 0; j < 16; j++) biased[j] = s[j] + 32;
    pack_codes_q3_k(q, b);
    pack_scales_q3_k(biased, b + 96);
    b[108] = (uint8_t)(d_bits & 0xff);
    b[109] = (uint8_t)(d_bits >> 8);
}

int qi_quantize_q3_k_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (n_per_row % 256) return QI_EINVAL;
    float grid[Q3K_NGRID];
    for (int i = 0; i < 21; i++) grid[i] = -4.f + 0.1f * (float)(i - 10);
    for (int i = 0; i < 19; i++) grid[21 + i] = 3.f + 0.1f * (float)(i - 8);
    const int64_t nb = n_per_row / 256;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            best_block_q3_k(x + r * n_per_row + 256 * i, imatrix ? imatrix + 256 * i : NULL, grid,
                            out + (r * nb + i) * Q3K_BYTES);
    return QI_OK;
}
