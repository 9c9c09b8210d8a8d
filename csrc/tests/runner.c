/* C test runner: every SIMD path of the native core against its scalar path.
 *
 * For each SIMD level this CPU offers (x86-64: AVX2; arm64: NEON and, when
 * present, NEON+dotprod) the runner computes every discovered function at that
 * level and at level 0 (scalar) and compares:
 *   - quantizers (qi_quantize_<key>_<q>, with and without an importance
 *     matrix), dequantizers (qi_dequantize_<key>) and the matmul's activation
 *     quantizers (qi_act_quantize): identical bytes;
 *   - matmul (qi_matmul) for every weight type it accepts: within
 *     1e-4 * max|y| per output (see check_matmul), and bit-identical across
 *     thread counts;
 *   - the multi-row dot kernels (dot_kernels.h, rows[level]) against the
 *     single-row kernel of the same level: identical bits for every number
 *     of weight and activation rows (the driver picks the tile, so a token's
 *     output must not depend on it);
 *   - attention (qi_attention_mt_f32) over f16 and f32 caches: within
 *     1e-5 * max|out|, bit-identical across thread counts; the SiLU gate
 *     (vectorised exp) within 4e-7 relative.
 * Functions are discovered from the headers in csrc/api/ by build.sh (discovered.h); the
 * weight types of the matmul are discovered by asking qi_act_row_bytes.
 * Exit status 0 = all passed; one line per failure on stderr. */
#include <stdio.h>
#include <stdlib.h>

#include "qinfer.h"
#include "dot_kernels.h"
#include "discovered.h"

/* ---- formats: what random valid data of each key looks like ------------- */

typedef struct {
    const char *key;
    int ggml_type, block, bytes;
    int f16_at[2];      /* byte offsets of f16 scales inside a block (-1: none) */
} format;

static const format FORMATS[] = {
    {"f32", 0, 1, 4, {-1, -1}},   {"f16", 1, 1, 2, {-1, -1}},    {"bf16", 30, 1, 2, {-1, -1}},
    {"q4_0", 2, 32, 18, {0, -1}}, {"q4_1", 3, 32, 20, {0, 2}},   {"q5_0", 6, 32, 22, {0, -1}},
    {"q5_1", 7, 32, 24, {0, 2}},  {"q8_0", 8, 32, 34, {0, -1}},  {"q2_k", 10, 256, 84, {80, 82}},
    {"q3_k", 11, 256, 110, {108, -1}}, {"q4_k", 12, 256, 144, {0, 2}},
    {"q5_k", 13, 256, 176, {0, 2}}, {"q6_k", 14, 256, 210, {208, -1}},
    {"q8_k", 15, 256, 292, {-1, -1}},
};

static const format *format_by_key(const char *key) {
    for (size_t i = 0; i < sizeof(FORMATS) / sizeof(FORMATS[0]); i++)
        if (strcmp(FORMATS[i].key, key) == 0) return &FORMATS[i];
    return NULL;
}

static const format *format_by_type(int t) {
    for (size_t i = 0; i < sizeof(FORMATS) / sizeof(FORMATS[0]); i++)
        if (FORMATS[i].ggml_type == t) return &FORMATS[i];
    return NULL;
}

static int g_failures = 0;

#define FAIL(...) do { fprintf(stderr, "FAIL "); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); g_failures++; } while (0)

/* ---- random data ---------------------------------------------------------- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float rnd_unit(void) { return (float)(rnd() & 0xffffff) / 16777216.f; }
static float rnd_normal(void) {
    float s = 0;
    for (int i = 0; i < 12; i++) s += rnd_unit();
    return s - 6.f;
}

/* Floats with the awkward cases quantizers meet: a zero block, a constant
 * block, a lone outlier, ties of |max| with opposite signs, tiny values. */
static void fill_floats(float *x, int64_t n, int block) {
    for (int64_t i = 0; i < n; i++) x[i] = rnd_normal();
    const int64_t nb = n / block;
    if (nb > 1) for (int i = 0; i < block; i++) x[i] = 0.f;
    if (nb > 2) for (int i = 0; i < block; i++) x[block + i] = 0.5f;
    if (nb > 3) x[2 * block + 3] = 40.f;
    if (nb > 4) { x[3 * block] = 2.f; x[3 * block + 1] = -2.f; }
    if (nb > 5) for (int i = 0; i < block; i++) x[4 * block + i] *= 1e-6f;
}

/* Random valid blocks: random bytes, f16 scales set to finite values. */
static void fill_blocks(const format *f, uint8_t *b, int64_t nblocks) {
    for (int64_t i = 0; i < nblocks * f->bytes; i++) b[i] = (uint8_t)rnd();
    if (f->ggml_type == 0 || f->ggml_type == 1 || f->ggml_type == 30) {
        for (int64_t i = 0; i < nblocks; i++) {
            const float v = rnd_normal();
            if (f->ggml_type == 0) memcpy(b + 4 * i, &v, 4);
            else {
                const uint16_t h = f->ggml_type == 1 ? qi_fp32_to_fp16(v) : qi_fp32_to_bf16(v);
                memcpy(b + 2 * i, &h, 2);
            }
        }
        return;
    }
    const float size = f->block == 256 ? 0.02f : 0.1f;
    for (int64_t i = 0; i < nblocks; i++)
        for (int k = 0; k < 2; k++)
            if (f->f16_at[k] >= 0) {
                const uint16_t h = qi_fp32_to_fp16(size * (0.2f + 0.8f * rnd_unit()));
                memcpy(b + i * f->bytes + f->f16_at[k], &h, 2);
            }
}

/* ---- levels --------------------------------------------------------------- */

static const char *level_name(int l) {
    return l == 0 ? "scalar" : l == 1 ? "avx2" : l == 2 ? "neon" : "neon+dotprod";
}

/* SIMD levels to test: the best one, and plain NEON below dotprod. */
static int simd_levels(int *out) {
    int n = 0;
    const int best = qi_best_simd_level();
    if (best != 0) out[n++] = best;
    if (best == 3) out[n++] = 2;
    return n;
}

/* ---- checks ----------------------------------------------------------------- */

typedef int (*dequant_fn)(const uint8_t *, float *, int64_t);
typedef int (*quant_fn)(const float *, uint8_t *, int64_t, int64_t, const float *);

static void check_dequantize(const char *key, dequant_fn fn, int level) {
    const format *f = format_by_key(key);
    if (!f) { FAIL("qi_dequantize_%s: unknown format key, add it to FORMATS in runner.c", key); return; }
    const int64_t nblocks = f->block == 1 ? 1001 : 9;
    const int64_t n = nblocks * f->block;
    uint8_t *in = malloc((size_t)(nblocks * f->bytes));
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    fill_blocks(f, in, nblocks);
    qi_set_simd_level(0);
    int ra = fn(in, a, n);
    qi_set_simd_level(level);
    int rb = fn(in, b, n);
    if (ra != 0 || rb != 0) FAIL("qi_dequantize_%s returned %d (scalar) / %d (%s)", key, ra, rb, level_name(level));
    else if (memcmp(a, b, (size_t)n * 4) != 0) FAIL("qi_dequantize_%s: %s bytes differ from scalar", key, level_name(level));
    free(in); free(a); free(b);
}

/* Scalar and SIMD bytes of fn on x (rows x n_per_row), without and with imat. */
static void compare_quantize(const char *name, const char *what, const format *f, quant_fn fn, int level,
                             const float *x, int64_t rows, int64_t n_per_row, const float *imat) {
    const int64_t n = rows * n_per_row, nbytes = n / f->block * f->bytes;
    uint8_t *a = malloc((size_t)nbytes), *b = malloc((size_t)nbytes);
    for (int with_imatrix = 0; with_imatrix < 2; with_imatrix++) {
        const float *im = with_imatrix ? imat : NULL;
        qi_set_simd_level(0);
        int ra = fn(x, a, rows, n_per_row, im);
        qi_set_simd_level(level);
        int rb = fn(x, b, rows, n_per_row, im);
        if (with_imatrix && ra == rb && ra != 0) {
            /* both levels refuse an importance matrix alike: consistent */
            printf("note: %s refuses an importance matrix (%d)\n", name, ra);
            continue;
        }
        if (ra != 0 || rb != 0) FAIL("%s returned %d (scalar) / %d (%s)", name, ra, rb, level_name(level));
        else if (memcmp(a, b, (size_t)nbytes) != 0) {
            int64_t i = 0;
            while (a[i] == b[i]) i++;
            FAIL("%s (%s, %s imatrix): %s bytes differ from scalar (block %lld)", name, what,
                 with_imatrix ? "with" : "no", level_name(level), (long long)(i / f->bytes));
        }
    }
    free(a); free(b);
}

static void check_quantize(const char *name, const char *key, quant_fn fn, int level) {
    const format *f = format_by_key(key);
    if (!f) { FAIL("%s: unknown format key, add it to FORMATS in runner.c", name); return; }
    const int64_t rows = 3, n_per_row = f->block == 1 ? 67 : (f->block == 32 ? 32 * 9 : 256 * 3);
    const int64_t n = rows * n_per_row;
    float *x = malloc((size_t)n * 4), *imat = malloc((size_t)n_per_row * 4);
    fill_floats(x, n, f->block == 1 ? 32 : f->block);
    for (int64_t i = 0; i < n_per_row; i++) imat[i] = 0.05f + rnd_unit();
    compare_quantize(name, "mixed blocks", f, fn, level, x, rows, n_per_row, imat);
    free(x); free(imat);
}

/* Super-blocks (256 weights) whose sub-blocks of 16 and 32 meet the lane-wise
 * SIMD paths' corner cases one sub-block at a time: pattern p of block i is
 * (i + sub-block) % 16, so each kind of sub-block sits beside every other.
 * Kinds: Gaussian, heavy tails, zero, constant +-, all positive / negative,
 * tiny (1e-20, 1e-39 subnormal), huge (1e15), one outlier, ties of rounding
 * (multiples of 1/8), equal +-max, sparse, an infinity, a NaN. */
static void fill_kquant_hard(float *x, int64_t n, int sub) {
    for (int64_t i0 = 0; i0 < n; i0 += sub) {
        const int kind = (int)((i0 / 256 + (i0 % 256) / sub) % 16);
        const float c = rnd_normal();
        for (int l = 0; l < sub; l++) {
            float v = rnd_normal();
            switch (kind) {
            case 1: v = v / (0.05f + rnd_unit()); break;
            case 2: v = 0.f; break;
            case 3: v = c; break;
            case 4: v = fabsf(v) + 0.5f; break;
            case 5: v = -fabsf(v) - 0.01f; break;
            case 6: v *= 1e-20f; break;
            case 7: v *= 1e-39f; break;
            case 8: v *= 1e15f; break;
            case 9: v = l == 5 ? 100.f : v * 0.01f; break;
            case 10: v = (float)(int)(v * 8) / 8.f; break;
            case 11: v = l == 0 ? 3.f : l == 1 ? -3.f : v; break;
            case 12: v = (l % 5) ? 0.f : v; break;
            case 13: v = l == 7 ? INFINITY : v; break;
            case 14: v = l == 9 ? NAN : v; break;
            default: break;
            }
            x[i0 + l] = v;
        }
    }
}

static void check_quantize_kquant_hard(const char *name, const char *key, quant_fn fn, int level) {
    const format *f = format_by_key(key);
    if (!f || f->block != 256) return;
    const int64_t rows = 2, n_per_row = 256 * 24, n = rows * n_per_row;
    float *x = malloc((size_t)n * 4), *imat = malloc((size_t)n_per_row * 4);
    for (int sub = 16; sub <= 32; sub += 16) {
        fill_kquant_hard(x, n, sub);
        /* importance: random, with zero and tiny entries */
        for (int64_t i = 0; i < n_per_row; i++) {
            const uint32_t r = rnd() % 16;
            imat[i] = r == 0 ? 0.f : r == 1 ? 1e-30f : 0.05f + rnd_unit();
        }
        compare_quantize(name, sub == 16 ? "hard sub-blocks of 16" : "hard sub-blocks of 32", f, fn, level, x, rows,
                         n_per_row, imat);
    }
    free(x); free(imat);
}

static void check_act_quantize(int type, int level) {
    const format *f = format_by_type(type);
    const int64_t n_tok = 5, n_in = f->block == 1 ? 67 : 256 * 3;
    const int64_t rb = qi_act_row_bytes(type, n_in);
    float *x = malloc((size_t)(n_tok * n_in) * 4);
    uint8_t *a = malloc((size_t)(rb * n_tok)), *b = malloc((size_t)(rb * n_tok));
    fill_floats(x, n_tok * n_in, 32);
    qi_set_simd_level(0);
    qi_act_quantize(type, x, a, n_tok, n_in);
    qi_set_simd_level(level);
    qi_act_quantize(type, x, b, n_tok, n_in);
    if (memcmp(a, b, (size_t)(rb * n_tok)) != 0)
        FAIL("qi_act_quantize(%s): %s bytes differ from scalar", f->key, level_name(level));
    free(x); free(a); free(b);
}

static const struct { const char *key; dequant_fn fn; } DEQUANTIZERS[] = {
#define X(key) {#key, qi_dequantize_##key},
    QI_DEQUANTIZERS
#undef X
};

static dequant_fn dequantizer_of(const char *key) {
    for (size_t i = 0; i < sizeof(DEQUANTIZERS) / sizeof(DEQUANTIZERS[0]); i++)
        if (strcmp(DEQUANTIZERS[i].key, key) == 0) return DEQUANTIZERS[i].fn;
    return NULL;
}

/* The scalar matmul against sum(dequantized w * x) in double, when the format
 * has a dequantizer. Activations are rounded to multiples of
 * delta = amax/127 of their block (32 values for 32-blocks, 256 for K-quants,
 * none for float weights), so each output can be off by at most
 *     sum_i |w_i| * (delta_i/2 + 4u|x_i|)         (u = 2^-24: scale rounding)
 * plus float accumulation over nb blocks: (nb + 16) * 4u * sum_i |w_i x_i|. */
static void check_matmul_exact(const format *f, const uint8_t *w, int64_t w_stride, int64_t n_out,
                               int64_t n_in, const float *x, int64_t n_tok, const float *y) {
    dequant_fn deq = dequantizer_of(f->key);
    if (!deq) return;
    const double u = 1.0 / 16777216.0;
    const int ab = f->block == 1 ? 0 : f->block;   /* activation block */
    float *wr = malloc((size_t)n_in * 4);
    for (int64_t r = 0; r < n_out; r++) {
        deq(w + r * w_stride, wr, n_in);
        for (int64_t t = 0; t < n_tok; t++) {
            const float *xt = x + t * n_in;
            double ref = 0, bound = 0, mag = 0;
            for (int64_t i0 = 0; i0 < n_in; i0 += ab ? ab : n_in) {
                const int64_t i1 = ab ? i0 + ab : n_in;
                double amax = 0;
                for (int64_t i = i0; i < i1; i++) amax = fabs(xt[i]) > amax ? fabs(xt[i]) : amax;
                const double delta = ab ? amax / 127.0 : 0.0;
                for (int64_t i = i0; i < i1; i++) {
                    ref += (double)wr[i] * xt[i];
                    bound += fabs(wr[i]) * (delta / 2 + 4 * u * fabs(xt[i]));
                    mag += fabs((double)wr[i] * xt[i]);
                }
            }
            bound += (double)(n_in / f->block + 16) * 4 * u * mag;
            if (!(fabs(y[t * n_out + r] - ref) <= bound)) {
                FAIL("qi_matmul(%s) scalar y[%lld,%lld] = %.7g, dequantized reference %.7g (bound %.3g)",
                     f->key, (long long)t, (long long)r, y[t * n_out + r], ref, bound);
                free(wr);
                return;
            }
        }
    }
    free(wr);
}

/* SIMD and scalar see the same quantized activations (checked above) and sum
 * the same exact integer block products; only the order of the float
 * accumulation differs, which moves a result by a few ulps of the largest
 * partial sums (~1e-6 relative). 1e-4 of the largest output leaves room for
 * that and is ~100x below the effect of a single mis-decoded weight block. */
static void check_matmul(int type, int level) {
    const format *f = format_by_type(type);
    const int64_t n_out = 13, n_in = f->block == 1 ? 67 : (f->block == 32 ? 32 * 5 : 256 * 2);
    const int64_t row_bytes = n_in / f->block * f->bytes;
    const int64_t w_stride = row_bytes + 7;   /* rows need not be adjacent */
    uint8_t *w = malloc((size_t)(w_stride * n_out));
    for (int64_t r = 0; r < n_out; r++) fill_blocks(f, w + r * w_stride, n_in / f->block);
    for (int64_t n_tok = 1; n_tok <= 6; n_tok += 1 + (n_tok >= 3) * 2) {
        float *x = malloc((size_t)(n_tok * n_in) * 4);
        float *ys = malloc((size_t)(n_tok * n_out) * 4), *yv = malloc((size_t)(n_tok * n_out) * 4);
        float *y3 = malloc((size_t)(n_tok * n_out) * 4);
        fill_floats(x, n_tok * n_in, 32);
        const int64_t ws = qi_matmul_work_size(type, n_tok, n_in);
        uint8_t *work = malloc((size_t)(ws > 0 ? ws : 1));
        qi_set_simd_level(0);
        int r0 = qi_matmul(type, w, w_stride, n_out, n_in, x, n_tok, ys, work, ws, 1);
        qi_set_simd_level(level);
        int r1 = qi_matmul(type, w, w_stride, n_out, n_in, x, n_tok, yv, work, ws, 1);
        int r2 = qi_matmul(type, w, w_stride, n_out, n_in, x, n_tok, y3, work, ws, 3);
        if (r0 || r1 || r2) FAIL("qi_matmul(%s) returned %d/%d/%d", f->key, r0, r1, r2);
        check_matmul_exact(f, w, w_stride, n_out, n_in, x, n_tok, ys);
        float ymax = 0.f;
        for (int64_t i = 0; i < n_tok * n_out; i++) ymax = fabsf(ys[i]) > ymax ? fabsf(ys[i]) : ymax;
        for (int64_t i = 0; i < n_tok * n_out; i++) {
            if (!(fabsf(ys[i] - yv[i]) <= 1e-4f * ymax)) {
                FAIL("qi_matmul(%s) n_tok=%lld: %s y[%lld] = %g, scalar %g", f->key, (long long)n_tok,
                     level_name(level), (long long)i, yv[i], ys[i]);
                break;
            }
        }
        if (memcmp(yv, y3, (size_t)(n_tok * n_out) * 4) != 0)
            FAIL("qi_matmul(%s) n_tok=%lld: 3 threads differ from 1", f->key, (long long)n_tok);
        free(x); free(ys); free(yv); free(y3); free(work);
    }
    free(w);
}

/* SiLU gate (vectorised exp): within 4e-7 relative + 1e-30 absolute of
 * scalar libm expf (2 ulp of exp, then a division and a product), over the
 * whole float range the clamp covers and beyond (|g| up to 120). */
static void check_silu(int level) {
    enum { N = 1003 };
    float g[N], u[N], ys[N], yv[N];
    for (int i = 0; i < N; i++) {
        g[i] = (i % 7 == 0) ? 240.f * (rnd_unit() - 0.5f) : 12.f * rnd_normal();
        u[i] = rnd_normal();
    }
    qi_set_simd_level(0);
    int r0 = qi_silu_mul_f32(g, u, ys, N);
    qi_set_simd_level(level);
    int r1 = qi_silu_mul_f32(g, u, yv, N);
    if (r0 || r1) { FAIL("qi_silu_mul_f32 returned %d/%d", r0, r1); return; }
    for (int i = 0; i < N; i++)
        if (!(fabsf(yv[i] - ys[i]) <= 4e-7f * fabsf(ys[i]) + 1e-30f)) {
            FAIL("silu_mul: %s out[%d] = %.9g, scalar %.9g (g = %g)", level_name(level), i, yv[i], ys[i], g[i]);
            return;
        }
}

/* The pool-split RMSNorm and SiLU equal the one-thread ones bit for bit
 * (inputs above the size at which they split; odd lengths for the tails). */
static void check_row_ops_threads(int level) {
    const int64_t rows = 37, d = 2053, n = rows * d;
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4), *w = malloc((size_t)d * 4);
    float *y1 = malloc((size_t)n * 4), *y3 = malloc((size_t)n * 4);
    fill_floats(a, n, 32);
    fill_floats(b, n, 32);
    fill_floats(w, d, 32);
    qi_set_simd_level(level);
    if (qi_rms_norm_mt_f32(a, w, y1, rows, d, 1e-5f, 1) || qi_rms_norm_mt_f32(a, w, y3, rows, d, 1e-5f, 3))
        FAIL("qi_rms_norm_mt_f32 failed");
    else if (memcmp(y1, y3, (size_t)n * 4) != 0) FAIL("rms_norm: %s 3 threads differ from 1", level_name(level));
    if (qi_silu_mul_mt_f32(a, b, y1, n, 1) || qi_silu_mul_mt_f32(a, b, y3, n, 3))
        FAIL("qi_silu_mul_mt_f32 failed");
    else if (memcmp(y1, y3, (size_t)n * 4) != 0) FAIL("silu_mul: %s 3 threads differ from 1", level_name(level));
    free(a); free(b); free(w); free(y1); free(y3);
}

/* Attention over an f16 and an f32 cache, grouped heads (4 query heads per KV
 * head), odd head sizes (SIMD tails), with and without a sliding window: the
 * SIMD level within 1e-5 * max|out| of scalar (float dot products in another
 * order feed exp; the outputs are weighted means of V rows), and bit-identical
 * for 1 and 3 threads (threads split heads, not sums). */
static void check_attention(int level) {
    const int64_t n_tok = 3, n_head = 8, n_kv_head = 2, d = 67, dv = 45, pos0 = 20, n_ctx = pos0 + n_tok;
    float *q = malloc((size_t)(n_tok * n_head * d) * 4);
    float *kf = malloc((size_t)(n_ctx * n_kv_head * d) * 4), *vf = malloc((size_t)(n_ctx * n_kv_head * dv) * 4);
    uint16_t *kh = malloc((size_t)(n_ctx * n_kv_head * d) * 2), *vh = malloc((size_t)(n_ctx * n_kv_head * dv) * 2);
    float *scratch = malloc((size_t)(3 * 4 * n_ctx) * 4);   /* 3 threads x QI_ATTN_QB rows */
    float *ys = malloc((size_t)(n_tok * n_head * dv) * 4), *yv = malloc((size_t)(n_tok * n_head * dv) * 4);
    float *y3 = malloc((size_t)(n_tok * n_head * dv) * 4);
    fill_floats(q, n_tok * n_head * d, 32);
    fill_floats(kf, n_ctx * n_kv_head * d, 32);
    fill_floats(vf, n_ctx * n_kv_head * dv, 32);
    for (int64_t i = 0; i < n_ctx * n_kv_head * d; i++) kh[i] = qi_fp32_to_fp16(kf[i]);
    for (int64_t i = 0; i < n_ctx * n_kv_head * dv; i++) vh[i] = qi_fp32_to_fp16(vf[i]);
    for (int f16 = 0; f16 <= 1; f16++) {
        for (int64_t window = 0; window <= 9; window += 9) {
            const void *k = f16 ? (const void *)kh : (const void *)kf, *v = f16 ? (const void *)vh : (const void *)vf;
            qi_set_simd_level(0);
            int r0 = qi_attention_mt_f32(q, k, v, ys, scratch, n_tok, n_head, n_kv_head, d, dv, pos0, window, f16, 1);
            qi_set_simd_level(level);
            int r1 = qi_attention_mt_f32(q, k, v, yv, scratch, n_tok, n_head, n_kv_head, d, dv, pos0, window, f16, 1);
            int r2 = qi_attention_mt_f32(q, k, v, y3, scratch, n_tok, n_head, n_kv_head, d, dv, pos0, window, f16, 3);
            if (r0 || r1 || r2) { FAIL("qi_attention_mt_f32 returned %d/%d/%d", r0, r1, r2); continue; }
            float ymax = 0.f;
            for (int64_t i = 0; i < n_tok * n_head * dv; i++) ymax = fabsf(ys[i]) > ymax ? fabsf(ys[i]) : ymax;
            for (int64_t i = 0; i < n_tok * n_head * dv; i++) {
                if (!(fabsf(ys[i] - yv[i]) <= 1e-5f * ymax)) {
                    FAIL("attention f16=%d window=%lld: %s out[%lld] = %g, scalar %g", f16, (long long)window,
                         level_name(level), (long long)i, yv[i], ys[i]);
                    break;
                }
            }
            if (memcmp(yv, y3, (size_t)(n_tok * n_head * dv) * 4) != 0)
                FAIL("attention f16=%d window=%lld: 3 threads differ from 1", f16, (long long)window);
        }
    }
    if (qi_attention_mt_f32(q, kf, vf, ys, scratch, n_tok, 6, 4, d, dv, pos0, 0, 0, 1) >= 0)
        FAIL("qi_attention_mt_f32 accepted 6 heads over 4 KV heads");
    free(q); free(kf); free(vf); free(kh); free(vh); free(scratch); free(ys); free(yv); free(y3);
}

/* rows[level] computes, for nw weight rows and na activation rows, the same
 * bits as dot[level] row by row (dot_kernels.h); checked for every tile
 * shape, with odd weight row strides and a pair kernel's odd last row. */
static void check_rows_kernel(int type, int level) {
    const qi_dot_type *t = qi_dot_type_get(type);
    if (!t || qi_dot_level(t) != level || !t->rows[level]) return;
    const format *f = format_by_type(type);
    const int64_t n_in = f->block == 1 ? 67 : f->block * 3, nb = n_in / t->block;
    const size_t ws = (size_t)(nb * t->block_bytes + 5);
    uint8_t *w = malloc(ws * QI_FLOAT_ROWS);
    for (int r = 0; r < QI_FLOAT_ROWS; r++) fill_blocks(f, w + r * ws, n_in / f->block);
    float x[QI_TILE * 768];
    fill_floats(x, QI_TILE * n_in, f->block);
    const size_t as = t->act == QI_ACT_F32 ? (size_t)n_in * 4 : (size_t)qi_act_row_bytes(type, n_in);
    uint8_t *a = malloc(as * QI_TILE);
    if (t->act == QI_ACT_F32) memcpy(a, x, as * QI_TILE);
    else qi_act_quantize(type, x, a, QI_TILE, n_in);
    const int max_rows = t->rows_per_call > 0 ? t->rows_per_call : QI_FLOAT_ROWS;   /* the driver's step */
    for (int nw = 1; nw <= max_rows; nw++) {
        for (int na = 1; na <= QI_TILE; na++) {
            float rows[QI_FLOAT_ROWS * QI_TILE], one[QI_TILE];
            t->rows[level](nb, w, ws, nw, a, as, na, rows);
            for (int r = 0; r < nw; r++) {
                t->dot[level](nb, w + r * ws, a, as, na, one);
                if (memcmp(one, rows + r * QI_TILE, (size_t)na * 4) != 0)
                    FAIL("%s rows kernel (%s) nw=%d na=%d: row %d differs from the single-row kernel", f->key,
                         level_name(level), nw, na, r);
            }
        }
    }
    free(w);
    free(a);
}

/* Wrong arguments are refused, not computed. */
static void check_matmul_errors(void) {
    float x[64] = {0}, y[4];
    uint8_t w[64] = {0}, work[256];
    if (qi_matmul(2, w, 18, 1, 33, x, 1, y, work, sizeof work, 1) >= 0) FAIL("qi_matmul accepted n_in %% 32 != 0");
    if (qi_matmul(2, w, 17, 1, 32, x, 1, y, work, sizeof work, 1) >= 0) FAIL("qi_matmul accepted a short row stride");
    if (qi_matmul(2, w, 18, 1, 32, x, 1, y, work, 10, 1) >= 0) FAIL("qi_matmul accepted a short work buffer");
    if (qi_matmul(15, w, 292, 1, 256, x, 1, y, work, sizeof work, 1) >= 0) FAIL("qi_matmul accepted Q8_K weights");
}

int main(void) {
    int levels[2];
    const int n_levels = simd_levels(levels);
    int n_checked = 0;
    printf("cpu features 0x%x, best SIMD level %s\n", qi_cpu_features(), level_name(qi_best_simd_level()));
    check_matmul_errors();
    for (int li = 0; li < n_levels; li++) {
        const int level = levels[li];
#define X(key) check_dequantize(#key, qi_dequantize_##key, level); n_checked++;
        QI_DEQUANTIZERS
#undef X
#define Q(key, quantizer) check_quantize("qi_quantize_" #key "_" #quantizer, #key, qi_quantize_##key##_##quantizer, level); \
        check_quantize_kquant_hard("qi_quantize_" #key "_" #quantizer, #key, qi_quantize_##key##_##quantizer, level); n_checked++;
        QI_QUANTIZERS
#undef Q
        for (int type = 0; type < 64; type++) {
            if (qi_act_row_bytes(type, 256 * 3 * 67) < 0) continue;   /* not a matmul weight type */
            if (!format_by_type(type)) { FAIL("matmul type %d missing from FORMATS in runner.c", type); continue; }
            check_act_quantize(type, level);
            check_matmul(type, level);
            check_rows_kernel(type, level);
            n_checked += 2;
        }
        check_attention(level);
        check_silu(level);
        check_row_ops_threads(level);
        n_checked += 3;
        printf("%s: %d functions checked against scalar\n", level_name(level), n_checked);
        n_checked = 0;
    }
    if (n_levels == 0) printf("no SIMD level on this CPU: nothing to compare\n");
    qi_set_simd_level(-1);
    if (g_failures) { fprintf(stderr, "%d failure(s)\n", g_failures); return 1; }
    printf("all passed\n");
    return 0;
}
