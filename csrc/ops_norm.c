/* Row-wise ops of the transformer: RMSNorm, softmax, SiLU gate.
 * They touch each activation once, so they are memory-light next to the
 * matmuls; plain C (which compilers vectorise) is enough. Sums of squares and
 * softmax denominators accumulate in double, as ggml's ggml_float does. */
#include "qinfer.h"

int qi_rms_norm_f32(const float *x, const float *w, float *out, int64_t n_rows, int64_t d, float eps) {
    if (n_rows < 0 || d <= 0) return QI_EINVAL;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * d;
        float *o = out + r * d;
        double ss = 0.0;
        for (int64_t i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        const float scale = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
        for (int64_t i = 0; i < d; i++) o[i] = xr[i] * scale * w[i];
    }
    return QI_OK;
}

int qi_softmax_f32(const float *x, float *out, int64_t n_rows, int64_t m) {
    if (n_rows < 0 || m <= 0) return QI_EINVAL;
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * m;
        float *o = out + r * m;
        float mx = -INFINITY;
        for (int64_t i = 0; i < m; i++) mx = xr[i] > mx ? xr[i] : mx;
        double s = 0.0;
        for (int64_t i = 0; i < m; i++) { o[i] = expf(xr[i] - mx); s += o[i]; }
        const float inv = (float)(1.0 / s);
        for (int64_t i = 0; i < m; i++) o[i] *= inv;
    }
    return QI_OK;
}

int qi_silu_mul_f32(const float *gate, const float *up, float *out, int64_t n) {
    if (n < 0) return QI_EINVAL;
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
    return QI_OK;
}
