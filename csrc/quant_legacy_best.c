/* `best` search for the legacy formats, scalar: qinfer/quants/legacy_best.py
 * operation for operation (float32, lane-ordered block sums, no contraction:
 * build flags have -ffp-contract=off). quant_legacy_best_avx2.c computes the
 * same values eight lanes at a time. */
#include "qinfer.h"
#include "quant_legacy_best.h"

#define QK QI_LEGACY_QK

static const float ONES[QK] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                               1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

/* Eight running sums over the four quarters, then lanes j+4, j+2, j+1 folded in. */
static float lane_sum(const float *v) {
    float s[8], a[4];
    for (int j = 0; j < 8; j++) {
        s[j] = v[j] + v[j + 8];
        s[j] = s[j] + v[j + 16];
        s[j] = s[j] + v[j + 24];
    }
    for (int j = 0; j < 4; j++) a[j] = s[j] + s[j + 4];
    const float b0 = a[0] + a[2], b1 = a[1] + a[3];
    return b0 + b1;
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

static inline float f16r(float v) { return qi_fp16_to_fp32(qi_fp32_to_fp16(v)); }

static float sym_err(const float *x, const float *w, float d, const float *l) {
    float v[QK];
    for (int i = 0; i < QK; i++) {
        const float diff = x[i] - d * l[i];
        v[i] = (w[i] * diff) * diff;
    }
    return lane_sum(v);
}

static void sym_sums(const float *wx, const float *w, const float *l, float *sxl, float *sll) {
    float a[QK], b[QK];
    for (int i = 0; i < QK; i++) {
        a[i] = wx[i] * l[i];
        b[i] = (w[i] * l[i]) * l[i];
    }
    *sxl = lane_sum(a);
    *sll = lane_sum(b);
}

/* Scale d rounded to fp16 and the codes recomputed from it: 0 if d is unusable. */
static int sym_stored(const float *x, float d, float lo, float hi, float *ds, float *l) {
    d = f16r(d);
    if (!(d != 0) || !isfinite(d)) return 0;
    const float id = 1.0f / d;
    for (int i = 0; i < QK; i++) l[i] = clampf(rintf(x[i] * id), lo, hi);
    *ds = d;
    return 1;
}

void qi_legacy_best_sym(const float *x, const float *w, int lo_i, int hi_i, qi_sym_trials tr, float *d, float *l) {
    if (!w) w = ONES;
    const float lo = (float)lo_i, hi = (float)hi_i;
    float wx[QK], lt[QK], l1[QK], l2[QK];
    for (int i = 0; i < QK; i++) wx[i] = w[i] * x[i];
    float best_e = sym_err(x, w, *d, l);
    float mx = 0, amax = 0;
    for (int i = 0; i < QK; i++) {
        const float a = fabsf(x[i]);
        if (amax < a) { amax = a; mx = x[i]; }
    }
    if (mx == 0) return;
    float score = -INFINITY, td = 0;
    for (int k = 0; k < tr.n; k++) {
        const float t = tr.t0 + tr.step * (float)k;
        const float iscale = -t / mx;
        for (int i = 0; i < QK; i++) lt[i] = clampf(rintf(iscale * x[i]), lo, hi);
        float sxl, sll;
        sym_sums(wx, w, lt, &sxl, &sll);
        if (!(sll > 0)) continue;
        const float dk = sxl / sll, s = dk * sxl;
        if (s > score) { score = s; td = dk; }
    }
    if (!(score > -INFINITY)) return;
    float d1, sxl, sll, d2;
    if (!sym_stored(x, td, lo, hi, &d1, l1)) return;
    sym_sums(wx, w, l1, &sxl, &sll);
    if (!(sll > 0) || !sym_stored(x, sxl / sll, lo, hi, &d2, l2)) return;
    if (sym_err(x, w, d2, l2) < best_e) { *d = d2; memcpy(l, l2, sizeof l2); }
}

static float asym_err(const float *x, const float *w, float d, float m, const float *L) {
    float v[QK];
    for (int i = 0; i < QK; i++) {
        const float diff = x[i] - (d * L[i] + m);
        v[i] = (w[i] * diff) * diff;
    }
    return lane_sum(v);
}

/* LS (d, m) of codes L; 0 if the normal equations are singular. */
static int asym_ls(const float *wx, const float *w, const float *L, float sw, float sx,
                   float *d, float *m, float *sxl_out) {
    float a[QK], b[QK], c[QK];
    for (int i = 0; i < QK; i++) {
        const float wl = w[i] * L[i];
        a[i] = wl;
        b[i] = wl * L[i];
        c[i] = wx[i] * L[i];
    }
    const float sl = lane_sum(a), sl2 = lane_sum(b), sxl = lane_sum(c);
    const float D = sw * sl2 - sl * sl;
    if (!(D > 0)) return 0;
    *d = (sw * sxl - sx * sl) / D;
    *m = (sl2 * sx - sl * sxl) / D;
    *sxl_out = sxl;
    return 1;
}

static int asym_stored(const float *x, float d, float m, float nmax, float *ds, float *ms, float *L) {
    d = f16r(d);
    m = f16r(m);
    if (!(d > 0) || !isfinite(d) || !isfinite(m)) return 0;
    const float id = 1.0f / d;
    for (int i = 0; i < QK; i++) L[i] = clampf(rintf((x[i] - m) * id), 0, nmax);
    *ds = d; *ms = m;
    return 1;
}

void qi_legacy_best_asym(const float *x, const float *w, int nmax_i, float *d, float *m, float *L) {
    if (!w) w = ONES;
    const float nmax = (float)nmax_i;
    float wx[QK], Lt[QK], L1[QK], L2[QK];
    for (int i = 0; i < QK; i++) wx[i] = w[i] * x[i];
    float best_e = asym_err(x, w, *d, *m, L);
    float mn = x[0], mx = x[0];
    for (int i = 1; i < QK; i++) { mn = x[i] < mn ? x[i] : mn; mx = x[i] > mx ? x[i] : mx; }
    const float r = mx - mn;
    if (!(r > 0)) return;
    const float step = r / nmax, sw = lane_sum(w), sx = lane_sum(wx);
    float score = -INFINITY, td = 0, tm = 0;
    for (int k = 0; k < QI_N_TRIMS; k++) {
        const float lo_v = mn + QI_TRIM_A[k] * step, hi_v = mx - QI_TRIM_B[k] * step;
        const float width = hi_v - lo_v;
        if (!(width > 0)) continue;
        const float ic = nmax / width;
        for (int i = 0; i < QK; i++) Lt[i] = clampf(rintf((x[i] - lo_v) * ic), 0, nmax);
        float dk, mk, sxl;
        if (!asym_ls(wx, w, Lt, sw, sx, &dk, &mk, &sxl)) continue;
        const float s = dk * sxl + mk * sx;
        if (dk > 0 && s > score) { score = s; td = dk; tm = mk; }
    }
    if (!(score > -INFINITY)) return;
    float d1, m1, d2, m2, dr, mr, sxl;
    if (!asym_stored(x, td, tm, nmax, &d1, &m1, L1)) return;
    if (!asym_ls(wx, w, L1, sw, sx, &dr, &mr, &sxl) || !asym_stored(x, dr, mr, nmax, &d2, &m2, L2)) return;
    if (asym_err(x, w, d2, m2, L2) < best_e) { *d = d2; *m = m2; memcpy(L, L2, sizeof L2); }
}
