/* specialize: bind the tokens per step and the expert capacity; no dim stays symbolic. */
#include <string.h>

#include "passes.h"
#include "interp/kernels.h"

Graph *pass_specialize(Arena *a, const Graph *g, int64_t n_tok, double capacity_factor) {
    Graph *s = ir_graph_new(a);
    *s = *g;
    s->arena = a;
    s->nodes = arena_alloc(a, sizeof(Node) * g->n);
    s->cap = g->n;
    memcpy(s->nodes, g->nodes, sizeof(Node) * g->n);
    s->n_tok = n_tok;
    for (uint32_t i = 0; i < s->n; i++) {
        Node *n = &s->nodes[i];
        for (int k = 0; k < n->rank; k++)
            if (n->shape[k] == SYM_T) n->shape[k] = n_tok;
        if (n->op == OP_MOE_FFN) n->a.moe.capacity = gk_capacity(capacity_factor, n_tok, n->a.moe.top_k, n->a.moe.n_exp);
    }
    return s;
}
