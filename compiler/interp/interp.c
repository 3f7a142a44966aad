#include "interp.h"

#include <stdlib.h>
#include <string.h>

#include "kernels.h"

struct Interp {
    const Graph *g;
    int64_t max_ctx, max_tok, n_slots;
    int64_t *pos;        /* [n_slots] tokens in each slot's KV cache */
    int64_t *row_pos;    /* [max_tok] the step's row positions */
    int32_t *row_slot;   /* [max_tok] the step's row slots */
    double capacity_factor;
    GkAct act;           /* how activations meet the matrices (kernels.h) */
    bool *exact_mm;      /* [g->n] MATMUL nodes kept exact in the bf16 mode: the router's logits and
                          * the shared-expert gate's logit (the compiled path keeps them f32) */
    void **buf;          /* [g->n] per node output, NULL for weights */
    float **kcache;      /* [g->n] per ATTENTION node: [n_slots][max_ctx, nkv*hd] */
    float **vcache;
    void *moe_scratch;
    int64_t *dropped;    /* [n_layers] */
    int64_t **counts;    /* [n_layers] -> [n_exp] */
};

static const void *weight_data(const Node *w) { return w->a.weight.parts[0]->data; }

Interp *interp_new(const Graph *g, int64_t max_ctx, int64_t max_tok, int64_t n_slots, double capacity_factor,
                   GkAct act) {
    Interp *ip = calloc(1, sizeof *ip);
    if (!ip) return NULL;
    ip->g = g;
    ip->max_ctx = max_ctx;
    ip->max_tok = max_tok;
    ip->n_slots = n_slots;
    ip->capacity_factor = capacity_factor;
    ip->act = act;
    ip->buf = calloc(g->n, sizeof(void *));
    ip->kcache = calloc(g->n, sizeof(float *));
    ip->vcache = calloc(g->n, sizeof(float *));
    ip->dropped = calloc((size_t)g->n_layers + 1, sizeof(int64_t));
    ip->counts = calloc((size_t)g->n_layers + 1, sizeof(int64_t *));
    ip->pos = calloc((size_t)n_slots, sizeof(int64_t));
    ip->row_pos = calloc((size_t)max_tok, sizeof(int64_t));
    ip->row_slot = calloc((size_t)max_tok, sizeof(int32_t));
    ip->exact_mm = calloc(g->n, sizeof(bool));
    bool ok = ip->buf && ip->kcache && ip->vcache && ip->dropped && ip->counts && ip->pos && ip->row_pos &&
              ip->row_slot && ip->exact_mm;
    size_t scratch = 0;
    for (uint32_t i = 0; ok && i < g->n; i++) {
        const Node *n = &g->nodes[i];
        if (n->op == OP_WEIGHT) continue;
        if (n->op == OP_ROUTER || n->op == OP_SIGMOID_SCALE) /* the logits, the gate g of sigmoid(g) * x */
            ip->exact_mm[n->in[0].id] = ir_node(g, n->in[0])->op == OP_MATMUL;
        size_t bytes = (size_t)ir_elems(n, max_tok) * dtype_size(n->dtype);
        ok = (ip->buf[i] = malloc(bytes ? bytes : 1)) != NULL;
        if (n->op == OP_ATTENTION) {
            size_t kv = sizeof(float) * (size_t)(n_slots * max_ctx) * (size_t)(n->a.attn.n_kv * n->a.attn.head_dim);
            ok = ok && (ip->kcache[i] = malloc(kv)) && (ip->vcache[i] = malloc(kv));
        }
        if (n->op == OP_MOE_FFN) {
            const Node *gate = ir_node(g, n->in[2]);
            GkExperts ex = {.n_exp = n->a.moe.n_exp, .top_k = n->a.moe.top_k, .d_model = n->shape[1],
                            .d_ff = gate->shape[1]};
            size_t s = gk_moe_scratch_bytes(&ex, max_tok);
            scratch = s > scratch ? s : scratch;
            ok = ok && (ip->counts[n->a.moe.layer] = calloc((size_t)ex.n_exp, sizeof(int64_t)));
        }
    }
    if (ok && scratch) ok = (ip->moe_scratch = malloc(scratch)) != NULL;
    if (!ok) {
        interp_free(ip);
        return NULL;
    }
    return ip;
}

void interp_free(Interp *ip) {
    if (!ip) return;
    for (uint32_t i = 0; ip->buf && i < ip->g->n; i++) {
        free(ip->buf[i]);
        if (ip->kcache) free(ip->kcache[i]);
        if (ip->vcache) free(ip->vcache[i]);
    }
    for (int l = 0; ip->counts && l <= ip->g->n_layers; l++) free(ip->counts[l]);
    free(ip->counts);
    free(ip->dropped);
    free(ip->buf);
    free(ip->kcache);
    free(ip->vcache);
    free(ip->moe_scratch);
    free(ip->pos);
    free(ip->row_pos);
    free(ip->row_slot);
    free(ip->exact_mm);
    free(ip);
}

int64_t interp_pos(const Interp *ip) { return ip->pos[0]; }
int64_t interp_slot_pos(const Interp *ip, int slot) { return ip->pos[slot]; }
void interp_slot_reset(Interp *ip, int slot) { ip->pos[slot] = 0; }
const void *interp_value(const Interp *ip, ValueId v) { return ip->buf[v.id]; }
int64_t interp_dropped(const Interp *ip, int layer) { return ip->dropped[layer]; }
const int64_t *interp_expert_counts(const Interp *ip, int layer) { return ip->counts[layer]; }

void interp_step(Interp *ip, const int32_t *ids, int64_t T) {
    MOE_ASSERT(T >= 1 && T <= ip->max_tok);
    for (int64_t t = 0; t < T; t++) ip->row_slot[t] = 0;
    interp_step_slots(ip, ids, ip->row_slot, T, T);
}

void interp_step_slots(Interp *ip, const int32_t *ids, const int32_t *slots, int64_t T, int64_t cap_tokens) {
    const Graph *g = ip->g;
    MOE_ASSERT(T >= 1 && T <= ip->max_tok && cap_tokens >= T);
    for (int64_t t = 0; t < T; t++) { /* a row follows its slot's earlier rows of this step */
        MOE_ASSERT(slots[t] >= 0 && slots[t] < ip->n_slots);
        ip->row_slot[t] = slots[t];
        ip->row_pos[t] = ip->pos[slots[t]]++;
        MOE_ASSERT(ip->row_pos[t] < ip->max_ctx);
    }
    for (uint32_t i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        void *y = ip->buf[i];
        const Node *in0 = n->n_in > 0 ? ir_node(g, n->in[0]) : NULL;
        const Node *in1 = n->n_in > 1 ? ir_node(g, n->in[1]) : NULL;
        const void *x0 = n->n_in > 0 ? ip->buf[n->in[0].id] : NULL;
        const void *x1 = n->n_in > 1 ? ip->buf[n->in[1].id] : NULL;
        const int64_t row = ir_row_elems(n);
        switch (n->op) {
        case OP_INPUT_IDS: memcpy(y, ids, sizeof(int32_t) * (size_t)T); break;
        case OP_WEIGHT: break;
        case OP_EMBED: gk_embed(y, x0, T, weight_data(in1), in1->dtype, row); break;
        case OP_RMSNORM: gk_rmsnorm(y, x0, T, row, weight_data(in1), in1->dtype, in1->shape[0], n->a.norm.eps); break;
        case OP_MATMUL: {
            const Node *b = n->n_in > 2 ? ir_node(g, n->in[2]) : NULL;
            gk_matmul(y, x0, T, in0->shape[1], weight_data(in1), in1->dtype, row, b ? weight_data(b) : NULL,
                      b ? b->dtype : DT_F32, ip->exact_mm[i] && ip->act == GK_ACT_BF16 ? GK_ACT_EXACT : ip->act);
            break;
        }
        case OP_ADD: gk_add(y, x0, x1, T * row); break;
        case OP_CLAMP: gk_clamp(y, x0, T * row, n->a.clamp.c); break;
        case OP_SWIGLU: gk_swiglu(y, x0, x1, T * row); break;
        case OP_SIGMOID_SCALE: gk_sigmoid_scale(y, x0, x1, T, row); break;
        case OP_ROPE:
            gk_rope(y, x0, T, n->a.rope.n_heads, n->a.rope.head_dim, n->a.rope.inv_freq, n->a.rope.mscale, ip->row_pos);
            break;
        case OP_ATTENTION: {
            const AttnAttr *at = &n->a.attn;
            gk_attention(y, x0, x1, ip->buf[n->in[2].id], T, ip->kcache[i], ip->vcache[i],
                         ip->max_ctx * at->n_kv * at->head_dim, at->n_heads, at->n_kv, at->head_dim, at->window,
                         ip->row_pos, ip->row_slot);
            break;
        }
        case OP_ROUTER:
            gk_router(y, x0, T, n->a.router.n_exp, n->a.router.top_k, n->a.router.renorm);
            break;
        case OP_MOE_FFN: {
            const Node *gate = ir_node(g, n->in[2]), *up = ir_node(g, n->in[3]), *down = ir_node(g, n->in[4]);
            const void *pg[gate->a.weight.n_parts], *pu[gate->a.weight.n_parts], *pd[gate->a.weight.n_parts];
            for (int e = 0; e < gate->a.weight.n_parts; e++) {
                pg[e] = gate->a.weight.parts[e]->data;
                pu[e] = up->a.weight.parts[e]->data;
                pd[e] = down->a.weight.parts[e]->data;
            }
            GkExperts ex = {.n_exp = n->a.moe.n_exp, .top_k = n->a.moe.top_k, .d_model = row, .d_ff = gate->shape[1],
                            .gate_dt = gate->dtype, .up_dt = up->dtype, .down_dt = down->dtype, .act = ip->act,
                            .gate = pg, .up = pu, .down = pd};
            int64_t cap = gk_capacity(ip->capacity_factor, cap_tokens, ex.top_k, ex.n_exp);
            cap = cap < T ? cap : T; /* a step's capacity is at most its real rows */
            gk_moe_ffn(y, x0, x1, T, &ex, cap, ip->moe_scratch, &ip->dropped[n->a.moe.layer],
                       ip->counts[n->a.moe.layer]);
            break;
        }
        default: MOE_UNREACHABLE(); /* fused ops run only compiled */
        }
    }
}
