/* kernels: the generic path's shape-generic, unfused kernels (f32 compute; weights read in their
 * stored dtype and widened as they are read; block-quantised weights (runtime/quant.h) dequantised
 * a few rows at a time, or in the int8 activation mode multiplied as integers). Each kernel
 * parallelises itself with OpenMP over independent rows and keeps only per-call work buffers.
 * Every kernel has a plain reference twin in tests/ref/ (ref_ops.c, ref_qops.c for block types).
 * Shapes are outermost first; a weight row of K elements is quant_row_bytes(dtype, K) bytes. */
#ifndef MOEC_INTERP_KERNELS_H
#define MOEC_INTERP_KERNELS_H
#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"

/* How the f32 activations meet a matrix (`--act` of moec run, compile, bench and kld):
 *   GK_ACT_EXACT  f32 activations times the weights (block types dequantised: quant_dequant_row),
 *                 f32 sums: the computation the goldens define;
 *   GK_ACT_INT8   a block-quantised matrix: each activation row quantised per 32 elements
 *                 (quant_act_q8), then quant_dot_int8 per weight row: integer dot products, as
 *                 ggml's CPU backend (other dtypes: exact);
 *   GK_ACT_BF16   a bf16 matrix: each activation row rounded to bf16 (to nearest even), then f32
 *                 sums of the exact products, as AVX512_BF16's vdpbf16ps and AMX-BF16 compute; the
 *                 router's and the shared-expert gate's logits stay exact (other dtypes: exact). */
typedef enum GkAct { GK_ACT_EXACT, GK_ACT_INT8, GK_ACT_BF16 } GkAct;
/* "exact", "int8", "bf16" */
static inline const char *gk_act_name(GkAct a) { return a == GK_ACT_INT8 ? "int8" : a == GK_ACT_BF16 ? "bf16" : "exact"; }

/* y[T, H] = table[ids[t], :] (rows of a block type dequantised) */
void gk_embed(float *y, const int32_t *ids, int64_t T, const void *table, DType dt, int64_t H);
/* y[T, N]: each group of G consecutive values of a row normalised by its RMS, times w[G]. */
void gk_rmsnorm(float *y, const float *x, int64_t T, int64_t N, const void *w, DType wdt, int64_t G, float eps);
/* y[T, N] = x[T, K] w[N, K]^T (+ bias[N]); bias may be NULL. w of any weight dtype; act says how x
 * meets w: GK_ACT_INT8 matters for a block-type w, GK_ACT_BF16 for a bf16 w, else exact. */
void gk_matmul(float *y, const float *x, int64_t T, int64_t K, const void *w, DType wdt, int64_t N, const void *bias,
               DType bdt, GkAct act);
/* y[n] = x[n] each rounded to the nearest bf16 (ties to even; f32_to_bf16), as f32; y may be x. */
void gk_round_bf16(float *y, const float *x, int64_t n);
void gk_add(float *y, const float *a, const float *b, int64_t n);
void gk_clamp(float *y, const float *x, int64_t n, float c);
void gk_swiglu(float *y, const float *g, const float *u, int64_t n);
/* y[T, N] = sigmoid(g[T]) * x[T, N] */
void gk_sigmoid_scale(float *y, const float *g, const float *x, int64_t T, int64_t N);
/* Half-split RoPE of x[T, heads*hd], row t at position pos[t]. */
void gk_rope(float *y, const float *x, int64_t T, int64_t heads, int64_t hd, const float *inv_freq, float mscale,
             const int64_t *pos);
/* Writes row t's k, v [nkv*hd] at position pos[t] of slot slot[t]'s caches (kcache + slot[t] *
 * slot_stride: [S, nkv*hd]), then out[T, nh*hd] = softmax(q k^T / sqrt(hd), causal + window) v over
 * each row's slot, query head h on kv head h/(nh/nkv). */
void gk_attention(float *out, const float *q, const float *k, const float *v, int64_t T, float *kcache, float *vcache,
                  int64_t slot_stride, int64_t nh, int64_t nkv, int64_t hd, int64_t window, const int64_t *pos,
                  const int32_t *slot);
/* routes[T, k] from router logits[T, E]: softmax over all E, top k by probability (descending),
 * renormalised when asked. */
void gk_router(MoeRoute *routes, const float *logits, int64_t T, int64_t E, int64_t k, bool renorm);

typedef struct GkExperts {
    int64_t n_exp, top_k, d_model, d_ff;
    DType gate_dt, up_dt, down_dt;     /* each matrix its own dtype (Q4_K_M mixes Q4_K and Q6_K) */
    GkAct act;
    const void *const *gate;           /* [n_exp] -> [d_ff, d_model] */
    const void *const *up;             /* [n_exp] -> [d_ff, d_model] */
    const void *const *down;           /* [n_exp] -> [d_model, d_ff] */
} GkExperts;

/* Expert capacity of a step of T tokens: ceil(f*T*k/E) clamped to [1, T]; f <= 0 means dropless (T). */
int64_t gk_capacity(double factor, int64_t T, int64_t k, int64_t E);
/* Bytes of scratch gk_moe_ffn needs for T tokens. */
size_t gk_moe_scratch_bytes(const GkExperts *ex, int64_t T);
/* y[T, d_model] = sum over each token's routes of w * down_e(silu(gate_e x) * up_e x), each expert
 * taking at most `capacity` tokens in token order; the assignments beyond it are dropped (counted
 * into *dropped). counts[n_exp] (may be NULL) gets the tokens each expert processed. */
void gk_moe_ffn(float *y, const float *x, const MoeRoute *routes, int64_t T, const GkExperts *ex, int64_t capacity,
                void *scratch, int64_t *dropped, int64_t *counts);

#endif
