/* AVX2 dot kernels of Q4_K and Q5_K (decomposition in dot_kquant.c): for
 * Q4_K two weight rows per pass, one in each 128-bit lane; Q5_K one row per
 * pass (kq_row below, why there).
 *
 * A super-block is taken 32 codes (one "chunk", one 32-weight scale) at a
 * time. A vector holds one half of a chunk (16 codes) of row 0 in its low
 * lane and the same half of row 1 in its high lane, unpacked from the packed
 * bits straight into the register. The matching 16 activations are broadcast
 * to both lanes, so per activation row and chunk
 *     maddubs(u_h, q_h)    u8 x s8 -> int16 pair sums, h = 0, 1 (<= 2*15*127)
 *     add                  both halves in int16 (<= 7620 < 2^15: exact)
 *     madd(., scale)       -> int32, scale = (sc0[k] x8 | sc1[k] x8)
 * and every int32 lane stays with its own weight row until the row ends.
 * Against one row per vector (dot_kquant_avx2.c, where a vector is a whole
 * chunk and its halves cannot share a multiply) this
 *   - takes 3 multiplies per 64 weights x activation row instead of 4, the
 *     halves being added before the scale multiply;
 *   - does the per-super-block work (scales, offsets, the float conversion
 *     and multiply-adds) once per pair of rows: one vector op serves both;
 *   - keeps 4 int32 sums for 2 rows x 4 activation rows, leaving registers
 *     for the codes, the scale and the activations.
 * Measured against the former one-row kernel with L1-resident data, ns per
 * super-block x weight row x activation row, 4 activation rows: 4.4 -> 3.9.
 * One activation row (generation) does not go through the pair: with the
 * weights in DRAM its two-row reads were slower (kq_row). The
 * 16-weight-group types gain nothing this way (dot_kquant_avx2.c).
 *
 * Sums are int32 over the super-block (|sum| <= 64 * 15*127*63 < 2^31). The
 * offsets sum_g mn[g]*bsums are two madds with the activation row's bsums,
 * subtracted in float with the super-block's dmin.
 *
 * Bit-exactness across tiles: both lanes run the same operations on their
 * own row, a row's result does not depend on its partner (an odd last row is
 * paired with itself), the single-row entry point is the pair kernel on
 * (row, row), and one activation row goes through kq_row, which adds up the
 * same integers and repeats the pair's float steps. So every output has the
 * same bits whatever the number of weight
 * and activation rows of the call, which the driver relies on (a token of a
 * prompt gets the same numbers as the token alone). */
#include "dot_kernels.h"

#if defined(QI_X86)

/* 16 bytes at p0 in the low lane, 16 bytes at p1 in the high lane. */
QI_TARGET_AVX2 static inline __m256i load_pair(const uint8_t *p0, const uint8_t *p1) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p0)),
                                   _mm_loadu_si128((const __m128i *)p1), 1);
}

QI_TARGET_AVX2 static inline __m256i broadcast16(const uint8_t *p) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
}

/* (v >> n) & mask on bytes (the 16-bit shift's spill is masked away). */
QI_TARGET_AVX2 static inline __m256i shr_mask(__m256i v, int n, int mask) {
    return _mm256_and_si256(_mm256_srli_epi16(v, n), _mm256_set1_epi8((char)mask));
}

/* The codes of elements 32k+16h .. 32k+16h+15 of super-blocks b0 (low lane)
 * and b1 (high lane), layouts as in qi_kq_codes_scalar: the byte of element
 * 32k+l sits at a fixed offset + l, so a half is the same formula on the
 * bytes 16h further. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) __m256i half_codes(const uint8_t *b0, const uint8_t *b1,
                                                                                int k, int h) {
    const int at = 16 + 32 * (k / 2) + 16 * h;   /* Q4_K's qs start at byte 16 */
    return shr_mask(load_pair(b0 + at, b1 + at), 4 * (k % 2), 15);
}

/* Shuffle patterns (0x80 = zero byte), the same in both lanes, on the scale
 * bytes sc[0..3], mn[0..3], sc[4..7], mn[4..7] of each lane's row:
 * PICK_SCALE[k]: sc[k] zero-extended to all 8 int16 of the lane;
 * PICK_MINS[h]: the offsets of the 16-groups 8h..8h+7, mn[g/2], as int16
 *   (both lanes); PICK_MINS_ROW: groups 0..7 in the low lane, 8..15 high. */
#define Z 0x80
#define SAME(j) j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z, j, Z
static const uint8_t PICK_SCALE[8][32] __attribute__((aligned(32))) = {
    {SAME(0)}, {SAME(1)}, {SAME(2)}, {SAME(3)}, {SAME(8)}, {SAME(9)}, {SAME(10)}, {SAME(11)},
};
#undef SAME
#define MINS(a) a, Z, a, Z, a + 1, Z, a + 1, Z, a + 2, Z, a + 2, Z, a + 3, Z, a + 3, Z
static const uint8_t PICK_MINS[2][32] __attribute__((aligned(32))) = {
    {MINS(4), MINS(4)}, {MINS(12), MINS(12)},
};
static const uint8_t PICK_MINS_ROW[32] __attribute__((aligned(32))) = {MINS(4), MINS(12)};
#undef MINS
#undef Z

QI_TARGET_AVX2 static inline __m256i pick(__m256i v, const uint8_t *pattern) {
    return _mm256_shuffle_epi8(v, _mm256_load_si256((const __m256i *)pattern));
}

/* The 8 scales and 8 mins of a super-block from its 12 scale bytes s[0..11],
 * as bytes sc[0..3], mn[0..3], sc[4..7], mn[4..7] (qi_kq_scales' formula on
 * 64-bit words): L = s[0..7] masked gives sc[0..3], mn[0..3]; sc[4..7] =
 * (H & 0x0f) | (s[0..3] >> 6) << 4 and mn[4..7] = (H >> 4) | (s[4..7] >> 6)
 * << 4 with H = s[8..11], both at once with H placed twice (H | H << 28: the
 * upper copy lands shifted right by 4). Built in registers: narrow stores
 * reloaded wide would stall store forwarding. */
static inline __m128i scale_bytes(const uint8_t *b) {
    uint64_t l;
    uint32_t h;
    memcpy(&l, b + 4, 8);
    memcpy(&h, b + 12, 4);
    const uint64_t hh = (uint64_t)h | ((uint64_t)h << 28);
    const uint64_t lo = l & 0x3f3f3f3f3f3f3f3fu;
    const uint64_t hi = (hh & 0x0f0f0f0f0f0f0f0fu) | ((l >> 2) & 0x3030303030303030u);
    return _mm_set_epi64x((long long)hi, (long long)lo);
}

/* Sum of the 4 floats of a 128-bit lane, in a fixed order. */
QI_TARGET_AVX2 static inline float hsum4(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

/* An empty asm that claims to modify v: GCC can no longer reassociate the
 * running int32 sums into a tree of all products, which keeps too many
 * vectors alive and spills them. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void keep_in_register(__m256i *v) {
    __asm__("" : "+x"(*v));
}

/* Rows w0 (low lane) and w1 (high lane) against NA activation rows: s0[t]
 * and s1[t]. ty and NA are constants after inlining; the chunk loop is
 * unrolled explicitly so that shifts and table rows are constants. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void kq_pair(int ty, int NA, int64_t nb, const uint8_t *w0,
                                                                         const uint8_t *w1, const uint8_t *a, size_t as,
                                                                         float *s0, float *s1) {
    __m256 acc[QI_TILE];
    for (int t = 0; t < NA; t++) acc[t] = _mm256_setzero_ps();
    const int bb = qi_kq_block_bytes(ty);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b0 = w0 + i * bb, *b1 = w1 + i * bb;
        const __m256i src = _mm256_setr_m128i(scale_bytes(b0), scale_bytes(b1));
        __m256i isum[QI_TILE];
        for (int t = 0; t < NA; t++) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m256i u0 = half_codes(b0, b1, k, 0), u1 = half_codes(b0, b1, k, 1);
            const __m256i scale = pick(src, PICK_SCALE[k]);
            for (int t = 0; t < NA; t++) {
                const uint8_t *q = a + t * as + i * QI_Q8K_BYTES + QI_Q8K_QS + 32 * k;
                const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(u0, broadcast16(q)),
                                                   _mm256_maddubs_epi16(u1, broadcast16(q + 16)));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, scale));
                keep_in_register(&isum[t]);
            }
        }
        /* (d0, dmin0, d1, dmin1) by one conversion; dw = (d0 x4 | d1 x4),
         * dmw = (dmin0 x4 | dmin1 x4) */
        uint32_t d0, d1;
        memcpy(&d0, b0, 4);
        memcpy(&d1, b1, 4);
        const __m256 f = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_setr_epi32((int)d0, (int)d1, 0, 0)));
        const __m256 dw = _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2));
        const __m256 dmw = _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3));
        const __m256i mn_lo = pick(src, PICK_MINS[0]), mn_hi = pick(src, PICK_MINS[1]);
        for (int t = 0; t < NA; t++) {
            const uint8_t *ab = a + t * as + i * QI_Q8K_BYTES;
            const __m256i m = _mm256_add_epi32(_mm256_madd_epi16(mn_lo, broadcast16(ab + QI_Q8K_BSUMS)),
                                               _mm256_madd_epi16(mn_hi, broadcast16(ab + QI_Q8K_BSUMS + 16)));
            /* acc += da * (dw * isum - dmw * m) */
            const __m256 v = _mm256_fmsub_ps(dw, _mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dmw, _mm256_cvtepi32_ps(m)));
            acc[t] = _mm256_fmadd_ps(_mm256_broadcast_ss((const float *)ab), v, acc[t]);
        }
    }
    for (int t = 0; t < NA; t++) {
        s0[t] = hsum4(_mm256_castps256_ps128(acc[t]));
        s1[t] = hsum4(_mm256_extractf128_ps(acc[t], 1));
    }
}

/* One row per pass, a whole chunk per vector: int32 lane j sums the
 * elements 32k+4j..32k+4j+3, lane j+4 the elements 16 further on.
 *   Q4_K, one activation row: lanes j and j+4 are added at the end of each
 *     super-block, which gives kq_pair's lane j integer exactly (integer
 *     sums do not depend on the order), and the float steps are kq_pair's
 *     on 4 lanes: the same bits as the pair kernel. The pair reads two rows
 *     at once, and with the weights in DRAM that cost a quarter of the
 *     generation speed (Q4_K_M 1B, 1 thread: 14.1-14.7 -> 10.5-11.0 tokens
 *     per CPU-second; this kernel 14.8-15.5).
 *   Q5_K, every tile, 8 float lanes. The pair kernel works for Q5_K too (4
 *     activation rows: 4.9 -> 4.5 ns per super-block x row x activation row),
 *     but one token at 4096 x 4096 fell to 18-50 GFLOP/s against 40-54 in 8
 *     runs (half speed in 4 of them), so Q5_K stays a row at a time. */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void kq_row(int ty, int NA, int64_t nb, const uint8_t *w,
                                                                        const uint8_t *a, size_t as, float *s) {
    const int pair_bits = ty == 12;   /* kq_pair's 4-lane arithmetic */
    __m256 acc[QI_TILE];
    __m128 acc4[QI_TILE];
    for (int t = 0; t < NA; t++) {
        acc[t] = _mm256_setzero_ps();
        acc4[t] = _mm_setzero_ps();
    }
    const int bb = qi_kq_block_bytes(ty), qs = ty == 12 ? 16 : 48;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = w + i * bb;
        const __m256i src = _mm256_broadcastsi128_si256(scale_bytes(b));
        __m256i isum[QI_TILE];
        for (int t = 0; t < NA; t++) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            __m256i u = shr_mask(_mm256_loadu_si256((const __m256i *)(b + qs + 32 * (k / 2))), 4 * (k % 2), 15);
            if (ty == 13) {
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
                u = _mm256_or_si256(u, k >= 4 ? shr_mask(qh, k - 4, 16)
                                              : _mm256_and_si256(_mm256_slli_epi16(qh, 4 - k), _mm256_set1_epi8(16)));
            }
            const __m256i scale = pick(src, PICK_SCALE[k]);
            for (int t = 0; t < NA; t++) {
                const uint8_t *q = a + t * as + i * QI_Q8K_BYTES + QI_Q8K_QS + 32 * k;
                const __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)q));
                isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, scale));
                keep_in_register(&isum[t]);
            }
        }
        /* d and dmin by one conversion */
        uint32_t d2;
        memcpy(&d2, b, 4);
        const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)d2));
        const __m256 dw = _mm256_broadcastss_ps(dd), dmw = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
        const __m256i mn = pick(src, PICK_MINS_ROW);
        for (int t = 0; t < NA; t++) {
            const uint8_t *ab = a + t * as + i * QI_Q8K_BYTES;
            const __m256i m = _mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)(ab + QI_Q8K_BSUMS)));
            if (pair_bits) {
                const __m128i m4 = _mm_add_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
                const __m128i is4 = _mm_add_epi32(_mm256_castsi256_si128(isum[t]), _mm256_extracti128_si256(isum[t], 1));
                const __m128 v = _mm_fmsub_ps(_mm256_castps256_ps128(dw), _mm_cvtepi32_ps(is4),
                                              _mm_mul_ps(_mm256_castps256_ps128(dmw), _mm_cvtepi32_ps(m4)));
                acc4[t] = _mm_fmadd_ps(_mm_broadcast_ss((const float *)ab), v, acc4[t]);
            } else {
                const __m256 v = _mm256_fmsub_ps(dw, _mm256_cvtepi32_ps(isum[t]),
                                                 _mm256_mul_ps(dmw, _mm256_cvtepi32_ps(m)));
                acc[t] = _mm256_fmadd_ps(_mm256_broadcast_ss((const float *)ab), v, acc[t]);
            }
        }
    }
    for (int t = 0; t < NA; t++)
        s[t] = hsum4(pair_bits ? acc4[t] : _mm_add_ps(_mm256_castps256_ps128(acc[t]), _mm256_extractf128_ps(acc[t], 1)));
}

QI_TARGET_AVX2 static inline __attribute__((always_inline)) void kq_pair_na(int ty, int64_t nb, const uint8_t *w0,
                                                                            const uint8_t *w1, const uint8_t *a,
                                                                            size_t as, int na, float *s0, float *s1) {
    switch (na) {
    case 1: kq_pair(ty, 1, nb, w0, w1, a, as, s0, s1); break;
    case 2: kq_pair(ty, 2, nb, w0, w1, a, as, s0, s1); break;
    case 3: kq_pair(ty, 3, nb, w0, w1, a, as, s0, s1); break;
    default: kq_pair(ty, 4, nb, w0, w1, a, as, s0, s1); break;
    }
}

/* qi_dot_rows_fn: weight rows in pairs, an odd last row paired with itself
 * (same bits as in any other pair, see the file comment); one activation
 * row: row by row (kq_row, the same bits again). */
QI_TARGET_AVX2 static inline __attribute__((always_inline)) void kq_rows(int ty, int64_t nb, const uint8_t *w, size_t ws,
                                                                         int nw, const uint8_t *a, size_t as, int na,
                                                                         float *s) {
    if (na == 1) {
        for (int r = 0; r < nw; r++) kq_row(ty, 1, nb, w + (size_t)r * ws, a, as, s + r * QI_TILE);
        return;
    }
    float unused[QI_TILE];
    for (int r = 0; r < nw; r += 2) {
        const uint8_t *w0 = w + (size_t)r * ws;
        if (r + 1 < nw) kq_pair_na(ty, nb, w0, w0 + ws, a, as, na, s + r * QI_TILE, s + (r + 1) * QI_TILE);
        else kq_pair_na(ty, nb, w0, w0, a, as, na, s + r * QI_TILE, unused);
    }
}

#define KQ_PAIR_AVX2(name, ty)                                                                             \
    QI_TARGET_AVX2 void name##_rows_avx2(int64_t nb, const uint8_t *w, size_t ws, int nw, const uint8_t *a, \
                                         size_t as, int na, float *s) {                                     \
        kq_rows(ty, nb, w, ws, nw, a, as, na, s);                                                           \
    }                                                                                                      \
    QI_TARGET_AVX2 void name##_avx2(int64_t nb, const uint8_t *w, const uint8_t *a, size_t as, int na,      \
                                    float *s) {                                                            \
        float unused[QI_TILE];                                                                             \
        kq_pair_na(ty, nb, w, w, a, as, na, s, unused);                                                    \
    }
KQ_PAIR_AVX2(qi_dot_q4_k, 12)
QI_TARGET_AVX2 void qi_dot_q5_k_avx2(int64_t nb, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    switch (na) {
    case 1: kq_row(13, 1, nb, w, a, as, s); break;
    case 2: kq_row(13, 2, nb, w, a, as, s); break;
    case 3: kq_row(13, 3, nb, w, a, as, s); break;
    default: kq_row(13, 4, nb, w, a, as, s); break;
    }
}

#endif
