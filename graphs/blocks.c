/* blocks: the pieces every family composes (SEMANTICS.md §1-§9), and the config keys they share. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "graphs.h"

/* ---------------------------------------------------------------- config */

/* Plausibility bounds on the sizes a config gives: far above any published model, and low enough
 * that every product of dims that sizes a tensor or a buffer fits in 64 bits (checked once more
 * over the whole model in gb_check_config). */
enum {
    MAX_VOCAB = 1 << 22,      /* published models: <= 262144 */
    MAX_WIDTH = 1 << 18,      /* hidden and FFN widths; published: <= 65536 */
    MAX_HEADS = 1 << 12,
    MAX_HEAD_DIM = 1 << 12,
    MAX_LAYERS = 1 << 12,
    MAX_EXPERTS = 1 << 14,
};
#define MAX_POSITIONS (INT64_C(1) << 26)
/* 2^44 parameters (17.6 T): a model beyond this is a config error, not a checkpoint. */
#define MAX_PARAMS (INT64_C(1) << 44)

static bool at_most(ConfigReader *r, const char *key, int64_t v, int64_t max) {
    return cfg_check(r, v <= max, key, arena_printf(r->a, "<= %" PRId64, max), v);
}

/* a * b, or -1 when either is negative or the product overflows. */
static int64_t mul_checked(int64_t a, int64_t b) {
    int64_t p;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &p)) return -1;
    return p;
}

/* Parameters of the model the config describes (the weights gb_decoder reads), or -1 on overflow. */
static int64_t config_params(const ModelConfig *c) {
    int64_t H = c->hidden_size, hd = c->head_dim, q = mul_checked(c->num_attention_heads, hd);
    int64_t kv = mul_checked(c->num_key_value_heads, hd);
    int64_t attn = mul_checked(H, q < 0 || kv < 0 ? -1 : 2 * q + 2 * kv);
    int64_t moe = mul_checked(mul_checked(c->num_experts, 3 * c->expert_intermediate_size), H);
    int64_t shared = mul_checked(3 * c->shared_expert_intermediate_size, H);
    int64_t dense = mul_checked(3 * c->dense_intermediate_size, H);
    int64_t router = mul_checked(c->num_experts, H);
    int64_t per_layer = attn < 0 || moe < 0 || shared < 0 || dense < 0 || router < 0 ? -1
                        : attn + moe + shared + dense + router;
    int64_t layers = mul_checked(per_layer, c->num_hidden_layers);
    int64_t embed = mul_checked(mul_checked(c->vocab_size, H), 2);
    if (layers < 0 || embed < 0 || layers > MAX_PARAMS || embed > MAX_PARAMS) return -1;
    return layers + embed;
}

/* eos_token_id may be one id or a list of them; the first counts. */
static int64_t cfg_first_int(ConfigReader *r, const char *key) {
    int64_t *list;
    if (cfg_int_list_or_int(r, key, &list) > 0) return list[0];
    return -1;
}

void gb_read_common(ConfigReader *r, ModelConfig *c, const ConfigDefaults *def) {
    c->vocab_size = cfg_int_req(r, "vocab_size");
    c->hidden_size = cfg_int_req(r, "hidden_size");
    c->num_hidden_layers = cfg_int_req(r, "num_hidden_layers");
    c->num_attention_heads = cfg_int_req(r, "num_attention_heads");
    c->num_key_value_heads = cfg_int(r, "num_key_value_heads",
                                     def->num_key_value_heads ? def->num_key_value_heads : c->num_attention_heads);
    c->num_experts_per_tok = cfg_int(r, "num_experts_per_tok", def->num_experts_per_tok);
    c->rms_norm_eps = cfg_num(r, "rms_norm_eps", def->rms_norm_eps);
    c->rope_theta = cfg_num(r, "rope_theta", def->rope_theta);
    c->max_position_embeddings = cfg_int(r, "max_position_embeddings", def->max_position_embeddings);
    c->tie_word_embeddings = cfg_bool(r, "tie_word_embeddings", false);
    c->bos_token_id = cfg_int(r, "bos_token_id", -1);
    c->eos_token_id = cfg_has(r, "eos_token_id") ? cfg_first_int(r, "eos_token_id") : -1;
    cfg_rope_scaling(r, &c->rope_scaling);
    /* Bounded before anything is sized from them (the layer table below, the family's loops). */
    at_most(r, "vocab_size", c->vocab_size, MAX_VOCAB);
    at_most(r, "hidden_size", c->hidden_size, MAX_WIDTH);
    at_most(r, "num_attention_heads", c->num_attention_heads, MAX_HEADS);
    at_most(r, "num_key_value_heads", c->num_key_value_heads, MAX_HEADS);
    at_most(r, "max_position_embeddings", c->max_position_embeddings, MAX_POSITIONS);
    if (!at_most(r, "num_hidden_layers", c->num_hidden_layers, MAX_LAYERS)) c->num_hidden_layers = 0;
    c->layer_is_moe = arena_alloc(r->a, sizeof(bool) * (size_t)(c->num_hidden_layers > 0 ? c->num_hidden_layers : 1));
    for (int64_t l = 0; l < c->num_hidden_layers; l++) c->layer_is_moe[l] = true;
    if (diag_failed(r->d)) return; /* a missing or mistyped key: its consequences would only be noise */
    const char *act = cfg_str(r, "hidden_act", "silu");
    if (strcmp(act, "silu") != 0)
        diag_error(r->d, "%s: key 'hidden_act': '%s' is not supported; expected silu", r->file, act);
    cfg_check(r, c->vocab_size > 0, "vocab_size", "> 0", c->vocab_size);
    cfg_check(r, c->hidden_size > 0, "hidden_size", "> 0", c->hidden_size);
    cfg_check(r, c->num_hidden_layers > 0, "num_hidden_layers", "> 0", c->num_hidden_layers);
    if (cfg_check(r, c->num_attention_heads > 0, "num_attention_heads", "> 0", c->num_attention_heads))
        c->head_dim = c->hidden_size / c->num_attention_heads;
    if (cfg_check(r, c->num_key_value_heads > 0, "num_key_value_heads", "> 0", c->num_key_value_heads) &&
        c->num_attention_heads > 0)
        cfg_check(r, c->num_attention_heads % c->num_key_value_heads == 0, "num_key_value_heads",
                  "a divisor of num_attention_heads", c->num_key_value_heads);
    cfg_check(r, c->max_position_embeddings > 0, "max_position_embeddings", "> 0", c->max_position_embeddings);
    if (!(c->rms_norm_eps > 0)) diag_error(r->d, "%s: key '%s': must be > 0; got %g", r->file, cfg_key(r, "rms_norm_eps"), c->rms_norm_eps);
    if (!(c->rope_theta > 1)) diag_error(r->d, "%s: key '%s': must be > 1; got %g", r->file, cfg_key(r, "rope_theta"), c->rope_theta);
}

void gb_check_config(ConfigReader *r, ModelConfig *c) {
    if (diag_failed(r->d)) return; /* report the first problem, not its consequences */
    if (cfg_check(r, c->num_experts > 0, "num_experts", "> 0", c->num_experts))
        cfg_check(r, c->num_experts_per_tok >= 1 && c->num_experts_per_tok <= c->num_experts, "num_experts_per_tok",
                  c->num_experts_per_tok < 1 ? ">= 1" : arena_printf(r->a, "<= the number of experts (%" PRId64 ")", c->num_experts),
                  c->num_experts_per_tok);
    cfg_check(r, c->head_dim > 0 && c->head_dim % 2 == 0, "head_dim", "a positive even number", c->head_dim);
    cfg_check(r, c->expert_intermediate_size > 0, "intermediate_size", "> 0", c->expert_intermediate_size);
    cfg_check(r, c->sliding_window >= 0, "sliding_window", ">= 1 or null", c->sliding_window);
    if (c->clip_qkv < 0) diag_error(r->d, "%s: key '%s': must be > 0 or null; got %g", r->file, cfg_key(r, "clip_qkv"), c->clip_qkv);
    at_most(r, "head_dim", c->head_dim, MAX_HEAD_DIM);
    at_most(r, "num_experts", c->num_experts, MAX_EXPERTS);
    at_most(r, "intermediate_size", c->expert_intermediate_size, MAX_WIDTH);
    at_most(r, "intermediate_size (dense layers)", c->dense_intermediate_size, MAX_WIDTH);
    at_most(r, "shared_expert_intermediate_size", c->shared_expert_intermediate_size, MAX_WIDTH);
    if (diag_failed(r->d)) return;
    int64_t params = config_params(c);
    if (params < 0)
        diag_error(r->d, "%s: the sizes describe a model of more than %.3g parameters; expected a real checkpoint "
                   "(hidden_size x intermediate_size x experts x num_hidden_layers)", r->file, (double)MAX_PARAMS);
}

/* ---------------------------------------------------------------- weights */

static void shape_str(char *buf, size_t n, int rank, const int64_t *shape) {
    size_t at = 0;
    at += (size_t)snprintf(buf + at, n - at, "[");
    for (int i = 0; i < rank && at < n; i++) at += (size_t)snprintf(buf + at, n - at, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

/* Looks a tensor up and checks its shape; NULL (after an error) when missing or mis-shaped. */
static const TensorInfo *find_checked(GraphBuilder *b, const char *name, int rank, const int64_t *shape) {
    char want[96], got[96];
    const TensorInfo *t = st_find(b->tt, name);
    shape_str(want, sizeof want, rank, shape);
    if (!t) {
        diag_error(b->d, "%s: tensor '%s': missing; expected shape %s", b->weights_file, name, want);
        return NULL;
    }
    bool same = t->rank == rank;
    for (int i = 0; same && i < rank; i++) same = t->shape[i] == shape[i];
    if (!same) {
        shape_str(got, sizeof got, t->rank, t->shape);
        diag_error(b->d, "%s: tensor '%s': wrong shape; expected %s, got %s", t->file, name, want, got);
        return NULL;
    }
    return t;
}

static ValueId weight_node(GraphBuilder *b, const char *name, const TensorInfo **parts, int n_parts, int rank,
                           const int64_t *shape) {
    ValueId v = ir_add(b->g, OP_WEIGHT, name, 0, NULL);
    Node *n = ir_node(b->g, v);
    n->a.weight.parts = parts;
    n->a.weight.n_parts = n_parts;
    n->dtype = parts && parts[0] ? parts[0]->dtype : DT_F32;
    n->rank = rank;
    memcpy(n->shape, shape, sizeof(int64_t) * (size_t)rank);
    return v;
}

ValueId gb_weight(GraphBuilder *b, int rank, const int64_t *shape, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const TensorInfo **parts = arena_alloc(b->a, sizeof *parts);
    parts[0] = find_checked(b, name, rank, shape);
    return weight_node(b, name, parts[0] ? parts : NULL, 1, rank, shape);
}

ValueId gb_weight1(GraphBuilder *b, int64_t d0, const char *name) { return gb_weight(b, 1, (int64_t[]){d0}, "%s", name); }

ValueId gb_weight2(GraphBuilder *b, int64_t d0, int64_t d1, const char *name) {
    return gb_weight(b, 2, (int64_t[]){d0, d1}, "%s", name);
}

ValueId gb_expert_stack(GraphBuilder *b, int layer, const MoeNames *nm, const char *which, int64_t d0, int64_t d1) {
    int64_t E = b->c->num_experts;
    const TensorInfo **parts = arena_alloc(b->a, sizeof *parts * (size_t)E);
    bool ok = true;
    for (int64_t e = 0; e < E; e++) {
        char name[256];
        snprintf(name, sizeof name, "model.layers.%d.%sexperts.%" PRId64 ".%s.weight", layer, nm->prefix, e, which);
        parts[e] = find_checked(b, name, 2, (int64_t[]){d0, d1});
        if (!parts[e]) ok = false;
        else if (parts[e]->dtype != parts[0]->dtype)
            diag_error(b->d, "%s: tensor '%s': dtype %s differs from expert 0 (%s); expected one dtype per expert stack",
                       parts[e]->file, name, dtype_name(parts[e]->dtype), dtype_name(parts[0]->dtype)), ok = false;
    }
    char vname[64];
    snprintf(vname, sizeof vname, "L%02d.moe.%s", layer, which);
    return weight_node(b, vname, ok ? parts : NULL, (int)E, 3, (int64_t[]){E, d0, d1});
}

/* ---------------------------------------------------------------- ops */

static ValueId op(GraphBuilder *b, Op o, const char *name, int n_in, const ValueId *in) {
    ValueId v = ir_add(b->g, o, name, n_in, in);
    ir_infer(b->g, v);
    return v;
}

ValueId gb_embed(GraphBuilder *b) {
    const ModelConfig *c = b->c;
    ValueId table = gb_weight2(b, c->vocab_size, c->hidden_size, "model.embed_tokens.weight");
    b->g->ids = op(b, OP_INPUT_IDS, "ids", 0, NULL);
    return op(b, OP_EMBED, "embed", 2, (ValueId[]){b->g->ids, table});
}

ValueId gb_rmsnorm(GraphBuilder *b, ValueId x, ValueId w, const char *name) {
    ValueId v = ir_add(b->g, OP_RMSNORM, name, 2, (ValueId[]){x, w});
    ir_node(b->g, v)->a.norm.eps = (float)b->c->rms_norm_eps;
    ir_infer(b->g, v);
    return v;
}

ValueId gb_matmul(GraphBuilder *b, ValueId x, ValueId w, const char *name) {
    return op(b, OP_MATMUL, name, 2, (ValueId[]){x, w});
}

ValueId gb_matmul_bias(GraphBuilder *b, ValueId x, ValueId w, ValueId bias, const char *name) {
    return op(b, OP_MATMUL, name, 3, (ValueId[]){x, w, bias});
}

ValueId gb_add(GraphBuilder *b, ValueId x, ValueId y, const char *name) { return op(b, OP_ADD, name, 2, (ValueId[]){x, y}); }

static ValueId layer_norm_w(GraphBuilder *b, int layer, const char *which) {
    return gb_weight(b, 1, (int64_t[]){b->c->hidden_size}, "model.layers.%d.%s.weight", layer, which);
}

/* One projection "model.layers.{l}.self_attn.{p}" of width out, with its bias when asked. */
static ValueId proj(GraphBuilder *b, int layer, ValueId x, const char *p, int64_t out, int64_t in, bool bias) {
    char vname[64];
    snprintf(vname, sizeof vname, "L%02d.attn.%s", layer, p);
    ValueId w = gb_weight(b, 2, (int64_t[]){out, in}, "model.layers.%d.self_attn.%s.weight", layer, p);
    if (!bias) return gb_matmul(b, x, w, vname);
    ValueId bv = gb_weight(b, 1, (int64_t[]){out}, "model.layers.%d.self_attn.%s.bias", layer, p);
    return gb_matmul_bias(b, x, w, bv, vname);
}

static ValueId rope(GraphBuilder *b, ValueId x, int64_t heads, const char *name) {
    const ModelConfig *c = b->c;
    ValueId v = ir_add(b->g, OP_ROPE, name, 1, &x);
    RopeAttr *ra = &ir_node(b->g, v)->a.rope;
    float *inv = arena_alloc(b->a, sizeof(float) * (size_t)(c->head_dim / 2 + 1));
    cfg_rope_table(c, inv, &ra->mscale);
    ra->n_heads = heads;
    ra->head_dim = c->head_dim;
    ra->inv_freq = inv;
    ir_infer(b->g, v);
    return v;
}

static ValueId clamp(GraphBuilder *b, ValueId x, const char *name) {
    ValueId v = ir_add(b->g, OP_CLAMP, name, 1, &x);
    ir_node(b->g, v)->a.clamp.c = (float)b->c->clip_qkv;
    ir_infer(b->g, v);
    return v;
}

ValueId gb_attention(GraphBuilder *b, int layer, ValueId h) {
    const ModelConfig *c = b->c;
    const int64_t H = c->hidden_size, nh = c->num_attention_heads, nkv = c->num_key_value_heads, hd = c->head_dim;
    char nm[64];
    ValueId q = proj(b, layer, h, "q_proj", nh * hd, H, c->qkv_bias);
    ValueId k = proj(b, layer, h, "k_proj", nkv * hd, H, c->qkv_bias);
    ValueId v = proj(b, layer, h, "v_proj", nkv * hd, H, c->qkv_bias);
    if (c->qk_norm != QK_NORM_NONE) {
        bool per_head = c->qk_norm == QK_NORM_PER_HEAD;
        ValueId qw = gb_weight(b, 1, (int64_t[]){per_head ? hd : nh * hd}, "model.layers.%d.self_attn.q_norm.weight", layer);
        ValueId kw = gb_weight(b, 1, (int64_t[]){per_head ? hd : nkv * hd}, "model.layers.%d.self_attn.k_norm.weight", layer);
        snprintf(nm, sizeof nm, "L%02d.attn.q_norm", layer);
        q = gb_rmsnorm(b, q, qw, nm);
        snprintf(nm, sizeof nm, "L%02d.attn.k_norm", layer);
        k = gb_rmsnorm(b, k, kw, nm);
    }
    if (c->clip_qkv > 0) {
        snprintf(nm, sizeof nm, "L%02d.attn.q_clip", layer);
        q = clamp(b, q, nm);
        snprintf(nm, sizeof nm, "L%02d.attn.k_clip", layer);
        k = clamp(b, k, nm);
        snprintf(nm, sizeof nm, "L%02d.attn.v_clip", layer);
        v = clamp(b, v, nm);
    }
    snprintf(nm, sizeof nm, "L%02d.attn.q_rope", layer);
    q = rope(b, q, nh, nm);
    snprintf(nm, sizeof nm, "L%02d.attn.k_rope", layer);
    k = rope(b, k, nkv, nm);
    snprintf(nm, sizeof nm, "L%02d.attn", layer);
    ValueId a = ir_add(b->g, OP_ATTENTION, nm, 3, (ValueId[]){q, k, v});
    AttnAttr *at = &ir_node(b->g, a)->a.attn;
    at->n_heads = nh;
    at->n_kv = nkv;
    at->head_dim = hd;
    at->window = c->sliding_window;
    at->layer = layer;
    ir_infer(b->g, a);
    return proj(b, layer, a, "o_proj", H, nh * hd, c->o_bias);
}

/* gate/up/down SiLU MLP with weights "model.layers.{l}.{prefix}{gate,up,down}_proj.weight". */
static ValueId swiglu_mlp(GraphBuilder *b, int layer, ValueId h, const char *prefix, int64_t width, const char *tag) {
    const int64_t H = b->c->hidden_size;
    char nm[64];
    ValueId wg = gb_weight(b, 2, (int64_t[]){width, H}, "model.layers.%d.%sgate_proj.weight", layer, prefix);
    ValueId wu = gb_weight(b, 2, (int64_t[]){width, H}, "model.layers.%d.%sup_proj.weight", layer, prefix);
    ValueId wd = gb_weight(b, 2, (int64_t[]){H, width}, "model.layers.%d.%sdown_proj.weight", layer, prefix);
    snprintf(nm, sizeof nm, "L%02d.%s.gate", layer, tag);
    ValueId g = gb_matmul(b, h, wg, nm);
    snprintf(nm, sizeof nm, "L%02d.%s.up", layer, tag);
    ValueId u = gb_matmul(b, h, wu, nm);
    snprintf(nm, sizeof nm, "L%02d.%s.act", layer, tag);
    ValueId a = op(b, OP_SWIGLU, nm, 2, (ValueId[]){g, u});
    snprintf(nm, sizeof nm, "L%02d.%s.down", layer, tag);
    return gb_matmul(b, a, wd, nm);
}

ValueId gb_dense_mlp(GraphBuilder *b, int layer, ValueId h, int64_t width) {
    return swiglu_mlp(b, layer, h, "mlp.", width, "mlp");
}

ValueId gb_moe_ffn(GraphBuilder *b, int layer, ValueId h, const MoeNames *nmz) {
    const ModelConfig *c = b->c;
    const int64_t H = c->hidden_size, E = c->num_experts, I = c->expert_intermediate_size;
    char nm[64];
    ValueId gw = gb_weight(b, 2, (int64_t[]){E, H}, "model.layers.%d.%sgate.weight", layer, nmz->prefix);
    snprintf(nm, sizeof nm, "L%02d.moe.router_logits", layer);
    ValueId logits = gb_matmul(b, h, gw, nm);
    snprintf(nm, sizeof nm, "L%02d.moe.router", layer);
    ValueId route = ir_add(b->g, OP_ROUTER, nm, 1, &logits);
    RouterAttr *ra = &ir_node(b->g, route)->a.router;
    ra->n_exp = E;
    ra->top_k = c->num_experts_per_tok;
    ra->renorm = c->norm_topk_prob;
    ra->layer = layer;
    ir_infer(b->g, route);
    ValueId wg = gb_expert_stack(b, layer, nmz, nmz->gate, I, H);
    ValueId wu = gb_expert_stack(b, layer, nmz, nmz->up, I, H);
    ValueId wd = gb_expert_stack(b, layer, nmz, nmz->down, H, I);
    snprintf(nm, sizeof nm, "L%02d.moe.experts", layer);
    ValueId y = ir_add(b->g, OP_MOE_FFN, nm, 5, (ValueId[]){h, route, wg, wu, wd});
    MoeAttr *ma = &ir_node(b->g, y)->a.moe;
    ma->n_exp = E;
    ma->top_k = c->num_experts_per_tok;
    ma->layer = layer;
    ir_infer(b->g, y);
    if (c->shared_expert_intermediate_size > 0) {
        ValueId s = swiglu_mlp(b, layer, h, "mlp.shared_expert.", c->shared_expert_intermediate_size, "shared");
        ValueId sgw = gb_weight(b, 2, (int64_t[]){1, H}, "model.layers.%d.mlp.shared_expert_gate.weight", layer);
        snprintf(nm, sizeof nm, "L%02d.shared.gate_logit", layer);
        ValueId sg = gb_matmul(b, h, sgw, nm);
        snprintf(nm, sizeof nm, "L%02d.shared.gated", layer);
        ValueId gated = op(b, OP_SIGMOID_SCALE, nm, 2, (ValueId[]){sg, s});
        snprintf(nm, sizeof nm, "L%02d.moe.out", layer);
        y = gb_add(b, y, gated, nm);
    }
    return y;
}

void gb_decoder(GraphBuilder *b, const MoeNames *nm) {
    const ModelConfig *c = b->c;
    char name[64];
    b->g->n_layers = (int)c->num_hidden_layers;
    ValueId x = gb_embed(b);
    for (int l = 0; l < (int)c->num_hidden_layers; l++) {
        snprintf(name, sizeof name, "L%02d.attn_norm", l);
        ValueId h = gb_rmsnorm(b, x, layer_norm_w(b, l, "input_layernorm"), name);
        ValueId a = gb_attention(b, l, h);
        snprintf(name, sizeof name, "L%02d.attn_residual", l);
        x = gb_add(b, x, a, name);
        snprintf(name, sizeof name, "L%02d.ffn_norm", l);
        h = gb_rmsnorm(b, x, layer_norm_w(b, l, "post_attention_layernorm"), name);
        ValueId f = c->layer_is_moe[l] ? gb_moe_ffn(b, l, h, nm) : gb_dense_mlp(b, l, h, c->dense_intermediate_size);
        snprintf(name, sizeof name, "L%02d.ffn_residual", l);
        x = gb_add(b, x, f, name);
    }
    ValueId fw = gb_weight1(b, c->hidden_size, "model.norm.weight");
    x = gb_rmsnorm(b, x, fw, "final_norm");
    ValueId head;
    if (c->tie_word_embeddings) {
        /* SEMANTICS §8: the head is the embedding itself, even if a file also has lm_head.weight. */
        head = gb_weight2(b, c->vocab_size, c->hidden_size, "model.embed_tokens.weight");
    } else {
        head = gb_weight2(b, c->vocab_size, c->hidden_size, "lm_head.weight");
    }
    b->g->logits = gb_matmul(b, x, head, "logits");
}
