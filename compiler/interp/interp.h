/* interp: the generic path. Runs a Graph node by node with the shape-generic kernels of
 * kernels.h, keeping an f32 KV cache per attention node and sequence slot. One Interp serves
 * n_slots sequences, as a program compiled for that batch does: interp_step_slots feeds T rows,
 * each of one slot at that slot's next position (a prefill of one slot, or a decode step of one row
 * per live slot in ascending slot order); interp_step is the one-slot form (slot 0).
 * All buffers are allocated in interp_new for at most max_tok tokens per step and max_ctx per slot. */
#ifndef MOEC_INTERP_H
#define MOEC_INTERP_H
#include "ir.h"
#include "kernels.h"

typedef struct Interp Interp;

/* capacity_factor <= 0: dropless; act: how the activations meet the weight matrices (kernels.h;
 * in the bf16 mode the router's and the shared-expert gate's logits stay exact). Returns NULL when the
 * buffers cannot be allocated. */
Interp *interp_new(const Graph *g, int64_t max_ctx, int64_t max_tok, int64_t n_slots, double capacity_factor,
                   GkAct act);
void interp_free(Interp *ip);
/* Runs one step of T tokens of slot 0 (1 <= T <= max_tok, pos + T <= max_ctx; asserted); expert
 * capacity from T tokens. */
void interp_step(Interp *ip, const int32_t *ids, int64_t T);
/* Runs one step of T rows, row t of slot slots[t] at that slot's next position; expert capacity
 * C = ceil(f cap_tokens k / E) clamped to [1, T] (cap_tokens: the compiled step's rows, B for a
 * decode step), assignments counted in row order. */
void interp_step_slots(Interp *ip, const int32_t *ids, const int32_t *slots, int64_t T, int64_t cap_tokens);
/* Tokens in slot 0's KV cache so far; in slot's; slot back to position 0. */
int64_t interp_pos(const Interp *ip);
int64_t interp_slot_pos(const Interp *ip, int slot);
void interp_slot_reset(Interp *ip, int slot);
/* The output of node v in the last step ([T, row] floats, or MoeRoute for a ROUTER node). */
const void *interp_value(const Interp *ip, ValueId v);
/* Assignments dropped by expert capacity so far, and tokens processed per expert, of layer l
 * (counts: [n_exp], NULL for a dense layer). */
int64_t interp_dropped(const Interp *ip, int layer);
const int64_t *interp_expert_counts(const Interp *ip, int layer);

#endif
