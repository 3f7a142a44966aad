/* fuse: rewrite a specialised graph into compiled kernels. The source graph is built by
 * graphs/blocks.c, so every layer has the same skeleton; fuse walks it from its anchors:
 *
 *   EMBED                                        -> EMBED (packed table)
 *   ATTENTION(ROPE(norm/clip(MATMUL(RMSNORM(x)))) x3)
 *                                                -> FNORM_MATMUL(x, ln, Wq|Wk|Wv, bq|bk|bv)
 *                                                   FQKV_ROPE (q/k norms, clip, RoPE, KV append)
 *                                                   FATTENTION
 *   ADD(x, MATMUL(attention, Wo))                -> FNORM_MATMUL(attn, -, Wo, bo, resid x)
 *   ADD(x, MOE_FFN(RMSNORM(x), ROUTER(..)) [+ SIGMOID_SCALE(shared)])
 *                                                -> FROUTER + FEXPERTS + FREDUCE
 *                                                   (fewer than KT_TILE_T tokens: FROUTER + FEXPERTS_ACT
 *                                                   + FEXPERTS_DOWN, kernels.h's decode form)
 *   ADD(x, MATMUL(SWIGLU(MATMUL(RMSNORM(x)) x2)))  (dense layer)
 *                                                -> the same with E = 0
 *   logits = MATMUL(RMSNORM(x), head)            -> FNORM_MATMUL(x, norm, head)
 *
 * Every source node must be covered by exactly one pattern; anything else is our bug. */
#include <inttypes.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kt_quant.h"
#include "passes.h"

typedef struct Fuser {
    const Graph *s;        /* source (specialised) */
    Graph *f;              /* fused */
    Arena *a;
    Diag *d;
    ValueId *map;          /* [s->n] source value -> fused value (residual stream values) */
    bool *covered;         /* [s->n] */
    int64_t threads, context;
    int32_t amx;           /* AMX tile planes the matmul kernels use, 0: none (kernels.h) */
    bool ok;
} Fuser;

static const Node *src(Fuser *fu, ValueId v) { return ir_node(fu->s, v); }

static bool expect(Fuser *fu, bool cond, ValueId at, const char *what) {
    if (!cond && fu->ok) {
        diag_error(fu->d, "fuse: internal: node %%%u (%s '%s'): %s", at.id, ir_op_name(src(fu, at)->op),
                   src(fu, at)->name, what);
        fu->ok = false;
    }
    return cond;
}

static void cover(Fuser *fu, ValueId v) { fu->covered[v.id] = true; }

static ValueId mapped(Fuser *fu, ValueId v) {
    expect(fu, !ir_is_none(fu->map[v.id]), v, "used before it was fused");
    return fu->map[v.id];
}

/* bf16 matrices stay bf16, and matrices of a block type with a kernel (kernels/kt_quant.h) in the panel
 * layouts keep it; anything else (f16, other block types, mixed parts, rows) is f32 (exact). */
static DType pack_dtype(const TensorInfo **parts, int n, int rank, PackKind kind) {
    if (rank == 1) return DT_F32;
    for (int i = 0; i < n; i++)
        if (parts[i]->dtype != parts[0]->dtype) return DT_F32;
    if (kind != PACK_ROWS && kt_is_q((int32_t)parts[0]->dtype)) return parts[0]->dtype;
    return parts[0]->dtype == DT_BF16 ? DT_BF16 : DT_F32; /* f16 widens exactly to f32 */
}

/* A PACK_PANEL stack of two block types with kernels, each a run of whole parts, changing at a row
 * that is a multiple of 32 (llama-quantize's Q4_K_M gives attn_v Q6_K in some layers, q and k Q4_K):
 * the row where the second type starts, or 0. */
static int64_t panel_split(const TensorInfo **parts, int n) {
    int i = 1;
    int64_t rows = parts[0]->shape[0];
    while (i < n && parts[i]->dtype == parts[0]->dtype) rows += parts[i++]->shape[0];
    if (i == n || !kt_is_q((int32_t)parts[0]->dtype) || !kt_is_q((int32_t)parts[i]->dtype) || rows % 32) return 0;
    for (int j = i + 1; j < n; j++)
        if (parts[j]->dtype != parts[i]->dtype) return 0;
    return rows;
}

/* A packed WEIGHT node from the tensors of source weight nodes ws[0..n). */
static ValueId packed(Fuser *fu, PackKind kind, const ValueId *ws, int n, const char *name, int64_t rows, int64_t cols) {
    int n_parts = 0;
    for (int i = 0; i < n; i++) {
        cover(fu, ws[i]);
        n_parts += src(fu, ws[i])->a.weight.n_parts;
    }
    const TensorInfo **parts = arena_alloc(fu->a, sizeof *parts * (size_t)(n_parts + 1));
    int at = 0;
    for (int i = 0; i < n; i++) {
        const Node *w = src(fu, ws[i]);
        memcpy(parts + at, w->a.weight.parts, sizeof *parts * (size_t)w->a.weight.n_parts);
        at += w->a.weight.n_parts;
    }
    ValueId v = ir_add(fu->f, OP_WEIGHT, name, 0, NULL);
    Node *nd = ir_node(fu->f, v);
    nd->a.weight.parts = parts;
    nd->a.weight.n_parts = n_parts;
    nd->a.weight.pack = kind;
    nd->dtype = pack_dtype(parts, n_parts, rows == 1 || cols == 1 ? 1 : 2, kind);
    if (kind == PACK_PANEL && rows > 1 && cols > 1 && (nd->a.weight.split = panel_split(parts, n_parts))) {
        nd->dtype = parts[0]->dtype;
        nd->a.weight.dtype2 = parts[n_parts - 1]->dtype;
    }
    nd->rank = rows == 1 ? 1 : 2;
    nd->shape[0] = rows == 1 ? cols : rows;
    nd->shape[1] = cols;
    if (rows == 1) nd->rank = 1;
    return v;
}

static ValueId packed_as(Fuser *fu, PackKind kind, ValueId w, const char *name) {
    const Node *n = src(fu, w);
    return n->rank == 1 ? packed(fu, kind, &w, 1, name, 1, n->shape[0])
                        : packed(fu, kind, &w, 1, name, n->shape[0], n->shape[1]);
}

/* A vector, a table or the router's gate: rows as stored. */
static ValueId packed1(Fuser *fu, ValueId w, const char *name) { return packed_as(fu, PACK_ROWS, w, name); }

static ValueId act(Fuser *fu, Op op, const char *name, int n_in, const ValueId *in, int64_t cols) {
    ValueId v = ir_add(fu->f, op, name, n_in, in);
    Node *n = ir_node(fu->f, v);
    n->dtype = DT_F32;
    n->rank = 2;
    n->shape[0] = fu->s->n_tok;
    n->shape[1] = cols;
    return v;
}

/* The wdt the kernels see for weight w (kernels/kt_quant.h): a block type with the graph's act bits. */
static int32_t wdt_bound(Fuser *fu, ValueId w) {
    if (ir_is_none(w)) return DT_F32;
    return kt_wdt_bind((int32_t)ir_node(fu->f, w)->dtype, fu->s->act_bits);
}

/* The same for the second type of a two-type panel (ir.h: weight.split), else wdt_bound. */
static int32_t wdt2_bound(Fuser *fu, ValueId w) {
    const Node *n = ir_node(fu->f, w);
    if (!n->a.weight.split) return wdt_bound(fu, w);
    return kt_wdt_bind((int32_t)n->a.weight.dtype2, fu->s->act_bits);
}

static ValueId norm_matmul(Fuser *fu, const char *name, ValueId x, ValueId norm_w, ValueId w, ValueId bias,
                           ValueId resid, int64_t n_out, float eps) {
    ValueId v = act(fu, OP_FNORM_MATMUL, name, 5, (ValueId[]){x, norm_w, w, bias, resid}, n_out);
    Node *n = ir_node(fu->f, v);
    n->a.norm.eps = eps;
    n->a.norm.amx = fu->amx;
    int64_t K = ir_node(fu->f, x)->shape[1];
    int32_t q = kt_q_scratch_kind(wdt_bound(fu, w)), q2 = kt_q_scratch_kind(wdt2_bound(fu, w));
    q = q2 > q ? q2 : q;
    n->scratch_bytes = (int64_t)sizeof(float) * fu->threads *
                       kt_norm_matmul_scratch(fu->s->n_tok, K, !ir_is_none(norm_w), fu->amx, q);
    return v;
}

/* Peels q = ROPE([CLAMP]([RMSNORM](MATMUL(h, W[, b])))) -> the matmul node, its norm weight. */
static ValueId peel_proj(Fuser *fu, ValueId v, ValueId *norm_w, bool rope) {
    *norm_w = IR_NONE;
    if (rope) {
        expect(fu, src(fu, v)->op == OP_ROPE, v, "expected RoPE");
        cover(fu, v);
        v = src(fu, v)->in[0];
    }
    if (src(fu, v)->op == OP_CLAMP) {
        cover(fu, v);
        v = src(fu, v)->in[0];
    }
    if (src(fu, v)->op == OP_RMSNORM) {
        cover(fu, v);
        *norm_w = src(fu, v)->in[1];
        v = src(fu, v)->in[0];
    }
    expect(fu, src(fu, v)->op == OP_MATMUL, v, "expected a projection");
    cover(fu, v);
    return v;
}

static void fuse_attention(Fuser *fu, ValueId at) {
    const Node *a = src(fu, at);
    const AttnAttr *aa = &a->a.attn;
    char nm[64];
    ValueId qn, kn, vn;
    ValueId qm = peel_proj(fu, a->in[0], &qn, true), km = peel_proj(fu, a->in[1], &kn, true),
            vm = peel_proj(fu, a->in[2], &vn, false);
    const Node *q = src(fu, qm);
    ValueId h = q->in[0];
    expect(fu, src(fu, km)->in[0].id == h.id && src(fu, vm)->in[0].id == h.id, at, "q, k, v read different inputs");
    expect(fu, src(fu, h)->op == OP_RMSNORM, h, "attention input is not normalised");
    cover(fu, h);
    cover(fu, at);
    const Node *hn = src(fu, h);
    ValueId x = mapped(fu, hn->in[0]);
    int64_t nq = aa->n_heads * aa->head_dim, nkv = aa->n_kv * aa->head_dim;
    if (aa->head_dim > KT_MAX_HEAD_DIM && fu->ok) {
        diag_error(fu->d, "config.json: head_dim: at most %d for the compiled attention kernels; got %" PRId64,
                   KT_MAX_HEAD_DIM, aa->head_dim);
        fu->ok = false;
    }
    snprintf(nm, sizeof nm, "L%02d.attn.ln", aa->layer);
    ValueId ln = packed1(fu, hn->in[1], nm);
    snprintf(nm, sizeof nm, "L%02d.attn.wqkv", aa->layer);
    ValueId wqkv = packed(fu, PACK_PANEL, (ValueId[]){q->in[1], src(fu, km)->in[1], src(fu, vm)->in[1]}, 3, nm,
                          nq + 2 * nkv, hn->shape[1]);
    ValueId bqkv = IR_NONE;
    if (q->n_in == 3) {
        snprintf(nm, sizeof nm, "L%02d.attn.bqkv", aa->layer);
        bqkv = packed(fu, PACK_ROWS, (ValueId[]){q->in[2], src(fu, km)->in[2], src(fu, vm)->in[2]}, 3, nm, 1,
                      nq + 2 * nkv);
    }
    snprintf(nm, sizeof nm, "L%02d.attn.qkv", aa->layer);
    ValueId qkv = norm_matmul(fu, nm, x, ln, wqkv, bqkv, IR_NONE, nq + 2 * nkv, hn->a.norm.eps);
    /* q/k norms, clip, RoPE table */
    ValueId pqn = IR_NONE, pkn = IR_NONE;
    int32_t qk_norm = 0;
    if (!ir_is_none(qn)) {
        snprintf(nm, sizeof nm, "L%02d.attn.q_norm", aa->layer);
        pqn = packed1(fu, qn, nm);
        snprintf(nm, sizeof nm, "L%02d.attn.k_norm", aa->layer);
        pkn = packed1(fu, kn, nm);
        qk_norm = src(fu, qn)->shape[0] == aa->head_dim ? 1 : 2;
    }
    float clip = 0;
    const Node *qr = src(fu, a->in[0]);
    if (src(fu, qr->in[0])->op == OP_CLAMP) clip = src(fu, qr->in[0])->a.clamp.c;
    snprintf(nm, sizeof nm, "L%02d.attn.rope_table", aa->layer);
    ValueId rope = ir_add(fu->f, OP_WEIGHT, nm, 0, NULL);
    Node *rn = ir_node(fu->f, rope);
    rn->a.weight.pack = PACK_ROPE;
    rn->a.weight.rope = qr->a.rope;
    rn->a.weight.rope_positions = fu->context;
    rn->dtype = DT_F32;
    rn->rank = 2;
    rn->shape[0] = fu->context;
    rn->shape[1] = aa->head_dim;
    snprintf(nm, sizeof nm, "L%02d.attn.q", aa->layer);
    ValueId qo = act(fu, OP_FQKV_ROPE, nm, 4, (ValueId[]){qkv, pqn, pkn, rope}, nq);
    Node *qrn = ir_node(fu->f, qo);
    qrn->a.qkv.eps = hn->a.norm.eps; /* every norm of a model shares rms_norm_eps */
    qrn->a.qkv.n_heads = aa->n_heads;
    qrn->a.qkv.n_kv = aa->n_kv;
    qrn->a.qkv.head_dim = aa->head_dim;
    qrn->a.qkv.S = fu->context;
    qrn->a.qkv.qk_norm = qk_norm;
    qrn->a.qkv.clip = clip;
    qrn->a.qkv.layer = aa->layer;
    snprintf(nm, sizeof nm, "L%02d.attn.out", aa->layer);
    ValueId ao = act(fu, OP_FATTENTION, nm, 1, &qo, nq);
    ir_node(fu->f, ao)->a.attn = *aa;
    fu->map[at.id] = ao;
}

/* What every expert kernel node of a layer carries (a.ffn). */
typedef struct FfnShape {
    float eps;
    int64_t E, k, C, I, SI;
    int32_t shared_kind;
    int layer;
} FfnShape;

static Node *ffn_node(Fuser *fu, ValueId v, const FfnShape *fs) {
    Node *n = ir_node(fu->f, v);
    n->dtype = DT_F32;
    n->a.ffn.eps = fs->eps;
    n->a.ffn.n_exp = fs->E;
    n->a.ffn.top_k = fs->k;
    n->a.ffn.capacity = fs->C;
    n->a.ffn.d_ff = fs->I;
    n->a.ffn.d_shared = fs->SI;
    n->a.ffn.shared_kind = fs->shared_kind;
    n->a.ffn.threads = fu->threads;
    n->a.ffn.layer = fs->layer;
    return n;
}

/* The MLP / MoE half of a layer: ADD(x, ffn) -> FROUTER? + FEXPERTS + FREDUCE, or, in a step of
 * fewer than KT_TILE_T tokens, FROUTER? + FEXPERTS_ACT + FEXPERTS_DOWN. */
static void fuse_ffn(Fuser *fu, ValueId add, ValueId xs, ValueId y) {
    const Node *yn = src(fu, y);
    ValueId moe = IR_NONE, shared_down = IR_NONE, shared_gate = IR_NONE, dense_down = IR_NONE;
    cover(fu, add);
    if (yn->op == OP_ADD) { /* MOE_FFN + SIGMOID_SCALE(shared gate logit, shared expert) */
        cover(fu, y);
        moe = yn->in[0];
        const Node *ss = src(fu, yn->in[1]);
        expect(fu, ss->op == OP_SIGMOID_SCALE, yn->in[1], "expected the gated shared expert");
        cover(fu, yn->in[1]);
        shared_gate = ss->in[0];
        shared_down = ss->in[1];
    } else if (yn->op == OP_MOE_FFN) {
        moe = y;
    } else {
        dense_down = y;
    }
    ValueId mlp_down = !ir_is_none(shared_down) ? shared_down : dense_down;
    ValueId h = IR_NONE, sgu[2] = {IR_NONE, IR_NONE}, sd = IR_NONE, sgw = IR_NONE;
    int64_t SI = 0;
    if (!ir_is_none(mlp_down)) { /* MATMUL(SWIGLU(MATMUL(h, g), MATMUL(h, u)), d) */
        const Node *dn = src(fu, mlp_down);
        expect(fu, dn->op == OP_MATMUL, mlp_down, "expected the MLP down projection");
        cover(fu, mlp_down);
        const Node *sw = src(fu, dn->in[0]);
        expect(fu, sw->op == OP_SWIGLU, dn->in[0], "expected SiLU-gating");
        cover(fu, dn->in[0]);
        const Node *gm = src(fu, sw->in[0]), *um = src(fu, sw->in[1]);
        cover(fu, sw->in[0]);
        cover(fu, sw->in[1]);
        h = gm->in[0];
        sgu[0] = gm->in[1];
        sgu[1] = um->in[1];
        sd = dn->in[1];
        SI = gm->shape[1];
    }
    if (!ir_is_none(shared_gate)) {
        const Node *gl = src(fu, shared_gate);
        cover(fu, shared_gate);
        sgw = gl->in[1];
    }
    const Node *mn = ir_is_none(moe) ? NULL : src(fu, moe);
    if (mn) {
        cover(fu, moe);
        h = mn->in[0];
    }
    expect(fu, !ir_is_none(h) && src(fu, h)->op == OP_RMSNORM, add, "FFN input is not normalised");
    if (!fu->ok) return;
    cover(fu, h);
    const Node *hn = src(fu, h);
    ValueId x = mapped(fu, xs);
    int64_t T = fu->s->n_tok, H = hn->shape[1];
    int layer = mn ? mn->a.moe.layer : 0;
    char nm[64];
    if (!mn) sscanf(hn->name, "L%d", &layer);
    snprintf(nm, sizeof nm, "L%02d.ffn.ln", layer);
    ValueId ln = packed1(fu, hn->in[1], nm);
    ValueId dispatch = IR_NONE, gate_up = IR_NONE, down = IR_NONE;
    int64_t E = 0, k = 0, C = 0, I = 0;
    int32_t renorm = 0;
    if (mn) {
        const Node *rt = src(fu, mn->in[1]);
        const Node *lg = src(fu, rt->in[0]);
        cover(fu, mn->in[1]);
        cover(fu, rt->in[0]);
        E = mn->a.moe.n_exp;
        k = mn->a.moe.top_k;
        C = mn->a.moe.capacity;
        I = src(fu, mn->in[2])->shape[1];
        renorm = rt->a.router.renorm;
        snprintf(nm, sizeof nm, "L%02d.moe.gate_w", layer);
        ValueId gw = packed1(fu, lg->in[1], nm);
        snprintf(nm, sizeof nm, "L%02d.moe.dispatch", layer);
        dispatch = ir_add(fu->f, OP_FROUTER, nm, 3, (ValueId[]){x, ln, gw});
        Node *dn = ir_node(fu->f, dispatch);
        dn->dtype = DT_I32;
        dn->rank = 1;
        dn->shape[0] = kt_dispatch_bytes(T, k, E, C) / 4;
        dn->a.ffn.eps = hn->a.norm.eps;
        dn->a.ffn.n_exp = E;
        dn->a.ffn.top_k = k;
        dn->a.ffn.capacity = C;
        dn->a.ffn.renorm = renorm;
        dn->a.ffn.layer = layer;
        snprintf(nm, sizeof nm, "L%02d.moe.gate_up", layer);
        gate_up = packed(fu, PACK_GATE_UP, (ValueId[]){mn->in[2], mn->in[3]}, 2, nm, E * I * 2, H);
        snprintf(nm, sizeof nm, "L%02d.moe.down", layer);
        down = packed(fu, PACK_PANEL_EACH, &mn->in[4], 1, nm, E * H, I);
    }
    ValueId sh_gu = IR_NONE, sh_d = IR_NONE, sh_g = IR_NONE;
    if (SI) {
        snprintf(nm, sizeof nm, "L%02d.%s.gate_up", layer, mn ? "shared" : "mlp");
        sh_gu = packed(fu, PACK_GATE_UP, sgu, 2, nm, SI * 2, H);
        snprintf(nm, sizeof nm, "L%02d.%s.down", layer, mn ? "shared" : "mlp");
        sh_d = packed_as(fu, PACK_PANEL, sd, nm);
        if (!ir_is_none(sgw)) {
            snprintf(nm, sizeof nm, "L%02d.shared.gate_w", layer);
            sh_g = packed(fu, PACK_ROWS, &sgw, 1, nm, 1, H);
        }
    }
    const FfnShape fs = {hn->a.norm.eps, E, k, C, I, SI, SI == 0 ? 0 : mn ? 1 : 2, layer};
    snprintf(nm, sizeof nm, "L%02d.ffn.out", layer);
    if (T < KT_TILE_T) { /* decode form: act, then down by rows of H (kernels.h) */
        char anm[64];
        snprintf(anm, sizeof anm, "L%02d.ffn.act", layer);
        ValueId av = ir_add(fu->f, OP_FEXPERTS_ACT, anm, 6, (ValueId[]){x, ln, dispatch, gate_up, sh_gu, sh_g});
        Node *an = ffn_node(fu, av, &fs);
        an->rank = 1;
        int32_t wd = wdt_bound(fu, down), wsd = wdt_bound(fu, sh_d);
        an->a.ffn.q8 = (kt_cv(wd) ? 1 : 0) | (kt_cv(wsd) ? 2 : 0);
        if (an->a.ffn.q8 && kt_bfa(kt_cv(wd) ? wd : wsd)) an->a.ffn.q8 |= KT_ACT_BF16;
        an->shape[0] = kt_experts_act_floats(T, E, C, I, SI, an->a.ffn.q8);
        int32_t q8h = kt_cv(wdt_bound(fu, gate_up)) || kt_cv(wdt_bound(fu, sh_gu));
        an->scratch_bytes = (int64_t)sizeof(float) * fu->threads * kt_experts_act_scratch(T, H, q8h);
        ValueId out = act(fu, OP_FEXPERTS_DOWN, nm, 5, (ValueId[]){x, dispatch, av, down, sh_d}, H);
        ffn_node(fu, out, &fs);
        fu->map[add.id] = out;
        return;
    }
    char pnm[64];
    snprintf(pnm, sizeof pnm, "L%02d.ffn.partials", layer);
    ValueId part = ir_add(fu->f, OP_FEXPERTS, pnm, 8, (ValueId[]){x, ln, dispatch, gate_up, down, sh_gu, sh_d, sh_g});
    Node *pn = ffn_node(fu, part, &fs);
    pn->rank = 3;
    pn->shape[0] = fu->threads;
    pn->shape[1] = T;
    pn->shape[2] = H;
    pn->a.ffn.amx = fu->amx;
    int32_t q = 0; /* the largest kt_q_scratch_kind, as the kernel takes it */
    for (int i = 0; i < 4; i++) {
        int32_t qi = kt_q_scratch_kind(wdt_bound(fu, (ValueId[]){gate_up, down, sh_gu, sh_d}[i]));
        q = qi > q ? qi : q;
    }
    pn->scratch_bytes =
        (int64_t)sizeof(float) * fu->threads * kt_experts_scratch(T, H, I > SI ? I : SI, fu->threads, fu->amx, q);
    fu->map[add.id] = act(fu, OP_FREDUCE, nm, 2, (ValueId[]){x, part}, H);
}

/* ADD(x, MATMUL(attention, Wo[, bo])): the output projection with the residual as epilogue. */
static void fuse_out_proj(Fuser *fu, ValueId add, ValueId xs, ValueId o) {
    const Node *on = src(fu, o);
    cover(fu, add);
    cover(fu, o);
    const Node *at = src(fu, on->in[0]);
    char nm[64];
    snprintf(nm, sizeof nm, "L%02d.attn.wo", at->a.attn.layer);
    ValueId wo = packed_as(fu, PACK_PANEL, on->in[1], nm);
    ValueId bo = IR_NONE;
    if (on->n_in == 3) {
        snprintf(nm, sizeof nm, "L%02d.attn.bo", at->a.attn.layer);
        bo = packed1(fu, on->in[2], nm);
    }
    snprintf(nm, sizeof nm, "L%02d.attn.residual", at->a.attn.layer);
    fu->map[add.id] = norm_matmul(fu, nm, mapped(fu, on->in[0]), IR_NONE, wo, bo, mapped(fu, xs), on->shape[1], 0);
}

Graph *pass_fuse(Arena *a, const Graph *s, int64_t threads, int64_t context, int amx, Diag *d) {
    Fuser fu = {.s = s, .a = a, .d = d, .threads = threads, .context = context, .ok = true};
    fu.amx = s->n_tok >= KT_TILE_T ? amx : 0; /* below one tile of tokens the FMA tile is the better one */
    fu.f = ir_graph_new(a);
    fu.f->family = s->family;
    fu.f->n_layers = s->n_layers;
    fu.f->n_tok = s->n_tok;
    fu.f->act_bits = s->act_bits;
    fu.map = arena_alloc(a, sizeof(ValueId) * s->n);
    fu.covered = arena_alloc(a, sizeof(bool) * s->n);
    for (uint32_t i = 0; i < s->n; i++) fu.map[i] = IR_NONE;
    for (uint32_t i = 0; i < s->n && fu.ok; i++) {
        const Node *n = &s->nodes[i];
        ValueId v = {i};
        if (n->op == OP_INPUT_IDS) {
            cover(&fu, v);
            ValueId ids = ir_add(fu.f, OP_INPUT_IDS, "ids", 0, NULL);
            ir_infer(fu.f, ids);
            ir_node(fu.f, ids)->shape[0] = s->n_tok;
            fu.map[i] = fu.f->ids = ids;
        } else if (n->op == OP_EMBED) {
            cover(&fu, v);
            ValueId table = packed1(&fu, n->in[1], "embed_tokens");
            fu.map[i] = act(&fu, OP_EMBED, "embed", 2, (ValueId[]){mapped(&fu, n->in[0]), table}, n->shape[1]);
        } else if (n->op == OP_ATTENTION) {
            fuse_attention(&fu, v);
        } else if (n->op == OP_ADD && !ir_is_none(fu.map[n->in[0].id])) { /* a residual add */
            const Node *y = src(&fu, n->in[1]);
            if (y->op == OP_MATMUL && src(&fu, y->in[0])->op == OP_ATTENTION)
                fuse_out_proj(&fu, v, n->in[0], n->in[1]);
            else
                fuse_ffn(&fu, v, n->in[0], n->in[1]);
        } else if (i == s->logits.id) {
            const Node *hn = src(&fu, n->in[0]);
            expect(&fu, hn->op == OP_RMSNORM, n->in[0], "logits input is not normalised");
            cover(&fu, v);
            cover(&fu, n->in[0]);
            ValueId fw = packed1(&fu, hn->in[1], "final_norm");
            ValueId head = packed_as(&fu, PACK_PANEL, n->in[1], "lm_head");
            fu.map[i] = fu.f->logits =
                norm_matmul(&fu, "logits", mapped(&fu, hn->in[0]), fw, head, IR_NONE, IR_NONE, n->shape[1], hn->a.norm.eps);
        }
    }
    for (uint32_t i = 0; i < s->n && fu.ok; i++)
        expect(&fu, fu.covered[i] || s->nodes[i].op == OP_WEIGHT, (ValueId){i}, "not covered by any fused kernel");
    if (!fu.ok) return NULL;
    return fu.f;
}
