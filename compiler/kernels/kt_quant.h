/* kt_quant: the quantised panel layout (a matrix of a GGUF block type, runtime/quant.h, as the kernels
 * read it) and its dequantisers, which give exactly quant_dequant_row's values (ggml's).
 *
 * Kernels read every GGUF block type moec runs (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) in its
 * block format, regrouped by the pack pass (compiler/passes/pack.c writes it through kt_q_* below):
 * rows in blocks of 32 (R padded with zero rows, which dequantise to 0) as in the panel layout of
 * kt_common.h; a 32-row block is, for each source block kb of BK = 32 (Q4_0 .. Q8_0) or 256 (K types)
 * columns, two sub-panels (rows 0-15, then 16-31), each QB bytes: the 16 rows' fields of that source
 * block side by side, lane = row % 16:
 *   header (per sub-panel and source block)
 *     Q4_0, Q5_0, Q8_0  d f16[16]
 *     Q4_1, Q5_1  d f16[16], m f16[16]                                (x = d q + m)
 *     Q4_K, Q5_K  d f16[16], dmin f16[16], sc u8[8][16], m u8[8][16]   (the 6-bit scales and mins
 *                 of the 8 sub-blocks of 32, unpacked: x = (d sc) q - dmin m)
 *     Q6_K        d f16[16], scales i8[16][16]                        (x = (d scales[g]) (q - 32))
 *   then per group of 32 columns (one sub-block; the 32-column types: the source block itself)
 *     Q8_0        qs i8[32][16]: column c of the 16 rows at 16 c
 *     Q4_0, Q4_1, Q4_K  nib u8[16][16]: byte j = level of column j (low nibble) | of column j + 16 (high)
 *     Q5_0, Q5_1, Q5_K  hb u8[4][16], then nib as above
 *     Q6_K        hb u8[2][4][16], then nib
 *   where, for column c = 16 h + 4 j4 + k (h < 2, j4 < 4, k < 4), the high bits of its level sit in
 *   byte [k][lane] at bit 4 h + j4 (its bit 4; 5-bit types) or in byte [h][k][lane] at bits 2 j4,
 *   2 j4 + 1 (its bits 4 and 5; Q6_K): the order of the int8 mode's 4-column transpose (below), so
 *   one permute of 64 bytes gives every group's high bits in place, a shift and a mask each;
 * so columns j and j + 16 of 16 rows are one 16-byte load, a mask and a shift, and int->float
 * conversions, a group of 32 columns is one contiguous run and a block one forward stream. Bytes per
 * weight: as the source; Q4_K and Q5_K 4 bytes more per 256 (the scales unpacked), Q5_0 and Q5_1 2
 * bytes more per 32 (d, m and the high bits aligned).
 * Headers per source block, groups per 32 columns: a thread's slice of 32 columns starts anywhere. */
#ifndef MOEC_KT_QUANT_H
#define MOEC_KT_QUANT_H
#include <stdint.h>
#include <string.h>

#include "kt_common.h"

/* wdt values of the block types with kernels (runtime/dtype.h). */
enum { KT_Q4_0 = 5, KT_Q4_1, KT_Q5_0, KT_Q5_1, KT_Q8_0, KT_Q4_K, KT_Q5_K, KT_Q6_K };

/* How a block-type weight meets the activations, as bits above its dtype in the wdt a kernel takes
 * (moec compile --act; f32/bf16 weights never carry them):
 *   KT_ACT_I8   the int8 activation mode (runtime/quant.h: activations quantised per 32 columns,
 *               integer dot products, one f32 FMA per block); without it the exact mode
 *   KT_DP_VNNI  with it, the target has AVX512-VNNI: the 4-way u8 x i8 dot products are vpdpbusd
 *               (the one further exception to the no-intrinsics rule; else portable vector code)
 * kt_wt (kt_common.h) gives the dtype alone. */
enum { KT_ACT_I8 = 0x100, KT_DP_VNNI = 0x200 };
static inline int kt_i8(int32_t wdt) { return (wdt & KT_ACT_I8) != 0; }

static inline int kt_is_q(int32_t wdt) { return kt_wt(wdt) >= KT_Q4_0 && kt_wt(wdt) <= KT_Q6_K; }
/* Types whose values add a min (x = d q + m, or the K types' - dmin m), and with a fifth level bit. */
static inline int kt_q_has_min(int32_t wdt) {
    wdt = kt_wt(wdt);
    return wdt == KT_Q4_1 || wdt == KT_Q5_1 || wdt == KT_Q4_K || wdt == KT_Q5_K;
}
static inline int kt_q_5bit(int32_t wdt) {
    wdt = kt_wt(wdt);
    return wdt == KT_Q5_0 || wdt == KT_Q5_1 || wdt == KT_Q5_K;
}
/* What a thread's scratch must hold for weights wdt: 0 nothing, 1 a dequantised block (exact mode),
 * 2 converted activation rows (int8 or bf16 mode: kt_qa_row_bytes) (the *_scratch helpers of kernels.h
 * take the largest over a kernel's weights). */
static inline int32_t kt_q_scratch_kind(int32_t wdt) {
    return kt_i8(wdt) || kt_bfa(wdt) ? 2 : kt_is_q(wdt) ? 1 : 0;
}
/* The wdt a kernel takes for a weight of dtype t in a graph whose mode bits are act_bits (--act, and
 * the target's bits, kt_tgt): int8 bits go to the block types, bf16 bits to bf16 weights, every other
 * dtype is exact; the target bits go to all. */
static inline int32_t kt_wdt_bind(int32_t t, int32_t act_bits) {
    int on = (act_bits & KT_ACT_I8) ? kt_is_q(t) : (act_bits & KT_ACT_BF16) ? t == 2 : 0;
    return (on ? t | act_bits : t) | kt_tgt(act_bits);
}
/* Columns of a source block. */
static inline int64_t kt_q_bk(int32_t wdt) { return kt_wt(wdt) >= KT_Q4_K ? 256 : 32; }
/* Bytes of a sub-panel's header, of one group of 32 columns, of a whole sub-panel (16 rows x BK). */
static inline int64_t kt_q_hdr(int32_t wdt) {
    wdt = kt_wt(wdt);
    return wdt == KT_Q4_K || wdt == KT_Q5_K ? 320 : wdt == KT_Q6_K ? 288 : wdt == KT_Q4_1 || wdt == KT_Q5_1 ? 64 : 32;
}
static inline int64_t kt_q_grp(int32_t wdt) {
    wdt = kt_wt(wdt);
    return wdt == KT_Q8_0 ? 512 : kt_q_5bit(wdt) ? 320 : wdt == KT_Q6_K ? 384 : 256;
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

/* One group of 32 columns of one sub-panel, ready to dequantise column by column: x = lev * s - m
 * (s for columns 0-15, s2 for 16-31: they differ for Q6_K only). */
typedef struct KtQg {
    const uint8_t *q; // the group's level bytes (nib or qs)
    kt_vf s, s2, m;
    const uint8_t *hb; // the high bits (5-bit types and Q6_K)
} KtQg;

/* sub: the sub-panel's first byte; g: the group within its source block. */
static inline KtQg kt_qg(const uint8_t *restrict sub, int64_t g, int32_t wdt) {
    KtQg q;
    wdt = kt_wt(wdt);
    const uint8_t *grp = sub + kt_q_hdr(wdt) + g * kt_q_grp(wdt);
    kt_vf d = kt_f16v(sub);
    q.s = q.s2 = d, q.m = (kt_vf){0}, q.hb = grp, q.q = grp;
    if (kt_q_5bit(wdt)) q.q = grp + 64;
    if (wdt == KT_Q4_1 || wdt == KT_Q5_1) q.m = -kt_f16v(sub + 32); /* x = d q + m */
    if (wdt == KT_Q4_K || wdt == KT_Q5_K) {
        q.s = q.s2 = d * kt_u8v(sub + 64 + 16 * g);
        q.m = kt_f16v(sub + 32) * kt_u8v(sub + 192 + 16 * g);
    } else if (wdt == KT_Q6_K) {
        q.s = d * kt_i8v(sub + 32 + 32 * g);
        q.s2 = d * kt_i8v(sub + 48 + 32 * g);
        q.q = grp + 128;
    }
    return q;
}

/* The sub-panel s (rows 0-15 or 16-31) of the 32-row block at byte blk that holds group gi (columns
 * 32 gi ..), and gi's place in its source block. */
static inline const uint8_t *kt_q_sub_at(const uint8_t *w, int64_t blk, int s, int64_t gi, int32_t wdt) {
    return w + blk + (gi / (kt_q_bk(wdt) / 32) * 2 + s) * kt_q_sub(wdt);
}
static inline int64_t kt_q_gin(int64_t gi, int32_t wdt) { return gi % (kt_q_bk(wdt) / 32); }

/* Prefetches, KT_PF_Q_BYTES ahead, the lines a tile of tb tokens reads for group g of the sub-panel
 * at sub (kt_pf: non-temporally unless the tile is full). The
 * 32-column types' sub-panel is one group: all of it, header too, to its last byte (sub-panels need
 * not start on a line: Q4_0's are 288 bytes, and a line left out is a miss: Q4_0 int8 decode +10%).
 * The K types: the group's own bytes (their header lines too read slower). Constant trip counts:
 * the same lines from a runtime-bounded loop read 20% slower. */
static inline void kt_q_prefetch(const uint8_t *sub, int64_t g, int32_t wdt, int tb) {
    if (kt_q_bk(wdt) == 32) {
        const char *a = (const char *)sub + KT_PF_Q_BYTES;
        for (int64_t line = 0; line < kt_q_sub(wdt); line += 64) kt_pf(a + line, tb);
        kt_pf(a + kt_q_sub(wdt) - 1, tb);
        return;
    }
    const char *a = (const char *)sub + KT_PF_Q_BYTES + kt_q_hdr(wdt) + g * kt_q_grp(wdt);
    for (int64_t line = 0; line < kt_q_grp(wdt); line += 64) kt_pf(a + line, tb);
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
    wdt = kt_wt(wdt);
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
    if (wdt == KT_Q4_K || wdt == KT_Q4_1) {
        *lo = __builtin_convertvector(bl, kt_vf), *hi = __builtin_convertvector(bh, kt_vf);
        return;
    }
    const int j4 = j / 4, k = j % 4; /* column j = 4 j4 + k, and j + 16 */
    kt_vb h;
    if (wdt == KT_Q6_K) {
        memcpy(&h, q->hb + 16 * k, sizeof h);
        bl |= (h >> 2 * j4 & 3) << 4;
        memcpy(&h, q->hb + 64 + 16 * k, sizeof h);
        bh |= (h >> 2 * j4 & 3) << 4;
        *lo = __builtin_convertvector((kt_vsb)(bl - 32), kt_vf), *hi = __builtin_convertvector((kt_vsb)(bh - 32), kt_vf);
        return;
    }
    memcpy(&h, q->hb + 16 * k, sizeof h);
    kt_vu ll = __builtin_convertvector(bl | (h >> j4 & 1) << 4, kt_vu);
    kt_vu lh = __builtin_convertvector(bh | (h >> (4 + j4) & 1) << 4, kt_vu);
    if (wdt == KT_Q5_0) {
        *lo = __builtin_convertvector((kt_vi)ll - 16, kt_vf), *hi = __builtin_convertvector((kt_vi)lh - 16, kt_vf);
        return;
    }
    *lo = __builtin_convertvector(ll, kt_vf), *hi = __builtin_convertvector(lh, kt_vf); /* Q5_1, Q5_K */
}

/* Columns j and j + 16 of the group's 16 rows, dequantised: bit-identical to ggml (every product of a
 * scale and a level is exact in f32; the K types' min is then subtracted once, as ggml does). */
static inline void kt_qg_cols(const KtQg *q, int j, kt_vf *lo, kt_vf *hi, int32_t wdt) {
    kt_qg_lev(q, j, lo, hi, wdt);
    *lo = *lo * q->s - q->m, *hi = *hi * q->s2 - q->m;
}

/* Group gi (32 columns from column 32 gi) of sub-panel s of the 32-row block at byte blk. */
static inline KtQg kt_qg_at(const uint8_t *restrict w, int64_t blk, int s, int64_t gi, int32_t wdt) {
    return kt_qg(kt_q_sub_at(w, blk, s, gi, wdt), kt_q_gin(gi, wdt), wdt);
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

/* One pass of kt_qpanel_tile on a narrow target (kt_panel_pass's contract, kt_common.h): acc[t] = the
 * groups [g0, g0 + ng) of sub-panel s of the block at byte blk dotted with xs[t], nt <= KT_TN tokens,
 * each column dequantised in registers once per pass. */
static inline void kt_qpanel_pass(kt_vf *restrict acc, int nt, int pf_tb, const uint8_t *restrict w, int64_t blk,
                                  int s, const float *const *xs, int64_t g0, int64_t ng, int32_t wdt) {
    kt_vf a[KT_TN], b[KT_TN];
    for (int t = 0; t < nt; t++) a[t] = b[t] = (kt_vf){0};
    for (int64_t gi = g0; gi < g0 + ng; gi++) {
        KtQg q = kt_qg_at(w, blk, s, gi, wdt);
        kt_q_prefetch(kt_q_sub_at(w, blk, s, gi, wdt), kt_q_gin(gi, wdt), wdt, pf_tb);
        const int64_t xo = (gi - g0) * 32;
        KT_UNROLL16
        for (int j = 0; j < 16; j++) {
            kt_vf l, h;
            kt_qg_cols(&q, j, &l, &h, wdt);
            for (int t = 0; t < nt; t++) {
                if (nt <= 2) {
                    a[t] += l * xs[t][xo + j];
                    b[t] += h * xs[t][xo + j + 16];
                } else {
                    a[t] += l * xs[t][xo + j] + h * xs[t][xo + j + 16];
                }
            }
        }
    }
    for (int t = 0; t < nt; t++) acc[t] = a[t] + b[t];
}

/* The decode tile (kt_panel_tile's contract on the quantised layout): acc[s][t] = sum over the groups
 * [g0, g0 + ng) of the 32-row block at byte blk of W[rows of sub-panel s][cols] . xs[t][cols - 32 g0].
 * tb <= 2 (decode proper): per group, sums of level x activation in two chains per sub-panel and
 * token (columns 0-15 and 16-31), then scaled once: acc += s lo + s2 hi - m sum(x) (the group's scale
 * and min hoisted out of the column loop). tb > 2: each column is dequantised exactly in registers
 * once per tile and FMA'd into the tb accumulators; on a KT_NARROW target, once per pass of
 * kt_qpanel_pass (kt_panel_tile's narrow passes). */
static inline void kt_qpanel_tile(kt_vf acc[2][KT_TB], int tb, const uint8_t *restrict w, int64_t blk,
                                  const float *const xs[KT_TB], int64_t g0, int64_t ng, int32_t wdt) {
    const int narrow = kt_narrow(wdt);
    wdt = kt_wt(wdt);
    if (narrow && tb >= KT_NARROW_TB) { /* as kt_panel_tile's narrow passes */
#define KT_QPANEL_PASS(s, t0, nt, pf_tb) kt_qpanel_pass(&acc[s][t0], nt, pf_tb, w, blk, s, xs + (t0), g0, ng, wdt)
        KT_NARROW_PASSES(acc, tb, KT_QPANEL_PASS);
#undef KT_QPANEL_PASS
        return;
    }
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < tb; t++) acc[s][t] = (kt_vf){0};
    for (int64_t gi = g0; gi < g0 + ng; gi++) {
        KtQg q[2] = {kt_qg_at(w, blk, 0, gi, wdt), kt_qg_at(w, blk, 1, gi, wdt)};
        for (int s = 0; s < 2; s++) kt_q_prefetch(kt_q_sub_at(w, blk, s, gi, wdt), kt_q_gin(gi, wdt), wdt, tb);
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
                if (kt_q_has_min(wdt)) sx = kt_hsum(kt_ldv(xs[t] + xo) + kt_ldv(xs[t] + xo + 16));
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

/* ---- the int8 activation mode (KT_ACT_I8) ----
 *
 * Activation rows are quantised as quant_act_q8 does (runtime/quant.h), bit for bit, into rows of
 * kt_qa_row_bytes(K) bytes (K a multiple of 32): q i8[K], then d f32[K / 32] (the blocks' scales),
 * then s16 i32[K / 16] (the sums of q over each 16 columns). A weight group (32 columns of a 16-row
 * sub-panel, above) meets a token's block in 4-way u8 x i8 dot products: 64 bytes of levels, columns
 * c..c+3 of the 16 rows, are transposed in registers to [row][4] (one byte permute), and each 32-bit
 * lane (a row) adds the 4 products with the token's q[c..c+3] (vpdpbusd where the target has it).
 * The weights enter unsigned (the levels as stored; Q8_0's as qs + 128) and the offsets come back
 * through the activation sums. Per group and token, il and ih the dot products of columns 0-15 and
 * 16-31, S0 and S1 the sums of q over them, S = S0 + S1:
 *   Q8_0  isum = il + ih - 128 S      Q4_0  isum = il + ih - 8 S      Q5_0  isum = il + ih - 16 S
 *   Q4_1, Q5_1  isum = il + ih        Q4_K, Q5_K  isum = sc (il + ih)
 *   Q6_K  isum = sc0 (il - 32 S0) + sc1 (ih - 32 S1)
 *   acc += (D * d) * (float)isum       then with a min  acc += (M * d) * (float)(mn S)
 * (M = m, mn = 1 for Q4_1, Q5_1; M = -dmin, mn = m for Q4_K, Q5_K)
 * (D the f16 scale, d the activation block's, sc the group's integer scale): the
 * arithmetic of quant_dot_int8, whose integer sums these are exactly. */
static inline int64_t kt_qa_int8_bytes(int64_t K) { return (K + K / 32 * 4 + K / 16 * 4 + 63) / 64 * 64; }

/* Converted activation rows, of either mode (kt_cv: the weight wants them; the *_scratch helpers of
 * kernels.h count them as scratch kind 2): an int8 row above, or a bf16 pair row (kt_bf_row,
 * kt_common.h), every row kt_qa_row_bytes(K) bytes, room for either form. */
static inline int kt_cv(int32_t wdt) { return kt_i8(wdt) || kt_bfa(wdt); }
static inline int64_t kt_qa_row_bytes(int64_t K) {
    int64_t a = kt_qa_int8_bytes(K), b = 4 * kt_bf_words(K);
    return a > b ? a : b;
}

/* Row `row` of quantised rows of K columns at base, from group g0 (column 32 g0) on. */
typedef struct KtQa {
    const int8_t *q;
    const float *d;
    const int32_t *s16;
} KtQa;
static inline KtQa kt_qa_at(const void *base, int64_t row, int64_t K, int64_t g0) {
    const uint8_t *r = (const uint8_t *)base + row * kt_qa_row_bytes(K);
    KtQa a = {(const int8_t *)r + 32 * g0, (const float *)(r + K) + g0, (const int32_t *)(r + K + K / 8) + 2 * g0};
    return a;
}

/* Quantises the blocks [b0, b1) of the row x[K] into the row at dst (quant_act_q8's arithmetic:
 * d = amax / 127, q = roundf(x * (1 / d)), as there). */
static inline void kt_qa_quantise(void *restrict dst, const float *restrict x, int64_t K, int64_t b0, int64_t b1) {
    int8_t *q = (int8_t *)dst;
    float *d = (float *)((uint8_t *)dst + K);
    int32_t *s16 = (int32_t *)((uint8_t *)dst + K + K / 8);
    for (int64_t b = b0; b < b1; b++) {
        const float *xb = x + 32 * b; // [32]
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = __builtin_fmaxf(amax, __builtin_fabsf(xb[i]));
        float db = amax / 127, id = db != 0.0f ? 1.0f / db : 0.0f;
        int8_t qb[32];
        for (int i = 0; i < 32; i++) qb[i] = (int8_t)__builtin_roundf(xb[i] * id);
        for (int h = 0; h < 2; h++) {
            int32_t s = 0;
            for (int i = 0; i < 16; i++) s += qb[16 * h + i];
            s16[2 * b + h] = s;
        }
        memcpy(q + 32 * b, qb, 32);
        d[b] = db;
    }
}

/* Row `row` of bf16 pair rows of K columns at base (kt_bf_row's words, rows kt_qa_row_bytes(K) apart). */
static inline const uint32_t *kt_bf_at(const void *base, int64_t row, int64_t K) {
    return (const uint32_t *)((const uint8_t *)base + row * kt_qa_row_bytes(K));
}

/* Converts the 32-column units [u0, u1) of row x[K] into dst (a row of kt_qa_row_bytes(K) bytes) in
 * wdt's form: int8 (kt_qa_quantise; K a multiple of 32) or bf16 pairs (kt_bf_row). */
static inline void kt_x_convert(void *restrict dst, const float *restrict x, int64_t K, int64_t u0, int64_t u1,
                                int32_t wdt) {
    if (kt_i8(wdt)) kt_qa_quantise(dst, x, K, u0, u1);
    else kt_bf_row((uint32_t *)dst, x, 32 * u0, 32 * u1 < K ? 32 * u1 : K, K);
}

typedef uint8_t kt_vb64 __attribute__((vector_size(64))); // 64 x u8
typedef int8_t kt_vsb64 __attribute__((vector_size(64))); // 64 x i8

#if defined(__x86_64__)
#include <immintrin.h>
/* *acc += the 4-way dot products of u and s (through pointers: callers need not enable AVX-512). */
__attribute__((target("avx512f,avx512vnni"))) static inline void kt_dp4_vnni(kt_vi *acc, const kt_vb64 *u,
                                                                              const kt_vsb64 *s) {
    __m512i a, b, c;
    memcpy(&a, acc, 64), memcpy(&b, u, 64), memcpy(&c, s, 64);
    a = _mm512_dpbusd_epi32(a, b, c);
    memcpy(acc, &a, 64);
}
#else
/* Never called off x86: KT_DP_VNNI is bound only for an x86 target with AVX512-VNNI. */
static inline void kt_dp4_vnni(kt_vi *acc, const kt_vb64 *u, const kt_vsb64 *s) { (void)acc, (void)u, (void)s; }
#endif

/* acc + for each lane l the sum over k < 4 of u[4 l + k] s[4 l + k] (u unsigned, s signed). */
static inline kt_vi kt_dp4(kt_vi acc, kt_vb64 u, kt_vsb64 s, int32_t wdt) {
    if (wdt & KT_DP_VNNI) {
        kt_dp4_vnni(&acc, &u, &s);
        return acc;
    }
    typedef int16_t v64s __attribute__((vector_size(128)));
    typedef int16_t v32s __attribute__((vector_size(64)));
    typedef int32_t v32i __attribute__((vector_size(128)));
    v64s p = __builtin_convertvector(u, v64s) * __builtin_convertvector(s, v64s); /* |p| < 2^15 */
    v32s ev = __builtin_shufflevector(p, p, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36,
                                      38, 40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62);
    v32s od = __builtin_shufflevector(p, p, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37,
                                      39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63);
    v32i pair = __builtin_convertvector(ev, v32i) + __builtin_convertvector(od, v32i); /* p[2m] + p[2m + 1] */
    kt_vi e2 = __builtin_shufflevector(pair, pair, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    kt_vi o2 = __builtin_shufflevector(pair, pair, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return acc + e2 + o2;
}

/* The 64 bytes at p, columns c..c+3 of 16 rows as stored ([column][row]), as [row][column]. */
static inline kt_vb64 kt_t4x16(const uint8_t *p) {
    kt_vb64 v;
    memcpy(&v, p, sizeof v);
#define KT_T4(r) (r), 16 + (r), 32 + (r), 48 + (r)
    return __builtin_shufflevector(v, v, KT_T4(0), KT_T4(1), KT_T4(2), KT_T4(3), KT_T4(4), KT_T4(5), KT_T4(6),
                                   KT_T4(7), KT_T4(8), KT_T4(9), KT_T4(10), KT_T4(11), KT_T4(12), KT_T4(13),
                                   KT_T4(14), KT_T4(15));
#undef KT_T4
}

/* The unsigned levels of group q's 16 rows, [row][4]: columns 4 j4..4 j4 + 3 in *lo, 16 + 4 j4.. in *hi. */
static inline void kt_qg_u8(const KtQg *q, int j4, kt_vb64 *lo, kt_vb64 *hi, int32_t wdt) {
    wdt = kt_wt(wdt);
    if (wdt == KT_Q8_0) {
        *lo = kt_t4x16(q->q + 64 * j4) ^ 0x80;
        *hi = kt_t4x16(q->q + 64 * (j4 + 4)) ^ 0x80;
        return;
    }
    kt_vb64 b = kt_t4x16(q->q + 64 * j4);
    *lo = b & 15, *hi = b >> 4;
    if (kt_q_5bit(wdt)) {
        const kt_vb64 h = kt_t4x16(q->hb);
        *lo |= (h >> j4 & 1) << 4, *hi |= (h >> (4 + j4) & 1) << 4;
    } else if (wdt == KT_Q6_K) {
        *lo |= (kt_t4x16(q->hb) >> 2 * j4 & 3) << 4, *hi |= (kt_t4x16(q->hb + 64) >> 2 * j4 & 3) << 4;
    }
}

/* The 16 bytes at p (a row of 16 lanes' u8 scales or mins). */
static inline kt_vb kt_u8x16(const uint8_t *p) {
    kt_vb b;
    memcpy(&b, p, sizeof b);
    return b;
}

/* The 4 activation bytes a[4 c .. 4 c + 3] in every lane. */
static inline kt_vsb64 kt_qa_bcast(const int8_t *a, int c) {
    int32_t v;
    memcpy(&v, a + 4 * c, 4);
    kt_vi b = (kt_vi){0} + v;
    kt_vsb64 r;
    memcpy(&r, &b, sizeof r);
    return r;
}

/* The int8 form of kt_qpanel_tile (same contract; xa[t]: token t's quantised row from group g0 on).
 * Tokens go four at a time, so a group's integer sums stay in registers. */
static inline void kt_qpanel_tile_i8(kt_vf acc[2][KT_TB], int tb, const uint8_t *restrict w, int64_t blk,
                                     const KtQa xa[KT_TB], int64_t g0, int64_t ng, int32_t wdt) {
    const int32_t wt = kt_wt(wdt);
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < tb; t++) acc[s][t] = (kt_vf){0};
    for (int64_t gi = g0; gi < g0 + ng; gi++) {
        const int64_t ga = gi - g0, g = kt_q_gin(gi, wt); /* the group in the activation rows; in its block */
        for (int s = 0; s < 2; s++) {
            const uint8_t *sub = kt_q_sub_at(w, blk, s, gi, wt);
            const KtQg q = kt_qg(sub, g, wt);
            kt_q_prefetch(sub, g, wt, tb);
            const kt_vf D = kt_f16v(sub);
            kt_vi sc = (kt_vi){0} + 1, sc2 = sc, mn = (kt_vi){0};
            kt_vf M = (kt_vf){0};
            if (wt == KT_Q4_K || wt == KT_Q5_K) {
                sc = sc2 = __builtin_convertvector(kt_u8x16(sub + 64 + 16 * g), kt_vi);
                mn = __builtin_convertvector(kt_u8x16(sub + 192 + 16 * g), kt_vi);
                M = -kt_f16v(sub + 32);
            } else if (wt == KT_Q4_1 || wt == KT_Q5_1) {
                mn = sc;
                M = kt_f16v(sub + 32);
            } else if (wt == KT_Q6_K) {
                sc = __builtin_convertvector((kt_vsb)kt_u8x16(sub + 32 + 32 * g), kt_vi);
                sc2 = __builtin_convertvector((kt_vsb)kt_u8x16(sub + 48 + 32 * g), kt_vi);
            }
            for (int t0 = 0; t0 < tb; t0 += 4) {
                const int nt = tb - t0 < 4 ? tb - t0 : 4;
                kt_vi il[4], ih[4];
                for (int t = 0; t < nt; t++) il[t] = ih[t] = (kt_vi){0};
                for (int j4 = 0; j4 < 4; j4++) {
                    kt_vb64 lo, hi;
                    kt_qg_u8(&q, j4, &lo, &hi, wt);
                    for (int t = 0; t < nt; t++) {
                        const int8_t *aq = xa[t0 + t].q + 32 * ga;
                        il[t] = kt_dp4(il[t], lo, kt_qa_bcast(aq, j4), wdt);
                        ih[t] = kt_dp4(ih[t], hi, kt_qa_bcast(aq, 4 + j4), wdt);
                    }
                }
                for (int t = 0; t < nt; t++) {
                    const KtQa *a = &xa[t0 + t];
                    const int32_t S0 = a->s16[2 * ga], S1 = a->s16[2 * ga + 1], S = S0 + S1;
                    const float d = a->d[ga];
                    kt_vi isum;
                    if (wt == KT_Q8_0) isum = il[t] + ih[t] - 128 * S;
                    else if (wt == KT_Q4_0) isum = il[t] + ih[t] - 8 * S;
                    else if (wt == KT_Q5_0) isum = il[t] + ih[t] - 16 * S;
                    else if (wt == KT_Q6_K) isum = sc * (il[t] - 32 * S0) + sc2 * (ih[t] - 32 * S1);
                    else isum = sc * (il[t] + ih[t]);
                    kt_vf *ac = &acc[s][t0 + t];
                    *ac += (D * d) * __builtin_convertvector(isum, kt_vf); /* contracted to an FMA */
                    if (kt_q_has_min(wt)) *ac += (M * d) * __builtin_convertvector(mn * S, kt_vf);
                }
            }
        }
    }
}

#endif
