/* Q6_K: super-blocks of 256 weights, 210 bytes: ql[128] @0 (low nibbles),
 * qh[64] @128 (top 2 bits), scales int8[16] @192, d f16 @208; x = d*s*q with q
 * in -32..31. Quantizers: "ggml" reproduces llama.cpp bit for bit; "best"
 * searches the same format for a lower weighted squared error. */
#include "qinfer.h"
#include "kq_scalar.h"
#include "api/kq_search.h"
#include "api/quant_q6_k.h"
#include "kq_avx2.h"
#include "kq_neon.h"

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

/* codes L (0..63) in element order -> ql/qh of one block */
static void pack_codes_q6_k(const int8_t *L, uint8_t *b) {
    uint8_t *ql = b, *qh = b + 128;
    for (int h = 0; h < 2; h++) {
        const int8_t *c = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[64 * h + l] = (uint8_t)((c[l] & 15) | ((c[l + 64] & 15) << 4));
            ql[64 * h + 32 + l] = (uint8_t)((c[l + 32] & 15) | ((c[l + 96] & 15) << 4));
            qh[32 * h + l] = (uint8_t)((c[l] >> 4) | ((c[l + 32] >> 4) << 2) | ((c[l + 64] >> 4) << 4)
                                       | ((c[l + 96] >> 4) << 6));
        }
    }
}

/* ggml's int8 coding of the sub-block scales, requantization from the stored
 * d and sub-scales (by division), packing: the tail of quantize_row_q6_K_ref
 * and quantize_row_q6_K_impl. L holds the search codes (0..63). */
static void finish_ggml_q6_k(const float *x, const float *scales, int8_t *L, uint8_t *b) {
    const float max_scale = qi_ksym_signed_max(scales, 16);
    if (fabsf(max_scale) < 1e-15f) { memset(b, 0, Q6K_BYTES); return; }
    const float iscale = -128.f / max_scale;
    const uint16_t d_bits = qi_fp32_to_fp16(1 / iscale);
    int8_t *sc = (int8_t *)(b + 192);
    for (int j = 0; j < 16; j++) {
        const int l = nearest_int(iscale * scales[j]);
        sc[j] = (int8_t)(l < 127 ? l : 127);
    }
    const float d_all = qi_fp16_to_fp32(d_bits);
    float dl[16];
    for (int j = 0; j < 16; j++) dl[j] = d_all * sc[j];
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) qi_kq_requant_sym_avx2(x, dl, -32, 31, L);
    else
#endif
    for (int j = 0; j < 16; j++) {
        const float d = dl[j];
        if (!d) continue;
        for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(clampi(nearest_int(x[16 * j + i] / d), -32, 31) + 32);
    }
    pack_codes_q6_k(L, b);
    b[208] = (uint8_t)(d_bits & 0xff);
    b[209] = (uint8_t)(d_bits >> 8);
}

static void ggml_block_q6_k(const float *x, const float *qw, uint8_t *b) {
    float scales[16];
    int8_t L[256];
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) {
        qi_kq_make_qx16_avx2(32, x, qw, L, scales);
        finish_ggml_q6_k(x, scales, L, b);
        return;
    }
#endif
    for (int j = 0; j < 16; j++)
        scales[j] = qi_kq_make_qx_quants(16, 32, x + 16 * j, L + 16 * j, qw ? qw + 16 * j : NULL);
    finish_ggml_q6_k(x, scales, L, b);
}

int qi_quantize_q6_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (n_per_row % 256) return QI_EINVAL;
    const int64_t nb = n_per_row / 256;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            ggml_block_q6_k(x + r * n_per_row + 256 * i, imatrix ? imatrix + 256 * i : NULL,
                            out + (r * nb + i) * Q6K_BYTES);
    return QI_OK;
}

/* Grid of the sub-block fit and super-scale divisors: see qinfer/quants/q6_k.py. */
#define Q6K_NGRID 25
#define Q6K_NDIV 4
static const float q6k_divisors[Q6K_NDIV] = {-128.f, -127.f, -126.f, 127.f};

static void best_block_q6_k(const float *x, const float *qw, const float *grid, uint8_t *b) {
    float w[256], y[256], scales[16];
    for (int i = 0; i < 256; i++) w[i] = qw ? qw[i] : 1.f;
    ggml_block_q6_k(x, qw, b);
    dequantize_block_q6_k(b, y);
    const float err_g = qi_kq_block_error(x, w, y);
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) qi_ksym_fit_scales_avx2(x, w, -32, 31, grid, Q6K_NGRID, scales);
    else
#elif defined(QI_ARM64)
    if (qi_simd_level() >= QI_SIMD_NEON) qi_ksym_fit_scales_neon(x, w, -32, 31, grid, Q6K_NGRID, scales);
    else
#endif
    for (int j = 0; j < 16; j++) scales[j] = qi_ksym_fit_scale(x + 16 * j, w + 16 * j, -32, 31, grid, Q6K_NGRID);
    uint16_t d_bits;
    int8_t s[16], q[256];
    const float err = qi_ksym_search(x, w, scales, -32, 31, -128, 127, q6k_divisors, Q6K_NDIV, &d_bits, s, q);
    if (!qi_kq_prefer(err, err_g)) return;
    for (int i = 0; i < 256; i++) q[i] = (int8_t)(q[i] + 32);
    pack_codes_q6_k(q, b);
    memcpy(b + 192, s, 16);
    b[208] = (uint8_t)(d_bits & 0xff);
    b[209] = (uint8_t)(d_bits >> 8);
}

int qi_quantize_q6_k_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (n_per_row % 256) return QI_EINVAL;
    float grid[Q6K_NGRID];
    for (int i = 0; i < Q6K_NGRID; i++) grid[i] = -32.f + 0.4f * (float)(i - 10);
    const int64_t nb = n_per_row / 256;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            best_block_q6_k(x + r * n_per_row + 256 * i, imatrix ? imatrix + 256 * i : NULL, grid,
                            out + (r * nb + i) * Q6K_BYTES);
    return QI_OK;
}
