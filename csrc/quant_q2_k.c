/* Q2_K: super-blocks of 256 weights, 84 bytes: scales[16] @0 (low nibble scale,
 * high nibble min of each 16-weight sub-block), qs[64] @16 (2-bit codes), d f16
 * @80, dmin f16 @82; x = d*sc*q - dmin*m. Quantizers: "ggml" reproduces
 * llama.cpp bit for bit (ref path without imatrix, _impl path with one); "best"
 * searches the same format for a lower weighted squared error. */
#include "qinfer.h"
#include "kq_scalar.h"
#include "api/kq_search.h"
#include "api/quant_q6_k.h"
#include "kq_avx2.h"

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

static void put_half(uint8_t *p, uint16_t h) { p[0] = (uint8_t)(h & 0xff); p[1] = (uint8_t)(h >> 8); }

/* codes 0..3 in element order -> the 2-bit field */
static void pack_codes_q2_k(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *c = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(c[0] | (c[32] << 2) | (c[64] << 4) | (c[96] << 6));
        }
}

/* Requantization from the stored d, dmin, scales and mins (by division), packing. */
static void finish_ggml_q2_k(const float *x, uint8_t *L, uint8_t *b) {
    const float dm = q2k_half(b + 80), mm = q2k_half(b + 82);
    float dl[16], ml[16];
    for (int j = 0; j < 16; j++) {
        dl[j] = dm * (float)(b[j] & 0xF);
        ml[j] = mm * (float)(b[j] >> 4);
    }
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) qi_kq_requant_asym_avx2(x, 16, dl, ml, 3, L);
    else
#endif
    for (int j = 0; j < 16; j++) {
        if (!dl[j]) continue;
        for (int i = 0; i < 16; i++) L[16 * j + i] = (uint8_t)clampi(nearest_int((x[16 * j + i] + ml[j]) / dl[j]), 0, 3);
    }
    pack_codes_q2_k(L, b + 16);
}

static float first_max(const float *v) {
    float top = 0;
    for (int j = 0; j < 16; j++) if (v[j] > top) top = v[j];
    return top;
}

static void ggml_block_q2_k(const float *x, const float *qw, uint8_t *b) {
    uint8_t L[256], Laux[16];
    float scales[16], mins[16], w[256];
#if defined(QI_X86)
    const int avx2 = qi_simd_level() == QI_SIMD_AVX2;
#else
    const int avx2 = 0;
#endif
    if (!qw) {                                   /* quantize_row_q2_K_ref */
        for (int i = 0; i < 256; i++) w[i] = fabsf(x[i]);
#if defined(QI_X86)
        if (avx2) qi_kq_make_qkx16_avx2(3, x, w, L, scales, mins, -0.5f, 0.1f, 15, 1, 0);
#endif
        for (int j = 0; j < 16 && !avx2; j++)
            scales[j] = qi_kq_make_qkx2_quants(16, 3, x + 16 * j, w + 16 * j, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
        const float max_scale = first_max(scales), max_min = first_max(mins);
        if (max_scale > 0) {
            const float iscale = 15.f / max_scale;
            for (int j = 0; j < 16; j++) b[j] = (uint8_t)nearest_int(iscale * scales[j]);
            put_half(b + 80, qi_fp32_to_fp16(max_scale / 15.f));
        } else {
            memset(b, 0, 16);
            put_half(b + 80, 0);
        }
        if (max_min > 0) {
            const float iscale = 15.f / max_min;
            for (int j = 0; j < 16; j++) b[j] |= (uint8_t)((unsigned)nearest_int(iscale * mins[j]) << 4);
            put_half(b + 82, qi_fp32_to_fp16(max_min / 15.f));
        } else {
            put_half(b + 82, 0);
        }
    } else {                                     /* quantize_row_q2_K_impl */
        float sumx2 = 0, sw[16];
        uint8_t Ls[16], Lm[16];
        for (int i = 0; i < 256; i++) sumx2 += x[i] * x[i];
        const float sigma2 = sumx2 / 256;
        for (int j = 0; j < 16; j++) {
            sw[j] = 0;
            for (int l = 0; l < 16; l++) w[16 * j + l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            for (int l = 0; l < 16; l++) sw[j] += w[16 * j + l];
        }
#if defined(QI_X86)
        if (avx2) qi_kq_make_qkx16_avx2(3, x, w, L, scales, mins, -0.9f, 0.05f, 36, 0, 1);
#endif
        for (int j = 0; j < 16 && !avx2; j++)
            scales[j] = qi_kq_make_qkx3_quants(16, 3, x + 16 * j, w + 16 * j, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, 0);
        const float dm = qi_kq_make_qp_quants(16, 15, scales, Ls, sw);
        const float mm = qi_kq_make_qp_quants(16, 15, mins, Lm, sw);
        put_half(b + 80, qi_fp32_to_fp16(dm));
        put_half(b + 82, qi_fp32_to_fp16(mm));
        for (int j = 0; j < 16; j++) b[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    }
    finish_ggml_q2_k(x, L, b);
}

int qi_quantize_q2_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (n_per_row % 256) return QI_EINVAL;
    const int64_t nb = n_per_row / 256;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            ggml_block_q2_k(x + r * n_per_row + 256 * i, imatrix ? imatrix + 256 * i : NULL,
                            out + (r * nb + i) * Q2K_BYTES);
    return QI_OK;
}

/* ---- best: see qinfer/quants/kq_asym_best.py for the algorithm ---------- */

static const float q2k_divisors[3] = {15.f, 14.f, 13.f};
static const int8_t q2k_moves[5][2] = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}};

static void best_block_q2_k(const float *x, const float *qw, uint8_t *b) {
    float w[256], y[256];
    uint8_t sc[16], m[16], q[256];
    uint16_t d_bits, dmin_bits;
    for (int i = 0; i < 256; i++) w[i] = qw ? qw[i] : 1.f;
    ggml_block_q2_k(x, qw, b);
    dequantize_block_q2_k(b, y);
    const float err_g = qi_kq_block_error(x, w, y);
    const float err = qi_kq_asym_search(x, w, 16, 3, 15, -0.9f, 0.1f, 18, q2k_divisors, 3, &q2k_moves[0][0], 5, 0,
                                        sc, m, &d_bits, &dmin_bits, q);
    if (!qi_kq_prefer(err, err_g)) return;
    for (int j = 0; j < 16; j++) b[j] = (uint8_t)(sc[j] | (m[j] << 4));
    pack_codes_q2_k(q, b + 16);
    put_half(b + 80, d_bits);
    put_half(b + 82, dmin_bits);
}

int qi_quantize_q2_k_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    if (n_per_row % 256) return QI_EINVAL;
    const int64_t nb = n_per_row / 256;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            best_block_q2_k(x + r * n_per_row + 256 * i, imatrix ? imatrix + 256 * i : NULL,
                            out + (r * nb + i) * Q2K_BYTES);
    return QI_OK;
}
