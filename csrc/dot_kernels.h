/* Internal interface between the matmul driver (matmul.c), the activation
 * quantizers (act_quant.c) and the per-type dot-product kernels (dot_*.c).
 *
 * A matmul y = x @ W.T first converts every activation row x[t] into the
 * weight type's activation format, then calls one dot kernel per weight row
 * (float formats: per QI_FLOAT_ROWS rows, qi_dot_rows_fn) and group of up to
 * QI_TILE activation rows, so each weight block is loaded
 * and decoded once and reused for QI_TILE tokens (prompt processing); with
 * one token (generation) each weight byte is streamed exactly once.
 *
 * Activation formats (runtime only, never written to files):
 *   QI_ACT_F32  float rows, used as they are (F32/F16/BF16 weights);
 *   QI_ACT_Q8   per 32 values {float d; float s = d*sum(q); int8 q[32]} (40 B),
 *               for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (ggml's Q8_0/Q8_1 with f32
 *               scales: the sum serves the offsets of Q4_0/Q5_0 and the mins
 *               of Q4_1/Q5_1 alike);
 *   QI_ACT_Q8K  per 256 values {float d; int16 bsums[16]; int8 q[256]} (292 B),
 *               for the K-quants (ggml's Q8_K with the sums first).
 * Both integer formats use q = round_half_even(x * 127/amax), so |q| <= 127,
 * which the AVX2 maddubs / sign tricks need (no int16 saturation).
 */
#ifndef QI_DOT_KERNELS_H
#define QI_DOT_KERNELS_H

#include "qinfer.h"

#define QI_TILE 4

#define QI_ACT_F32 0
#define QI_ACT_Q8 1
#define QI_ACT_Q8K 2

#define QI_Q8_BYTES 40
#define QI_Q8K_BYTES 292
#define QI_Q8K_BSUMS 4      /* offset of int16 bsums[16] */
#define QI_Q8K_QS 36        /* offset of int8 q[256] */

/* s[t] = dot(weight row w (nb blocks), activation row a + t*a_stride), t < na. */
typedef void (*qi_dot_fn)(int64_t nb, const uint8_t *w, const uint8_t *a, size_t a_stride,
                          int na, float *s);

/* s[r*QI_TILE + t] = dot(weight row r (at w + r*w_stride), activation row t),
 * r < nw <= QI_FLOAT_ROWS, t < na: register tiles over weight rows too (3 x 4
 * the widest, hence 6 rows a call), for the float formats, whose single-row
 * kernels are bound by activation loads. */
#define QI_FLOAT_ROWS 6
typedef void (*qi_dot_rows_fn)(int64_t nb, const uint8_t *w, size_t w_stride, int nw, const uint8_t *a,
                               size_t a_stride, int na, float *s);

/* Kernels per SIMD level: [0] scalar, [1] AVX2, [2] NEON, [3] NEON dotprod.
 * A NULL entry falls back to the next lower available level. rows[level],
 * when not NULL, computes the same outputs as dot[level] bit for bit, several
 * weight rows at a time. */
typedef struct {
    int ggml_type;
    int act;            /* QI_ACT_* */
    int block;          /* weight elements per block */
    int block_bytes;    /* weight bytes per block */
    qi_dot_fn dot[4];
    qi_dot_rows_fn rows[4];
    int rows_per_call;  /* most weight rows a rows[] call takes (0: QI_FLOAT_ROWS) */
} qi_dot_type;

const qi_dot_type *qi_dot_type_get(int ggml_type);
/* The SIMD level whose kernel runs (the best one available for the type). */
int qi_dot_level(const qi_dot_type *t);

/* Activation quantizers (act_quant.c): rows [t0, t1) of x (n values each). */
size_t qi_act_row_size(int act, int64_t n);
void qi_act_quantize_rows(int act, const float *x, uint8_t *out, int64_t n, int64_t t0, int64_t t1);

static inline float qi_load_f32(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }
static inline uint16_t qi_load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline float qi_load_f16(const uint8_t *p) { return qi_fp16_to_fp32(qi_load_u16(p)); }
static inline int16_t qi_load_i16(const uint8_t *p) { int16_t v; memcpy(&v, p, 2); return v; }

/* K-quant super-block decoding shared by the dot_kquant*.c files; ty is the
 * ggml type id (10 = Q2_K .. 14 = Q6_K). */
void qi_kq_scales(int ty, const uint8_t *b, int16_t *sc, int16_t *mn);
/* Inline so that a kernel specialised on ty sees constant sizes and offsets. */
static inline int qi_kq_block_bytes(int ty) {
    return ty == 10 ? 84 : ty == 11 ? 110 : ty == 12 ? 144 : ty == 13 ? 176 : 210;
}
/* Byte offsets of the f16 d and of the f16 factor of mn (dmin, or d again). */
static inline void qi_kq_scale_offsets(int ty, int *d_at, int *dm_at) {
    switch (ty) {
    case 10: *d_at = 80; *dm_at = 82; break;
    case 11: *d_at = *dm_at = 108; break;
    case 12: case 13: *d_at = 0; *dm_at = 2; break;
    default: *d_at = *dm_at = 208; break;
    }
}
void qi_kq_codes_scalar(int ty, const uint8_t *b, uint8_t *u);

/* Kernels, defined in dot_float.c, dot_legacy*.c, dot_kquant*.c. */
#define QI_DECLARE_DOT(name) \
    void name##_scalar(int64_t, const uint8_t *, const uint8_t *, size_t, int, float *); \
    void name##_avx2(int64_t, const uint8_t *, const uint8_t *, size_t, int, float *); \
    void name##_neon(int64_t, const uint8_t *, const uint8_t *, size_t, int, float *); \
    void name##_dotprod(int64_t, const uint8_t *, const uint8_t *, size_t, int, float *);

void qi_dot_f32_rows_avx2(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
void qi_dot_f16_rows_avx2(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
void qi_dot_bf16_rows_avx2(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
/* Q4_K: weight rows in pairs, one per 128-bit lane (dot_kquant_pair_avx2.c). */
void qi_dot_q4_k_rows_avx2(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
/* Tiles of 4 weight rows (dot_legacy_avx2.c, dot_legacy.c for NEON): rows_per_call 4. */
#define QI_LEGACY_ROWS 4
void qi_dot_q4_0_rows_avx2(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
void qi_dot_q4_1_rows_avx2(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
void qi_dot_q5_0_rows_avx2(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
void qi_dot_q5_1_rows_avx2(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
void qi_dot_q8_0_rows_avx2(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
/* The same 4-row tiles on NEON, plain and dotprod (dot_legacy.c). */
#define QI_DECLARE_LEGACY_ROWS_NEON(name) \
    void name##_rows_neon(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *); \
    void name##_rows_dotprod(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *);
QI_DECLARE_LEGACY_ROWS_NEON(qi_dot_q4_0)
QI_DECLARE_LEGACY_ROWS_NEON(qi_dot_q4_1)
QI_DECLARE_LEGACY_ROWS_NEON(qi_dot_q5_0)
QI_DECLARE_LEGACY_ROWS_NEON(qi_dot_q5_1)
QI_DECLARE_LEGACY_ROWS_NEON(qi_dot_q8_0)

QI_DECLARE_DOT(qi_dot_f32)
QI_DECLARE_DOT(qi_dot_f16)
QI_DECLARE_DOT(qi_dot_bf16)
QI_DECLARE_DOT(qi_dot_q4_0)
QI_DECLARE_DOT(qi_dot_q4_1)
QI_DECLARE_DOT(qi_dot_q5_0)
QI_DECLARE_DOT(qi_dot_q5_1)
QI_DECLARE_DOT(qi_dot_q8_0)
QI_DECLARE_DOT(qi_dot_q2_k)
QI_DECLARE_DOT(qi_dot_q3_k)
QI_DECLARE_DOT(qi_dot_q4_k)
QI_DECLARE_DOT(qi_dot_q5_k)
QI_DECLARE_DOT(qi_dot_q6_k)

#endif
