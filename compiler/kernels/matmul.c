/* kt_matmul: y[n_tok, n_out] = x[n_tok, n_in] w[n_out, n_in]^T, w in f32 or bf16 (widened to f32),
 * the plain projection template. Thread ith of nth computes its contiguous share [lo, hi) of the
 * n_out output rows, for every token.
 *
 *   t_full = n_tok - n_tok % TB                        // tokens in whole blocks of TB
 *   for c0 in 0..t_full step TC:                       // token chunk: x[c0 .. c0+TC] stays in L2
 *     for n0 in lo..hi step RB (tail: 1 row at a time)
 *       for t0 in c0..c0+TC step TB
 *         tile(n0, t0, RB, TB)
 *   if n_tok % TB: the same for the last n_tok % TB tokens, one tile of tb = n_tok % TB per row block
 *
 *   tile(n0, t0, rb, tb):
 *     acc[rb][tb] = 0
 *     for k < n_in: for r < rb: wv = w[n0+r][k]; for t < tb: acc[r][t] += wv x[t0+t][k]
 *     y[t0+t][n0+r] = acc[r][t]
 *
 * Specialised (every shape bound by cg_specialize): n_tok, n_in and n_out are constants, so rb and
 * tb are constants at every inlined tile, the r and t loops unroll, acc lives in registers and the
 * k loop vectorises with rb * tb independent accumulators (the reduction may be reassociated: the
 * templates are built with -fassociative-math, see cmake/kernels.cmake). Each weight element is
 * loaded and widened once per tile; decode (n_tok = 1) streams w exactly once.
 * y must not overlap x or w (restrict). */
#include <stdint.h>
#include <string.h>

/* Tile and blocking of kt_matmul (weight rows x tokens per tile; tokens per L2 chunk, a multiple
 * of MM_TB). 4 x 4 = 16 accumulators: 16 of the 32 zmm registers on AVX-512. */
enum { MM_RB = 4, MM_TB = 4, MM_TC = 64 };

void kt_matmul_f32(float *restrict y, const float *restrict x, const float *restrict w, int64_t n_tok, int64_t n_in,
                   int64_t n_out, int32_t ith, int32_t nth);
void kt_matmul_bf16(float *restrict y, const float *restrict x, const uint16_t *restrict w, int64_t n_tok,
                    int64_t n_in, int64_t n_out, int32_t ith, int32_t nth);

/* Element i of w widened to f32 (bf16: the top half of an f32). wbf16 is a literal at every call. */
static inline float mm_wload(const void *restrict w, int wbf16, int64_t i) {
    if (!wbf16) return ((const float *)w)[i];
    uint32_t u = (uint32_t)((const uint16_t *)w)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* y[t0 .. t0+tb, n0 .. n0+rb] for rb <= MM_RB weight rows and tb <= MM_TB tokens. Always inlined so
 * that rb and tb are constants wherever it is expanded. */
static inline __attribute__((always_inline)) void mm_tile(float *restrict y, const float *restrict x,
                                                          const void *restrict w, int wbf16, int64_t n_in,
                                                          int64_t n_out, int64_t n0, int64_t t0, int rb, int tb) {
    float acc[MM_RB][MM_TB] = {{0}}; // [rb, tb]
    for (int64_t k = 0; k < n_in; k++)
        for (int r = 0; r < rb; r++) {
            float wv = mm_wload(w, wbf16, (n0 + r) * n_in + k);
            for (int t = 0; t < tb; t++) acc[r][t] += wv * x[(t0 + t) * n_in + k];
        }
    for (int t = 0; t < tb; t++)
        for (int r = 0; r < rb; r++) y[(t0 + t) * n_out + n0 + r] = acc[r][t];
}

/* Rows [lo, hi) for the tokens [t0, t1) in tiles of tb tokens (t1 - t0 a multiple of tb). */
static inline __attribute__((always_inline)) void mm_rows(float *restrict y, const float *restrict x,
                                                          const void *restrict w, int wbf16, int64_t n_in,
                                                          int64_t n_out, int64_t lo, int64_t hi, int64_t t0,
                                                          int64_t t1, int tb) {
    int64_t n0 = lo;
    for (; n0 + MM_RB <= hi; n0 += MM_RB)
        for (int64_t t = t0; t < t1; t += tb) mm_tile(y, x, w, wbf16, n_in, n_out, n0, t, MM_RB, tb);
    for (; n0 < hi; n0++)
        for (int64_t t = t0; t < t1; t += tb) mm_tile(y, x, w, wbf16, n_in, n_out, n0, t, 1, tb);
}

static inline __attribute__((always_inline)) void mm_body(float *restrict y, const float *restrict x,
                                                          const void *restrict w, int wbf16, int64_t n_tok,
                                                          int64_t n_in, int64_t n_out, int32_t ith, int32_t nth) {
    int64_t base = n_out / nth, rem = n_out % nth; // balanced contiguous split of the rows
    int64_t lo = ith * base + (ith < rem ? ith : rem);
    int64_t hi = lo + base + (ith < rem ? 1 : 0);
    int64_t t_full = n_tok - n_tok % MM_TB;
    for (int64_t c0 = 0; c0 < t_full; c0 += MM_TC) {
        int64_t c1 = c0 + MM_TC < t_full ? c0 + MM_TC : t_full;
        mm_rows(y, x, w, wbf16, n_in, n_out, lo, hi, c0, c1, MM_TB);
    }
    int tb = (int)(n_tok % MM_TB);
    if (tb > 0) mm_rows(y, x, w, wbf16, n_in, n_out, lo, hi, t_full, n_tok, tb);
}

void kt_matmul_f32(float *restrict y, const float *restrict x, const float *restrict w, int64_t n_tok, int64_t n_in,
                   int64_t n_out, int32_t ith, int32_t nth) {
    mm_body(y, x, w, 0, n_tok, n_in, n_out, ith, nth);
}

void kt_matmul_bf16(float *restrict y, const float *restrict x, const uint16_t *restrict w, int64_t n_tok,
                    int64_t n_in, int64_t n_out, int32_t ith, int32_t nth) {
    mm_body(y, x, w, 1, n_tok, n_in, n_out, ith, nth);
}
