/* Block layouts of the 32-element formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, shared
 * by their dot kernels (dot_legacy.c: scalar and NEON; dot_legacy_avx2.c).
 *
 * Every weight block is decoded to 32 codes u and two floats (dw, cw) with
 * weight = dw*u + cw: Q4_0 u = nibble, cw = -8*dw; Q5_0 u = 5-bit code,
 * cw = -16*dw; Q4_1/Q5_1 cw = m; Q8_0 u = the signed int8, cw = 0. With an
 * activation block (da, sa = da*sum(q), q) (dot_kernels.h) the block's dot
 * product is
 *     dw*da*sum(u*q) + cw*sa,
 * so offsets and mins cost one multiply-add per block and the integer part is
 * unsigned x signed (maddubs on AVX2, no sign trick) except for Q8_0. */
#ifndef QI_DOT_LEGACY_H
#define QI_DOT_LEGACY_H

#include "dot_kernels.h"

enum { L_Q4_0, L_Q4_1, L_Q5_0, L_Q5_1, L_Q8_0 };

static inline int legacy_block_bytes(int ty) {
    switch (ty) {
    case L_Q4_0: return 18;
    case L_Q4_1: return 20;
    case L_Q5_0: return 22;
    case L_Q5_1: return 24;
    default: return 34;
    }
}

static inline int legacy_has_min(int ty) { return ty == L_Q4_1 || ty == L_Q5_1; }
static inline int legacy_has_high_bit(int ty) { return ty == L_Q5_0 || ty == L_Q5_1; }

/* cw / dw of the types whose offset is a fixed multiple of the scale. */
static inline float legacy_offset_factor(int ty) {
    return ty == L_Q4_0 ? -8.f : ty == L_Q5_0 ? -16.f : 0.f;
}

/* dw and cw of a block (see above) from its f16 fields d and m, converted by
 * the caller (hardware conversion in the SIMD paths). */
static inline void legacy_block_scales(int ty, float d, float m, float *dw, float *cw) {
    *dw = d;
    *cw = legacy_has_min(ty) ? m : legacy_offset_factor(ty) * d;
}

/* Byte offset of the packed nibbles (Q8_0: of the int8 codes) and of the 32
 * high bits (Q5_*). */
static inline int legacy_qs_offset(int ty) {
    return ty == L_Q4_0 ? 2 : ty == L_Q4_1 ? 4 : ty == L_Q5_0 ? 6 : ty == L_Q5_1 ? 8 : 2;
}
static inline int legacy_qh_offset(int ty) { return ty == L_Q5_0 ? 2 : 4; }

/* One exported kernel per type from a generic implementation impl(ty, ...). */
#define LEGACY_ENTRY(name, ty, suffix, attr, impl)                                           \
    attr void name##_##suffix(int64_t nb, const uint8_t *w, const uint8_t *a, size_t as,     \
                              int na, float *s) {                                            \
        impl(ty, nb, w, a, as, na, s);                                                       \
    }
#define LEGACY_ALL(suffix, attr, impl)                      \
    LEGACY_ENTRY(qi_dot_q4_0, L_Q4_0, suffix, attr, impl)   \
    LEGACY_ENTRY(qi_dot_q4_1, L_Q4_1, suffix, attr, impl)   \
    LEGACY_ENTRY(qi_dot_q5_0, L_Q5_0, suffix, attr, impl)   \
    LEGACY_ENTRY(qi_dot_q5_1, L_Q5_1, suffix, attr, impl)   \
    LEGACY_ENTRY(qi_dot_q8_0, L_Q8_0, suffix, attr, impl)

#endif
