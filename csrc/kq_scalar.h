/* Scalar helpers every quantizer shares (internal header, not part of the cffi API). */
#ifndef QI_KQ_SCALAR_H
#define QI_KQ_SCALAR_H

#include "qinfer.h"

/* ggml's nearest_int: round half to even through the 1.5*2^23 trick (valid for |f| < 2^22). */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

#endif
