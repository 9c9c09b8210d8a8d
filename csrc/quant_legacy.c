/* Legacy 32-element block formats: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.
 *
 * `ggml` reproduces llama.cpp's quantize_row_*_ref (and the imatrix path of
 * Q4_0/Q5_0) bit for bit: compiled with -ffp-contract=off like ggml-base on
 * x86-64. `best` follows the algorithm specified in qinfer/quants/legacy_best.py
 * with the same float32 operation order, so all backends give the same bytes. */
#include "qinfer.h"
#include "api/kq_search.h"
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

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

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

static void ggml_block(int kind, const float *x, uint8_t *b) {
    const layout_t *lay = &LAYOUT[kind];
    int L[QK];
    if (kind == K_Q8_0) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK; j++) L[j] = (int)roundf(x[j] * id);
        pack_block(kind, b, d, 0, L);
    } else if (!lay->has_min) {
        const float max = signed_absmax(x);
        const float d = max / (float)(-lay->nmax);
        const float id = d ? 1.0f / d : 0.0f;
        const float bias = (float)lay->nmax + 0.5f;
        for (int j = 0; j < QK; j++) {
            int q = (int8_t)(x[j] * id + bias);
            L[j] = q < 2 * lay->nmax - 1 ? q : 2 * lay->nmax - 1;
        }
        pack_block(kind, b, d, 0, L);
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
        pack_block(kind, b, d, min, L);
    }
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

static int quantize_ggml(int kind, const float *x, uint8_t *out, int64_t nrows, int64_t n, const float *imatrix) {
    if (n % QK) return QI_EINVAL;
    const layout_t *lay = &LAYOUT[kind];
    const int64_t nb = n / QK;
    const int impl = imatrix && kind != K_Q8_0;   /* llama.cpp ignores the imatrix for Q8_0 */
    for (int64_t r = 0; r < nrows; r++) {
        const float *xr = x + r * n;
        uint8_t *o = out + r * nb * lay->type_size;
        float sigma2 = 0;
        if (impl) {
            float s = 0;
            for (int64_t j = 0; j < n; j++) s += xr[j] * xr[j];
            sigma2 = s / n;
        }
        for (int64_t ib = 0; ib < nb; ib++) {
            const float *xb = xr + ib * QK;
            if (impl) {
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
            } else {
                ggml_block(kind, xb, o + ib * lay->type_size);
            }
        }
    }
    return QI_OK;
}

/* ---- best ---------------------------------------------------------------- */

static float sym_err(const float *x, const float *w, float d, const int *l) {
    float e = 0;
    for (int i = 0; i < QK; i++) {
        float diff = x[i] - d * (float)l[i];
        e += (w[i] * diff) * diff;
    }
    return e;
}

static float asym_err(const float *x, const float *w, float d, float m, const int *L) {
    float e = 0;
    for (int i = 0; i < QK; i++) {
        float v = d * (float)L[i] + m;
        float diff = x[i] - v;
        e += (w[i] * diff) * diff;
    }
    return e;
}

/* LS scale for signed codes l; stores the fp16-rounded d, requantized codes, error. */
static int sym_fit(const float *x, const float *w, const int *l, int lo, int hi, float *d, int *lq, float *e) {
    float sxl = 0, sll = 0;
    for (int i = 0; i < QK; i++) {
        float lf = (float)l[i];
        sxl += (w[i] * x[i]) * lf;
        sll += (w[i] * lf) * lf;
    }
    if (!(sll > 0)) return 0;
    float dd = f16r(sxl / sll);
    if (dd == 0 || !isfinite(dd)) return 0;
    for (int i = 0; i < QK; i++) lq[i] = clampi(rint_i(clampf(x[i] / dd, lo - 1, hi + 1)), lo, hi);
    *d = dd;
    *e = sym_err(x, w, dd, lq);
    return 1;
}

static int asym_fit(const float *x, const float *w, const int *L, int nmax, float *d, float *m, int *Lq, float *e) {
    float sw = 0, sl = 0, sl2 = 0, sx = 0, sxl = 0;
    for (int i = 0; i < QK; i++) {
        float li = (float)L[i];
        float wl = w[i] * li;
        sw += w[i];
        sl += wl;
        sl2 += wl * li;
        sx += w[i] * x[i];
        sxl += (w[i] * x[i]) * li;
    }
    float D = sw * sl2 - sl * sl;
    if (!(D > 0)) return 0;
    float dd = f16r((sw * sxl - sx * sl) / D);
    float mm = f16r((sl2 * sx - sl * sxl) / D);
    if (!(dd > 0) || !isfinite(dd) || !isfinite(mm)) return 0;
    for (int i = 0; i < QK; i++) Lq[i] = clampi(rint_i(clampf((x[i] - mm) / dd, -1, nmax + 1)), 0, nmax);
    *d = dd; *m = mm;
    *e = asym_err(x, w, dd, mm, Lq);
    return 1;
}

static void best_block(int kind, const float *x, const float *w, uint8_t *b) {
    const layout_t *lay = &LAYOUT[kind];
    float d, m;
    int L[QK];
    unpack_block(kind, b, &d, &m, L);     /* llama.cpp's answer, already in b, is candidate 0 */
    if (!lay->has_min) {
        const int lo = kind == K_Q8_0 ? -127 : -lay->nmax;
        const int hi = kind == K_Q8_0 ? 127 : lay->nmax - 1;
        int best_l[QK], l[QK], lq[QK];
        for (int i = 0; i < QK; i++) best_l[i] = L[i] - lay->offset;
        float best_d = d, best_e = sym_err(x, w, d, best_l);
        const float mx = signed_absmax(x);
        if (mx == 0) return;
        const int nsign = (lo == -hi - 1) ? 2 : 1;
        for (int si = 0; si < nsign; si++) {
            const float sign = (nsign == 2 && si == 0) ? -1.0f : 1.0f;
            for (int k = 0; k < 25; k++) {
                float t = (float)(lay->nmax - 2) + 0.125f * (float)k;
                if (sign > 0 && nsign == 2) t = t - 1.0f;
                const float iscale = (sign * t) / mx;
                for (int i = 0; i < QK; i++) l[i] = clampi(rint_i(clampf(iscale * x[i], lo - 1, hi + 1)), lo, hi);
                float dd, e;
                if (sym_fit(x, w, l, lo, hi, &dd, lq, &e) && e < best_e) {
                    best_e = e; best_d = dd; memcpy(best_l, lq, sizeof lq);
                }
            }
        }
        float dd, e;
        if (sym_fit(x, w, best_l, lo, hi, &dd, lq, &e) && e < best_e) {
            best_d = dd; memcpy(best_l, lq, sizeof lq);
        }
        for (int i = 0; i < QK; i++) L[i] = best_l[i] + lay->offset;
        pack_block(kind, b, best_d, 0, L);
    } else {
        const int nmax = lay->nmax;
        float best_d = d, best_m = m, best_e = asym_err(x, w, d, m, L);
        int best_L[QK], Lc[QK], Lq[QK];
        memcpy(best_L, L, sizeof L);
        float mn = FLT_MAX, mx = -FLT_MAX;
        for (int i = 0; i < QK; i++) { if (x[i] < mn) mn = x[i]; if (x[i] > mx) mx = x[i]; }
        const float r = mx - mn;
        for (int ia = 0; ia < 5; ia++) {
            for (int ib = 0; ib < 5; ib++) {
                const float a = 0.025f * (float)ia, bb = 0.025f * (float)ib;
                const float lo_v = mn + a * r, hi_v = mx - bb * r;
                if (!(hi_v > lo_v)) continue;
                const float d0 = (hi_v - lo_v) / (float)nmax;
                if (!(d0 > 0)) continue;
                for (int i = 0; i < QK; i++) Lc[i] = clampi(rint_i(clampf((x[i] - lo_v) / d0, -1, nmax + 1)), 0, nmax);
                float dd, mm, e;
                if (asym_fit(x, w, Lc, nmax, &dd, &mm, Lq, &e) && e < best_e) {
                    best_e = e; best_d = dd; best_m = mm; memcpy(best_L, Lq, sizeof Lq);
                }
            }
        }
        float dd, mm, e;
        if (asym_fit(x, w, best_L, nmax, &dd, &mm, Lq, &e) && e < best_e) {
            best_d = dd; best_m = mm; memcpy(best_L, Lq, sizeof Lq);
        }
        pack_block(kind, b, best_d, best_m, best_L);
    }
}

static int quantize_best(int kind, const float *x, uint8_t *out, int64_t nrows, int64_t n, const float *imatrix) {
    if (n % QK) return QI_EINVAL;
    const layout_t *lay = &LAYOUT[kind];
    const int64_t nb = n / QK;
    float ones[QK];
    for (int i = 0; i < QK; i++) ones[i] = 1.0f;
    /* Candidate 0 is llama.cpp's own solution (its imatrix path when there is one). */
    int rc = quantize_ggml(kind, x, out, nrows, n, imatrix);
    if (rc) return rc;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t ib = 0; ib < nb; ib++)
            best_block(kind, x + r * n + ib * QK, imatrix ? imatrix + ib * QK : ones,
                       out + (r * nb + ib) * lay->type_size);
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
