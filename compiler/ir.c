#include "ir.h"

#include <inttypes.h>
#include <string.h>

static const struct {
    const char *name;
    int min_in, max_in;
} op_info[OP_COUNT] = {
#define OP(name, min_in, max_in, doc) {#name, min_in, max_in},
#include "ops.def"
#undef OP
};

const char *ir_op_name(Op op) { return op < OP_COUNT ? op_info[op].name : "?"; }

const char *ir_pack_name(PackKind k) {
    static const char *const names[] = {"none", "rows", "panel", "panel_each", "gate_up", "rope"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

Graph *ir_graph_new(Arena *a) {
    Graph *g = arena_alloc(a, sizeof(Graph));
    g->arena = a;
    return g;
}

ValueId ir_add(Graph *g, Op op, const char *name, int n_in, const ValueId *in) {
    MOE_ASSERT(n_in >= op_info[op].min_in && n_in <= op_info[op].max_in);
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 256;
        Node *nodes = arena_alloc(g->arena, cap * sizeof(Node));
        if (g->n) memcpy(nodes, g->nodes, g->n * sizeof(Node));
        g->nodes = nodes;
        g->cap = cap;
    }
    Node *n = &g->nodes[g->n];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->dtype = DT_F32;
    n->name = name ? arena_strdup(g->arena, name) : "";
    n->n_in = n_in;
    n->offset = -1;
    for (int i = 0; i < n_in; i++) {
        MOE_ASSERT(ir_is_none(in[i]) || in[i].id < g->n);
        n->in[i] = in[i];
    }
    return (ValueId){g->n++};
}

static void set_shape2(Node *n, int64_t d0, int64_t d1) {
    n->rank = 2;
    n->shape[0] = d0;
    n->shape[1] = d1;
}

void ir_infer(Graph *g, ValueId v) {
    Node *n = ir_node(g, v);
    const Node *x = n->n_in > 0 ? ir_node(g, n->in[0]) : NULL;
    const Node *w = n->n_in > 1 ? ir_node(g, n->in[1]) : NULL;
    n->dtype = DT_F32;
    switch (n->op) {
    case OP_INPUT_IDS:
        n->dtype = DT_I32;
        n->rank = 1;
        n->shape[0] = SYM_T;
        break;
    case OP_WEIGHT: /* set by the builder */
    case OP_FNORM_MATMUL: case OP_FQKV_ROPE: case OP_FATTENTION: case OP_FROUTER: case OP_FEXPERTS: case OP_FREDUCE:
    case OP_FEXPERTS_ACT: case OP_FEXPERTS_DOWN:
        break;    /* fused ops: shapes set by the fuse pass */
    case OP_EMBED: set_shape2(n, SYM_T, w->shape[1]); break; /* ids [T], table [V, H] */
    case OP_MATMUL: set_shape2(n, x->shape[0], w->shape[0]); break;
    case OP_ROUTER:
        n->dtype = DT_ROUTE;
        set_shape2(n, x->shape[0], n->a.router.top_k);
        break;
    case OP_ATTENTION: set_shape2(n, x->shape[0], n->a.attn.n_heads * n->a.attn.head_dim); break;
    case OP_SIGMOID_SCALE: set_shape2(n, w->shape[0], w->shape[1]); break;
    case OP_RMSNORM: case OP_ADD: case OP_CLAMP: case OP_ROPE: case OP_SWIGLU: case OP_MOE_FFN:
        n->rank = x->rank;
        memcpy(n->shape, x->shape, sizeof n->shape);
        break;
    case OP_COUNT: MOE_UNREACHABLE();
    }
}

int64_t ir_row_elems(const Node *n) {
    int64_t e = 1;
    for (int i = 1; i < n->rank; i++) e *= n->shape[i];
    return e;
}

int64_t ir_elems(const Node *n, int64_t n_tok) {
    if (n->rank == 0) return 1;
    int64_t d0 = n->shape[0] == SYM_T ? n_tok : n->shape[0];
    return d0 * ir_row_elems(n);
}

/* ---- verifier ---- */

typedef struct Verify {
    const Graph *g;
    Diag *d;
    uint32_t at;
} Verify;

static bool vcheck(Verify *vf, bool ok, const char *what) {
    if (!ok) {
        const Node *n = &vf->g->nodes[vf->at];
        diag_error(vf->d, "ir: %%%u (%s '%s'): %s", vf->at, ir_op_name(n->op), n->name, what);
    }
    return ok;
}

static bool is_act_t(const Node *n, int64_t n_tok) {
    return n->dtype == DT_F32 && n->rank == 2 && n->shape[0] == (n_tok ? n_tok : SYM_T);
}
#define is_act(n) is_act_t((n), g->n_tok)
static bool is_weight_dtype(DType t) { return t == DT_F32 || t == DT_F16 || t == DT_BF16 || dtype_is_quant(t); }
/* A block-quantised weight is a matrix (or a stack of them) whose rows are whole blocks. */
static bool is_quant_ok(const Node *n) {
    return !dtype_is_quant(n->dtype) || (n->rank >= 2 && n->shape[n->rank - 1] % dtype_block_elems(n->dtype) == 0);
}

bool ir_verify(const Graph *g, Diag *d) {
    Verify vf = {g, d, 0};
    int before = d->n_errors;
    for (uint32_t i = 0; i < g->n; i++) {
        vf.at = i;
        const Node *n = &g->nodes[i];
        if (!vcheck(&vf, n->op < OP_COUNT, "unknown op")) continue;
        if (!vcheck(&vf, n->n_in >= op_info[n->op].min_in && n->n_in <= op_info[n->op].max_in, "wrong number of inputs"))
            continue;
        bool inputs_ok = true;
        for (int k = 0; k < n->n_in; k++)
            inputs_ok &= vcheck(&vf, ir_is_none(n->in[k]) || n->in[k].id < i, "input does not precede the node");
        if (!inputs_ok) continue;
        const Node *x = n->n_in > 0 && !ir_is_none(n->in[0]) ? ir_node(g, n->in[0]) : NULL;
        const Node *w = n->n_in > 1 && !ir_is_none(n->in[1]) ? ir_node(g, n->in[1]) : NULL;
        switch (n->op) {
        case OP_INPUT_IDS: vcheck(&vf, n->dtype == DT_I32 && n->rank == 1, "ids must be [T] i32"); break;
        case OP_WEIGHT:
            vcheck(&vf, n->a.weight.pack == PACK_ROPE || (n->a.weight.n_parts >= 1 && n->a.weight.parts),
                   "weight without tensors");
            vcheck(&vf, is_weight_dtype(n->dtype), "weight dtype must be f32, f16, bf16 or a block type");
            vcheck(&vf, is_quant_ok(n), "a block-quantised weight must be a matrix of whole blocks per row");
            break;
        case OP_EMBED:
            vcheck(&vf, x->op == OP_INPUT_IDS, "first input must be the ids");
            vcheck(&vf, w->op == OP_WEIGHT && w->rank == 2, "table must be a [V, H] weight");
            vcheck(&vf, is_act(n) && n->shape[1] == w->shape[1], "output must be [T, H]");
            break;
        case OP_RMSNORM:
            vcheck(&vf, is_act(x), "x must be [T, N] f32");
            vcheck(&vf, w->rank == 1 && w->shape[0] > 0 && x->shape[1] % w->shape[0] == 0 && !dtype_is_quant(w->dtype),
                   "weight must be [G] with G dividing N");
            break;
        case OP_MATMUL:
            vcheck(&vf, is_act(x), "x must be [T, K] f32");
            vcheck(&vf, w->op == OP_WEIGHT && w->rank == 2 && w->shape[1] == x->shape[1], "w must be a [N, K] weight");
            if (n->n_in == 3) {
                const Node *b = ir_node(g, n->in[2]);
                vcheck(&vf, b->rank == 1 && b->shape[0] == w->shape[0], "bias must be [N]");
            }
            vcheck(&vf, is_act(n) && n->shape[1] == w->shape[0], "output must be [T, N]");
            break;
        case OP_ADD: case OP_SWIGLU:
            vcheck(&vf, is_act(x) && is_act(w) && x->shape[1] == w->shape[1], "inputs must be [T, N] of one shape");
            break;
        case OP_CLAMP: vcheck(&vf, is_act(x) && n->a.clamp.c > 0, "x must be [T, N], c > 0"); break;
        case OP_ROPE:
            vcheck(&vf, is_act(x) && n->a.rope.head_dim % 2 == 0 && n->a.rope.inv_freq &&
                            x->shape[1] == n->a.rope.n_heads * n->a.rope.head_dim,
                   "x must be [T, heads*head_dim], head_dim even");
            break;
        case OP_ATTENTION: {
            const AttnAttr *at = &n->a.attn;
            const Node *v = ir_node(g, n->in[2]);
            vcheck(&vf, at->n_kv > 0 && at->n_heads % at->n_kv == 0, "heads must be a multiple of kv heads");
            vcheck(&vf, is_act(x) && x->shape[1] == at->n_heads * at->head_dim, "q must be [T, nh*hd]");
            vcheck(&vf, is_act(w) && is_act(v) && w->shape[1] == at->n_kv * at->head_dim && v->shape[1] == w->shape[1],
                   "k and v must be [T, nkv*hd]");
            break;
        }
        case OP_ROUTER:
            vcheck(&vf, is_act(x) && x->shape[1] == n->a.router.n_exp, "logits must be [T, E]");
            vcheck(&vf, n->a.router.top_k >= 1 && n->a.router.top_k <= n->a.router.n_exp, "need 1 <= top_k <= E");
            break;
        case OP_MOE_FFN: {
            const Node *gate = ir_node(g, n->in[2]), *up = ir_node(g, n->in[3]), *down = ir_node(g, n->in[4]);
            int64_t E = n->a.moe.n_exp, H = x->shape[1];
            vcheck(&vf, is_act(x), "x must be [T, H]");
            vcheck(&vf, w->dtype == DT_ROUTE && w->shape[1] == n->a.moe.top_k, "routes must be [T, k]");
            vcheck(&vf, gate->rank == 3 && gate->shape[0] == E && gate->shape[2] == H, "gate must be [E, I, H]");
            vcheck(&vf, up->rank == 3 && memcmp(up->shape, gate->shape, sizeof up->shape) == 0, "up must match gate");
            vcheck(&vf, down->rank == 3 && down->shape[0] == E && down->shape[1] == H && down->shape[2] == gate->shape[1],
                   "down must be [E, H, I]");
            break;
        }
        case OP_SIGMOID_SCALE:
            vcheck(&vf, is_act(x) && x->shape[1] == 1 && is_act(w), "g must be [T, 1] and x [T, N]");
            break;
        case OP_FNORM_MATMUL: {
            const Node *wm = ir_node(g, n->in[2]);
            vcheck(&vf, is_act(x) && wm->op == OP_WEIGHT && wm->rank == 2 && wm->shape[1] == x->shape[1] &&
                            is_act(n) && n->shape[1] == wm->shape[0],
                   "must be x [T, K], w [N, K] -> [T, N]");
            break;
        }
        case OP_FQKV_ROPE: case OP_FATTENTION: case OP_FREDUCE:
            vcheck(&vf, is_act(x) && is_act(n), "input and output must be [T, N] activations");
            break;
        case OP_FROUTER: case OP_FEXPERTS: case OP_FEXPERTS_ACT:
            vcheck(&vf, is_act(x) && n->a.ffn.capacity >= 0, "x must be [T, H]");
            break;
        case OP_FEXPERTS_DOWN:
            vcheck(&vf, is_act(x) && is_act(n) && ir_node(g, n->in[2])->op == OP_FEXPERTS_ACT,
                   "x and the output must be [T, H], act an FEXPERTS_ACT");
            break;
        case OP_COUNT: break;
        }
    }
    vf.at = 0;
    if (g->n) {
        vcheck(&vf, g->ids.id < g->n && g->nodes[g->ids.id].op == OP_INPUT_IDS, "graph has no ids input");
        vcheck(&vf, g->logits.id < g->n && is_act(&g->nodes[g->logits.id]), "graph has no [T, V] output");
    }
    return d->n_errors == before;
}

/* ---- printer ---- */

static void print_shape(FILE *f, const Node *n) {
    fputc('[', f);
    for (int i = 0; i < n->rank; i++) {
        if (i) fputs(", ", f);
        if (n->shape[i] == SYM_T) fputc('T', f);
        else fprintf(f, "%" PRId64, n->shape[i]);
    }
    fputc(']', f);
}

void ir_print(const Graph *g, FILE *f) {
    fprintf(f, "# graph %s: %u nodes, %d layers\n", g->family ? g->family : "?", g->n, g->n_layers);
    for (uint32_t i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        fprintf(f, "%%%u = %s", i, ir_op_name(n->op));
        for (int k = 0; k < n->n_in; k++) {
            if (ir_is_none(n->in[k])) fprintf(f, "%s-", k ? ", " : " ");
            else fprintf(f, "%s%%%u", k ? ", " : " ", n->in[k].id);
        }
        fprintf(f, " : %s", dtype_name(n->dtype));
        print_shape(f, n);
        switch (n->op) {
        case OP_WEIGHT:
            if (n->a.weight.n_parts == 1) fprintf(f, " {tensor '%s'}", n->a.weight.parts[0]->name);
            else fprintf(f, " {%d tensors, first '%s'}", n->a.weight.n_parts, n->a.weight.parts[0]->name);
            break;
        case OP_RMSNORM: fprintf(f, " {eps %g}", n->a.norm.eps); break;
        case OP_CLAMP: fprintf(f, " {c %g}", n->a.clamp.c); break;
        case OP_ROPE:
            fprintf(f, " {heads %" PRId64 ", head_dim %" PRId64 ", mscale %g}", n->a.rope.n_heads, n->a.rope.head_dim,
                    n->a.rope.mscale);
            break;
        case OP_ATTENTION:
            fprintf(f, " {heads %" PRId64 ", kv %" PRId64 ", head_dim %" PRId64 ", window %" PRId64 ", layer %d}",
                    n->a.attn.n_heads, n->a.attn.n_kv, n->a.attn.head_dim, n->a.attn.window, n->a.attn.layer);
            break;
        case OP_ROUTER:
            fprintf(f, " {experts %" PRId64 ", top_k %" PRId64 ", renorm %d, layer %d}", n->a.router.n_exp,
                    n->a.router.top_k, n->a.router.renorm, n->a.router.layer);
            break;
        case OP_MOE_FFN:
            fprintf(f, " {experts %" PRId64 ", top_k %" PRId64 ", layer %d}", n->a.moe.n_exp, n->a.moe.top_k,
                    n->a.moe.layer);
            break;
        case OP_FQKV_ROPE:
            fprintf(f, " {heads %" PRId64 ", kv %" PRId64 ", head_dim %" PRId64 ", qk_norm %d, clip %g, layer %d}",
                    n->a.qkv.n_heads, n->a.qkv.n_kv, n->a.qkv.head_dim, n->a.qkv.qk_norm, n->a.qkv.clip, n->a.qkv.layer);
            break;
        case OP_FATTENTION:
            fprintf(f, " {window %" PRId64 ", layer %d}", n->a.attn.window, n->a.attn.layer);
            break;
        case OP_FROUTER: case OP_FEXPERTS: case OP_FEXPERTS_ACT: case OP_FEXPERTS_DOWN:
            fprintf(f, " {experts %" PRId64 ", top_k %" PRId64 ", capacity %" PRId64 ", d_ff %" PRId64
                       ", shared %" PRId64 " (kind %d), layer %d}",
                    n->a.ffn.n_exp, n->a.ffn.top_k, n->a.ffn.capacity, n->a.ffn.d_ff, n->a.ffn.d_shared,
                    n->a.ffn.shared_kind, n->a.ffn.layer);
            break;
        default: break;
        }
        if (n->op == OP_WEIGHT && n->a.weight.pack != PACK_NONE)
            fprintf(f, " {pack %s, offset %" PRId64 "}",
                    ir_pack_name(n->a.weight.pack),
                    n->a.weight.offset);
        if (n->offset >= 0) fprintf(f, " @arena+%" PRId64, n->offset);
        if (n->name[0]) fprintf(f, "  ; %s", n->name);
        fputc('\n', f);
    }
    fprintf(f, "# ids %%%u, logits %%%u\n", g->ids.id, g->logits.id);
}
