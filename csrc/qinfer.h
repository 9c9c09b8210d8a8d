/* Internal header shared by every C source of the native core.
 *
 * Conventions: kernels are pure functions over caller-owned buffers; sizes are
 * int64_t; functions return 0 on success and a negative QI_E* code on bad
 * arguments. The only process-wide state is the SIMD level (cpu.c) and the
 * thread pool.
 */
#ifndef QINFER_H
#define QINFER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) || defined(_M_X64)
#  define QI_X86 1
#  define QI_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#  include <immintrin.h>
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#  define QI_ARM64 1
#  include <arm_neon.h>
#  if defined(__clang__)
#    define QI_TARGET_DOTPROD __attribute__((target("dotprod")))
#  else
#    define QI_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#  endif
#endif

#define QI_OK 0
#define QI_EINVAL (-1)   /* size not a multiple of the block size, bad type, ... */
#define QI_ENOMEM (-2)

/* CPU feature bits, as returned by qi_cpu_features(). */
#define QI_CPU_AVX2     (1 << 0)
#define QI_CPU_FMA      (1 << 1)
#define QI_CPU_F16C     (1 << 2)
#define QI_CPU_AVX512F  (1 << 3)
#define QI_CPU_NEON     (1 << 4)
#define QI_CPU_DOTPROD  (1 << 5)
#define QI_CPU_I8MM     (1 << 6)

/* SIMD levels selectable at run time (qi_set_simd_level). */
#define QI_SIMD_SCALAR 0
#define QI_SIMD_AVX2   1   /* AVX2 + FMA + F16C */
#define QI_SIMD_NEON   2
#define QI_SIMD_NEON_DOTPROD 3

int qi_simd_level(void);

/* ---- half / bfloat16 conversions (exact, scalar) ----------------------- */

static inline float qi_bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t qi_f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float qi_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return qi_bits_to_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return qi_bits_to_f32(sign);
        /* subnormal: value = man * 2^-24, exactly representable in f32 */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return qi_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* IEEE round-to-nearest-even; NaN -> 0x7E00 (as ggml). */
static inline uint16_t qi_fp32_to_fp16(float f) {
    uint32_t x = qi_f32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7e00;
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);          /* overflow -> inf */
    if (ax < 0x38800000u) {                                           /* subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign;                  /* < 2^-25 -> 0 */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;                                     /* 14..24 */
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1);                      /* RNE on bit 13 */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

static inline float qi_bf16_to_fp32(uint16_t h) { return qi_bits_to_f32((uint32_t)h << 16); }

/* ggml_compute_fp32_to_bf16: RNE, NaN made quiet. */
static inline uint16_t qi_fp32_to_bf16(float f) {
    uint32_t u = qi_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

#endif /* QINFER_H */
