/* Dot kernels of the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) against
 * QI_ACT_Q8K activations: the shared super-block decoding and the scalar path
 * (AVX2 in dot_kquant_avx2.c, NEON in dot_kquant_neon.c).
 *
 * Every 256-weight super-block is described by codes u[e] in 0..63, a scale
 * sc[j] and an offset mn[j] per 16-weight group j, and two floats such that
 *     weight[e] = dw*sc[j]*u[e] - dmw*mn[j],   j = e/16.
 *   Q2_K: u = 2-bit code, sc = scale nibble, mn = min nibble, dmw = dmin.
 *   Q3_K: u = 3-bit code (low 2 bits | hmask bit << 2), sc = 6-bit scale - 32,
 *         mn = 4*sc, dmw = d (weight = d*sc*(u-4)).
 *   Q4_K/Q5_K: u = 4/5-bit code, sc/mn = the 6-bit scale/min of the 32-group
 *         (repeated for both 16-halves), dmw = dmin.
 *   Q6_K: u = 6-bit code, sc = int8 scale, mn = 32*sc, dmw = d.
 * With activations (da, q, bsums) the super-block's dot product is
 *     da * (dw * sum_j sc[j]*sum16(u*q) - dmw * sum_j mn[j]*bsums[j]),
 * all sums in int32 (max |sc*sum16| = 127*63*127*16 < 2^24 per group). */
#include "dot_kernels.h"

void qi_kq_scales(int ty, const uint8_t *b, int16_t *sc, int16_t *mn) {
    switch (ty) {
    case 10:
        for (int j = 0; j < 16; j++) { sc[j] = b[j] & 15; mn[j] = b[j] >> 4; }
        break;
    case 11: {
        const uint8_t *s = b + 96;
        for (int j = 0; j < 16; j++) {
            const int low = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
            const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
            sc[j] = (int16_t)((low | (high << 4)) - 32);
            mn[j] = (int16_t)(4 * sc[j]);
        }
        break;
    }
    case 12: case 13: {
        /* scale_min_k4 for all 8 groups at once on 32-bit words */
        uint32_t q0, q1, q2;
        memcpy(&q0, b + 4, 4);
        memcpy(&q1, b + 8, 4);
        memcpy(&q2, b + 12, 4);
        const uint32_t words[4] = {q0 & 0x3f3f3f3fu, (q2 & 0x0f0f0f0fu) | ((q0 >> 2) & 0x30303030u),
                                   q1 & 0x3f3f3f3fu, ((q2 >> 4) & 0x0f0f0f0fu) | ((q1 >> 2) & 0x30303030u)};
        uint8_t v[16];   /* scales of groups 0..7, then mins */
        memcpy(v, words, 16);
        for (int g = 0; g < 8; g++) {
            sc[2 * g] = sc[2 * g + 1] = v[g];
            mn[2 * g] = mn[2 * g + 1] = v[8 + g];
        }
        break;
    }
    default:
        for (int j = 0; j < 16; j++) { sc[j] = (int8_t)b[192 + j]; mn[j] = (int16_t)(32 * sc[j]); }
        break;
    }
}

/* Codes u[0..255] in element order. */
void qi_kq_codes_scalar(int ty, const uint8_t *b, uint8_t *u) {
    for (int e = 0; e < 256; e++) {
        int c;
        switch (ty) {
        case 10: case 11: {
            /* 2-bit field: half e/128, byte e%32 of it, shift 2*((e%128)/32) */
            const uint8_t *qs = b + (ty == 10 ? 16 : 32);
            c = (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            if (ty == 11) c |= ((b[e % 32] >> (e / 32)) & 1) << 2;
            break;
        }
        case 12: case 13: {
            const uint8_t *qs = b + (ty == 12 ? 16 : 48);
            c = (qs[32 * (e / 64) + e % 32] >> (4 * ((e % 64) / 32))) & 15;
            if (ty == 13) c |= ((b[16 + e % 32] >> (e / 32)) & 1) << 4;
            break;
        }
        default: {
            const int h = e / 128, k = (e % 128) / 32, l = e % 32;
            c = ((b[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15) |
                (((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4);
            break;
        }
        }
        u[e] = (uint8_t)c;
    }
}

static void kq_scalar(int ty, int64_t nb, const uint8_t *w, const uint8_t *a, size_t as, int na, float *s) {
    float acc[QI_TILE] = {0};
    uint8_t u[256];
    int16_t sc[16], mn[16];
    const int bb = qi_kq_block_bytes(ty);
    int d_at, dm_at;
    qi_kq_scale_offsets(ty, &d_at, &dm_at);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = w + i * bb;
        qi_kq_scales(ty, b, sc, mn);
        qi_kq_codes_scalar(ty, b, u);
        const float dw = qi_load_f16(b + d_at), dmw = qi_load_f16(b + dm_at);
        for (int t = 0; t < na; t++) {
            const uint8_t *ab = a + t * as + i * QI_Q8K_BYTES;
            const int8_t *q = (const int8_t *)(ab + QI_Q8K_QS);
            int32_t isum = 0, msum = 0;
            for (int j = 0; j < 16; j++) {
                int32_t g = 0;
                for (int l = 0; l < 16; l++) g += u[16 * j + l] * q[16 * j + l];
                isum += sc[j] * g;
                msum += mn[j] * qi_load_i16(ab + QI_Q8K_BSUMS + 2 * j);
            }
            acc[t] += qi_load_f32(ab) * (dw * (float)isum - dmw * (float)msum);
        }
    }
    for (int t = 0; t < na; t++) s[t] = acc[t];
}

#define KQ_SCALAR(name, ty)                                                                   \
    void name##_scalar(int64_t nb, const uint8_t *w, const uint8_t *a, size_t as, int na,     \
                       float *s) {                                                            \
        kq_scalar(ty, nb, w, a, as, na, s);                                                   \
    }
KQ_SCALAR(qi_dot_q2_k, 10)
KQ_SCALAR(qi_dot_q3_k, 11)
KQ_SCALAR(qi_dot_q4_k, 12)
KQ_SCALAR(qi_dot_q5_k, 13)
KQ_SCALAR(qi_dot_q6_k, 14)
