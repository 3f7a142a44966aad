/* kt_norm_matmul: y[T, N] = (resid +) rmsnorm(x) w^T (+ bias), the projection template (qkv, o_proj,
 * lm_head and any plain linear layer). w is in the panel layout of kt_common.h (blocks of 32 rows).
 *
 *   xn = has_norm ? scratch + ith T K : x                       // [T, K]
 *   if has_norm: for t < T: xn[t] = norm_w * x[t] / sqrt(mean(x[t]^2) + eps)
 *   for [blo, bhi) in kt_take(kt_work(ceil(N / 32)))            // row blocks: a static run, then
 *                                                               // claimed ones (one token chunk only)
 *   for c0 in 0..T step TC:                                     // token chunk: xn rows stay in L2
 *     for b in blo..bhi:                                        // one 32-row block, one forward stream
 *       for t0 in chunk: tiles of 8 tokens, then 4, 2, 1 (constants: T is)
 *         acc[2][tb] = kt_panel_tile(block b, xn[t0..t0+tb])    // 16 rows per vector
 *         y[t0+t][32b + 16s + lane] = acc[s][t] (+ bias) (+ resid)   for rows < N
 *
 * Block-type weights (kt_quant.h): decode (T < KT_TILE_T) dequantises each column of 16 rows in
 * registers (kt_qpanel_tile); prefill dequantises block b once per token chunk into f32 scratch
 * (kt_qpanel_dequant) and runs the FMA tile on it. In the int8 mode (KT_ACT_I8) each thread
 * quantises the n rows of xn into its scratch once and every tile is kt_qpanel_tile_i8; in the bf16
 * mode (KT_ACT_BF16, bf16 weights) it rounds them to bf16 pairs once and every tile is kt_panel_tile_bf.
 *
 * Specialised: T, K, N, eps, has_norm, has_bias, has_resid and wdt are constants, so the pair loop
 * has a constant trip count, every tile has constant tb and the flags and the dtype test fold away.
 * Each weight block is read once per token chunk (TC = kt_chunk(K) tokens, 128 at K = 1024);
 * decode (T = 1) streams w exactly once. y must not overlap x or resid (restrict; each y element is
 * written once, after its resid element is read, by the thread that owns it). */
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kt_common.h"
#include "kt_quant.h"

/* y[t0 + t][n0 + j] (+ bias) (+ resid) = acc[t][j] for t < tb, j < width and n0 + j < N; acc[t] at
 * stride ld floats (the epilogue of the AMX tile and of the FMA tile's last, partial rows). */
static inline void nm_store(float *restrict y, const float *restrict acc, int64_t ld, const float *restrict bias,
                            const float *restrict resid, int64_t tb, int64_t t0, int64_t n0, int64_t width, int64_t N,
                            int32_t has_bias, int32_t has_resid) {
    int64_t nr = N - n0 < width ? N - n0 : width;
    for (int64_t t = 0; t < tb; t++) {
        int64_t o = (t0 + t) * N + n0;
        for (int64_t l = 0; l < nr; l++) {
            float v = acc[t * ld + l];
            if (has_bias) v += bias[n0 + l];
            if (has_resid) v += resid[o + l];
            y[o + l] = v;
        }
    }
}

/* Rows [32 b, 32 b + 32) of y for tokens [t0, t0 + tb). dq: block b dequantised to f32 (block types
 * in a prefill step), read instead of w; NULL: none. qa: the rows of xn converted (int8 or bf16 mode:
 * wdt says which), or NULL.
 * w, wdt: the matrix block b lies in, b counted from its first row (nm_part). */
static inline void nm_block(float *restrict y, const float *restrict xn, const void *restrict w,
                            const float *restrict bias, const float *restrict resid, int tb, int64_t t0,
                            int64_t b, int64_t pb, int64_t K, int64_t N, int32_t has_bias, int32_t has_resid,
                            int32_t wdt, const float *restrict dq, const void *restrict qa) {
    const float *xs[KT_TB]; // KT_TB x [K]
    KtQa xa[KT_TB];
    for (int t = 0; t < KT_TB; t++) xs[t] = xn + (t0 + (t < tb ? t : 0)) * K;
    kt_vf acc[2][KT_TB];
    if (qa && kt_bfa(wdt)) {
        const uint32_t *xw[KT_TB]; // KT_TB x [kt_bf_words(K)]
        for (int t = 0; t < KT_TB; t++) xw[t] = kt_bf_at(qa, t0 + (t < tb ? t : 0), K);
        kt_panel_tile_bf(acc, tb, w, pb * kt_kp(K) * 64, xw, (K + 1) / 2, wdt);
    } else if (qa) {
        for (int t = 0; t < KT_TB; t++) xa[t] = kt_qa_at(qa, t0 + (t < tb ? t : 0), K, 0);
        kt_qpanel_tile_i8(acc, tb, w, pb * kt_q_block_bytes(K, wdt), xa, 0, K / 32, wdt);
    } else if (dq) kt_panel_tile(acc, tb, dq, 0, xs, K / 2, 0, kt_tgt(wdt));
    else if (kt_is_q(wdt)) kt_qpanel_tile(acc, tb, w, pb * kt_q_block_bytes(K, wdt), xs, 0, K / 32, wdt);
    else kt_panel_tile(acc, tb, w, pb * kt_kp(K) * 64, xs, K / 2, (int)(K % 2), wdt);
    for (int t = 0; t < tb; t++)
        for (int s = 0; s < 2; s++) {
            int64_t n0 = b * 32 + s * 16, o = (t0 + t) * N + n0;
            if (n0 + 16 <= N) {
                kt_vf v = acc[s][t];
                if (has_bias) v += kt_ldv(bias + n0);
                if (has_resid) v += kt_ldv(resid + o);
                kt_stv(y + o, v);
            } else {
                float rest[16];
                kt_stv(rest, acc[s][t]);
                nm_store(y, rest, 16, bias, resid, 1, t0 + t, n0, 16, N, has_bias, has_resid);
            }
        }
}

/* The same through AMX tiles (kt_amx.h): rows [0, n) of xn packed chunk by chunk into abuf (np
 * planes), each 32-row block b of [blo, bhi) multiplied by 32 tokens at a time into tile. */
static void nm_amx(float *restrict y, const float *restrict xn, const uint16_t *restrict w,
                   const float *restrict bias, const float *restrict resid, uint16_t *restrict abuf,
                   float *restrict tile, int64_t n, int64_t blo, int64_t bhi, int64_t K, int64_t N, int32_t has_bias,
                   int32_t has_resid, int np) {
    const int64_t tc = kt_amx_chunk(K), ga = kt_amx_group_elems(K, np);
    kt_amx_begin();
    for (int64_t c0 = 0; c0 < n; c0 += tc) {
        int64_t m = n - c0 < tc ? n - c0 : tc;
        kt_amx_pack(abuf, xn, K, NULL, c0, m, K, np);
        for (int64_t b = blo; b < bhi; b++)
            for (int64_t g = 0; g * 16 < m; g += 2) {
                int64_t rows = kt_amx_pair(tile, abuf, ga, g, m, w + b * kt_kp(K) * 64, kt_amx_steps(K), np);
                nm_store(y, tile, 32, bias, resid, rows, c0 + g * 16, b * 32, 32, N, has_bias, has_resid);
            }
    }
    kt_amx_end();
}

/* CALL(matrix, its wdt, block index in it, tb) for block b: the first matrix, or from row split on the
 * second (kernels.h; w2 = the second's first byte). An expression, as KT_FOR_TILES's tiles are. */
#define NM_PART(b, CALL, tb) ((b) * 32 < split ? CALL(w, wdt, (b), tb) : CALL(w2, wdt2, (b) - split / 32, tb))

void kt_norm_matmul(float *restrict y, const float *restrict x, const float *restrict norm_w,
                    const void *restrict w, const float *restrict bias, const float *restrict resid,
                    float *restrict scratch, int64_t T, int64_t K, int64_t N, float eps, int32_t has_norm,
                    int32_t has_bias, int32_t has_resid, int32_t wdt, int32_t wdt2, int64_t split, int32_t amx,
                    int64_t n, int32_t ith, int32_t nth) {
    const float *xn = x;                                                               // [T, K]
    const int32_t q1 = kt_q_scratch_kind(wdt), q2 = kt_q_scratch_kind(wdt2), q = q1 > q2 ? q1 : q2;
    const void *w2 = split < N ? (const char *)w + kt_q_panel_bytes(split, K, wdt) : w;
    float *own = scratch ? scratch + (int64_t)ith * kt_norm_matmul_scratch(T, K, has_norm, amx, q) : 0; // [T, K]
    if (has_norm) {
        kt_rmsnorm_rows(own, x, norm_w, n, K, eps);
        xn = own;
    }
    if (amx && kt_wt(wdt) == 2 && n >= KT_AMX_MIN_ROWS) {
        int64_t blo, bhi;
        kt_split((N + 31) / 32, ith, nth, &blo, &bhi);
        float *tile = own + (has_norm ? T * K : 0); // [32, 32]
        nm_amx(y, xn, (const uint16_t *)w, bias, resid, (uint16_t *)(tile + 32 * 32), tile, n, blo, bhi, K, N,
               has_bias, has_resid, amx);
        return;
    }
    /* int8 or bf16 mode: the rows converted once (qa); exact mode in a prefill step: each block
     * dequantised once per token chunk (dq); else the tile reads the weights as they are */
    float *const work = own + (has_norm ? T * K : 0);
    char *qa = q == 2 ? (char *)work : NULL;                  // [T] rows of kt_qa_row_bytes(K)
    float *dq = q == 1 && T >= KT_TILE_T ? work : NULL;       // [kt_dq_scratch(K)]
    if (qa)
        for (int64_t t = 0; t < n; t++) kt_x_convert(qa + t * kt_qa_row_bytes(K), xn + t * K, K, 0, (K + 31) / 32, wdt);
#define NM_DQ(pw, pwdt, pb, _) kt_qpanel_dequant(dq, pw, (pb) * kt_q_block_bytes(K, pwdt), 0, K / 32, pwdt)
#define NM_CALL(pw, pwdt, pb, tb)                                                                           \
    nm_block(y, xn, pw, bias, resid, tb, t, b, pb, K, N, has_bias, has_resid, pwdt, dq, qa)
#define NM_BLOCK(b) NM_PART(b, NM_DQ, 0)
#define NM_TILE(tb) NM_PART(b, NM_CALL, tb)
    /* the row blocks as kt_work shares them out when the rows are one token chunk (decode, short
     * steps); with more, each thread's static run (a block claimed alone would re-read every chunk) */
    KtWork wk = kt_work((N + 31) / 32, n <= kt_chunk(K) ? kt_work_counter() : NULL, ith, nth);
    for (int64_t blo, bhi; kt_take(&wk, &blo, &bhi);) {
        if (dq) KT_FOR_TILES_AT(n, kt_chunk(K), b, blo, bhi, t, NM_BLOCK, NM_TILE)
        else KT_FOR_TILES(n, kt_chunk(K), b, blo, bhi, t, NM_TILE)
    }
#undef NM_BLOCK
#undef NM_TILE
#undef NM_CALL
#undef NM_DQ
}
