/* NEON twins of kq_search_avx2.c's make_qkx fit, kq_asym_best_avx2.c's
 * candidate scoring and quant_q3_k_q6_k_best_avx2.c's symmetric fit and
 * scoring (rules: kq_neon.h). Each 4-lane kernel works on one half
 * (lanes 4h..4h+3) of the rows of eight, reading row l at xt + 8*l + 4*h. */
#include "kq_neon.h"

#if defined(QI_ARM64)

#define MAX_N 32
#define MAX_MOVES 32

static inline int32x4_t nearest_int4(float32x4_t f) {
    const int32x4_t bits = vreinterpretq_s32_f32(vaddq_f32(f, vdupq_n_f32(12582912.f)));
    return vsubq_s32(vandq_s32(bits, vdupq_n_s32(0x007fffff)), vdupq_n_s32(0x00400000));
}

static inline int32x4_t clamp4(int32x4_t v, int lo, int hi) {
    return vminq_s32(vmaxq_s32(v, vdupq_n_s32(lo)), vdupq_n_s32(hi));
}

static inline int any4(uint32x4_t m) { return vmaxvq_u32(m) != 0; }

/* make_qkx of kq_search.c for lanes 4h..4h+3 */
static void qkx_x4(int n, int nmax, const float *xt, const float *wt, int32_t *Lt, float *scale_out,
                   float *min_out, float rmin, float rdelta, int nstep, int use_mad, int empty_if_le) {
    const float32x4_t zero = vdupq_n_f32(0.f);
    int32x4_t laux[MAX_N];
    float32x4_t mn = vld1q_f32(xt), mx = mn;
    float32x4_t sum_w = vld1q_f32(wt);
    float32x4_t sum_x = vmulq_f32(sum_w, mn);
    for (int l = 1; l < n; l++) {
        const float32x4_t x = vld1q_f32(xt + 8 * l), w = vld1q_f32(wt + 8 * l);
        mn = vbslq_f32(vcltq_f32(x, mn), x, mn);
        mx = vbslq_f32(vcgtq_f32(x, mx), x, mx);
        sum_w = vaddq_f32(sum_w, w);
        sum_x = vaddq_f32(sum_x, vmulq_f32(w, x));
    }
    mn = vbslq_f32(vcgtq_f32(mn, zero), zero, mn);
    const uint32x4_t empty = empty_if_le ? vcleq_f32(mx, mn) : vceqq_f32(mx, mn);
    const float32x4_t mn_empty = mn;
    float32x4_t iscale = vdivq_f32(vdupq_n_f32((float)nmax), vsubq_f32(mx, mn));
    float32x4_t scale = vdivq_f32(vdupq_n_f32(1.f), iscale);
    float32x4_t best = zero;
    for (int l = 0; l < n; l++) {
        const float32x4_t x = vld1q_f32(xt + 8 * l), w = vld1q_f32(wt + 8 * l);
        const int32x4_t q = clamp4(nearest_int4(vmulq_f32(iscale, vsubq_f32(x, mn))), 0, nmax);
        if (Lt) vst1q_s32(Lt + 8 * l, q);
        float32x4_t diff = vsubq_f32(vaddq_f32(vmulq_f32(scale, vcvtq_f32_s32(q)), mn), x);
        diff = use_mad ? vabsq_f32(diff) : vmulq_f32(diff, diff);
        best = vaddq_f32(best, vmulq_f32(w, diff));
    }
    for (int step = 0; step <= nstep; step++) {
        const float num = rmin + rdelta * (float)step + (float)nmax;
        iscale = vdivq_f32(vdupq_n_f32(num), vsubq_f32(mx, mn));
        float32x4_t sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int l = 0; l < n; l++) {
            const float32x4_t x = vld1q_f32(xt + 8 * l), w = vld1q_f32(wt + 8 * l);
            const int32x4_t q = clamp4(nearest_int4(vmulq_f32(iscale, vsubq_f32(x, mn))), 0, nmax);
            laux[l] = q;
            const float32x4_t lf = vcvtq_f32_s32(q), wl = vmulq_f32(w, lf);
            sum_l = vaddq_f32(sum_l, wl);
            sum_l2 = vaddq_f32(sum_l2, vmulq_f32(wl, lf));
            sum_xl = vaddq_f32(sum_xl, vmulq_f32(wl, x));
        }
        const float32x4_t D = vsubq_f32(vmulq_f32(sum_w, sum_l2), vmulq_f32(sum_l, sum_l));
        const uint32x4_t dpos = vcgtq_f32(D, zero);
        if (!any4(dpos)) continue;
        float32x4_t this_scale = vdivq_f32(vsubq_f32(vmulq_f32(sum_w, sum_xl), vmulq_f32(sum_x, sum_l)), D);
        float32x4_t this_min = vdivq_f32(vsubq_f32(vmulq_f32(sum_l2, sum_x), vmulq_f32(sum_l, sum_xl)), D);
        const uint32x4_t mpos = vcgtq_f32(this_min, zero);
        this_min = vbslq_f32(mpos, zero, this_min);
        this_scale = vbslq_f32(mpos, vdivq_f32(sum_xl, sum_l2), this_scale);
        float32x4_t cur = zero;
        for (int l = 0; l < n; l++) {
            const float32x4_t x = vld1q_f32(xt + 8 * l), w = vld1q_f32(wt + 8 * l);
            float32x4_t diff = vsubq_f32(vaddq_f32(vmulq_f32(this_scale, vcvtq_f32_s32(laux[l])), this_min), x);
            diff = use_mad ? vabsq_f32(diff) : vmulq_f32(diff, diff);
            cur = vaddq_f32(cur, vmulq_f32(w, diff));
        }
        const uint32x4_t better = vandq_u32(dpos, vcltq_f32(cur, best));
        if (!any4(better)) continue;
        if (Lt)
            for (int l = 0; l < n; l++) vst1q_s32(Lt + 8 * l, vbslq_s32(better, laux[l], vld1q_s32(Lt + 8 * l)));
        best = vbslq_f32(better, cur, best);
        scale = vbslq_f32(better, this_scale, scale);
        mn = vbslq_f32(better, this_min, mn);
    }
    if (Lt && any4(empty))
        for (int l = 0; l < n; l++) vst1q_s32(Lt + 8 * l, vbslq_s32(empty, vdupq_n_s32(0), vld1q_s32(Lt + 8 * l)));
    scale = vbslq_f32(empty, zero, scale);
    mn = vbslq_f32(empty, mn_empty, mn);
    vst1q_f32(scale_out, scale);
    vst1q_f32(min_out, vnegq_f32(mn));   /* -mn: sign flip, as the scalar negation */
}

void qi_kq_make_qkx_x8_neon(int n, int nmax, const float *xt, const float *wt, int32_t *Lt, float *scale,
                            float *the_min, float rmin, float rdelta, int nstep, int use_mad, int empty_if_le) {
    for (int h = 0; h < 2; h++)
        qkx_x4(n, nmax, xt + 4 * h, wt + 4 * h, Lt ? Lt + 4 * h : NULL, scale + 4 * h, the_min + 4 * h, rmin, rdelta,
               nstep, use_mad, empty_if_le);
}

/* weight_code of kq_asym_best.c on four lanes (nz: dl != 0) */
static inline int32x4_t weight_code4(float32x4_t x, float32x4_t ml, float32x4_t inv, uint32x4_t nz, int nmax) {
    const int32x4_t q = clamp4(nearest_int4(vmulq_f32(vaddq_f32(x, ml), inv)), 0, nmax);
    return vandq_s32(q, vreinterpretq_s32_u32(nz));
}

static inline int32x4_t round_code4(const float *v, float step, int smax) {
    if (!(step != 0)) return vdupq_n_s32(0);
    return clamp4(nearest_int4(vdivq_f32(vld1q_f32(v), vdupq_n_f32(step))), 0, smax);
}

float qi_kq_asym_score_neon(const float *xt, const float *wt, int n_sub, int nmax, int smax,
                            const float *scales, const float *mins, const int8_t *moves, int nmoves,
                            float d, float dmin, float best_err, uint8_t *c_sc, uint8_t *c_m, uint8_t *c_q) {
    const int n = 256 / n_sub, halves = n_sub / 4;
    const float32x4_t zero = vdupq_n_f32(0.f), vd = vdupq_n_f32(d), vdmin = vdupq_n_f32(dmin);
    /* the winning move of each lane, per half (four sub-blocks) */
    int32x4_t w_sc[4], w_m[4];
    float32x4_t w_ml[4], w_inv[4], w_err[4];
    uint32x4_t w_nz[4];
    float err_j[16];
    if (nmoves > MAX_MOVES) return NAN;
    for (int hh = 0; hh < halves; hh++) {
        /* half hh: sub-blocks 4hh..4hh+3 = group hh/2, lanes 4(hh%2).. */
        const float *xg = xt + 8 * n * (hh / 2) + 4 * (hh % 2), *wg = wt + 8 * n * (hh / 2) + 4 * (hh % 2);
        const int32x4_t sc0 = round_code4(scales + 4 * hh, d, smax), m0 = round_code4(mins + 4 * hh, dmin, smax);
        float32x4_t best = vdupq_n_f32(INFINITY);
        w_sc[hh] = w_m[hh] = vdupq_n_s32(0);
        w_ml[hh] = w_inv[hh] = zero;
        w_nz[hh] = vdupq_n_u32(0);
        for (int t = 0; t < nmoves; t++) {
            const int32x4_t sc = clamp4(vaddq_s32(sc0, vdupq_n_s32(moves[2 * t])), 0, smax);
            const int32x4_t m = clamp4(vaddq_s32(m0, vdupq_n_s32(moves[2 * t + 1])), 0, smax);
            const float32x4_t dl = vmulq_f32(vd, vcvtq_f32_s32(sc)), ml = vmulq_f32(vdmin, vcvtq_f32_s32(m));
            const uint32x4_t nz = vmvnq_u32(vceqq_f32(dl, zero));
            const float32x4_t inv = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vdivq_f32(vdupq_n_f32(1.f), dl)), nz));
            float32x4_t err = zero;
            for (int l = 0; l < n; l++) {
                const float32x4_t x = vld1q_f32(xg + 8 * l), w = vld1q_f32(wg + 8 * l);
                const float32x4_t q = vcvtq_f32_s32(weight_code4(x, ml, inv, nz, nmax));
                const float32x4_t diff = vsubq_f32(x, vsubq_f32(vmulq_f32(dl, q), ml));
                err = vaddq_f32(err, vmulq_f32(vmulq_f32(w, diff), diff));
            }
            const uint32x4_t better = vcltq_f32(err, best);
            best = vbslq_f32(better, err, best);
            w_sc[hh] = vbslq_s32(better, sc, w_sc[hh]);
            w_m[hh] = vbslq_s32(better, m, w_m[hh]);
            w_ml[hh] = vbslq_f32(better, ml, w_ml[hh]);
            w_inv[hh] = vbslq_f32(better, inv, w_inv[hh]);
            w_nz[hh] = vbslq_u32(better, nz, w_nz[hh]);
        }
        w_err[hh] = best;
        vst1q_f32(err_j + 4 * hh, best);
    }
    float total = 0;
    for (int j = 0; j < n_sub; j++) total += err_j[j];
    if (!(total < best_err)) return total;
    /* codes of the winners; a sub-block whose every move scored NaN or infinity keeps zeros */
    for (int hh = 0; hh < halves; hh++) {
        const float *xg = xt + 8 * n * (hh / 2) + 4 * (hh % 2);
        const uint32x4_t valid = vcltq_f32(w_err[hh], vdupq_n_f32(INFINITY));
        const uint32x4_t nz = vandq_u32(w_nz[hh], valid);
        int32_t sc[4], m[4], q[4];
        vst1q_s32(sc, vandq_s32(w_sc[hh], vreinterpretq_s32_u32(valid)));
        vst1q_s32(m, vandq_s32(w_m[hh], vreinterpretq_s32_u32(valid)));
        for (int j = 0; j < 4; j++) {
            c_sc[4 * hh + j] = (uint8_t)sc[j];
            c_m[4 * hh + j] = (uint8_t)m[j];
        }
        for (int l = 0; l < n; l++) {
            vst1q_s32(q, weight_code4(vld1q_f32(xg + 8 * l), w_ml[hh], w_inv[hh], nz, nmax));
            for (int j = 0; j < 4; j++) c_q[n * (4 * hh + j) + l] = (uint8_t)q[j];
        }
    }
    return total;
}

/* qi_ksym_signed_max on four lanes (rows of eight, stride 8): largest magnitude, first on ties */
static inline float32x4_t signed_max4(const float *vt, int n) {
    float32x4_t amax = vdupq_n_f32(0.f), top = vdupq_n_f32(0.f);
    for (int l = 0; l < n; l++) {
        const float32x4_t v = vld1q_f32(vt + 8 * l), a = vabsq_f32(v);
        const uint32x4_t gt = vcgtq_f32(a, amax);
        amax = vbslq_f32(gt, a, amax);
        top = vbslq_f32(gt, v, top);
    }
    return top;
}

void qi_ksym_fit_scales_neon(const float *x, const float *w, int qmin, int qmax, const float *grid, int ngrid,
                             float *scales) {
    const float32x4_t zero = vdupq_n_f32(0.f);
    float xt[128], wt[128];
    for (int g = 0; g < 2; g++) {
        qi_kq_transpose8(x, 16, g, xt);
        qi_kq_transpose8(w, 16, g, wt);
        for (int h = 0; h < 2; h++) {
            const float *xh = xt + 4 * h, *wh = wt + 4 * h;
            const float32x4_t top = signed_max4(xh, 16);
            const uint32x4_t empty = vcltq_f32(vabsq_f32(top), vdupq_n_f32(1e-15f));
            float32x4_t scale = zero, best = zero;
            for (int k = 0; k < ngrid; k++) {
                const float32x4_t iscale = vdivq_f32(vdupq_n_f32(grid[k]), top);
                float32x4_t sumlx = zero, suml2 = zero;
                for (int l = 0; l < 16; l++) {
                    const float32x4_t xv = vld1q_f32(xh + 8 * l), wv = vld1q_f32(wh + 8 * l);
                    const float32x4_t lf = vcvtq_f32_s32(clamp4(nearest_int4(vmulq_f32(iscale, xv)), qmin, qmax));
                    sumlx = vaddq_f32(sumlx, vmulq_f32(vmulq_f32(wv, xv), lf));
                    suml2 = vaddq_f32(suml2, vmulq_f32(vmulq_f32(wv, lf), lf));
                }
                const uint32x4_t better = vandq_u32(vcgtq_f32(suml2, zero),
                                                    vcgtq_f32(vmulq_f32(sumlx, sumlx), vmulq_f32(best, suml2)));
                const float32x4_t sc = vdivq_f32(sumlx, suml2);
                scale = vbslq_f32(better, sc, scale);
                best = vbslq_f32(better, vmulq_f32(sc, sumlx), best);
            }
            vst1q_f32(scales + 8 * g + 4 * h, vbslq_f32(empty, zero, scale));
        }
    }
}

/* code_sym of quant_q3_k_q6_k_best.c on four lanes (nz: dl != 0) */
static inline int32x4_t code_sym4(float32x4_t x, float32x4_t inv, uint32x4_t nz, int qmin, int qmax) {
    return vandq_s32(clamp4(nearest_int4(vmulq_f32(x, inv)), qmin, qmax), vreinterpretq_s32_u32(nz));
}

float qi_ksym_score_neon(const float *xt, const float *wt, const float *scales, int qmin, int qmax, int smin,
                         int smax, float d, float best_err, int8_t *s_out, int8_t *q_out) {
    static const int deltas[3] = {0, -1, 1};
    const float32x4_t zero = vdupq_n_f32(0.f), vd = vdupq_n_f32(d);
    int32x4_t w_s[4];
    float32x4_t w_inv[4], w_err[4];
    uint32x4_t w_nz[4];
    float err_j[16];
    for (int hh = 0; hh < 4; hh++) {
        const float *xg = xt + 128 * (hh / 2) + 4 * (hh % 2), *wg = wt + 128 * (hh / 2) + 4 * (hh % 2);
        const int32x4_t s0 = d != 0 ? clamp4(nearest_int4(vdivq_f32(vld1q_f32(scales + 4 * hh), vd)), smin, smax)
                                    : vdupq_n_s32(0);
        float32x4_t best = vdupq_n_f32(INFINITY);
        w_s[hh] = vdupq_n_s32(0);
        w_inv[hh] = zero;
        w_nz[hh] = vdupq_n_u32(0);
        for (int t = 0; t < 3; t++) {
            const int32x4_t sv = clamp4(vaddq_s32(s0, vdupq_n_s32(deltas[t])), smin, smax);
            const float32x4_t dl = vmulq_f32(vd, vcvtq_f32_s32(sv));
            const uint32x4_t nz = vmvnq_u32(vceqq_f32(dl, zero));
            const float32x4_t inv = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vdivq_f32(vdupq_n_f32(1.f), dl)), nz));
            float32x4_t err = zero;
            for (int l = 0; l < 16; l++) {
                const float32x4_t xv = vld1q_f32(xg + 8 * l), wv = vld1q_f32(wg + 8 * l);
                const float32x4_t q = vcvtq_f32_s32(code_sym4(xv, inv, nz, qmin, qmax));
                const float32x4_t diff = vsubq_f32(xv, vmulq_f32(dl, q));
                err = vaddq_f32(err, vmulq_f32(vmulq_f32(wv, diff), diff));
            }
            const uint32x4_t better = vcltq_f32(err, best);
            best = vbslq_f32(better, err, best);
            w_s[hh] = vbslq_s32(better, sv, w_s[hh]);
            w_inv[hh] = vbslq_f32(better, inv, w_inv[hh]);
            w_nz[hh] = vbslq_u32(better, nz, w_nz[hh]);
        }
        w_err[hh] = best;
        vst1q_f32(err_j + 4 * hh, best);
    }
    float total = 0;
    for (int j = 0; j < 16; j++) total += err_j[j];
    if (!(total < best_err)) return total;
    /* codes of the winners; a sub-block whose every candidate scored NaN or infinity keeps zeros */
    for (int hh = 0; hh < 4; hh++) {
        const float *xg = xt + 128 * (hh / 2) + 4 * (hh % 2);
        const uint32x4_t valid = vcltq_f32(w_err[hh], vdupq_n_f32(INFINITY));
        const uint32x4_t nz = vandq_u32(w_nz[hh], valid);
        int32_t sv[4], q[4];
        vst1q_s32(sv, vandq_s32(w_s[hh], vreinterpretq_s32_u32(valid)));
        for (int j = 0; j < 4; j++) s_out[4 * hh + j] = (int8_t)sv[j];
        for (int l = 0; l < 16; l++) {
            vst1q_s32(q, code_sym4(vld1q_f32(xg + 8 * l), w_inv[hh], nz, qmin, qmax));
            for (int j = 0; j < 4; j++) q_out[16 * (4 * hh + j) + l] = (int8_t)q[j];
        }
    }
    return total;
}

#endif /* QI_ARM64 */
