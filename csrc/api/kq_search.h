/* ggml's scale-search helpers (kq_search.c), shared by every K-quant quantizer;
 * one sub-block of n weights per call. Contracts: qinfer/quants/kq_search.py.
 * qw / weights NULL means x^2. */
float qi_kq_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw);
float qi_kq_make_q3_quants(int n, int nmax, const float *x, int8_t *L);
float qi_kq_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad);
float qi_kq_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad);
float qi_kq_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw);
