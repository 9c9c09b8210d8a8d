/* AVX2 dot kernels of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (dot_legacy.h): register
 * tiles of 4 weight rows x up to QI_TILE tokens.
 *
 * Why 4 rows: per (row, token, block) the one-row kernel did maddubs, madd,
 * int->float conversion, a scalar scale product, a broadcast and an FMA, plus
 * a scalar multiply-add for the offset: ~8 vector operations for 32
 * multiply-adds. Here the int16 products of 4 rows are folded by one
 * horizontal add into one vector whose lanes belong to the rows, so that the
 * madd, the conversion and the scale FMAs happen once per 4 rows against a
 * vector of per-row scales (the approach of ggml's repacked 8-row Q4_0 layout,
 * but on the weights as they lie in the file: the interleaving is done in
 * registers, two rows per vector, by loading 16-byte halves).
 *
 * Lanes: the 16 code bytes of a nibble block (Q8_0: of a half block) of rows
 * r and r+1 share a vector [r | r+1]; with the activations' 16 matching bytes
 * in both halves, maddubs gives the pairwise products of both rows. After
 * hadd(rows 0,1 ; rows 2,3) and madd, the 8 int32 lanes hold
 *     [r0 r0 r2 r2 | r1 r1 r3 r3],
 * two partial sums per row (each over a fixed half of the block's elements).
 * Each lane accumulates dw*da*float(partial) and the odd lane of each row
 * also cw*sa; the row's result is lane0 + lane1 at the end.
 *
 * Every output goes through exactly these operations in its own lanes whatever
 * the tile (missing rows of a tail tile repeat row 0 and are discarded; each
 * token has its own accumulator), so results do not depend on how rows and
 * tokens are grouped: not on the thread count, nor on the batch (a token
 * alone gives the bits it gets in a prompt). The one-row kernel (dot[1]) is
 * this tile with one row, hence equal to rows[1] bit for bit.
 *
 * int16 range: |q| <= 127 (dot_kernels.h); nibble types u <= 31, so a maddubs
 * pair is <= 2*31*127 = 7874, the sum of the two halves <= 15748 and the hadd
 * <= 31496 < 32767: exact. Q8_0 (|u| <= 128 after the sign trick: a pair may
 * reach 32512) takes the int32 route: madd per half, then an int32 hadd.
 *
 * Tried: vectors of 8 bytes of each of the 4 rows (a 64-bit transpose of the
 * codes, activations broadcast per 8 bytes), whose int16 products need no
 * horizontal add; as fast for Q4_0, 5-10% slower for Q8_0/Q5_* (4 more
 * broadcast loads per token and block), so not kept. */
#include "dot_legacy.h"

#if defined(QI_X86)

#define LEGACY_ROWS QI_LEGACY_ROWS
#define INLINE QI_TARGET_AVX2 static inline __attribute__((always_inline))

/* 16 bytes of row r and of row r+1 as [p0[0..15] | p1[0..15]]. */
INLINE __m256i load_pair(const uint8_t *p0, const uint8_t *p1) {
    return _mm256_loadu2_m128i((const __m128i *)p1, (const __m128i *)p0);
}

/* The 32 high bits of two Q5 blocks as code bits 4: lo covers elements 0..15
 * of [row0 | row1], hi elements 16..31. */
INLINE void high_bits_pair(const uint8_t *h0, const uint8_t *h1, __m256i *lo, __m256i *hi) {
    uint32_t v0, v1;
    memcpy(&v0, h0, 4);
    memcpy(&v1, h1, 4);
    const __m256i v = _mm256_set_m128i(_mm_set1_epi32((int)v1), _mm_set1_epi32((int)v0));
    /* byte j of a half <- byte j/8 of the half's 16 bits, then test bit j%8 */
    const __m256i pick_lo = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                             0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m256i pick_hi = _mm256_add_epi8(pick_lo, _mm256_set1_epi8(2));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i sixteen = _mm256_set1_epi8(16);
    const __m256i sl = _mm256_and_si256(_mm256_shuffle_epi8(v, pick_lo), bit);
    const __m256i sh = _mm256_and_si256(_mm256_shuffle_epi8(v, pick_hi), bit);
    *lo = _mm256_and_si256(_mm256_cmpeq_epi8(sl, bit), sixteen);
    *hi = _mm256_and_si256(_mm256_cmpeq_epi8(sh, bit), sixteen);
}

/* Codes of block i of rows p and p+1: elements 0..15 (lo) and 16..31 (hi)
 * as [row p | row p+1]. Nibble types: unsigned; Q8_0: signed. */
INLINE void decode_pair(int ty, const uint8_t *b0, const uint8_t *b1, __m256i *lo, __m256i *hi) {
    if (ty == L_Q8_0) {
        *lo = load_pair(b0 + 2, b1 + 2);
        *hi = load_pair(b0 + 18, b1 + 18);
        return;
    }
    const int qs = legacy_qs_offset(ty);
    const __m256i q = load_pair(b0 + qs, b1 + qs), m = _mm256_set1_epi8(15);
    *lo = _mm256_and_si256(q, m);
    *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m);
    if (legacy_has_high_bit(ty)) {
        __m256i hl, hh;
        high_bits_pair(b0 + legacy_qh_offset(ty), b1 + legacy_qh_offset(ty), &hl, &hh);
        *lo = _mm256_or_si256(*lo, hl);
        *hi = _mm256_or_si256(*hi, hh);
    }
}

/* Per-row scale dw and offset cw of block i of rows b[0..3] in the lane
 * order [r0 r0 r2 r2 | r1 r1 r3 r3], cw in the odd lane of each row only. */
INLINE void block_scales4(int ty, const uint8_t *const b[4], __m256 *dw, __m256 *cw) {
    if (legacy_has_min(ty)) {
        uint32_t dm[4];   /* f16 d, f16 m */
        for (int r = 0; r < 4; r++) memcpy(&dm[r], b[r], 4);
        const __m128i h = _mm_set_epi64x((long long)((uint64_t)dm[3] << 32 | dm[1]),
                                         (long long)((uint64_t)dm[2] << 32 | dm[0]));
        const __m256 f = _mm256_cvtph_ps(h);   /* d0 m0 d2 m2 | d1 m1 d3 m3 */
        *dw = _mm256_moveldup_ps(f);
        *cw = _mm256_blend_ps(_mm256_setzero_ps(), f, 0xAA);
        return;
    }
    const uint64_t g = (uint64_t)qi_load_u16(b[0]) | (uint64_t)qi_load_u16(b[2]) << 16 |
                       (uint64_t)qi_load_u16(b[1]) << 32 | (uint64_t)qi_load_u16(b[3]) << 48;
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi64_si128((long long)g));   /* d0 d2 d1 d3 */
    *dw = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(f), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
    const float c = legacy_offset_factor(ty);
    *cw = _mm256_mul_ps(*dw, _mm256_setr_ps(0.f, c, 0.f, c, 0.f, c, 0.f, c));
}

/* int32 lanes [r0 r0 r2 r2 | r1 r1 r3 r3] of sum(u*q) for one activation block
 * q (at ab + 8) and the decoded codes of rows 0,1 (a*) and 2,3 (b*). For
 * Q8_0 alo..bhi are the signed codes and ualo..ubhi their absolute values. */
INLINE __m256i idot4(int ty, const uint8_t *ab, __m256i alo, __m256i ahi, __m256i blo, __m256i bhi,
                     __m256i ualo, __m256i uahi, __m256i ublo, __m256i ubhi) {
    const __m256i qlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(ab + 8)));
    const __m256i qhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(ab + 24)));
    const __m256i ones = _mm256_set1_epi16(1);
    if (ty == L_Q8_0) {
        const __m256i pa = _mm256_add_epi32(
            _mm256_madd_epi16(_mm256_maddubs_epi16(ualo, _mm256_sign_epi8(qlo, alo)), ones),
            _mm256_madd_epi16(_mm256_maddubs_epi16(uahi, _mm256_sign_epi8(qhi, ahi)), ones));
        const __m256i pb = _mm256_add_epi32(
            _mm256_madd_epi16(_mm256_maddubs_epi16(ublo, _mm256_sign_epi8(qlo, blo)), ones),
            _mm256_madd_epi16(_mm256_maddubs_epi16(ubhi, _mm256_sign_epi8(qhi, bhi)), ones));
        return _mm256_hadd_epi32(pa, pb);
    }
    const __m256i pa = _mm256_add_epi16(_mm256_maddubs_epi16(alo, qlo), _mm256_maddubs_epi16(ahi, qhi));
    const __m256i pb = _mm256_add_epi16(_mm256_maddubs_epi16(blo, qlo), _mm256_maddubs_epi16(bhi, qhi));
    return _mm256_madd_epi16(_mm256_hadd_epi16(pa, pb), ones);
}

/* Accumulators of rows w[0..3] (pointers; repeated rows are computed and
 * discarded by the caller) and tokens t < NA (a constant); next: where the
 * following tile's rows start (prefetched with one token). */
INLINE void legacy_tile(int ty, int NA, int64_t nb, const uint8_t *const w[4], const uint8_t *a,
                        size_t as, const uint8_t *next, __m256 *out) {
    const int bb = legacy_block_bytes(ty);
    /* local accumulators: through out[] GCC kept them in memory (one store
     * per block and token on the FMA chain) */
    __m256 acc[QI_TILE];
    for (int t = 0; t < NA; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b[4] = {w[0] + i * bb, w[1] + i * bb, w[2] + i * bb, w[3] + i * bb};
        /* One token (generation, streaming from DRAM): 4 rows read side by
         * side are 4 interleaved streams, which the hardware prefetcher
         * served worse than the one sequential stream of the one-row kernel
         * (Q4_0 matvec of a 75 MB matrix 10% slower). Prefetching the next
         * tile's 4 rows, which lie one after the other, as one sequential
         * stream at the pace of this tile made it 25-35% faster than before
         * the tiles (benches/README.md). Out-of-range prefetches are harmless. */
        if (NA == 1)
            for (int off = 0; off < 4 * bb; off += 64)
                _mm_prefetch((const char *)next + i * 4 * bb + off, _MM_HINT_T0);
        __m256i alo, ahi, blo, bhi;
        decode_pair(ty, b[0], b[1], &alo, &ahi);
        decode_pair(ty, b[2], b[3], &blo, &bhi);
        __m256i ualo = alo, uahi = ahi, ublo = blo, ubhi = bhi;
        if (ty == L_Q8_0) {
            ualo = _mm256_sign_epi8(alo, alo);
            uahi = _mm256_sign_epi8(ahi, ahi);
            ublo = _mm256_sign_epi8(blo, blo);
            ubhi = _mm256_sign_epi8(bhi, bhi);
        }
        __m256 dw, cw;
        block_scales4(ty, b, &dw, &cw);
        const uint8_t *ai = a + i * QI_Q8_BYTES;
#pragma GCC unroll 4
        for (int t = 0; t < NA; t++) {
            const uint8_t *ab = ai + t * as;
            const __m256i isum = idot4(ty, ab, alo, ahi, blo, bhi, ualo, uahi, ublo, ubhi);
            const __m256 scale = _mm256_mul_ps(dw, _mm256_broadcast_ss((const float *)ab));
            acc[t] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum), acc[t]);
            if (ty != L_Q8_0) acc[t] = _mm256_fmadd_ps(cw, _mm256_broadcast_ss((const float *)(ab + 4)), acc[t]);
        }
    }
    for (int t = 0; t < NA; t++) out[t] = acc[t];
}

/* Tiles of 4 rows over nw rows and na tokens; s[r * QI_TILE + t]. */
INLINE void legacy_rows(int ty, int64_t nb, const uint8_t *w, size_t ws, int nw, const uint8_t *a,
                        size_t as, int na, float *s) {
    for (int r0 = 0; r0 < nw; r0 += LEGACY_ROWS) {
        const int k = nw - r0 < LEGACY_ROWS ? nw - r0 : LEGACY_ROWS;
        const uint8_t *rows[4];
        for (int r = 0; r < 4; r++) rows[r] = w + (size_t)(r0 + (r < k ? r : 0)) * ws;
        __m256 acc[QI_TILE];
        const uint8_t *next = w + (size_t)(r0 + 4) * ws;
        switch (na) {
        case 1: legacy_tile(ty, 1, nb, rows, a, as, next, acc); break;
        case 2: legacy_tile(ty, 2, nb, rows, a, as, next, acc); break;
        case 3: legacy_tile(ty, 3, nb, rows, a, as, next, acc); break;
        default: legacy_tile(ty, 4, nb, rows, a, as, next, acc); break;
        }
        /* lane pairs (0,1) (2,3) (4,5) (6,7) are rows 0, 2, 1, 3 */
        static const int lane_of_row[4] = {0, 4, 1, 5};
        for (int t = 0; t < na; t++) {
            float h[8];
            _mm256_storeu_ps(h, _mm256_hadd_ps(acc[t], acc[t]));
            for (int r = 0; r < k; r++) s[(r0 + r) * QI_TILE + t] = h[lane_of_row[r]];
        }
    }
}

#define LEGACY_AVX2(name, ty)                                                                          \
    QI_TARGET_AVX2 void name##_rows_avx2(int64_t nb, const uint8_t *w, size_t ws, int nw, const uint8_t *a, \
                                         size_t as, int na, float *s) {                                \
        legacy_rows(ty, nb, w, ws, nw, a, as, na, s);                                                  \
    }                                                                                                  \
    QI_TARGET_AVX2 void name##_avx2(int64_t nb, const uint8_t *w, const uint8_t *a, size_t as, int na,   \
                                    float *s) {                                                        \
        float tile[QI_TILE];                                                                           \
        legacy_rows(ty, nb, w, 0, 1, a, as, na, tile);                                                 \
        for (int t = 0; t < na; t++) s[t] = tile[t];                                                   \
    }
LEGACY_AVX2(qi_dot_q4_0, L_Q4_0)
LEGACY_AVX2(qi_dot_q4_1, L_Q4_1)
LEGACY_AVX2(qi_dot_q5_0, L_Q5_0)
LEGACY_AVX2(qi_dot_q5_1, L_Q5_1)
LEGACY_AVX2(qi_dot_q8_0, L_Q8_0)

#endif
