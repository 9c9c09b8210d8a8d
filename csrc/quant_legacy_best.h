/* Internal to the legacy quantizers (quant_legacy*.c): the per-block `best`
 * search specified in qinfer/quants/legacy_best.py. Codes are floats holding
 * small integers (signed for the symmetric types, 0..nmax for Q4_1/Q5_1).
 * On entry d (and m), l hold llama.cpp's solution as stored (fp16-rounded
 * scales), on return the best of it and the search's. w == NULL means
 * weights of 1 (the same bytes as passing ones). */
#ifndef QI_QUANT_LEGACY_BEST_H
#define QI_QUANT_LEGACY_BEST_H

#define QI_LEGACY_QK 32

typedef struct { float t0, step; int n; } qi_sym_trials;

/* Q4_1/Q5_1 trials: lo = mn + QI_TRIM_A[k]*step, hi = mx - QI_TRIM_B[k]*step
 * (legacy_best.py ASYM_TRIMS). */
#define QI_N_TRIMS 2
static const float QI_TRIM_A[QI_N_TRIMS] = {0.0f, 0.375f}, QI_TRIM_B[QI_N_TRIMS] = {0.375f, 0.0f};

void qi_legacy_best_sym(const float *x, const float *w, int lo, int hi, qi_sym_trials tr, float *d, float *l);
void qi_legacy_best_asym(const float *x, const float *w, int nmax, float *d, float *m, float *L);
/* A legacy format as the 8-block AVX2 kernel sees it. lo..hi: symmetric codes. */
typedef struct {
    int q8, bits, nmax, offset, has_min, type_size, lo, hi;
    qi_sym_trials tr;
} qi_legacy_fmt;

#if defined(__x86_64__) || defined(_M_X64)
/* Eight consecutive blocks x[0..255] at once (lane b = block b), written packed
 * to out. w: each block's 32 weights, or NULL for weights of 1. d0 == NULL:
 * llama.cpp's reference solution (no importance matrix) is computed here; else
 * d0[8], m0[8] and l0[8*32] hold candidate 0 as stored (codes as in
 * qi_legacy_best_sym/asym). */
void qi_legacy_best8_avx2(const qi_legacy_fmt *f, const float *x, const float *const *w,
                          const float *d0, const float *m0, const float *l0, uint8_t *out);
/* llama.cpp's quantize_row_*_ref of eight consecutive blocks, same bytes. */
void qi_legacy_ggml8_avx2(const qi_legacy_fmt *f, const float *x, uint8_t *out);
#endif

#endif
