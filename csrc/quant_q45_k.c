/* Q4_K (144 bytes) and Q5_K (176 bytes) super-blocks of 256 weights: d f16 @0,
 * dmin f16 @2, scales[12] @4 (eight 6-bit sub-block scales and mins), then
 * Q4_K qs[128] @16, Q5_K qh[32] @16 + qs[128] @48; x = d*sc*q - dmin*m.
 * Quantizers: "ggml" reproduces llama.cpp bit for bit (ref path without an
 * imatrix, _impl path with one); "best" searches the same format for a lower
 * weighted squared error (kq_asym_best.c). qinfer/quants/q45_k.py is the
 * reference these equal byte for byte. */
#include "qinfer.h"
#include "kq_scalar.h"
#include "api/kq_search.h"
#include "api/quant_q45_k.h"
#include "api/quant_q6_k.h"
#include "kq_avx2.h"
#include "kq_neon.h"

static inline float half_at(const uint8_t *p) { return qi_fp16_to_fp32((uint16_t)(p[0] | (p[1] << 8))); }
static void put_half(uint8_t *p, uint16_t h) { p[0] = (uint8_t)(h & 0xff); p[1] = (uint8_t)(h >> 8); }

typedef struct {
    int nmax, bytes;
    float ref_rmin, ref_rdelta;
    int ref_nstep, clamp_qp;
} variant_t;

static const variant_t Q4 = {15, 144, -1.0f, 0.1f, 20, 0};
static const variant_t Q5 = {31, 176, -0.5f, 0.1f, 15, 1};

/* ggml's get_scale_min_k4 */
static inline void scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* ggml's packing of eight scale and min codes (byte arithmetic as in C, codes above 63 included) */
static void pack_scales(const uint8_t *ls, const uint8_t *lm, uint8_t *q) {
    memset(q, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

static void pack_codes(const variant_t *v, const uint8_t *L, uint8_t *b) {
    uint8_t *qs = b + (v->nmax == 15 ? 16 : 48);
    if (v->nmax == 31) {
        uint8_t *qh = b + 16;
        memset(qh, 0, 32);
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 32; l++) qh[l] |= (uint8_t)((L[32 * j + l] >> 4) << j);
    }
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            qs[32 * c + l] = (uint8_t)((L[64 * c + l] & 15) | ((L[64 * c + 32 + l] & 15) << 4));
}

static void dequantize_block(const variant_t *v, const uint8_t *b, float *y) {
    const float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t *qs = b + (v->nmax == 15 ? 16 : 48), *qh = b + 16;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min(j, b + 4, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        const int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            int c = (q[l] >> shift) & 15;
            if (v->nmax == 31) c |= ((qh[l] >> j) & 1) << 4;
            y[32 * j + l] = dl * (float)c - ml;
        }
    }
}

static int dequantize(const variant_t *v, const uint8_t *in, float *out, int64_t n) {
    if (n % 256) return QI_EINVAL;
    for (int64_t i = 0; i < n / 256; i++) dequantize_block(v, in + i * v->bytes, out + 256 * i);
    return QI_OK;
}

int qi_dequantize_q4_k(const uint8_t *in, float *out, int64_t n) { return dequantize(&Q4, in, out, n); }
int qi_dequantize_q5_k(const uint8_t *in, float *out, int64_t n) { return dequantize(&Q5, in, out, n); }

static float first_max(const float *v) {
    float top = 0;
    for (int j = 0; j < 8; j++) if (v[j] > top) top = v[j];
    return top;
}

/* ggml's fit of the eight sub-blocks: quantize_row_q{4,5}_K_ref's weights and
 * make_qkx2_quants (qw NULL) or _impl's and make_qkx3_quants, which also needs
 * the sub-block weight sums sw. */
static void fit_subblocks(const variant_t *v, const float *x, const float *qw, uint8_t *L, float *scales,
                          float *mins, float *sw) {
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) {
        qi_q45k_fit_avx2(x, qw, v->nmax, v->ref_rmin, v->ref_rdelta, v->ref_nstep, L, scales, mins, sw);
        return;
    }
#endif
    /* the error weights: _ref's sqrt(mean x^2 of the sub-block) + |x|, or
     * _impl's qw * sqrt(sigma2 + x^2) with sigma2 from the whole super-block */
    float w[256];
    if (!qw) {
        for (int j = 0; j < 8; j++) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) w[32 * j + l] = av_x + fabsf(x[32 * j + l]);
        }
    } else {
        float sum_x2 = 0;
        for (int l = 0; l < 256; l++) sum_x2 += x[l] * x[l];
        const float sigma2 = 2 * sum_x2 / 256;
        for (int j = 0; j < 8; j++) {
            for (int l = 0; l < 32; l++) w[32 * j + l] = qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 32; l++) sumw += w[32 * j + l];
            sw[j] = sumw;
        }
    }
    const float rmin = qw ? -0.9f : v->ref_rmin, rdelta = qw ? 0.05f : v->ref_rdelta;
    const int nstep = qw ? 36 : v->ref_nstep;
#if defined(QI_ARM64)
    if (qi_simd_level() >= QI_SIMD_NEON) {
        /* the eight fits side by side (kq_search_neon.c) */
        float xt[256], wt[256];
        int32_t Lt[256];
        qi_kq_transpose8(x, 32, 0, xt);
        qi_kq_transpose8(w, 32, 0, wt);
        qi_kq_make_qkx_x8_neon(32, v->nmax, xt, wt, Lt, scales, mins, rmin, rdelta, nstep, 0, qw != NULL);
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)Lt[8 * l + j];
        return;
    }
#endif
    uint8_t Laux[32];
    for (int j = 0; j < 8; j++)
        scales[j] = qw ? qi_kq_make_qkx3_quants(32, v->nmax, x + 32 * j, w + 32 * j, L + 32 * j, &mins[j], Laux, rmin,
                                                rdelta, nstep, 0)
                       : qi_kq_make_qkx2_quants(32, v->nmax, x + 32 * j, w + 32 * j, L + 32 * j, &mins[j], Laux, rmin,
                                                rdelta, nstep, 0);
}

/* Codes from the stored steps dl[j] = d*sc_j, ml[j] = dmin*m_j (by division, as
 * ggml); a sub-block with dl == 0 keeps the fit's codes. */
static void requantize(const variant_t *v, const float *x, const float *dl, const float *ml, uint8_t *L) {
#if defined(QI_X86)
    if (qi_simd_level() == QI_SIMD_AVX2) {
        qi_kq_requant_asym_avx2(x, 8, dl, ml, v->nmax, L);
        return;
    }
#endif
    for (int j = 0; j < 8; j++) {
        if (!dl[j]) continue;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(nearest_int((x[32 * j + l] + ml[j]) / dl[j]), 0, v->nmax);
    }
}

/* quantize_row_q{4,5}_K_ref (qw NULL) or quantize_row_q{4,5}_K_impl for one super-block */
static void ggml_block(const variant_t *v, const float *x, const float *qw, uint8_t *b) {
    uint8_t L[256], ls[8], lm[8];
    float scales[8], mins[8], sw[8], dl[8], ml[8];
    uint16_t d_bits, dmin_bits;
    fit_subblocks(v, x, qw, L, scales, mins, sw);
    if (!qw) {
        const float max_scale = first_max(scales), max_min = first_max(mins);
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < 8; j++) {
            const uint8_t a = (uint8_t)nearest_int(inv_scale * scales[j]), c = (uint8_t)nearest_int(inv_min * mins[j]);
            ls[j] = a < 63 ? a : 63;
            lm[j] = c < 63 ? c : 63;
        }
        d_bits = qi_fp32_to_fp16(max_scale / 63.f);
        dmin_bits = qi_fp32_to_fp16(max_min / 63.f);
    } else {
        d_bits = qi_fp32_to_fp16(qi_kq_make_qp_quants(8, 63, scales, ls, sw));
        dmin_bits = qi_fp32_to_fp16(qi_kq_make_qp_quants(8, 63, mins, lm, sw));
        if (v->clamp_qp)
            for (int j = 0; j < 8; j++) {
                if (ls[j] > 63) ls[j] = 63;
                if (lm[j] > 63) lm[j] = 63;
            }
    }
    put_half(b, d_bits);
    put_half(b + 2, dmin_bits);
    pack_scales(ls, lm, b + 4);
    const float dd = half_at(b), dm = half_at(b + 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min(j, b + 4, &sc, &m);
        dl[j] = dd * (float)sc;
        ml[j] = dm * (float)m;
    }
    requantize(v, x, dl, ml, L);
    pack_codes(v, L, b);
}

static const float q45_divisors[3] = {63.f, 62.f, 61.f};
static const int8_t q45_moves[9][2] = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}, {-1, -1}, {1, 1}, {-1, 1}, {1, -1}};

/* ggml's block, replaced by the search's where that has a lower error (qinfer.quants.kq_asym_best.Q4/Q5) */
static void best_block(const variant_t *v, const float *x, const float *qw, uint8_t *b) {
    float w[256], y[256];
    uint8_t sc[8], m[8], q[256];
    uint16_t d_bits, dmin_bits;
    for (int i = 0; i < 256; i++) w[i] = qw ? qw[i] : 1.f;
    ggml_block(v, x, qw, b);
    dequantize_block(v, b, y);
    const float err_g = qi_kq_block_error(x, w, y);
    const float err = qi_kq_asym_search(x, w, 8, v->nmax, 63, -0.9f, 0.1f, 18, q45_divisors, 3, &q45_moves[0][0], 9, 2,
                                        sc, m, &d_bits, &dmin_bits, q);
    if (!qi_kq_prefer(err, err_g)) return;
    put_half(b, d_bits);
    put_half(b + 2, dmin_bits);
    pack_scales(sc, m, b + 4);
    pack_codes(v, q, b);
}

static int quantize(const variant_t *v, int best, const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row,
                    const float *imatrix) {
    if (n_per_row % 256) return QI_EINVAL;
    const int64_t nb = n_per_row / 256;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++) {
            const float *xb = x + r * n_per_row + 256 * i, *qw = imatrix ? imatrix + 256 * i : NULL;
            uint8_t *b = out + (r * nb + i) * v->bytes;
            if (best) best_block(v, xb, qw, b); else ggml_block(v, xb, qw, b);
        }
    return QI_OK;
}

int qi_quantize_q4_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    return quantize(&Q4, 0, x, out, nrows, n_per_row, imatrix);
}
int qi_quantize_q4_k_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    return quantize(&Q4, 1, x, out, nrows, n_per_row, imatrix);
}
int qi_quantize_q5_k_ggml(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    return quantize(&Q5, 0, x, out, nrows, n_per_row, imatrix);
}
int qi_quantize_q5_k_best(const float *x, uint8_t *out, int64_t nrows, int64_t n_per_row, const float *imatrix) {
    return quantize(&Q5, 1, x, out, nrows, n_per_row, imatrix);
}
