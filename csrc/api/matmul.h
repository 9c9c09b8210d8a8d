/* Matrix multiplication y = x @ W.T with quantized weights (matmul.c, act_quant.c, dot_*.c).
 * w: n_out rows of n_in weights of ggml type `ggml_type`, row r at w + r*w_stride;
 * x: float32 [n_tok, n_in]; out: float32 [n_tok, n_out]; work: caller-owned scratch of
 * at least qi_matmul_work_size() bytes (activations quantized for the weight type).
 * Returns 0, or a negative code for an unsupported type, bad sizes or too small a work buffer. */
int64_t qi_matmul_work_size(int ggml_type, int64_t n_tok, int64_t n_in);
int qi_matmul(int ggml_type, const uint8_t *w, int64_t w_stride, int64_t n_out, int64_t n_in,
              const float *x, int64_t n_tok, float *out, uint8_t *work, int64_t work_size, int n_threads);
/* Up to 4 matrices (any weight types, each with its own rows, stride and
 * output) against the same x in one call: x quantized once per activation
 * format, every matrix's rows shared out from one counter. Outputs equal
 * separate qi_matmul calls bit for bit. work: qi_matmul_multi_work_size bytes. */
int64_t qi_matmul_multi_work_size(int n_mat, const int *types, int64_t n_tok, int64_t n_in);
int qi_matmul_multi(int n_mat, const int *types, const uint8_t *const *w, const int64_t *w_stride,
                    const int64_t *n_out, int64_t n_in, const float *x, int64_t n_tok, float *const *out,
                    uint8_t *work, int64_t work_size, int n_threads);
/* The activation format of a weight type, exposed for tests: bytes per row, and rows quantized. */
int64_t qi_act_row_bytes(int ggml_type, int64_t n_in);
int qi_act_quantize(int ggml_type, const float *x, uint8_t *out, int64_t n_tok, int64_t n_in);
/* Threads the pool holds now (1 = only the caller; it grows on demand). */
int qi_pool_size(void);
