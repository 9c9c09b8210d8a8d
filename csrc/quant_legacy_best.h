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

void qi_legacy_best_sym(const float *x, const float *w, int lo, int hi, qi_sym_trials tr, float *d, float *l);
void qi_legacy_best_asym(const float *x, const float *w, int nmax, float *d, float *m, float *L);
#if defined(__x86_64__) || defined(_M_X64)
void qi_legacy_best_sym_avx2(const float *x, const float *w, int lo, int hi, qi_sym_trials tr, float *d, float *l);
void qi_legacy_best_asym_avx2(const float *x, const float *w, int nmax, float *d, float *m, float *L);
#endif

#endif
