/* ref_qops: naive reference twins of the generic kernels on block-quantised weights, built on
 * ref_quant.h's independent dequantiser, in llama2.c style: plain loops, no parallelism.
 * The "exact" mode dequantises and sums in double; the "int8" mode follows runtime/quant.h's
 * arithmetic (activations per 32 elements, integer sums, f32 fmaf per block) from the block formulas. */
#ifndef MOEC_REF_QOPS_H
#define MOEC_REF_QOPS_H
#include <stdint.h>

#include "dtype.h"

/* y[T, H] = the dequantised rows ids[t] of table [V, H] of block type dt. */
void ref_qembed(float *y, const int32_t *ids, int64_t T, const void *table, DType dt, int64_t H);
/* y[T, N] = x[T, K] dequant(w)[N, K]^T (+ bias[N]), double sums. */
void ref_qmatmul(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N,
                 const float *bias);
/* The int8 mode: y[t, n] = int8 dot of row n of w with x[t] quantised per 32 elements (+ bias[n]). */
void ref_qmatmul_int8(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N,
                      const float *bias);
/* Routed experts of block types, each matrix its own type: gate/up [E] -> [I, H], down [E] -> [H, I];
 * int8: the three matmuls in the int8 mode (else exact); capacity per expert in token order. */
void ref_qmoe_ffn(float *y, const float *x, const MoeRoute *routes, int64_t T, int64_t E, int64_t k, int64_t H,
                  int64_t I, const void *const *gate, DType gdt, const void *const *up, DType udt,
                  const void *const *down, DType ddt, int int8, int64_t capacity, int64_t *dropped);

#endif
