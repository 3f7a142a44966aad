/* kt_quant: the quantised panel layout (a matrix of a GGUF block type, runtime/quant.h, as the kernels
 * read it) and its dequantisers, which give exactly quant_dequant_row's values (ggml's).
 *
 * Kernels read Q4_0, Q8_0, Q4_K, Q5_K and Q6_K matrices in their block format, regrouped by the pack
 * pass (compiler/passes/pack.c writes it through kt_q_* below): rows in blocks of 32 (R padded with
 * zero rows, which dequantise to 0) as in the panel layout of kt_common.h; a 32-row block is, for each
 * source block kb of BK = 32 (Q4_0, Q8_0) or 256 (K types) columns, two sub-panels (rows 0-15, then
 * 16-31), each QB bytes: the 16 rows' fields of that source block side by side, lane = row % 16:
 *   header (per sub-panel and source block)
 *     Q4_0, Q8_0  d f16[16]
 *     Q4_K, Q5_K  d f16[16], dmin f16[16], sc u8[8][16], m u8[8][16]   (the 6-bit scales and mins
 *                 of the 8 sub-blocks of 32, unpacked: x = (d sc) q - dmin m)
 *     Q6_K        d f16[16], scales i8[16][16]                        (x = (d scales[g]) (q - 32))
 *   then per group of 32 columns (one sub-block; Q4_0/Q8_0: the source block itself)
 *     Q8_0        qs i8[32][16]: column c of the 16 rows at 16 c
 *     Q4_0, Q4_K  nib u8[16][16]: byte j = level of column j (low nibble) | of column j + 16 (high)
 *     Q5_K        hb u32[16] (bit c: bit 4 of column c's level), then nib as above
 *     Q6_K        h4 u32[16], h5 u32[16] (bits 4 and 5 of column c's level at bit c), then nib
 * so columns j and j + 16 of 16 rows are one 16-byte load, a mask and a shift, and int->float
 * conversions, a group of 32 columns is one contiguous run and a block one forward stream. Bytes per
 * weight: Q4_0, Q8_0, Q6_K as the source; Q4_K and Q5_K 4 bytes more per 256 (the scales unpacked).
 * Headers per source block, groups per 32 columns: a thread's slice of 32 columns starts anywhere. */
#ifndef MOEC_KT_QUANT_H
#define MOEC_KT_QUANT_H
#include <stdint.h>
#include <string.h>

#include "kt_common.h"

/* wdt values of the block types with kernels (runtime/dtype.h). */
enum { KT_Q4_0 = 5, KT_Q8_0 = 9, KT_Q4_K = 10, KT_Q5_K = 11, KT_Q6_K = 12 };

static inline int kt_is_q(int32_t wdt) { return wdt == KT_Q4_0 || (wdt >= KT_Q8_0 && wdt <= KT_Q6_K); }
/* Columns of a source block. */
static inline int64_t kt_q_bk(int32_t wdt) { return wdt >= KT_Q4_K ? 256 : 32; }
/* Bytes of a sub-panel's header, of one group of 32 columns, of a whole sub-panel (16 rows x BK). */
static inline int64_t kt_q_hdr(int32_t wdt) {
    return wdt == KT_Q4_K || wdt == KT_Q5_K ? 320 : wdt == KT_Q6_K ? 288 : 32;
}
static inline int64_t kt_q_grp(int32_t wdt) {
    return wdt == KT_Q8_0 ? 512 : wdt == KT_Q5_K ? 320 : wdt == KT_Q6_K ? 384 : 256;
}
static inline int64_t kt_q_sub(int32_t wdt) { return kt_q_hdr(wdt) + kt_q_bk(wdt) / 32 * kt_q_grp(wdt); }
/* Bytes of one 32-row block over K columns, and of a matrix of R rows. */
static inline int64_t kt_q_block_bytes(int64_t K, int32_t wdt) { return K / kt_q_bk(wdt) * 2 * kt_q_sub(wdt); }
static inline int64_t kt_q_panel_bytes(int64_t R, int64_t K, int32_t wdt) {
    return (R + 31) / 32 * kt_q_block_bytes(K, wdt);
}
/* Byte offset in a matrix of the sub-panel holding row r (its lane r % 16) and source block kb. */
static inline int64_t kt_q_sub_offset(int64_t r, int64_t kb, int64_t K, int32_t wdt) {
    return r / 32 * kt_q_block_bytes(K, wdt) + (kb * 2 + r / 16 % 2) * kt_q_sub(wdt);
}

typedef uint8_t kt_vb __attribute__((vector_size(16)));   // 16 x u8
typedef int8_t kt_vsb __attribute__((vector_size(16)));   // 16 x i8
typedef _Float16 kt_vh __attribute__((vector_size(32)));  // 16 x f16
typedef int32_t kt_vi __attribute__((vector_size(64)));    // 16 x i32

static inline kt_vf kt_f16v(const uint8_t *p) {
    kt_vh h;
    memcpy(&h, p, sizeof h);
    return __builtin_convertvector(h, kt_vf);
}
static inline kt_vf kt_u8v(const uint8_t *p) {
    kt_vb b;
    memcpy(&b, p, sizeof b);
    return __builtin_convertvector(b, kt_vf);
}
static inline kt_vf kt_i8v(const uint8_t *p) {
    kt_vsb b;
    memcpy(&b, p, sizeof b);
    return __builtin_convertvector(b, kt_vf);
}
static inline kt_vu kt_u32v(const uint8_t *p) {
    kt_vu u;
    memcpy(&u, p, sizeof u);
    return u;
}

/* One group of 32 columns of one sub-panel, ready to dequantise column by column: x = lev * s - m
 * (s for columns 0-15, s2 for 16-31: they differ for Q6_K only). */
typedef struct KtQg {
    const uint8_t *q; // the group's level bytes (nib or qs)
    kt_vf s, s2, m;
    kt_vu h4, h5;     // Q5_K: h4; Q6_K: h4, h5
} KtQg;

/* sub: the sub-panel's first byte; g: the group within its source block. */
static inline KtQg kt_qg(const uint8_t *restrict sub, int64_t g, int32_t wdt) {
    KtQg q;
    const uint8_t *grp = sub + kt_q_hdr(wdt) + g * kt_q_grp(wdt);
    kt_vf d = kt_f16v(sub);
    q.s = q.s2 = d, q.m = (kt_vf){0}, q.h4 = q.h5 = (kt_vu){0}, q.q = grp;
    if (wdt == KT_Q4_K || wdt == KT_Q5_K) {
        q.s = q.s2 = d * kt_u8v(sub + 64 + 16 * g);
        q.m = kt_f16v(sub + 32) * kt_u8v(sub + 192 + 16 * g);
        if (wdt == KT_Q5_K) q.h4 = kt_u32v(grp), q.q = grp + 64;
    } else if (wdt == KT_Q6_K) {
        q.s = d * kt_i8v(sub + 32 + 32 * g);
        q.s2 = d * kt_i8v(sub + 48 + 32 * g);
        q.h4 = kt_u32v(grp), q.h5 = kt_u32v(grp + 64), q.q = grp + 128;
    }
    return q;
}

/* Full unrolling of the 16-step column loops, so every shift count and byte offset is a constant. */
#ifdef __clang__
#define KT_UNROLL16 _Pragma("clang loop unroll(full)")
#else
#define KT_UNROLL16 _Pragma("GCC unroll 16")
#endif

/* The integer levels of columns j and j + 16 (j < 16) of the group's 16 rows as f32, the type's offset
 * applied (Q4_0 -8, Q6_K -32): x = lev * s - m exactly. */
static inline void kt_qg_lev(const KtQg *q, int j, kt_vf *lo, kt_vf *hi, int32_t wdt) {
    if (wdt == KT_Q8_0) {
        *lo = kt_i8v(q->q + 16 * j), *hi = kt_i8v(q->q + 16 * (j + 16));
        return;
    }
    kt_vb b;
    memcpy(&b, q->q + 16 * j, sizeof b);
    kt_vb bl = b & 15, bh = b >> 4;
    if (wdt == KT_Q4_0) { /* nib - 8 in bytes, then sign-extended */
        *lo = __builtin_convertvector((kt_vsb)(bl - 8), kt_vf), *hi = __builtin_convertvector((kt_vsb)(bh - 8), kt_vf);
        return;
    }
    if (wdt == KT_Q4_K) {
        *lo = __builtin_convertvector(bl, kt_vf), *hi = __builtin_convertvector(bh, kt_vf);
        return;
    }
    kt_vu ll = __builtin_convertvector(bl, kt_vu) | (q->h4 >> j & 1) << 4;
    kt_vu lh = __builtin_convertvector(bh, kt_vu) | (q->h4 >> (j + 16) & 1) << 4;
    if (wdt == KT_Q6_K) {
        ll |= (q->h5 >> j & 1) << 5, lh |= (q->h5 >> (j + 16) & 1) << 5;
        *lo = __builtin_convertvector((kt_vi)ll - 32, kt_vf), *hi = __builtin_convertvector((kt_vi)lh - 32, kt_vf);
        return;
    }
    *lo = __builtin_convertvector(ll, kt_vf), *hi = __builtin_convertvector(lh, kt_vf); /* Q5_K */
}

/* Columns j and j + 16 of the group's 16 rows, dequantised: bit-identical to ggml (every product of a
 * scale and a level is exact in f32; the K types' min is then subtracted once, as ggml does). */
static inline void kt_qg_cols(const KtQg *q, int j, kt_vf *lo, kt_vf *hi, int32_t wdt) {
    kt_qg_lev(q, j, lo, hi, wdt);
    *lo = *lo * q->s - q->m, *hi = *hi * q->s2 - q->m;
}

/* Group gi (32 columns from column 32 gi) of sub-panel s of the 32-row block at byte blk. */
static inline KtQg kt_qg_at(const uint8_t *restrict w, int64_t blk, int s, int64_t gi, int32_t wdt) {
    const int64_t gpb = kt_q_bk(wdt) / 32;
    return kt_qg(w + blk + (gi / gpb * 2 + s) * kt_q_sub(wdt), gi % gpb, wdt);
}

/* Sum of the 16 lanes of v. */
static inline float kt_hsum(kt_vf v) {
    typedef float v8 __attribute__((vector_size(32)));
    typedef float v4 __attribute__((vector_size(16)));
    v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
           __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/* The decode tile (kt_panel_tile's contract on the quantised layout): acc[s][t] = sum over the groups
 * [g0, g0 + ng) of the 32-row block at byte blk of W[rows of sub-panel s][cols] . xs[t][cols - 32 g0].
 * tb <= 2 (decode proper): per group, sums of level x activation in two chains per sub-panel and
 * token (columns 0-15 and 16-31), then scaled once: acc += s lo + s2 hi - m sum(x) (the group's scale
 * and min hoisted out of the column loop). tb > 2: each column is dequantised exactly in registers
 * once per tile and FMA'd into the tb accumulators. */
static inline void kt_qpanel_tile(kt_vf acc[2][KT_TB], int tb, const uint8_t *restrict w, int64_t blk,
                                  const float *const xs[KT_TB], int64_t g0, int64_t ng, int32_t wdt) {
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < tb; t++) acc[s][t] = (kt_vf){0};
    for (int64_t gi = g0; gi < g0 + ng; gi++) {
        KtQg q[2] = {kt_qg_at(w, blk, 0, gi, wdt), kt_qg_at(w, blk, 1, gi, wdt)};
        for (int s = 0; s < 2; s++)
            for (int64_t line = 0; line < kt_q_grp(wdt); line += 64)
                __builtin_prefetch((const char *)q[s].q + KT_PF_BYTES + line);
        const int64_t xo = (gi - g0) * 32;
        if (tb <= 2) {
            kt_vf lo[2][2], hi[2][2]; // [s][t]
            for (int s = 0; s < 2; s++)
                for (int t = 0; t < tb; t++) lo[s][t] = hi[s][t] = (kt_vf){0};
            KT_UNROLL16
            for (int j = 0; j < 16; j++) {
                kt_vf l[2], h[2];
                kt_qg_lev(&q[0], j, &l[0], &h[0], wdt);
                kt_qg_lev(&q[1], j, &l[1], &h[1], wdt);
                for (int t = 0; t < tb; t++) {
                    float xl = xs[t][xo + j], xh = xs[t][xo + j + 16];
                    for (int s = 0; s < 2; s++) lo[s][t] += l[s] * xl, hi[s][t] += h[s] * xh;
                }
            }
            for (int t = 0; t < tb; t++) {
                float sx = 0.0f; /* the min's factor: sum of the group's activations */
                if (wdt == KT_Q4_K || wdt == KT_Q5_K) sx = kt_hsum(kt_ldv(xs[t] + xo) + kt_ldv(xs[t] + xo + 16));
                for (int s = 0; s < 2; s++) acc[s][t] += lo[s][t] * q[s].s + hi[s][t] * q[s].s2 - q[s].m * sx;
            }
        } else {
            KT_UNROLL16
            for (int j = 0; j < 16; j++) {
                kt_vf l[2], h[2];
                kt_qg_cols(&q[0], j, &l[0], &h[0], wdt);
                kt_qg_cols(&q[1], j, &l[1], &h[1], wdt);
                for (int t = 0; t < tb; t++) {
                    float xl = xs[t][xo + j], xh = xs[t][xo + j + 16];
                    for (int s = 0; s < 2; s++) acc[s][t] += l[s] * xl + h[s] * xh;
                }
            }
        }
    }
}

/* The prefill tile's weights: groups [g0, g0 + ng) of the 32-row block at byte blk dequantised into
 * scr in the f32 panel layout of one block (kt_common.h) of 16 ng pairs, so kt_panel_tile(wdt 0) reads
 * them for every token tile of a chunk. scr: [16 ng][2][2][16] floats (kernels.h: kt_dq_scratch). */
static inline void kt_qpanel_dequant(float *restrict scr, const uint8_t *restrict w, int64_t blk, int64_t g0,
                                     int64_t ng, int32_t wdt) {
    for (int64_t gi = g0; gi < g0 + ng; gi++)
        for (int s = 0; s < 2; s++) {
            KtQg q = kt_qg_at(w, blk, s, gi, wdt);
            float *o = scr + (gi - g0) * 16 * 64 + s * 32; // pair 0 of the group, sub-panel s
            KT_UNROLL16
            for (int j = 0; j < 16; j++) { /* column c at pair c / 2, half c % 2 */
                kt_vf lo, hi;
                kt_qg_cols(&q, j, &lo, &hi, wdt);
                kt_stv(o + j / 2 * 64 + j % 2 * 16, lo);
                kt_stv(o + (j + 16) / 2 * 64 + j % 2 * 16, hi);
            }
        }
}

#endif
