/* The "best" scale search shared by the symmetric K-quants Q3_K and Q6_K
 * (x = d * s_j * q), and the block error every "best" quantizer scores with.
 * Same algorithm, float32 operation order and tie-breaking as
 * qinfer/quants/q3_k_q6_k_best.py, which documents it; the bytes must match. */
#include "qinfer.h"
#include "kq_scalar.h"
#include "api/quant_q6_k.h"
#include "kq_avx2.h"
#include "kq_neon.h"

float qi_ksym_signed_max(const float *v, int n) {
    float amax = 0, smax = 0;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(v[i]);
        if (a > amax) { amax = a; smax = v[i]; }
    }
    return smax;
}

float qi_ksym_fit_scale(const float *x, const float *w, int qmin, int qmax, const float *grid, int ngrid) {
    const float top = qi_ksym_signed_max(x, 16);
    if (fabsf(top) < 1e-15f) return 0.f;
    float scale = 0, best = 0;
    for (int g = 0; g < ngrid; g++) {
        const float iscale = grid[g] / top;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < 16; i++) {
            const float l = (float)clampi(nearest_int(iscale * x[i]), qmin, qmax);
            sumlx += w[i] * x[i] * l;
            suml2 += w[i] * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Code of one weight for step dl (inverse inv), 0 where dl == 0. */
static inline int code_sym(float x, float dl, float inv, int qmin, int qmax) {
    return dl != 0 ? clampi(nearest_int(x * inv), qmin, qmax) : 0;
}

float qi_ksym_search(const float *x, const float *w, const float *scales, int qmin, int qmax,
                     int smin, int smax, const float *divisors, int ndiv,
                     uint16_t *d_bits, int8_t *s_out, int8_t *q_out) {
    static const int deltas[3] = {0, -1, 1};
    const float top = qi_ksym_signed_max(scales, 16);
    float best_err = INFINITY;
    int8_t cand_s[16], cand_q[256];
    *d_bits = 0;
    memset(s_out, 0, 16);
    memset(q_out, 0, 256);
#if defined(QI_X86) || defined(QI_ARM64)
    float xt[256], wt[256];
#if defined(QI_X86)
    const int simd = qi_simd_level() == QI_SIMD_AVX2;
#else
    const int simd = qi_simd_level() >= QI_SIMD_NEON;
#endif
    for (int g = 0; simd && g < 2; g++) {
        qi_kq_transpose8(x, 16, g, xt + 128 * g);
        qi_kq_transpose8(w, 16, g, wt + 128 * g);
    }
#endif
    for (int k = 0; k < ndiv; k++) {
        const uint16_t bits = qi_fp32_to_fp16(top / divisors[k]);
        const float d = qi_fp16_to_fp32(bits);
        float total = 0;
#if defined(QI_X86)
        if (simd) {
            total = qi_ksym_score_avx2(xt, wt, scales, qmin, qmax, smin, smax, d, best_err, cand_s, cand_q);
            goto keep;
        }
#elif defined(QI_ARM64)
        if (simd) {
            total = qi_ksym_score_neon(xt, wt, scales, qmin, qmax, smin, smax, d, best_err, cand_s, cand_q);
            goto keep;
        }
#endif
        memset(cand_s, 0, sizeof cand_s);
        memset(cand_q, 0, sizeof cand_q);
        for (int j = 0; j < 16; j++) {
            const float *xj = x + 16 * j, *wj = w + 16 * j;
            const int s0 = d != 0 ? clampi(nearest_int(scales[j] / d), smin, smax) : 0;
            int s[3];
            float dl[3], inv[3], err[3];
            for (int t = 0; t < 3; t++) {
                s[t] = clampi(s0 + deltas[t], smin, smax);
                dl[t] = d * (float)s[t];
                inv[t] = dl[t] != 0 ? 1.f / dl[t] : 0.f;
                err[t] = 0;
            }
            /* the three candidates side by side: each sum still runs over l in order */
            for (int l = 0; l < 16; l++)
                for (int t = 0; t < 3; t++) {
                    const float diff = xj[l] - dl[t] * (float)code_sym(xj[l], dl[t], inv[t], qmin, qmax);
                    err[t] += wj[l] * diff * diff;
                }
            float err_j = INFINITY;
            int tb = 0;
            for (int t = 0; t < 3; t++)
                if (err[t] < err_j) { err_j = err[t]; tb = t; }
            if (err_j < INFINITY) {
                cand_s[j] = (int8_t)s[tb];
                for (int l = 0; l < 16; l++) cand_q[16 * j + l] = (int8_t)code_sym(xj[l], dl[tb], inv[tb], qmin, qmax);
            }
            total += err_j;
        }
#if defined(QI_X86) || defined(QI_ARM64)
keep:
#endif
        if (total < best_err) {
            best_err = total;
            *d_bits = bits;
            memcpy(s_out, cand_s, 16);
            memcpy(q_out, cand_q, 256);
        }
    }
    return best_err;
}

float qi_kq_block_error(const float *x, const float *w, const float *y) {
    float total = 0;
    for (int j = 0; j < 16; j++) {
        float err = 0;
        for (int l = 0; l < 16; l++) {
            const float diff = x[16 * j + l] - y[16 * j + l];
            err += w[16 * j + l] * diff * diff;
        }
        total += err;
    }
    return total;
}

int qi_kq_prefer(float err_new, float err_old) {
    return err_new < err_old || (isnan(err_old) && !isnan(err_new));
}
