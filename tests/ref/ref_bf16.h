/* ref_bf16: plain twins of the bf16 activation mode (GK_ACT_BF16 of compiler/interp/kernels.h,
 * KT_ACT_BF16 of compiler/kernels/kt_common.h): activations rounded to bf16 before each product with
 * a bf16 matrix. Rounding here goes through frexp and nearbyint in double (no bit tricks), sums in
 * double, so they share no code with what they check. */
#ifndef MOEC_REF_BF16_H
#define MOEC_REF_BF16_H
#include <stdint.h>

#include "dtype.h"

/* x rounded to the nearest bf16 (8 significant bits), ties to even; x finite. */
float ref_bf16_round(float x);
/* v[i] = ref_bf16_round(v[i]) for i < n. */
void ref_bf16_round_all(float *v, int64_t n);
/* ref_moe_ffn (ref_ops.h) with gate and up applied to x rounded to bf16, and down to
 * silu(g) u rounded to bf16, then times the routing weight. */
void ref_moe_ffn_bf16(float *y, const float *x, const MoeRoute *routes, int64_t T, int64_t E, int64_t k, int64_t H,
                      int64_t I, const float *gate, const float *up, const float *down, int64_t capacity);

#endif
