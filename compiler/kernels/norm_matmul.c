/* kt_norm_matmul: y[T, N] = (resid +) rmsnorm(x) w^T (+ bias), the projection template (qkv, o_proj,
 * lm_head and any plain linear layer).
 *
 *   xn = has_norm ? scratch + ith T K : x                       // [T, K]
 *   if has_norm: for t < T: xn[t] = norm_w * x[t] / sqrt(mean(x[t]^2) + eps)
 *   [lo, hi) = kt_split(N, ith, nth)                            // output rows of this thread
 *   t_full = T - T % 4
 *   for c0 in 0..t_full step TC:                                // token chunk: xn rows stay in L2
 *     for n0 in lo..hi step 4:                                  // row block (tail: 1 row at a time)
 *       for t0 in c0..min(c0 + TC, t_full) step 4:
 *         block(n0, t0, 4, 4)
 *   if T % 4: for n0 in lo..hi step 4: block(n0, t_full, 4, T % 4)     // T % 4 is a constant
 *
 *   block(n0, t0, rb, tb):
 *     acc[rb][tb] = 0
 *     for k < K: for r < rb: for t < tb: acc[r][t] += w[n0+r][k] xn[t0+t][k]  // vectorised over k
 *     y[t0+t][n0+r] = acc[r][t] (+ bias[n0+r]) (+ resid[t0+t][n0+r])
 *
 * Specialised: T, K, N, eps, has_norm, has_bias, has_resid and wdt are constants, so the k loop has
 * a constant trip count, every block has constant rb and tb, and the flags and the dtype test fold
 * away. Each weight row is read once per token chunk (TC = kt_chunk(K) tokens, 128 at K = 1024);
 * decode (T = 1) streams w exactly once. y must not overlap x or resid (restrict; each y element is
 * written once, after its resid element is read, by the thread that owns it). */
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kt_common.h"

/* Output rows [n0, n0 + rb) for tokens [t0, t0 + tb). */
static inline void nm_block(float *restrict y, const float *restrict xn, const void *restrict w,
                            const float *restrict bias, const float *restrict resid, int rb, int tb, int64_t t0,
                            int64_t n0, int64_t K, int64_t N, int32_t has_bias, int32_t has_resid, int32_t wdt) {
    const float *xs[KT_TB]; // KT_TB x [K]
    for (int t = 0; t < KT_TB; t++) xs[t] = xn + (t0 + (t < tb ? t : 0)) * K;
    float acc[KT_RB][KT_TB]; // [rb, tb]
    kt_tile(acc, rb, tb, w, n0 * K, K, xs, K, wdt);
    for (int t = 0; t < tb; t++)
        for (int r = 0; r < rb; r++) {
            int64_t o = (t0 + t) * N + n0 + r;
            float v = acc[r][t];
            if (has_bias) v += bias[n0 + r];
            if (has_resid) v += resid[o];
            y[o] = v;
        }
}

void kt_norm_matmul(float *restrict y, const float *restrict x, const float *restrict norm_w,
                    const void *restrict w, const float *restrict bias, const float *restrict resid,
                    float *restrict scratch, int64_t T, int64_t K, int64_t N, float eps, int32_t has_norm,
                    int32_t has_bias, int32_t has_resid, int32_t wdt, int32_t ith, int32_t nth) {
    const float *xn = x; // [T, K]
    if (has_norm) {
        float *own = scratch + (int64_t)ith * T * K; // [T, K]
        kt_rmsnorm_rows(own, x, norm_w, T, K, eps);
        xn = own;
    }
    int64_t lo, hi;
    kt_split(N, ith, nth, &lo, &hi);
    int64_t t_full = T - T % KT_TB, tc = kt_chunk(K);
    for (int64_t c0 = 0; c0 < t_full; c0 += tc) {
        int64_t c1 = c0 + tc < t_full ? c0 + tc : t_full, n0 = lo;
        for (; n0 + KT_RB <= hi; n0 += KT_RB)
            for (int64_t t0 = c0; t0 < c1; t0 += KT_TB)
                nm_block(y, xn, w, bias, resid, 4, 4, t0, n0, K, N, has_bias, has_resid, wdt);
        for (; n0 < hi; n0++)
            for (int64_t t0 = c0; t0 < c1; t0 += KT_TB)
                nm_block(y, xn, w, bias, resid, 1, 4, t0, n0, K, N, has_bias, has_resid, wdt);
    }
    if (T % KT_TB) {
        int tb = (int)(T % KT_TB);
        int64_t n0 = lo;
        for (; n0 + KT_RB <= hi; n0 += KT_RB)
            nm_block(y, xn, w, bias, resid, 4, tb, t_full, n0, K, N, has_bias, has_resid, wdt);
        for (; n0 < hi; n0++) nm_block(y, xn, w, bias, resid, 1, tb, t_full, n0, K, N, has_bias, has_resid, wdt);
    }
}
