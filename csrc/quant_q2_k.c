/* Q2_K: super-blocks of 256 weights, 84 bytes: scales[16] @0 (low nibble scale,
 * high nibble min of each 16-weight sub-block), qs[64] @16 (2-bit codes), d f16
 * @80, dmin f16 @82; x = d*sc*q - dmin*m. Quantizers: "ggml" reproduces
 * llama.cpp bit for bit (ref path without imatrix, _impl path with one); "best"
 * searches the same format for a lower weighted squared error. */
#include "qinfer.h"
#include "api/kq_search.h"
#include "api/quant_q6_k.h"

/* ggml's nearest_int (round half to even via 1.5*2^23); one copy per file so it inlines. */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

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

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

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
    for (int j = 0; j < 16; j++) {
        const float d = dm * (float)(b[j] & 0xF);
        if (!d) continue;
        const float m = mm * (float)(b[j] >> 4);
        for (int i = 0; i < 16; i++) L[16 * j + i] = (uint8_t)clampi(nearest_int((x[16 * j + i] + m) / d), 0, 3);
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
    float scales[16], mins[16], w[16];
    if (!qw) {                                   /* quantize_row_q2_K_ref */
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = qi_kq_make_qkx2_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
        }
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
            for (int l = 0; l < 16; l++) w[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            for (int l = 0; l < 16; l++) sw[j] += w[l];
            scales[j] = qi_kq_make_qkx3_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, 0);
        }
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

/* ---- best: see qinfer/quants/q2_k_best.py for the algorithm ------------- */

#define Q2K_NDIV 3
static const float q2k_divisors[Q2K_NDIV] = {15.f, 14.f, 13.f};
static const int q2k_moves[5][2] = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}};

/* Code of one weight for step dl (inverse inv) and offset ml, 0 where dl == 0. */
static inline int code_q2_k(float x, float dl, float ml, float inv) {
    return dl != 0 ? clampi(nearest_int((x + ml) * inv), 0, 3) : 0;
}

static int round_code(float v, float step) {
    return step != 0 ? clampi(nearest_int(v / step), 0, 15) : 0;
}

static void best_block_q2_k(const float *x, const float *qw, uint8_t *b) {
    float w[256], y[256], scales[16], mins[16];
    uint8_t Ltmp[16], Laux[16];
    for (int i = 0; i < 256; i++) w[i] = qw ? qw[i] : 1.f;
    ggml_block_q2_k(x, qw, b);
    dequantize_block_q2_k(b, y);
    const float err_g = qi_kq_block_error(x, w, y);
    for (int j = 0; j < 16; j++)
        scales[j] = qi_kq_make_qkx3_quants(16, 3, x + 16 * j, w + 16 * j, Ltmp, &mins[j], Laux, -0.9f, 0.1f, 18, 0);
    const float max_scale = first_max(scales), max_min = first_max(mins);
    float best_err = INFINITY;
    uint8_t best_sc[16] = {0}, best_q[256] = {0}, c_sc[16], c_q[256];
    uint16_t best_d = 0, best_dmin = 0;
    for (int a = 0; a < Q2K_NDIV; a++) {
        const uint16_t d_bits = qi_fp32_to_fp16(max_scale / q2k_divisors[a]);
        const float d = qi_fp16_to_fp32(d_bits);
        for (int c = 0; c < Q2K_NDIV; c++) {
            const uint16_t dmin_bits = qi_fp32_to_fp16(max_min / q2k_divisors[c]);
            const float dmin = qi_fp16_to_fp32(dmin_bits);
            float total = 0;
            memset(c_sc, 0, sizeof c_sc);
            memset(c_q, 0, sizeof c_q);
            for (int j = 0; j < 16; j++) {
                const float *xj = x + 16 * j, *wj = w + 16 * j;
                const int sc0 = round_code(scales[j], d), m0 = round_code(mins[j], dmin);
                int sc[5], m[5];
                float dl[5], ml[5], inv[5], err[5];
                for (int t = 0; t < 5; t++) {
                    sc[t] = clampi(sc0 + q2k_moves[t][0], 0, 15);
                    m[t] = clampi(m0 + q2k_moves[t][1], 0, 15);
                    dl[t] = d * (float)sc[t];
                    ml[t] = dmin * (float)m[t];
                    inv[t] = dl[t] != 0 ? 1.f / dl[t] : 0.f;
                    err[t] = 0;
                }
                /* the five candidates side by side: each sum still runs over l in order */
                for (int l = 0; l < 16; l++)
                    for (int t = 0; t < 5; t++) {
                        const float diff = xj[l] - (dl[t] * (float)code_q2_k(xj[l], dl[t], ml[t], inv[t]) - ml[t]);
                        err[t] += wj[l] * diff * diff;
                    }
                float err_j = INFINITY;
                int tb = 0;
                for (int t = 0; t < 5; t++)
                    if (err[t] < err_j) { err_j = err[t]; tb = t; }
                if (err_j < INFINITY) {
                    c_sc[j] = (uint8_t)(sc[tb] | (m[tb] << 4));
                    for (int l = 0; l < 16; l++) c_q[16 * j + l] = (uint8_t)code_q2_k(xj[l], dl[tb], ml[tb], inv[tb]);
                }
                total += err_j;
            }
            if (total < best_err) {
                best_err = total;
                best_d = d_bits;
                best_dmin = dmin_bits;
                memcpy(best_sc, c_sc, 16);
                memcpy(best_q, c_q, 256);
            }
        }
    }
    if (!qi_kq_prefer(best_err, err_g)) return;
    memcpy(b, best_sc, 16);
    pack_codes_q2_k(best_q, b + 16);
    put_half(b + 80, best_d);
    put_half(b + 82, best_dmin);
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
