/* ggml's scale-search helpers (kq_search.c), shared by every K-quant quantizer;
 * one sub-block of n weights per call. Contracts: qinfer/quants/kq_search.py.
 * qw / weights NULL means x^2. */
float qi_kq_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw);
float qi_kq_make_q3_quants(int n, int nmax, const float *x, int8_t *L);
float qi_kq_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad);
float qi_kq_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad);
float qi_kq_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw);
/* The "best" search of the asymmetric K-quants (kq_asym_best.c; algorithm in
 * qinfer/quants/kq_asym_best.py): one super-block of 256 weights x with error
 * weights w; moves holds nmoves (dsc, dm) pairs. Writes the sub-block scale
 * and min codes, fp16 super-scales and weight codes; returns the error. */
float qi_kq_asym_search(const float *x, const float *w, int n_sub, int nmax, int smax, float rmin, float rdelta, int nstep, const float *divisors, int ndiv, const int8_t *moves, int nmoves, int refits, uint8_t *sc, uint8_t *m, uint16_t *d_bits, uint16_t *dmin_bits, uint8_t *q);
