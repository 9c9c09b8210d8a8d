/* Legacy 32-element block formats: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.
 *
 * `ggml` reproduces llama.cpp's quantize_row_*_ref (and the imatrix path of
 * Q4_0/Q5_0) bit for bit: compiled with -ffp-contract=off like ggml-base on
 * x86-64. `best` starts from that solution and searches as specified in
 * qinfer/quants/legacy_best.py (quant_legacy_best.c, quant_legacy_best_avx2.c),
 * with the same float32 operation order, so all backends give the same bytes. */
#include "qinfer.h"
#include "api/kq_search.h"
#include "quant_legacy_best.h"
#include <float.h>
#include <stdlib.h>

#define QK 32

typedef struct { int bits, nmax, offset, has_min, type_size; } layout_t;

enum { K_Q8_0, K_Q4_0, K_Q5_0, K_Q4_1, K_Q5_1 };
static const layout_t LAYOUT[] = {
    {8, 127, 0, 0, 34}, {4, 8, 8, 0, 18}, {5, 16, 16, 0, 22}, {4, 15, 0, 1, 20}, {5, 31, 0, 1, 24},
};

/* Round half to even, exact for |v| < 2^22 (callers clamp first). */
static inline int rint_i(float v) {
    float t = v + 12582912.f;
    int32_t i; memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline float f16r(float v) { return qi_fp16_to_fp32(qi_fp32_to_fp16(v)); }

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static void put_f16(uint8_t *p, float v) { uint16_t h = qi_fp32_to_fp16(v); memcpy(p, &h, 2); }

static float get_f16(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return qi_fp16_to_fp32(h); }

/* Write one block from scale d, min m and unsigned codes L (signed for Q8_0). */
static void pack_block(int kind, uint8_t *b, float d, float m, const int *L) {
    const layout_t *lay = &LAYOUT[kind];
    put_f16(b, d);
    int pos = 2;
    if (lay->has_min) { put_f16(b + 2, m); pos = 4; }
    if (kind == K_Q8_0) {
        for (int j = 0; j < QK; j++) b[2 + j] = (uint8_t)(int8_t)L[j];
        return;
    }
    if (lay->bits == 5) {
        uint32_t qh = 0;
        for (int j = 0; j < QK; j++) qh |= (uint32_t)((L[j] >> 4) & 1) << j;
        memcpy(b + pos, &qh, 4);
        pos += 4;
    }
    for (int j = 0; j < 16; j++) b[pos + j] = (uint8_t)((L[j] & 15) | ((L[j + 16] & 15) << 4));
}

static void unpack_block(int kind, const uint8_t *b, float *d, float *m, int *L) {
    const layout_t *lay = &LAYOUT[kind];
    *d = get_f16(b);
    *m = 0;
    int pos = 2;
    if (lay->has_min) { *m = get_f16(b + 2); pos = 4; }
    if (kind == K_Q8_0) {
        for (int j = 0; j < QK; j++) L[j] = (int8_t)b[2 + j];
        return;
    }
    uint32_t qh = 0;
    if (lay->bits == 5) { memcpy(&qh, b + pos, 4); pos += 4; }
    for (int j = 0; j < 16; j++) {
        L[j] = b[pos + j] & 15;
        L[j + 16] = b[pos + j] >> 4;
    }
    if (lay->bits == 5)
        for (int j = 0; j < QK; j++) L[j] |= (int)((qh >> j) & 1) << 4;
}

/* ---- ggml reference quantizers ------------------------------------------ */

static float signed_absmax(const float *x) {
    float amax = 0, max = 0;
    for (int j = 0; j < QK; j++) {
        float a = fabsf(x[j]);
        if (amax < a) { amax = a; max = x[j]; }
    }
    return max;
}

/* llama.cpp's quantize_row_*_ref for one block: scale d and min m as computed
 * (pack_block rounds them to fp16) and the codes it stores. */
static void ggml_codes(int kind, const float *x, float *d_out, float *m_out, int *L) {
    const layout_t *lay = &LAYOUT[kind];
    *m_out = 0;
    if (kind == K_Q8_0) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK; j++) L[j] = (int)roundf(x[j] * id);
        *d_out = d;
    } else if (!lay->has_min) {
        const float max = signed_absmax(x);
        const float d = max / (float)(-lay->nmax);
        const float id = d ? 1.0f / d : 0.0f;
        const float bias = (float)lay->nmax + 0.5f;
        for (int j = 0; j < QK; j++) {
            int q = (int8_t)(x[j] * id + bias);
            L[j] = q < 2 * lay->nmax - 1 ? q : 2 * lay->nmax - 1;
        }
        *d_out = d;
    } else {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / (float)lay->nmax;
        const float id = d ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK; j++) {
            int q = (uint8_t)((x[j] - min) * id + 0.5f);
            L[j] = (kind == K_Q4_1 && q > 15) ? 15 : q;
        }
        *d_out = d;
        *m_out = min;
    }
}

static void ggml_block(int kind, const float *x, uint8_t *b) {
    float d, m;
    int L[QK];
    ggml_codes(kind, x, &d, &m, L);
    pack_block(kind, b, d, m, L);
}

/* make_qx_quants with rmse_type 1 and explicit weights (ggml-quants.c). */
static float make_qx_w(const float *x, int nmax, int *L, const float *w) {
    float max = 0, amax = 0;
    for (int i = 0; i < QK; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < 1e-15f) { for (int i = 0; i < QK; i++) L[i] = 0; return 0.f; }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < QK; i++) {
        int l = clampi(rint_i(iscale * x[i]), -nmax, nmax - 1);
        L[i] = l + nmax;
        sumlx += w[i] * x[i] * l;
        suml2 += w[i] * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < QK; i++) {
            int l = clampi(rint_i(iscale * x[i]), -nmax, nmax - 1);
            sumlx += w[i] * x[i] * l;
            suml2 += w[i] * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < QK; i++) L[i] = nmax + clampi(rint_i(iscale * x[i]), -nmax, nmax - 1);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Trial scales of the symmetric types: legacy_best.py SYM_TRIALS. */
static qi_sym_trials sym_trials(int kind) {
    qi_sym_trials t = {121.0f, 1.0f, 8};
    if (kind == K_Q4_0) { t.t0 = 7.25f; t.step = 0.5f; t.n = 4; }
    if (kind == K_Q5_0) { t.t0 = 15.0f; t.step = 0.25f; }
    return t;
}

#ifdef QI_X86
static qi_legacy_fmt fmt_of(int kind) {
    const layout_t *lay = &LAYOUT[kind];
    qi_legacy_fmt f = {kind == K_Q8_0, lay->bits, lay->nmax, lay->offset, lay->has_min, lay->type_size,
                       kind == K_Q8_0 ? -127 : -lay->nmax, kind == K_Q8_0 ? 127 : lay->nmax - 1, sym_trials(kind)};
    return f;
}
#endif

static int quantize_ggml(int kind, const float *x, uint8_t *out, int64_t nrows, int64_t n, const float *imatrix) {
    if (n % QK) return QI_EINVAL;
    const layout_t *lay = &LAYOUT[kind];
    const int64_t nb = n / QK;
    const int impl = imatrix && kind != K_Q8_0;   /* llama.cpp ignores the imatrix for Q8_0 */
    if (!impl) {                                  /* blocks independent: one sequence */
        const int64_t total = nrows * nb;
        int64_t g = 0;
#ifdef QI_X86
        if (qi_simd_level() == QI_SIMD_AVX2) {
            const qi_legacy_fmt f = fmt_of(kind);
            for (; g + 8 <= total; g += 8) qi_legacy_ggml8_avx2(&f, x + g * QK, out + g * lay->type_size);
        }
#endif
        for (; g < total; g++) ggml_block(kind, x + g * QK, out + g * lay->type_size);
        return QI_OK;
    }
    /* quantize_row_q{4,5}_{0,1}_impl: weights from the row's mean square */
    for (int64_t r = 0; r < nrows; r++) {
        const float *xr = x + r * n;
        uint8_t *o = out + r * nb * lay->type_size;
        float s = 0;
        for (int64_t j = 0; j < n; j++) s += xr[j] * xr[j];
        const float sigma2 = s / n;
        for (int64_t ib = 0; ib < nb; ib++) {
            const float *xb = xr + ib * QK;
            float w[QK];
            int L[QK];
            for (int j = 0; j < QK; j++) w[j] = imatrix[ib * QK + j] * sqrtf(sigma2 + xb[j] * xb[j]);
            if (lay->has_min) {          /* quantize_row_q{4,5}_1_impl */
                uint8_t Lq[QK], Laux[QK];
                float the_min;
                const float d = qi_kq_make_qkx3_quants(QK, lay->nmax, xb, w, Lq, &the_min, Laux, -0.9f, 0.05f, 36, 0);
                for (int j = 0; j < QK; j++) L[j] = Lq[j];
                pack_block(kind, o + ib * lay->type_size, d, -the_min, L);
            } else {                     /* quantize_row_q{4,5}_0_impl */
                const float d = make_qx_w(xb, lay->nmax, L, w);
                pack_block(kind, o + ib * lay->type_size, d, 0, L);
            }
        }
    }
    return QI_OK;
}

/* ---- best (search in quant_legacy_best*.c) -------------------------------- */

/* Codes as the block stores them (pack_block keeps the low bits), as floats;
 * symmetric types signed. */
static void stored_codes(int kind, const int *L, float *lf) {
    const layout_t *lay = &LAYOUT[kind];
    const int mask = (1 << lay->bits) - 1;
    for (int j = 0; j < QK; j++)
        lf[j] = kind == K_Q8_0 ? (float)(int8_t)L[j] : (float)((L[j] & mask) - lay->offset);
}

/* Candidate 0 (d, m, codes as stored) -> best solution -> packed block (scalar). */
static void best_block(int kind, const float *x, const float *w, float d, float m, float *lf, uint8_t *b) {
    const layout_t *lay = &LAYOUT[kind];
    if (!lay->has_min) {
        const int lo = kind == K_Q8_0 ? -127 : -lay->nmax, hi = kind == K_Q8_0 ? 127 : lay->nmax - 1;
        qi_legacy_best_sym(x, w, lo, hi, sym_trials(kind), &d, lf);
    } else {
        qi_legacy_best_asym(x, w, lay->nmax, &d, &m, lf);
    }
    int L[QK];
    for (int j = 0; j < QK; j++) L[j] = (int)lf[j] + lay->offset;
    pack_block(kind, b, d, m, L);
}


/* Blocks are contiguous across rows (n is a multiple of 32), so they are taken
 * as one sequence: with AVX2 eight at a time, the rest one by one. */
static int quantize_best(int kind, const float *x, uint8_t *out, int64_t nrows, int64_t n, const float *imatrix) {
    if (n % QK) return QI_EINVAL;
    const layout_t *lay = &LAYOUT[kind];
    const int64_t nb = n / QK, total = nrows * nb;
    /* Candidate 0 is llama.cpp's solution. Its importance-matrix path needs each
     * row's mean square, so it runs row-wise first; llama.cpp ignores the
     * importance matrix for Q8_0, whose candidate 0 is then computed per block. */
    const int prepass = imatrix && kind != K_Q8_0;
    if (prepass) {
        int rc = quantize_ggml(kind, x, out, nrows, n, imatrix);
        if (rc) return rc;
    }
    float lf[QK];
    int L[QK];
    int64_t g = 0;
#ifdef QI_X86
    if (qi_simd_level() == QI_SIMD_AVX2) {
        const qi_legacy_fmt f = fmt_of(kind);
        float d0[8], m0[8], l0[8 * QK];
        const float *w[8];
        for (; g + 8 <= total; g += 8) {
            for (int b = 0; b < 8 && imatrix; b++) w[b] = imatrix + ((g + b) % nb) * QK;
            if (prepass)
                for (int b = 0; b < 8; b++) {
                    unpack_block(kind, out + (g + b) * lay->type_size, &d0[b], &m0[b], L);
                    for (int j = 0; j < QK; j++) l0[b * QK + j] = (float)(L[j] - lay->offset);
                }
            qi_legacy_best8_avx2(&f, x + g * QK, imatrix ? w : NULL, prepass ? d0 : NULL, m0, l0,
                                 out + g * lay->type_size);
        }
    }
#endif
    for (; g < total; g++) {
        const float *xb = x + g * QK;
        uint8_t *b = out + g * lay->type_size;
        float d, m;
        if (prepass) {
            unpack_block(kind, b, &d, &m, L);
            for (int j = 0; j < QK; j++) lf[j] = (float)(L[j] - lay->offset);
        } else {
            ggml_codes(kind, xb, &d, &m, L);
            stored_codes(kind, L, lf);
            d = f16r(d);
            m = f16r(m);
        }
        best_block(kind, xb, imatrix ? imatrix + (g % nb) * QK : NULL, d, m, lf, b);
    }
    return QI_OK;
}

static int dequantize(int kind, const uint8_t *in, float *out, int64_t n) {
    if (n % QK) return QI_EINVAL;
    const layout_t *lay = &LAYOUT[kind];
    int L[QK];
    for (int64_t ib = 0; ib < n / QK; ib++) {
        float d, m;
        unpack_block(kind, in + ib * lay->type_size, &d, &m, L);
        float *o = out + ib * QK;
        if (lay->has_min)
            for (int j = 0; j < QK; j++) o[j] = d * (float)L[j] + m;
        else
            for (int j = 0; j < QK; j++) o[j] = d * (float)(L[j] - lay->offset);
    }
    return QI_OK;
}

#define LEGACY_API(name, KIND)                                                                      \
    int qi_quantize_##name##_ggml(const float *x, uint8_t *o, int64_t r, int64_t n, const float *im) { \
        return quantize_ggml(KIND, x, o, r, n, KIND == K_Q8_0 ? NULL : im);                         \
    }                                                                                               \
    int qi_quantize_##name##_best(const float *x, uint8_t *o, int64_t r, int64_t n, const float *im) { \
        return quantize_best(KIND, x, o, r, n, im);                                                 \
    }                                                                                               \
    int qi_dequantize_##name(const uint8_t *in, float *out, int64_t n) { return dequantize(KIND, in, out, n); }

LEGACY_API(q8_0, K_Q8_0)
LEGACY_API(q4_0, K_Q4_0)
LEGACY_API(q5_0, K_Q5_0)
LEGACY_API(q4_1, K_Q4_1)
LEGACY_API(q5_1, K_Q5_1)
