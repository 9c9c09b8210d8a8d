/* RoPE in llama.cpp's NORM mode (the LLAMA architecture): element pairs
 * (2i, 2i+1) of every head are rotated by theta = pos * base^(-2i/d).
 * Angles are computed in double from the position directly (no running
 * product), so long contexts do not accumulate rounding error. */
#include "qinfer.h"

int qi_rope_norm_f32(float *x, const int32_t *pos, int64_t n_tok, int64_t n_head, int64_t d, float base) {
    if (n_tok < 0 || n_head <= 0 || d <= 0 || (d & 1) || !(base > 0.0f)) return QI_EINVAL;
    const int64_t half = d / 2;
    for (int64_t t = 0; t < n_tok; t++) {
        float *xt = x + t * n_head * d;
        for (int64_t i = 0; i < half; i++) {
            const double theta = (double)pos[t] * pow((double)base, -2.0 * (double)i / (double)d);
            const double c = cos(theta), s = sin(theta);
            for (int64_t h = 0; h < n_head; h++) {
                float *p = xt + h * d + 2 * i;
                const double x0 = p[0], x1 = p[1];
                p[0] = (float)(x0 * c - x1 * s);
                p[1] = (float)(x0 * s + x1 * c);
            }
        }
    }
    return QI_OK;
}

/* The same rotation split in two, for the forward pass: every layer rotates
 * Q and K at the same positions, so the angles' cos/sin (a pow, a cos and a
 * sin per position and pair: most of RoPE's time) are computed once per
 * forward pass instead of twice per layer. cs holds n_tok * (d/2) pairs
 * (cos, sin); the results equal qi_rope_norm_f32's bit for bit. */
int qi_rope_table(const int32_t *pos, int64_t n_tok, int64_t d, float base, double *cs) {
    if (n_tok < 0 || d <= 0 || (d & 1) || !(base > 0.0f)) return QI_EINVAL;
    const int64_t half = d / 2;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < half; i++) {
            const double theta = (double)pos[t] * pow((double)base, -2.0 * (double)i / (double)d);
            cs[2 * (t * half + i)] = cos(theta);
            cs[2 * (t * half + i) + 1] = sin(theta);
        }
    return QI_OK;
}

int qi_rope_apply_f32(float *x, const double *cs, int64_t n_tok, int64_t n_head, int64_t d) {
    if (n_tok < 0 || n_head <= 0 || d <= 0 || (d & 1)) return QI_EINVAL;
    const int64_t half = d / 2;
    for (int64_t t = 0; t < n_tok; t++) {
        const double *ct = cs + 2 * t * half;
        for (int64_t h = 0; h < n_head; h++) {
            float *p = x + (t * n_head + h) * d;
            for (int64_t i = 0; i < half; i++) {
                const double c = ct[2 * i], s = ct[2 * i + 1], x0 = p[2 * i], x1 = p[2 * i + 1];
                p[2 * i] = (float)(x0 * c - x1 * s);
                p[2 * i + 1] = (float)(x0 * s + x1 * c);
            }
        }
    }
    return QI_OK;
}
