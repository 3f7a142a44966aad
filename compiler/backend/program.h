/* program: emits the compiled model into an LLVM module: the specialised kernels of two fused
 * graphs (prefill and decode), the straight-line step functions that call them with constant
 * offsets into the arena, weights and KV cache (a barrier between kernels) — prefill, decode and
 * prefill_last (prefill with the logits of one row) — the manifest, and the `moe_program` symbol
 * the runtime links against (runtime/format.h). */
#ifndef MOEC_BACKEND_PROGRAM_H
#define MOEC_BACKEND_PROGRAM_H
#include "backend/codegen.h"
#include "format.h"
#include "ir.h"

/* KV-cache layout shared by the step functions: per layer, the keys of every slot then the values
 * of every slot, f32, each slot's laid out as compiler/kernels/kernels.h says (kt_k_index, kt_v_index). */
typedef struct KvLayout {
    int64_t S;                 /* positions per layer: the context rounded up to 16 */
    int64_t layer_off[MOE_MAX_LAYERS]; /* byte offset of layer l's keys; values follow */
    int64_t layer_bytes[MOE_MAX_LAYERS];
    int64_t total;
} KvLayout;

/* Computes the KV layout of batch slots from a fused graph's FQKV_ROPE nodes. */
void program_kv_layout(const Graph *fused, int64_t S, int64_t batch, KvLayout *kv);
/* Adds the three step functions, the manifest and moe_program to cg's module. */
bool program_emit(Codegen *cg, const Graph *prefill, const Graph *decode, const KvLayout *kv,
                  const MoeManifest *man, Diag *d);

#endif
