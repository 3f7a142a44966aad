/* ref_ops: naive reference twins of every kernel, in llama2.c style: plain loops, double
 * accumulation, no parallelism, no cleverness. They are the test oracles. */
#ifndef MOEC_REF_OPS_H
#define MOEC_REF_OPS_H
#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"

void ref_embed(float *y, const int32_t *ids, int64_t T, const void *table, DType dt, int64_t H);
void ref_rmsnorm(float *y, const float *x, int64_t T, int64_t N, const float *w, int64_t G, float eps);
void ref_matmul(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N, const float *bias);
/* x rounded to the nearest bf16 value, ties to even (frexp/nearbyint/ldexp, not bit tricks). */
float ref_round_bf16(float x);
/* ref_matmul with each x element first rounded by ref_round_bf16 (the bf16 activation mode). */
void ref_matmul_act_bf16(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N,
                         const float *bias);
void ref_rope(float *y, const float *x, int64_t T, int64_t heads, int64_t hd, const float *inv_freq, float mscale,
              int64_t pos0);
/* q [T, nh*hd] at positions pos0.., keys/values [pos0+T, nkv*hd] (all positions so far). */
void ref_attention(float *out, const float *q, const float *keys, const float *vals, int64_t T, int64_t nh,
                   int64_t nkv, int64_t hd, int64_t window, int64_t pos0);
void ref_router(MoeRoute *routes, const float *logits, int64_t T, int64_t E, int64_t k, bool renorm);
/* Experts as f32 [E, I, H], [E, I, H], [E, H, I]; capacity per expert in token order. */
void ref_moe_ffn(float *y, const float *x, const MoeRoute *routes, int64_t T, int64_t E, int64_t k, int64_t H,
                 int64_t I, const float *gate, const float *up, const float *down, int64_t capacity, int64_t *dropped);
/* ref_moe_ffn in the bf16 activation mode: each matrix's input (x; silu(g) * u, rounded to f32 first)
 * rounded by ref_round_bf16. */
void ref_moe_ffn_act_bf16(float *y, const float *x, const MoeRoute *routes, int64_t T, int64_t E, int64_t k,
                          int64_t H, int64_t I, const float *gate, const float *up, const float *down,
                          int64_t capacity, int64_t *dropped);

#endif
