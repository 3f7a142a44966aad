/* program: the straight-line step functions.
 *
 *   void moe_step_prefill(const MoeStepArgs *a, i32 ith, i32 nth) {
 *       n = a->last_row + 1;                                                  (the real rows)
 *       k_embed_T128_n(a->arena + 0, a->ids, a->weights + 4096, n, ith, nth);  moert_barrier();
 *       k_L00.attn.qkv_T128_n(a->arena + 65536, a->arena + 0, ..., n, ith, nth); moert_barrier();
 *       ...                                                                   (one call per fused node)
 *   }
 *
 * Every kernel's last three arguments are (n, ith, nth): n = the rows that are real tokens. The
 * steps pass it at run time (kernel names end in _n), so a partial last chunk, or a decode step
 * with fewer live slots than the batch, costs what its real rows cost; decode of batch 1 binds n = 1.
 * Each row's position and slot come from args (pos[], slot[]): the RoPE/KV-append and attention
 * kernels index the row's slot's KV cache, the router the row's slot's stats.
 *
 * Three steps: moe_step_prefill (the prefill graph, T = P), moe_step_decode (the decode graph,
 * T = B) and moe_step_prefill_last, the prefill graph again except that the lm_head ("logits"
 * node) runs on one row only: the row a->last_row of its input (a runtime offset, the one pointer
 * the step computes from args beyond adding constants), into row 0 of the logits buffer.
 *
 *       k_logits_T1(a->arena + L, a->arena + X + a->last_row * K * 4, ..., ith, nth);
 *
 * The runtime runs it when the caller wants only the last prompt token's logits: the lm_head
 * (V x K) is then computed for 1 row instead of P (about 10% of prefill on the bench preset).
 * Each call goes to a kernel template specialised with every shape, flag and eps a constant
 * (cg_specialize); identical specialisations (same shapes in another layer, or the T = 1 logits
 * kernel of decode and prefill_last) are one function. */
#include "backend/program.h"

#include <llvm-c/Core.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kt_quant.h"

enum { MAX_ARGS = 32 };

typedef struct Call {
    CgBind binds[MAX_ARGS];     /* one per template parameter */
    LLVMValueRef kept[MAX_ARGS];/* the values of the CG_KEEP parameters, in order */
    int n, n_kept;
} Call;

typedef struct Emitter {
    Codegen *cg;
    LLVMContextRef C;
    LLVMModuleRef M;
    LLVMBuilderRef B;
    LLVMTypeRef i8, i32, i64, ptr, voidt;
    LLVMValueRef args, arena, weights, kv, ids, pos, slot, stats, last_row, ith, nth;
    LLVMValueRef experts;       /* args->experts: [n_layers][2][n_exp] expert matrix pointers */
    LLVMValueRef n_rows;        /* last_row + 1, the real rows; NULL in a decode step of batch 1 (always 1) */
    bool logits_last;           /* emitting moe_step_prefill_last: the logits node on row last_row */
    LLVMValueRef barrier, ready;
    LLVMTypeRef barrier_ty, ready_ty;
    int ready_layer;            /* >= 0: emit_call calls moert_experts_ready for this layer before the barrier */
    LLVMValueRef ready_count;   /* its count argument: the router's tokens per expert */
    LLVMBasicBlockRef bb;       /* the step function's only block */
    const Graph *g;
    const KvLayout *kv_layout;
    Diag *d;
} Emitter;

static void keep(Call *c, LLVMValueRef v) {
    c->binds[c->n++] = (CgBind){.kind = CG_KEEP};
    c->kept[c->n_kept++] = v;
}
static void cint(Call *c, int64_t v) { c->binds[c->n++] = (CgBind){.kind = CG_CONST_INT, .i = v}; }
static void cfp(Call *c, double v) { c->binds[c->n++] = (CgBind){.kind = CG_CONST_FP, .f = v}; }

static LLVMValueRef offset_ptr(Emitter *e, LLVMValueRef base, int64_t off) {
    if (off == 0) return base;
    LLVMValueRef idx = LLVMConstInt(e->i64, (unsigned long long)off, 0);
    return LLVMBuildGEP2(e->B, e->i8, base, &idx, 1, "");
}

static LLVMValueRef null_ptr(Emitter *e) { return LLVMConstPointerNull(e->ptr); }

/* Pointer to input k of node n: a packed weight, an arena value, or NULL when absent. */
static LLVMValueRef in_ptr(Emitter *e, const Node *n, int k) {
    if (k >= n->n_in || ir_is_none(n->in[k])) return null_ptr(e);
    const Node *x = ir_node(e->g, n->in[k]);
    if (x->op == OP_WEIGHT) return offset_ptr(e, e->weights, x->a.weight.offset);
    if (x->op == OP_INPUT_IDS) return e->ids;
    return offset_ptr(e, e->arena, x->offset);
}

/* The wdt kernels take for input k: its dtype, with the graph's act bits on a block type (kt_quant.h). */
static int32_t wdt_of(Emitter *e, const Node *n, int k) {
    if (k >= n->n_in || ir_is_none(n->in[k])) return DT_F32;
    return kt_wdt_bind((int32_t)ir_node(e->g, n->in[k])->dtype, e->g->act_bits);
}

/* Calls template tmpl specialised as kname with c's bindings, then the rows parameter n (the
 * constant fixed_rows when > 0; else the runtime n_rows of a prefill step, or T in decode), ith
 * and nth; then a barrier. */
static bool emit_call(Emitter *e, const char *tmpl, const char *kname_in, Call *c, int64_t fixed_rows) {
    char kname[80];
    if (fixed_rows <= 0 && e->n_rows) {
        snprintf(kname, sizeof kname, "%s_n", kname_in); /* runtime rows: another specialisation */
        keep(c, e->n_rows);
    } else {
        snprintf(kname, sizeof kname, "%s", kname_in);
        cint(c, fixed_rows > 0 ? fixed_rows : e->g->n_tok);
    }
    keep(c, e->ith);
    keep(c, e->nth);
    LLVMValueRef fn = cg_specialize(e->cg, kname, tmpl, c->binds, c->n);
    if (!fn) return false;
    LLVMPositionBuilderAtEnd(e->B, e->bb); /* specialising may have moved the builder */
    LLVMBuildCall2(e->B, LLVMGlobalGetValueType(fn), fn, c->kept, (unsigned)c->n_kept, "");
    if (e->ready_layer >= 0) { /* after a router: the runtime brings its experts in (memory budget) */
        LLVMValueRef ra[4] = {e->args, LLVMConstInt(e->i32, (unsigned long long)e->ready_layer, 0), e->ready_count,
                              e->ith};
        LLVMBuildCall2(e->B, e->ready_ty, e->ready, ra, 4, "");
        e->ready_layer = -1;
    }
    LLVMBuildCall2(e->B, e->barrier_ty, e->barrier, NULL, 0, "");
    return true;
}

/* T, H, I, E, k, C, SI, shared_kind of an expert kernel node. */
static void ffn_binds(Call *c, const Node *n, int64_t T, int64_t H) {
    cint(c, T), cint(c, H), cint(c, n->a.ffn.d_ff), cint(c, n->a.ffn.n_exp), cint(c, n->a.ffn.top_k);
    cint(c, n->a.ffn.capacity), cint(c, n->a.ffn.d_shared), cint(c, n->a.ffn.shared_kind);
}

/* "experts" for a MoE layer's expert kernels, "mlp" for a dense layer's (E = 0): the two are
 * different specialisations of one template, so they need different names. */
static const char *ffn_kind(const Node *n) { return n->a.ffn.n_exp ? "experts" : "mlp"; }

/* The expert table of an expert kernel node: args->experts + layer 2 E pointers; NULL for a dense
 * layer (E = 0). */
static LLVMValueRef xtab_ptr(Emitter *e, const Node *n) {
    if (!n->a.ffn.n_exp) return null_ptr(e);
    return offset_ptr(e, e->experts, (int64_t)n->a.ffn.layer * 2 * n->a.ffn.n_exp * (int64_t)sizeof(void *));
}

static LLVMValueRef kv_ptr(Emitter *e, int layer, bool values) {
    return offset_ptr(e, e->kv, e->kv_layout->layer_off[layer] + (values ? e->kv_layout->layer_bytes[layer] / 2 : 0));
}

static bool emit_node(Emitter *e, const Node *n) {
    Call c = {0};
    const int64_t T = e->g->n_tok;
    char kname[64];
    LLVMValueRef out = offset_ptr(e, e->arena, n->offset);
    switch (n->op) {
    case OP_INPUT_IDS: case OP_WEIGHT: return true;
    case OP_EMBED: {
        keep(&c, out);
        keep(&c, e->ids);
        keep(&c, in_ptr(e, n, 1));
        cint(&c, T), cint(&c, n->shape[1]), cint(&c, wdt_of(e, n, 1));
        snprintf(kname, sizeof kname, "k_embed_T%lld", (long long)T);
        return emit_call(e, "kt_embed", kname, &c, 0);
    }
    case OP_FNORM_MATMUL: {
        const Node *x = ir_node(e->g, n->in[0]);
        const int64_t K = x->shape[1];
        bool has_norm = !ir_is_none(n->in[1]);
        /* prefill_last: the logits of row last_row only: x + last_row * K floats, T = 1, into row 0 */
        bool one_row = e->logits_last && n == ir_node(e->g, e->g->logits);
        int64_t rows = one_row ? 1 : T;
        keep(&c, out);
        if (one_row) {
            MOE_ASSERT(ir_is_none(n->in[4])); /* a residual would need the same row offset */
            LLVMValueRef off = LLVMBuildMul(e->B, e->last_row, LLVMConstInt(e->i64, (unsigned long long)(K * 4), 0),
                                            "last_off");
            keep(&c, LLVMBuildGEP2(e->B, e->i8, in_ptr(e, n, 0), &off, 1, "x_last"));
        } else {
            keep(&c, in_ptr(e, n, 0));
        }
        for (int k = 1; k < 5; k++) keep(&c, in_ptr(e, n, k));
        keep(&c, n->scratch_bytes ? offset_ptr(e, e->arena, n->scratch_offset) : null_ptr(e));
        cint(&c, rows), cint(&c, K), cint(&c, n->shape[1]), cfp(&c, n->a.norm.eps);
        cint(&c, has_norm), cint(&c, !ir_is_none(n->in[3])), cint(&c, !ir_is_none(n->in[4]));
        const Node *w = ir_node(e->g, n->in[2]);
        const int64_t split = w->a.weight.split ? w->a.weight.split : n->shape[1];
        int32_t wdt2 = w->a.weight.split ? kt_wdt_bind((int32_t)w->a.weight.dtype2, e->g->act_bits) : wdt_of(e, n, 2);
        cint(&c, wdt_of(e, n, 2)), cint(&c, wdt2), cint(&c, split), cint(&c, one_row ? 0 : n->a.norm.amx);
        snprintf(kname, sizeof kname, "k_%s_T%lld", n->name, (long long)rows);
        return emit_call(e, "kt_norm_matmul", kname, &c, one_row ? 1 : 0);
    }
    case OP_FQKV_ROPE: {
        const int layer = n->a.qkv.layer;
        keep(&c, out);
        keep(&c, kv_ptr(e, layer, false));
        keep(&c, kv_ptr(e, layer, true));
        for (int k = 0; k < 4; k++) keep(&c, in_ptr(e, n, k));
        keep(&c, e->pos);
        keep(&c, e->slot);
        cint(&c, T), cint(&c, n->a.qkv.n_heads), cint(&c, n->a.qkv.n_kv), cint(&c, n->a.qkv.head_dim);
        cint(&c, e->kv_layout->S), cfp(&c, n->a.qkv.eps), cint(&c, n->a.qkv.qk_norm), cfp(&c, n->a.qkv.clip);
        snprintf(kname, sizeof kname, "k_qkv_rope_T%lld", (long long)T);
        return emit_call(e, "kt_qkv_rope", kname, &c, 0);
    }
    case OP_FATTENTION: {
        const AttnAttr *at = &n->a.attn;
        keep(&c, out);
        keep(&c, in_ptr(e, n, 0));
        keep(&c, kv_ptr(e, at->layer, false));
        keep(&c, kv_ptr(e, at->layer, true));
        keep(&c, e->pos);
        keep(&c, e->slot);
        cint(&c, T), cint(&c, at->n_heads), cint(&c, at->n_kv), cint(&c, at->head_dim);
        cint(&c, e->kv_layout->S), cint(&c, at->window);
        snprintf(kname, sizeof kname, "k_attention_T%lld", (long long)T);
        return emit_call(e, "kt_attention", kname, &c, 0);
    }
    case OP_FROUTER: { /* kt_router, or in a prefill step its two halves (kernels.h), same arguments */
        const Node *x = ir_node(e->g, n->in[0]);
        int64_t E = n->a.ffn.n_exp;
        static const char *const tmpl[3] = {"kt_router", "kt_router_routes", "kt_router_lists"};
        static const char *const stem[3] = {"router", "routes", "lists"};
        const int first = T >= KT_TILE_T ? 1 : 0, last = T >= KT_TILE_T ? 2 : 0;
        for (int part = first; part <= last; part++) {
            c = (Call){0};
            keep(&c, out);
            for (int k = 0; k < 3; k++) keep(&c, in_ptr(e, n, k));
            keep(&c, offset_ptr(e, e->stats, (int64_t)sizeof(int64_t) * n->a.ffn.layer * (E + 1)));
            keep(&c, e->slot);
            cint(&c, (int64_t)e->g->n_layers * (E + 1)); /* stats of one slot */
            cint(&c, T), cint(&c, x->shape[1]), cint(&c, E), cint(&c, n->a.ffn.top_k), cint(&c, n->a.ffn.capacity);
            cfp(&c, n->a.ffn.eps), cint(&c, n->a.ffn.renorm), cint(&c, wdt_of(e, n, 2));
            snprintf(kname, sizeof kname, "k_%s_T%lld", stem[part], (long long)T);
            if (part == last) { /* after the lists: the runtime brings their experts in (memory budget) */
                e->ready_layer = n->a.ffn.layer;
                e->ready_count = offset_ptr(e, e->arena, n->offset + 8 * T * n->a.ffn.top_k); /* kernels.h: count[E] */
            }
            if (!emit_call(e, tmpl[part], kname, &c, 0)) return false;
        }
        return true;
    }
    case OP_FEXPERTS: {
        const Node *x = ir_node(e->g, n->in[0]);
        const int64_t threads = n->a.ffn.threads, H = x->shape[1];
        int64_t wmax = n->a.ffn.d_ff > n->a.ffn.d_shared ? n->a.ffn.d_ff : n->a.ffn.d_shared;
        int32_t q = 0; /* the scratch as fuse sized it: the largest kt_q_scratch_kind */
        for (int k = 3; k < 7; k++) {
            int32_t qk = kt_q_scratch_kind(wdt_of(e, n, k));
            q = qk > q ? qk : q;
        }
        int64_t per_thread = kt_experts_scratch(T, H, wmax, threads, n->a.ffn.amx, q);
        keep(&c, out);
        for (int k = 0; k < 8; k++) keep(&c, in_ptr(e, n, k));
        keep(&c, offset_ptr(e, e->arena, n->scratch_offset));
        keep(&c, xtab_ptr(e, n));
        ffn_binds(&c, n, T, H);
        cfp(&c, n->a.ffn.eps), cint(&c, per_thread);
        for (int k = 3; k < 7; k++) cint(&c, wdt_of(e, n, k)); /* gate_up, down, sh_gate_up, sh_down */
        cint(&c, n->a.ffn.amx);
        snprintf(kname, sizeof kname, "k_%s_T%lld", ffn_kind(n), (long long)T);
        return emit_call(e, "kt_experts", kname, &c, 0);
    }
    case OP_FEXPERTS_ACT: {
        const Node *x = ir_node(e->g, n->in[0]);
        keep(&c, out);
        for (int k = 0; k < 6; k++) keep(&c, in_ptr(e, n, k));
        keep(&c, offset_ptr(e, e->arena, n->scratch_offset));
        keep(&c, xtab_ptr(e, n));
        ffn_binds(&c, n, T, x->shape[1]);
        cfp(&c, n->a.ffn.eps), cint(&c, wdt_of(e, n, 3)), cint(&c, wdt_of(e, n, 4)); /* gate_up, sh_gate_up */
        cint(&c, n->a.ffn.q8);
        snprintf(kname, sizeof kname, "k_%s_act_T%lld", ffn_kind(n), (long long)T);
        return emit_call(e, "kt_experts_act", kname, &c, 0);
    }
    case OP_FEXPERTS_DOWN: {
        keep(&c, out);
        for (int k = 0; k < 5; k++) keep(&c, in_ptr(e, n, k));
        keep(&c, xtab_ptr(e, n));
        ffn_binds(&c, n, T, n->shape[1]);
        cint(&c, wdt_of(e, n, 3)), cint(&c, wdt_of(e, n, 4)); /* down, sh_down */
        snprintf(kname, sizeof kname, "k_%s_down_T%lld", ffn_kind(n), (long long)T);
        return emit_call(e, "kt_experts_down", kname, &c, 0);
    }
    case OP_FREDUCE: {
        keep(&c, out);
        keep(&c, in_ptr(e, n, 0));
        keep(&c, in_ptr(e, n, 1));
        cint(&c, T), cint(&c, n->shape[1]);
        snprintf(kname, sizeof kname, "k_reduce_T%lld", (long long)T);
        return emit_call(e, "kt_reduce", kname, &c, 0);
    }
    default:
        diag_error(e->d, "backend: internal: no kernel for op %s ('%s')", ir_op_name(n->op), n->name);
        return false;
    }
}

static LLVMValueRef load_field(Emitter *e, LLVMTypeRef st, LLVMValueRef args, unsigned idx, LLVMTypeRef ty,
                               const char *name) {
    LLVMValueRef p = LLVMBuildStructGEP2(e->B, st, args, idx, "");
    return LLVMBuildLoad2(e->B, ty, p, name);
}

/* One step function over graph g; logits_last: the logits node on row args->last_row only. */
static LLVMValueRef emit_step(Emitter *e, const Graph *g, const char *name, bool prefill, bool logits_last) {
    LLVMTypeRef params[3] = {e->ptr, e->i32, e->i32};
    LLVMTypeRef fty = LLVMFunctionType(e->voidt, params, 3, 0);
    LLVMValueRef fn = LLVMAddFunction(e->M, name, fty);
    LLVMBasicBlockRef bb = e->bb = LLVMAppendBasicBlockInContext(e->C, fn, "entry");
    LLVMPositionBuilderAtEnd(e->B, bb);
    /* MoeStepArgs {char *arena; const char *weights; char *kv; const int32_t *ids; const int64_t *pos;
     *              const int32_t *slot; int64_t *stats; int64_t last_row; const void *const *experts;
     *              void *xcache;} */
    LLVMTypeRef fields[10] = {e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->i64, e->ptr, e->ptr};
    LLVMTypeRef st = LLVMStructTypeInContext(e->C, fields, 10, 0);
    LLVMValueRef args = e->args = LLVMGetParam(fn, 0);
    e->arena = load_field(e, st, args, 0, e->ptr, "arena");
    e->weights = load_field(e, st, args, 1, e->ptr, "weights");
    e->kv = load_field(e, st, args, 2, e->ptr, "kv");
    e->ids = load_field(e, st, args, 3, e->ptr, "ids");
    e->pos = load_field(e, st, args, 4, e->ptr, "pos");
    e->slot = load_field(e, st, args, 5, e->ptr, "slot");
    e->stats = load_field(e, st, args, 6, e->ptr, "stats");
    e->experts = load_field(e, st, args, 8, e->ptr, "experts");
    e->ready_layer = -1;
    bool rows = prefill || g->n_tok > 1; /* a decode step of batch 1 has its one row */
    e->last_row = rows ? load_field(e, st, args, 7, e->i64, "last_row") : NULL;
    e->n_rows = rows ? LLVMBuildAdd(e->B, e->last_row, LLVMConstInt(e->i64, 1, 0), "n_rows") : NULL;
    e->logits_last = logits_last;
    e->ith = LLVMGetParam(fn, 1);
    e->nth = LLVMGetParam(fn, 2);
    LLVMSetValueName2(e->ith, "ith", 3);
    LLVMSetValueName2(e->nth, "nth", 3);
    e->g = g;
    for (uint32_t i = 0; i < g->n; i++) {
        LLVMPositionBuilderAtEnd(e->B, bb);
        if (!emit_node(e, &g->nodes[i])) return NULL;
    }
    LLVMPositionBuilderAtEnd(e->B, bb);
    LLVMBuildRetVoid(e->B);
    return fn;
}

void program_kv_layout(const Graph *g, int64_t S, int64_t batch, KvLayout *kv) {
    memset(kv, 0, sizeof *kv);
    kv->S = kt_kv_positions(S);
    for (uint32_t i = 0; i < g->n; i++) {
        const Node *n = &g->nodes[i];
        if (n->op != OP_FQKV_ROPE) continue;
        int l = n->a.qkv.layer;
        kv->layer_bytes[l] = 2 * batch * kv->S * n->a.qkv.n_kv * n->a.qkv.head_dim * (int64_t)sizeof(float);
        kv->layer_off[l] = kv->total;
        kv->total += kv->layer_bytes[l];
    }
}

bool program_emit(Codegen *cg, const Graph *prefill, const Graph *decode, const KvLayout *kv, const MoeManifest *man,
                  Diag *d) {
    Emitter e = {.cg = cg, .C = cg_context(cg), .M = cg_module(cg), .B = cg_builder(cg), .kv_layout = kv, .d = d};
    e.i8 = LLVMInt8TypeInContext(e.C);
    e.i32 = LLVMInt32TypeInContext(e.C);
    e.i64 = LLVMInt64TypeInContext(e.C);
    e.ptr = LLVMPointerTypeInContext(e.C, 0);
    e.voidt = LLVMVoidTypeInContext(e.C);
    e.barrier_ty = LLVMFunctionType(e.voidt, NULL, 0, 0);
    e.barrier = LLVMAddFunction(e.M, "moert_barrier", e.barrier_ty);
    LLVMTypeRef rp[4] = {e.ptr, e.i32, e.ptr, e.i32};
    e.ready_ty = LLVMFunctionType(e.voidt, rp, 4, 0);
    e.ready = LLVMAddFunction(e.M, "moert_experts_ready", e.ready_ty);
    LLVMValueRef fp = emit_step(&e, prefill, "moe_step_prefill", true, false);
    LLVMValueRef fd = fp ? emit_step(&e, decode, "moe_step_decode", false, false) : NULL;
    LLVMValueRef fl = fd ? emit_step(&e, prefill, "moe_step_prefill_last", true, true) : NULL;
    if (!fl) return false;
    /* the manifest: the bytes of a MoeManifest (identical layout on every LP64 little-endian target) */
    LLVMValueRef mbytes = LLVMConstStringInContext(e.C, (const char *)man, sizeof *man, 1);
    LLVMValueRef mg = LLVMAddGlobal(e.M, LLVMTypeOf(mbytes), "moe_manifest");
    LLVMSetInitializer(mg, mbytes);
    LLVMSetGlobalConstant(mg, 1);
    LLVMSetAlignment(mg, 16);
    LLVMSetLinkage(mg, LLVMInternalLinkage);
    /* MoeProgram {const MoeManifest *manifest; MoeStepFn prefill, decode, prefill_last;} */
    LLVMTypeRef pt[4] = {e.ptr, e.ptr, e.ptr, e.ptr};
    LLVMTypeRef prog_ty = LLVMStructTypeInContext(e.C, pt, 4, 0);
    LLVMValueRef vals[4] = {mg, fp, fd, fl};
    LLVMValueRef prog = LLVMAddGlobal(e.M, prog_ty, "moe_program");
    LLVMSetInitializer(prog, LLVMConstNamedStruct(prog_ty, vals, 4));
    LLVMSetGlobalConstant(prog, 1);
    return true;
}
