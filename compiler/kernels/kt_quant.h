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
 * so a column of 16 rows is one 16-byte load (or half of one) plus shifts and one int->float
 * conversion, a group of 32 columns is one contiguous run and a block one forward stream. Bytes per
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
 * (Q6_K: s for columns 0-15, s2 for 16-31). */
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
        q.s = d * kt_u8v(sub + 64 + 16 * g);
        q.m = kt_f16v(sub + 32) * kt_u8v(sub + 192 + 16 * g);
        if (wdt == KT_Q5_K) q.h4 = kt_u32v(grp), q.q = grp + 64;
    } else if (wdt == KT_Q6_K) {
        q.s = d * kt_i8v(sub + 32 + 32 * g);
        q.s2 = d * kt_i8v(sub + 48 + 32 * g);
        q.h4 = kt_u32v(grp), q.h5 = kt_u32v(grp + 64), q.q = grp + 128;
    }
    return q;
}

/* Column c (< 32) of the group's 16 rows, dequantised: bit-identical to ggml (every product of a scale
 * and a level is exact in f32; the K types' min is then subtracted once, as ggml does). c is a
 * constant once the caller's column loop unrolls, so the nibble choice folds. */
static inline kt_vf kt_qg_col(const KtQg *q, int c, int32_t wdt) {
    if (wdt == KT_Q8_0) return kt_i8v(q->q + 16 * c) * q->s;
    kt_vb b;
    memcpy(&b, q->q + 16 * (c % 16), sizeof b);
    b = c < 16 ? b & 15 : b >> 4;
    if (wdt == KT_Q4_0) return (__builtin_convertvector(b, kt_vf) - 8.0f) * q->s;
    if (wdt == KT_Q4_K) return __builtin_convertvector(b, kt_vf) * q->s - q->m;
    kt_vu l = __builtin_convertvector(b, kt_vu) | (q->h4 >> c & 1) << 4;
    if (wdt == KT_Q5_K) return __builtin_convertvector(l, kt_vf) * q->s - q->m;
    l |= (q->h5 >> c & 1) << 5; /* Q6_K */
    return (__builtin_convertvector(l, kt_vf) - 32.0f) * (c < 16 ? q->s : q->s2);
}

/* Group gi (32 columns from column 32 gi) of sub-panel s of the 32-row block at byte blk. */
static inline KtQg kt_qg_at(const uint8_t *restrict w, int64_t blk, int s, int64_t gi, int32_t wdt) {
    const int64_t gpb = kt_q_bk(wdt) / 32;
    return kt_qg(w + blk + (gi / gpb * 2 + s) * kt_q_sub(wdt), gi % gpb, wdt);
}

/* The decode tile (kt_panel_tile's contract on the quantised layout): acc[s][t] = sum over the groups
 * [g0, g0 + ng) of the 32-row block at byte blk of W[rows of sub-panel s][cols] . xs[t][cols - 32 g0].
 * Each column of 16 rows is dequantised in registers once per tile and FMA'd into tb accumulators
 * (tb <= 2: even and odd columns in separate ones, so the chains stay short). */
static inline void kt_qpanel_tile(kt_vf acc[2][KT_TB], int tb, const uint8_t *restrict w, int64_t blk,
                                  const float *const xs[KT_TB], int64_t g0, int64_t ng, int32_t wdt) {
    kt_vf a[2][KT_TB], b[2][KT_TB];
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < tb; t++) a[s][t] = b[s][t] = (kt_vf){0};
    for (int64_t gi = g0; gi < g0 + ng; gi++) {
        KtQg q[2] = {kt_qg_at(w, blk, 0, gi, wdt), kt_qg_at(w, blk, 1, gi, wdt)};
        for (int s = 0; s < 2; s++)
            for (int64_t line = 0; line < kt_q_grp(wdt); line += 64)
                __builtin_prefetch((const char *)q[s].q + KT_PF_BYTES + line);
        const int64_t xo = (gi - g0) * 32;
        for (int c = 0; c < 32; c++) {
            kt_vf wv[2] = {kt_qg_col(&q[0], c, wdt), kt_qg_col(&q[1], c, wdt)};
            for (int t = 0; t < tb; t++) {
                float xv = xs[t][xo + c];
                for (int s = 0; s < 2; s++) {
                    if (tb <= 2 && c % 2) b[s][t] += wv[s] * xv;
                    else a[s][t] += wv[s] * xv;
                }
            }
        }
    }
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < tb; t++) acc[s][t] = tb <= 2 ? a[s][t] + b[s][t] : a[s][t];
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
            for (int c = 0; c < 32; c++) kt_stv(o + c / 2 * 64 + c % 2 * 16, kt_qg_col(&q, c, wdt));
        }
}

#endif
