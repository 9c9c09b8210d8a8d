/* Dot kernels of F32 / F16 / BF16 weights against float activations.
 *
 * Unlike ggml (which rounds activations to F16 for F16 weights) activations
 * stay float32: the weight is widened once per element and reused for up to
 * QI_TILE tokens, so the conversion costs nothing extra and no precision is
 * lost. Accumulation is in float32 (8 or 4 lanes, then a horizontal sum). */
#include "dot_kernels.h"

/* ---- scalar ------------------------------------------------------------- */

#define SCALAR_FLOAT_DOT(name, load)                                                      \
    void name##_scalar(int64_t n, const uint8_t *w, const uint8_t *a, size_t a_stride,    \
                       int na, float *s) {                                                 \
        for (int t = 0; t < na; t++) {                                                     \
            const float *x = (const float *)(a + t * a_stride);                           \
            float acc = 0.f;                                                               \
            for (int64_t i = 0; i < n; i++) acc += load(w, i) * x[i];                      \
            s[t] = acc;                                                                    \
        }                                                                                  \
    }

static inline float ld_f32(const uint8_t *w, int64_t i) { return qi_load_f32(w + 4 * i); }
static inline float ld_f16(const uint8_t *w, int64_t i) { return qi_load_f16(w + 2 * i); }
static inline float ld_bf16(const uint8_t *w, int64_t i) { return qi_bf16_to_fp32(qi_load_u16(w + 2 * i)); }

SCALAR_FLOAT_DOT(qi_dot_f32, ld_f32)
SCALAR_FLOAT_DOT(qi_dot_f16, ld_f16)
SCALAR_FLOAT_DOT(qi_dot_bf16, ld_bf16)

/* ---- AVX2 --------------------------------------------------------------- */
/* A register tile of several weight rows x QI_TILE tokens: per step of 8
 * elements, each weight vector is loaded (and widened) once and each
 * activation vector once, for up to 12 fused multiply-adds, instead of one
 * activation load per multiply-add for a single row (the loads were the
 * limit: F16 x 64 tokens 31 -> 80 GFLOP/s, benches/README.md).
 * Every output has one accumulator and the same sequence of operations
 * whatever the tile's shape (8-wide FMAs in element order, a fixed
 * horizontal sum, then the scalar tail), so results do not depend on how
 * rows and tokens are grouped, i.e. on the thread count or the batch. */
#if defined(QI_X86)
#define F_F32 0
#define F_F16 1
#define F_BF16 2

QI_TARGET_AVX2 static inline __m256 load8(int fmt, const uint8_t *w, int64_t i) {
    if (fmt == F_F32) return _mm256_loadu_ps((const float *)w + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * i));
    if (fmt == F_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

QI_TARGET_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

QI_TARGET_AVX2 static inline float load1(int fmt, const uint8_t *w, int64_t i) {
    return fmt == F_F32 ? ld_f32(w, i) : fmt == F_F16 ? ld_f16(w, i) : ld_bf16(w, i);
}

/* s[r * QI_TILE + t] = dot(row r of w, activation row t); NW, NA constants. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void float_tile(int fmt, int NW, int NA, int64_t n,
                                                                            const uint8_t *w, size_t ws,
                                                                            const uint8_t *a, size_t as, float *s) {
    __m256 acc[4][QI_TILE];
    for (int r = 0; r < NW; r++)
        for (int t = 0; t < NA; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv[4];
        for (int r = 0; r < NW; r++) wv[r] = load8(fmt, w + r * ws, i);
        for (int t = 0; t < NA; t++) {
            __m256 x = _mm256_loadu_ps((const float *)(a + t * as) + i);
            /* a register operand: GCC would otherwise fold the load into
             * each of the NW multiply-adds, loading x NW times */
            __asm__("" : "+x"(x));
            for (int r = 0; r < NW; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], x, acc[r][t]);
        }
    }
    for (int r = 0; r < NW; r++)
        for (int t = 0; t < NA; t++) {
            const float *x = (const float *)(a + t * as);
            float v = hsum8(acc[r][t]);
            for (int64_t j = i; j < n; j++) v += load1(fmt, w + r * ws, j) * x[j];
            s[r * QI_TILE + t] = v;
        }
}

/* 3 rows x 4 tokens: 12 accumulators, 3 weight vectors and 1 activation
 * vector take all 16 registers; the 4 activation loads and 12 FMAs of a step
 * are one asm block so that GCC cannot spill an accumulator or fold the
 * activation load into each FMA (it does one or the other when written with
 * intrinsics). The arithmetic per output is float_tile's: one FMA per 8
 * elements in element order, then the same horizontal sum and tail. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void float_tile34(int fmt, int64_t n, const uint8_t *w, size_t ws,
                                                                              const uint8_t *a, size_t as, float *s) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    const float *x0 = (const float *)a;
    const int64_t xs = (int64_t)(as / sizeof(float));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 w0 = load8(fmt, w, i), w1 = load8(fmt, w + ws, i), w2 = load8(fmt, w + 2 * ws, i);
        const float *x = x0 + i;
        __asm__("vmovups (%[x]), %%ymm15\n\t"
                "vfmadd231ps %%ymm15, %[w0], %[c00]\n\t"
                "vfmadd231ps %%ymm15, %[w1], %[c10]\n\t"
                "vfmadd231ps %%ymm15, %[w2], %[c20]\n\t"
                "vmovups (%[x],%[xs],4), %%ymm15\n\t"
                "vfmadd231ps %%ymm15, %[w0], %[c01]\n\t"
                "vfmadd231ps %%ymm15, %[w1], %[c11]\n\t"
                "vfmadd231ps %%ymm15, %[w2], %[c21]\n\t"
                "vmovups (%[x],%[xs],8), %%ymm15\n\t"
                "vfmadd231ps %%ymm15, %[w0], %[c02]\n\t"
                "vfmadd231ps %%ymm15, %[w1], %[c12]\n\t"
                "vfmadd231ps %%ymm15, %[w2], %[c22]\n\t"
                "vmovups (%[x3]), %%ymm15\n\t"
                "vfmadd231ps %%ymm15, %[w0], %[c03]\n\t"
                "vfmadd231ps %%ymm15, %[w1], %[c13]\n\t"
                "vfmadd231ps %%ymm15, %[w2], %[c23]"
                : [c00] "+x"(c00), [c01] "+x"(c01), [c02] "+x"(c02), [c03] "+x"(c03),
                  [c10] "+x"(c10), [c11] "+x"(c11), [c12] "+x"(c12), [c13] "+x"(c13),
                  [c20] "+x"(c20), [c21] "+x"(c21), [c22] "+x"(c22), [c23] "+x"(c23)
                : [w0] "x"(w0), [w1] "x"(w1), [w2] "x"(w2), [x] "r"(x), [xs] "r"(xs), [x3] "r"(x + 3 * xs)
                : "xmm15", "memory");
    }
    const __m256 c[3][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}};
    for (int r = 0; r < 3; r++)
        for (int t = 0; t < 4; t++) {
            const float *x = (const float *)(a + t * as);
            float v = hsum8(c[r][t]);
            for (int64_t j = i; j < n; j++) v += load1(fmt, w + r * ws, j) * x[j];
            s[r * QI_TILE + t] = v;
        }
}

/* Up to QI_FLOAT_ROWS rows: tiles of up to 4 rows for 1 or 2 tokens (with
 * one token, 4 independent sums keep the FMA unit busy despite its latency),
 * 3 rows x 4 tokens (float_tile34), else pairs of rows for 3 or 4 tokens
 * (GCC spills the intrinsic version from 3 x 4 on). */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void float_rows(int fmt, int64_t n, const uint8_t *w, size_t ws,
                                                                            int nw, const uint8_t *a, size_t as, int na,
                                                                            float *s) {
    if (na <= 2) {
        for (int r = 0; r < nw; r += 4) {
#define TILE(NW, NA) float_tile(fmt, NW, NA, n, w + r * ws, ws, a, as, s + r * QI_TILE)
            const int k = nw - r < 4 ? nw - r : 4;
            if (na == 1) switch (k) { case 1: TILE(1, 1); break; case 2: TILE(2, 1); break; case 3: TILE(3, 1); break; default: TILE(4, 1); }
            else switch (k) { case 1: TILE(1, 2); break; case 2: TILE(2, 2); break; case 3: TILE(3, 2); break; default: TILE(4, 2); }
#undef TILE
        }
        return;
    }
    for (int r = 0; r < nw;) {
        const uint8_t *wr = w + r * ws;
        float *sr = s + r * QI_TILE;
        if (na == 4 && nw - r >= 3) {
            float_tile34(fmt, n, wr, ws, a, as, sr);
            r += 3;
        } else if (nw - r == 1) {
            if (na == 3) float_tile(fmt, 1, 3, n, wr, ws, a, as, sr);
            else float_tile(fmt, 1, 4, n, wr, ws, a, as, sr);
            r += 1;
        } else {
            if (na == 3) float_tile(fmt, 2, 3, n, wr, ws, a, as, sr);
            else float_tile(fmt, 2, 4, n, wr, ws, a, as, sr);
            r += 2;
        }
    }
}

#define FLOAT_AVX2(name, fmt)                                                                       \
    QI_TARGET_AVX2 void name##_rows_avx2(int64_t n, const uint8_t *w, size_t ws, int nw, const uint8_t *a, \
                                         size_t as, int na, float *s) {                             \
        float_rows(fmt, n, w, ws, nw, a, as, na, s);                                                \
    }                                                                                               \
    QI_TARGET_AVX2 void name##_avx2(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) { \
        float_rows(fmt, n, w, 0, 1, a, as, na, s);                                                  \
    }
FLOAT_AVX2(qi_dot_f32, F_F32)
FLOAT_AVX2(qi_dot_f16, F_F16)
FLOAT_AVX2(qi_dot_bf16, F_BF16)
#endif

/* ---- NEON --------------------------------------------------------------- */
#if defined(QI_ARM64)
#define F_F32 0
#define F_F16 1
#define F_BF16 2

static inline float32x4_t load4(int fmt, const uint8_t *w, int64_t i) {
    if (fmt == F_F32) return vld1q_f32((const float *)w + i);
    const uint16x4_t h = vld1_u16((const uint16_t *)w + i);
    if (fmt == F_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

static inline float load1(int fmt, const uint8_t *w, int64_t i) {
    return fmt == F_F32 ? ld_f32(w, i) : fmt == F_F16 ? ld_f16(w, i) : ld_bf16(w, i);
}

#define FLOAT_TILE_NEON(NA)                                                                \
    static inline void float_tile##NA(int fmt, int64_t n, const uint8_t *w,                \
                                      const uint8_t *a, size_t as, float *s) {             \
        float32x4_t acc0[NA], acc1[NA];                                                    \
        for (int t = 0; t < NA; t++) acc0[t] = acc1[t] = vdupq_n_f32(0.f);                 \
        int64_t i = 0;                                                                     \
        for (; i + 8 <= n; i += 8) {                                                       \
            const float32x4_t w0 = load4(fmt, w, i), w1 = load4(fmt, w, i + 4);            \
            for (int t = 0; t < NA; t++) {                                                 \
                const float *x = (const float *)(a + t * as);                              \
                acc0[t] = vfmaq_f32(acc0[t], w0, vld1q_f32(x + i));                        \
                acc1[t] = vfmaq_f32(acc1[t], w1, vld1q_f32(x + i + 4));                    \
            }                                                                              \
        }                                                                                  \
        for (int t = 0; t < NA; t++) {                                                     \
            const float *x = (const float *)(a + t * as);                                  \
            float r = vaddvq_f32(vaddq_f32(acc0[t], acc1[t]));                             \
            for (int64_t j = i; j < n; j++) r += load1(fmt, w, j) * x[j];                  \
            s[t] = r;                                                                      \
        }                                                                                  \
    }
FLOAT_TILE_NEON(1)
FLOAT_TILE_NEON(2)
FLOAT_TILE_NEON(3)
FLOAT_TILE_NEON(4)

static inline void float_dot_neon(int fmt, int64_t n, const uint8_t *w, const uint8_t *a,
                                  size_t as, int na, float *s) {
    switch (na) {
    case 1: float_tile1(fmt, n, w, a, as, s); break;
    case 2: float_tile2(fmt, n, w, a, as, s); break;
    case 3: float_tile3(fmt, n, w, a, as, s); break;
    default: float_tile4(fmt, n, w, a, as, s); break;
    }
}

void qi_dot_f32_neon(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float_dot_neon(F_F32, n, w, a, as, na, s);
}
void qi_dot_f16_neon(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float_dot_neon(F_F16, n, w, a, as, na, s);
}
void qi_dot_bf16_neon(int64_t n, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float_dot_neon(F_BF16, n, w, a, as, na, s);
}
#endif
