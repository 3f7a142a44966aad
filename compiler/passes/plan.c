/* plan: give every activation and kernel scratch a byte offset in one static arena.
 * Linear scan over the kernels in order: a value's block is freed after its last use, a scratch
 * block right after its kernel; allocation is first fit over the free gaps, 64-byte aligned.
 * Router dispatch buffers (read back for --trace) and the logits live to the end of the step. */
#include <string.h>

#include "passes.h"

typedef struct Block {
    int64_t off, size;
    uint32_t owner; /* node whose value (or scratch, owner | 1u << 31) it holds */
} Block;

typedef struct Planner {
    Block *live;
    int n;
    int64_t top;
} Planner;

static int64_t place(Planner *p, int64_t size, uint32_t owner) {
    size = (size + 63) & ~(int64_t)63;
    int64_t at = 0;
    int pos = 0;
    for (; pos < p->n; pos++) { /* live blocks are kept sorted by offset */
        if (p->live[pos].off - at >= size) break;
        at = p->live[pos].off + p->live[pos].size;
    }
    memmove(&p->live[pos + 1], &p->live[pos], sizeof(Block) * (size_t)(p->n - pos));
    p->live[pos] = (Block){at, size, owner};
    p->n++;
    if (at + size > p->top) p->top = at + size;
    return at;
}

static void release(Planner *p, uint32_t owner) {
    for (int i = 0; i < p->n; i++)
        if (p->live[i].owner == owner) {
            memmove(&p->live[i], &p->live[i + 1], sizeof(Block) * (size_t)(p->n - i - 1));
            p->n--;
            return;
        }
}

void pass_plan(Graph *g) {
    uint32_t *last = arena_alloc(g->arena, sizeof(uint32_t) * g->n);
    for (uint32_t i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        last[i] = i;
        for (int k = 0; k < n->n_in; k++)
            if (!ir_is_none(n->in[k])) last[n->in[k].id] = i;
    }
    for (uint32_t i = 0; i < g->n; i++)
        if (g->nodes[i].op == OP_FROUTER || i == g->logits.id) last[i] = UINT32_MAX; /* read after the step */
    Planner p = {arena_alloc(g->arena, sizeof(Block) * (2 * (size_t)g->n + 1)), 0, 0};
    for (uint32_t i = 0; i < g->n; i++) {
        Node *n = &g->nodes[i];
        if (n->op == OP_WEIGHT) continue;
        n->offset = place(&p, ir_elems(n, g->n_tok) * (int64_t)dtype_size(n->dtype), i);
        if (n->scratch_bytes) {
            n->scratch_offset = place(&p, n->scratch_bytes, i | 1u << 31);
            release(&p, i | 1u << 31);
        }
        for (int k = 0; k < n->n_in; k++) {
            ValueId v = n->in[k];
            if (!ir_is_none(v) && last[v.id] == i && g->nodes[v.id].op != OP_WEIGHT) release(&p, v.id);
        }
    }
    g->arena_bytes = p.top;
}
