/* passes: the compile pipeline between the graph builder and the backend, one line each.
 * Each pass returns a graph that ir_verify accepts; --dump-after PASS prints it. */
#ifndef MOEC_PASSES_H
#define MOEC_PASSES_H
#include "ir.h"

/* specialize: copy of g with T bound to n_tok tokens per step and the expert capacity
 * C = ceil(f*T*k/E) clamped to [1, T] (f <= 0: dropless, C = T); afterwards no dim is symbolic. */
Graph *pass_specialize(Arena *a, const Graph *g, int64_t n_tok, double capacity_factor);

/* fuse: a specialised graph -> the fused kernel graph (FNORM_MATMUL, FQKV_ROPE, FATTENTION,
 * FROUTER, FEXPERTS, FREDUCE, EMBED) with packed WEIGHT nodes; threads = most threads a step may
 * run (sizes the per-thread partials and scratch); context = KV positions (sizes the RoPE table);
 * amx: 0, or the activation planes (1 to 3) of AMX-BF16 tiles, which the matmul kernels of a step
 * of KT_TILE_T (16) tokens or more then use (their attribute amx, and scratch for the packed activations). */
Graph *pass_fuse(Arena *a, const Graph *spec, int64_t threads, int64_t context, int amx, Diag *d);

/* pack: gives every packed WEIGHT node of the graphs one byte offset in the weights section;
 * identical packings (same tensors, same layout) share one. Returns the total bytes. */
typedef struct PackEntry {
    PackKind kind;
    const TensorInfo **parts;
    int n_parts;
    DType dtype;               /* packed dtype */
    DType dtype2;              /* PACK_PANEL: rows [split, rows) of this block type (ir.h); split 0: none */
    int64_t split;
    int64_t rows, cols;        /* packed [rows, cols] (PACK_GATE_UP: rows = E*I*2) */
    RopeAttr rope;             /* PACK_ROPE */
    int64_t rope_positions;
    int64_t offset, bytes;
} PackEntry;
typedef struct PackTable {
    PackEntry *e;
    int n, cap;
    int64_t total;
    uint32_t dequantised;      /* bit t: a matrix of block type t is packed dequantised to f32 */
} PackTable;
void pass_pack(Arena *a, PackTable *pt, Graph *fused);
/* Writes every entry's bytes (converted and laid out) through write(user, bytes, n) in offset
 * order, zero padding between; progress(user, done, total) after each entry. False on failure. */
bool pack_write(const PackTable *pt, bool (*write)(void *user, const void *p, size_t n),
                void (*progress)(void *user, int64_t done, int64_t total), void *user);

/* plan: buffer liveness -> byte offsets in one static arena (node->offset, node->scratch_offset,
 * g->arena_bytes). Router dispatch buffers and the logits stay live to the end of the step. */
void pass_plan(Graph *fused);

#endif
