/* interp: the generic path. Runs a Graph node by node with the shape-generic kernels of
 * kernels.h, keeping an f32 KV cache per attention node. One Interp serves one sequence:
 * interp_step feeds T tokens at positions pos..pos+T-1 (prefill, then decode steps of 1).
 * All buffers are allocated in interp_new for at most max_tok tokens per step and max_ctx in all. */
#ifndef MOEC_INTERP_H
#define MOEC_INTERP_H
#include "ir.h"
#include "kernels.h"

typedef struct Interp Interp;

/* capacity_factor <= 0: dropless; act: how block-quantised weights meet the activations
 * (kernels.h). Returns NULL when the buffers cannot be allocated. */
Interp *interp_new(const Graph *g, int64_t max_ctx, int64_t max_tok, double capacity_factor, GkAct act);
void interp_free(Interp *ip);
/* Runs one step of T tokens (1 <= T <= max_tok, pos + T <= max_ctx; asserted). */
void interp_step(Interp *ip, const int32_t *ids, int64_t T);
/* Tokens in the KV cache so far. */
int64_t interp_pos(const Interp *ip);
/* The output of node v in the last step ([T, row] floats, or MoeRoute for a ROUTER node). */
const void *interp_value(const Interp *ip, ValueId v);
/* Assignments dropped by expert capacity so far, and tokens processed per expert, of layer l
 * (counts: [n_exp], NULL for a dense layer). */
int64_t interp_dropped(const Interp *ip, int layer);
const int64_t *interp_expert_counts(const Interp *ip, int layer);

#endif
