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
