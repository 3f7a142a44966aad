#include "gguf_model.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- which file */

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && !strcmp(s + n - m, tail);
}

/* NAME-0000k-of-0000n.gguf with k > 1: a later part of a split set, not a model of its own. */
static bool later_split_part(const char *name) {
    const char *of = strstr(name, "-of-");
    if (!of || of < name + 6) return false;
    int k = atoi(of - 5);
    return of[-6] == '-' && k > 1;
}

const char *gguf_model_path(Arena *a, Diag *d, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return NULL;
    if (S_ISREG(st.st_mode)) return ends_with(path, ".gguf") ? path : NULL;
    if (!S_ISDIR(st.st_mode)) return NULL;
    if (access(arena_printf(a, "%s/config.json", path), F_OK) == 0) return NULL; /* a Hugging Face folder */
    DIR *dir = opendir(path);
    if (!dir) return NULL;
    const char *found = NULL, *list = "";
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (!ends_with(e->d_name, ".gguf") || later_split_part(e->d_name)) continue;
        found = arena_printf(a, "%s/%s", path, e->d_name);
        list = arena_printf(a, "%s%s%s", list, n ? ", " : "", e->d_name);
        n++;
    }
    closedir(dir);
    if (n > 1) {
        diag_error(d, "%s: %d GGUF models (%s); expected one: give the file to use", path, n, list);
        return NULL;
    }
    return found;
}

/* ---------------------------------------------------------------- config */

typedef struct Cfg {
    const GgufFile *g;
    Arena *a;
    Diag *d;
    const char *arch;        /* general.architecture */
    cJSON *root;
    const char **names;      /* {config key, GGUF key} pairs, NULL-terminated */
    int n_names;
} Cfg;

static const char *akey(Cfg *c, const char *suffix) { return arena_printf(c->a, "%s.%s", c->arch, suffix); }

static void name_key(Cfg *c, const char *hf, const char *gguf_key) {
    for (int i = 0; i < c->n_names; i++)
        if (!strcmp(c->names[2 * i], hf)) { /* the last GGUF key tried for it */
            c->names[2 * i + 1] = gguf_key;
            return;
        }
    c->names[2 * c->n_names] = hf;
    c->names[2 * c->n_names + 1] = gguf_key;
    c->n_names++;
}

/* A numeric value of kv (an array must hold one value repeated: per-layer values are not supported). */
static bool kv_number(Cfg *c, const GgufKv *kv, double *out) {
    switch (kv->type) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64: *out = (double)kv->v.u; return true;
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: *out = (double)kv->v.i; return true;
    case GGUF_F32: { /* the shortest decimal that reads back as this float32: 1e-5, not 9.9999997e-06 */
        float f = (float)kv->v.f;
        char buf[32];
        for (int p = 1; p <= 9; p++) {
            snprintf(buf, sizeof buf, "%.*g", p, (double)f);
            if ((float)strtod(buf, NULL) == f) break;
        }
        *out = strtod(buf, NULL);
        return true;
    }
    case GGUF_F64: *out = kv->v.f; return true;
    case GGUF_ARR:
        if (kv->n >= 1 && kv->elem != GGUF_STR && kv->elem != GGUF_ARR) {
            double first = gguf_arr_f64(kv, 0);
            for (uint64_t i = 1; i < kv->n; i++)
                if (gguf_arr_f64(kv, i) != first) {
                    diag_error(c->d, "%s: key '%s': per-layer values (%g, then %g at layer %" PRIu64 ") are not supported; "
                               "expected one value for every layer", c->g->path, kv->key, first, gguf_arr_f64(kv, i), i);
                    return false;
                }
            *out = first;
            return true;
        }
        break;
    default: break;
    }
    diag_error(c->d, "%s: key '%s': expected a number; got %s", c->g->path, kv->key, gguf_type_name(kv->type));
    return false;
}

/* Sets config key hf from <arch>.<suffix> when the file has it; true when it was set. */
static bool put_num(Cfg *c, const char *hf, const char *suffix) {
    const char *key = akey(c, suffix);
    const GgufKv *kv = gguf_kv_find(c->g, key);
    double v;
    name_key(c, hf, key); /* also when absent: "missing" names the GGUF key */
    if (!kv || !kv_number(c, kv, &v)) return false;
    cJSON_DeleteItemFromObjectCaseSensitive(c->root, hf);
    cJSON_AddNumberToObject(c->root, hf, v);
    return true;
}

static bool has_tensor(const GgufFile *g, const char *name) { return gguf_find(g, name) != NULL; }

/* Refuses <arch>.<suffix> when present with a value other than ok (NAN: any value is refused). */
static void refuse_unless(Cfg *c, const char *suffix, double ok, const char *what) {
    const GgufKv *kv = gguf_kv_find(c->g, akey(c, suffix));
    double v = NAN;
    if (!kv) return;
    if (kv->type == GGUF_BOOL) v = (double)kv->v.u;
    else if (kv->type == GGUF_STR) v = NAN;
    else if (!kv_number(c, kv, &v)) return;
    if (!isnan(ok) && v == ok) return;
    diag_error(c->d, "%s: key '%s': %s is not supported%s", c->g->path, kv->key, what,
               isnan(ok) ? "" : arena_printf(c->a, "; expected %g, got %g", ok, v));
}

/* rope.scaling.* -> rope_scaling {rope_type, factor, original_max_position_embeddings}. */
static void rope_scaling(Cfg *c) {
    const GgufKv *kv = gguf_kv_find(c->g, akey(c, "rope.scaling.type"));
    if (!kv) return;
    if (kv->type != GGUF_STR) {
        diag_error(c->d, "%s: key '%s': expected a string; got %s", c->g->path, kv->key, gguf_type_name(kv->type));
        return;
    }
    const char *type = kv->v.s.s;
    if (!strcmp(type, "none")) return;
    if (strcmp(type, "linear") && strcmp(type, "yarn")) {
        diag_error(c->d, "%s: key '%s': RoPE scaling '%s' is not supported; expected none, linear or yarn", c->g->path,
                   kv->key, type);
        return;
    }
    cJSON *rs = cJSON_AddObjectToObject(c->root, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", type);
    const GgufKv *f = gguf_kv_find(c->g, akey(c, "rope.scaling.factor"));
    double v;
    if (f && kv_number(c, f, &v)) cJSON_AddNumberToObject(rs, "factor", v);
    const GgufKv *o = gguf_kv_find(c->g, akey(c, "rope.scaling.original_context_length"));
    if (o && kv_number(c, o, &v)) cJSON_AddNumberToObject(rs, "original_max_position_embeddings", v);
    const GgufKv *af = gguf_kv_find(c->g, akey(c, "rope.scaling.attn_factor"));
    if (af && kv_number(c, af, &v)) cJSON_AddNumberToObject(rs, "attention_factor", v);
}

typedef enum Fam { FAM_MIXTRAL, FAM_QWEN2, FAM_QWEN3, FAM_OLMOE } Fam;

static const struct {
    const char *arch, *model_type;
    Fam fam;
} gguf_archs[] = {
    {"llama", "mixtral", FAM_MIXTRAL},
    {"qwen2moe", "qwen2_moe", FAM_QWEN2},
    {"qwen3moe", "qwen3_moe", FAM_QWEN3},
    {"olmoe", "olmoe", FAM_OLMOE},
};

/* Layers of an open file: <arch>.block_count, or 0. */
static int64_t block_count(Cfg *c) {
    const GgufKv *kv = gguf_kv_find(c->g, akey(c, "block_count"));
    double v;
    return kv && kv_number(c, kv, &v) && v >= 0 && v <= 4096 ? (int64_t)v : 0;
}

bool gguf_model_config(const GgufFile *g, Arena *a, Diag *d, ModelConfig *mc, const Arch **arch) {
    *arch = NULL;
    Cfg c = {.g = g, .a = a, .d = d};
    const char *arch_name;
    if (!gguf_get_str(g, d, "general.architecture", &arch_name)) return false;
    c.arch = arch_name;
    int fi = -1;
    for (size_t i = 0; i < sizeof gguf_archs / sizeof gguf_archs[0]; i++)
        if (!strcmp(arch_name, gguf_archs[i].arch)) fi = (int)i;
    if (fi < 0) {
        diag_error(d, "%s: key 'general.architecture': '%s' is not supported; expected llama (Mixtral), qwen2moe, "
                   "qwen3moe or olmoe", g->path, arch_name);
        return false;
    }
    Fam fam = gguf_archs[fi].fam;
    c.names = arena_alloc(a, sizeof(char *) * 2 * 64);
    c.root = cJSON_CreateObject();
    cJSON_AddStringToObject(c.root, "model_type", gguf_archs[fi].model_type);
    name_key(&c, "model_type", "general.architecture");

    /* shapes every family reads */
    put_num(&c, "hidden_size", "embedding_length");
    put_num(&c, "num_hidden_layers", "block_count");
    put_num(&c, "num_attention_heads", "attention.head_count");
    put_num(&c, "num_key_value_heads", "attention.head_count_kv");
    put_num(&c, "max_position_embeddings", "context_length");
    put_num(&c, "rope_theta", "rope.freq_base");
    put_num(&c, "rms_norm_eps", "attention.layer_norm_rms_epsilon");
    put_num(&c, "num_experts_per_tok", "expert_used_count");
    const GgufTensor *embd = gguf_find(g, "token_embd.weight");
    if (!embd) {
        diag_error(d, "%s: tensor 'token_embd.weight': missing; expected the token embedding [vocab, %s]", g->path,
                   akey(&c, "embedding_length"));
    } else {
        cJSON_AddNumberToObject(c.root, "vocab_size", (double)embd->ti.shape[0]);
        name_key(&c, "vocab_size", "token_embd.weight rows");
    }
    cJSON_AddBoolToObject(c.root, "tie_word_embeddings", !has_tensor(g, "output.weight"));
    uint32_t id;
    if (gguf_kv_find(g, "tokenizer.ggml.bos_token_id") && gguf_get_u32(g, d, "tokenizer.ggml.bos_token_id", &id))
        cJSON_AddNumberToObject(c.root, "bos_token_id", id);
    if (gguf_kv_find(g, "tokenizer.ggml.eos_token_id") && gguf_get_u32(g, d, "tokenizer.ggml.eos_token_id", &id))
        cJSON_AddNumberToObject(c.root, "eos_token_id", id);
    rope_scaling(&c);

    /* the family's experts, widths and attention options */
    const char *n_exp_key = fam == FAM_MIXTRAL ? "num_local_experts" : "num_experts";
    put_num(&c, n_exp_key, "expert_count");
    if (fam == FAM_MIXTRAL && !gguf_kv_find(g, akey(&c, "expert_count")))
        diag_error(d, "%s: key '%s': missing; a llama GGUF without experts is a dense model, which moec does not run "
                   "(expected Mixtral: expert_count > 0)", g->path, akey(&c, "expert_count"));
    if (fam == FAM_QWEN2 || fam == FAM_QWEN3) {
        put_num(&c, "moe_intermediate_size", "expert_feed_forward_length");
        put_num(&c, "intermediate_size", "feed_forward_length");
    } else if (!put_num(&c, "intermediate_size", "expert_feed_forward_length")) {
        put_num(&c, "intermediate_size", "feed_forward_length");
    }
    if (fam == FAM_QWEN2) {
        if (!put_num(&c, "shared_expert_intermediate_size", "expert_shared_feed_forward_length")) {
            const GgufTensor *sh = gguf_find(g, "blk.0.ffn_up_shexp.weight");
            if (sh) cJSON_AddNumberToObject(c.root, "shared_expert_intermediate_size", (double)sh->ti.shape[0]);
        }
        cJSON_AddBoolToObject(c.root, "qkv_bias", has_tensor(g, "blk.0.attn_q.bias"));
        refuse_unless(&c, "expert_shared_count", 1, "more than one shared expert");
    } else {
        refuse_unless(&c, "expert_shared_count", 0, "a shared expert in this architecture");
        cJSON_AddBoolToObject(c.root, "attention_bias", has_tensor(g, "blk.0.attn_q.bias"));
    }
    if (fam == FAM_MIXTRAL || fam == FAM_QWEN3) put_num(&c, "head_dim", "attention.key_length");
    /* top-k renormalisation: implied by the architecture unless the file says */
    bool norm = fam == FAM_MIXTRAL || fam == FAM_QWEN3;
    const GgufKv *wn = gguf_kv_find(g, akey(&c, "expert_weights_norm"));
    if (wn) {
        bool v;
        if (gguf_get_bool(g, d, wn->key, &v)) norm = v;
        if (fam == FAM_MIXTRAL && !norm)
            diag_error(d, "%s: key '%s': false is not supported for Mixtral (it always renormalises the top-k)", g->path,
                       wn->key);
    }
    if (fam != FAM_MIXTRAL) cJSON_AddBoolToObject(c.root, "norm_topk_prob", norm);
    if (fam == FAM_MIXTRAL) put_num(&c, "sliding_window", "attention.sliding_window");
    else refuse_unless(&c, "attention.sliding_window", NAN, "a sliding window in this architecture");
    if (fam == FAM_OLMOE) put_num(&c, "clip_qkv", "attention.clamp_kqv");
    else refuse_unless(&c, "attention.clamp_kqv", NAN, "q/k/v clamping in this architecture");
    if (fam == FAM_QWEN2 || fam == FAM_QWEN3) { /* dense layers: those without a router */
        cJSON *only = cJSON_AddArrayToObject(c.root, "mlp_only_layers");
        int64_t L = block_count(&c);
        for (int64_t l = 0; l < L; l++)
            if (!has_tensor(g, arena_printf(a, "blk.%" PRId64 ".ffn_gate_inp.weight", l)))
                cJSON_AddItemToArray(only, cJSON_CreateNumber((double)l));
    }

    /* keys that change the computation in ways moec does not implement */
    refuse_unless(&c, "expert_gating_func", 1, "an expert gating function other than softmax (1)");
    refuse_unless(&c, "expert_weights_scale", 1, "scaling the routing weights");
    refuse_unless(&c, "attention.logit_softcapping", 0, "attention logit soft-capping");
    refuse_unless(&c, "final_logit_softcapping", 0, "final logit soft-capping");
    refuse_unless(&c, "attention.layer_norm_epsilon", NAN, "LayerNorm (moec implements RMSNorm)");
    refuse_unless(&c, "attention.q_lora_rank", 0, "low-rank (MLA) attention");
    refuse_unless(&c, "attention.kv_lora_rank", 0, "low-rank (MLA) attention");
    refuse_unless(&c, "attention.sliding_window_pattern", NAN, "a per-layer sliding-window pattern");
    refuse_unless(&c, "attention.causal", 1, "non-causal attention");
    refuse_unless(&c, "attention.scale", NAN, "an attention scale other than 1/sqrt(head_dim)");
    refuse_unless(&c, "rope.freq_scale", 1, "rope.freq_scale (old linear RoPE scaling)");
    refuse_unless(&c, "expert_group_count", 1, "grouped expert routing");
    refuse_unless(&c, "use_parallel_residual", 0, "a parallel residual");
    refuse_unless(&c, "swin_norm", 0, "swin-norm");
    if (has_tensor(g, "rope_freqs.weight"))
        diag_error(d, "%s: tensor 'rope_freqs.weight': per-frequency RoPE factors (Llama 3 scaling) are not supported",
                   g->path);
    /* head_dim: the key length where given, else H / heads; RoPE must rotate all of it */
    const GgufKv *kl = gguf_kv_find(g, akey(&c, "attention.key_length")), *vl = gguf_kv_find(g, akey(&c, "attention.value_length"));
    double k_len = 0, v_len = 0, rope_dim = 0, H = 0, heads = 0;
    const GgufKv *rd = gguf_kv_find(g, akey(&c, "rope.dimension_count"));
    const GgufKv *hk = gguf_kv_find(g, akey(&c, "embedding_length")), *nh = gguf_kv_find(g, akey(&c, "attention.head_count"));
    if (kl && vl && kv_number(&c, kl, &k_len) && kv_number(&c, vl, &v_len) && k_len != v_len)
        diag_error(d, "%s: key '%s': %g differs from the key length %g; expected equal (moec's attention needs it)",
                   g->path, vl->key, v_len, k_len);
    if (rd && hk && nh && kv_number(&c, rd, &rope_dim) && kv_number(&c, hk, &H) && kv_number(&c, nh, &heads) && heads > 0) {
        double hd = kl && kv_number(&c, kl, &k_len) ? k_len : H / heads;
        if (rope_dim != hd)
            diag_error(d, "%s: key '%s': RoPE over %g of %g head dimensions (partial rotary) is not supported; expected %g",
                       g->path, rd->key, rope_dim, hd, hd);
    }
    if (diag_failed(d)) {
        cJSON_Delete(c.root);
        return false;
    }

    /* the family's own reader: its defaults and validation */
    ConfigReader r;
    cfg_from_json(&r, a, d, g->path, c.root, (const char *const *)c.names);
    memset(mc, 0, sizeof *mc);
    mc->model_type = gguf_archs[fi].model_type;
    const Arch *ar = arch_find(mc->model_type);
    MOE_ASSERT(ar);
    int before = d->n_errors;
    ar->config(&r, mc);
    cfg_close(&r);
    if (d->n_errors != before) return false;
    *arch = ar;
    return true;
}

/* ---------------------------------------------------------------- tensors */

typedef struct Tab {
    TensorInfo *t;
    int n, cap;
    Arena *a;
} Tab;

static TensorInfo *tab_add(Tab *tb, const TensorInfo *src, const char *name) {
    if (tb->n == tb->cap) {
        int cap = tb->cap ? 2 * tb->cap : 256;
        TensorInfo *t = arena_alloc(tb->a, sizeof *t * (size_t)cap);
        if (tb->n) memcpy(t, tb->t, sizeof *t * (size_t)tb->n);
        tb->t = t;
        tb->cap = cap;
    }
    TensorInfo *t = &tb->t[tb->n++];
    *t = *src;
    t->name = name;
    return t;
}

void gguf_permute_qk(const void *src, void *dst, size_t row_bytes, int64_t heads, int64_t hd, bool to_hf) {
    const char *in = src;
    char *out = dst;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t s = 0; s < 2; s++)
            for (int64_t j = 0; j < hd / 2; j++) {
                size_t hf = (size_t)(h * hd + s * hd / 2 + j), file = (size_t)(h * hd + 2 * j + s);
                memcpy(out + (to_hf ? hf : file) * row_bytes, in + (to_hf ? file : hf) * row_bytes, row_bytes);
            }
}

/* Undoes llama's q/k permutation into an arena copy of t's bytes. */
static void unpermute_rows(TensorInfo *t, Arena *a, int64_t heads, int64_t hd) {
    char *out = arena_alloc(a, t->nbytes);
    gguf_permute_qk(t->data, out, t->nbytes / (size_t)t->shape[0], heads, hd, true);
    t->data = out;
}

/* One expert's [rows, src cols] matrix: nbytes of src's data from offset, under name. */
static void add_slice(Tab *tb, const TensorInfo *src, const char *name, int64_t rows, size_t offset, size_t nbytes) {
    TensorInfo *t = tab_add(tb, src, name);
    t->rank = 2;
    t->shape[0] = rows;
    t->shape[1] = src->shape[2];
    t->shape[2] = 0;
    t->data = (const char *)src->data + offset;
    t->nbytes = nbytes;
}

static int by_name(const void *x, const void *y) {
    return strcmp(((const TensorInfo *)x)->name, ((const TensorInfo *)y)->name);
}

/* Per-layer tensors: GGUF suffix (after "blk.N.") and HF suffix (after "model.layers.N."). The
 * router (ffn_gate_inp) and the experts depend on the family's MoeNames and are handled apart. */
static const char *const layer_names[][2] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.bias", "self_attn.o_proj.bias"},
    {"attn_q_norm.weight", "self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "self_attn.k_norm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
    {"ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight"},
    {"ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight"},
    {"ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight"},
    {"ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight"},
};

const char *gguf_layer_name(const char *suffix, const MoeNames *nm, bool to_hf, Arena *a) {
    int from = to_hf ? 0 : 1;
    for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
        if (!strcmp(suffix, layer_names[i][from])) return layer_names[i][1 - from];
    const char *router = arena_printf(a, "%sgate.weight", nm->prefix);
    if (to_hf && !strcmp(suffix, "ffn_gate_inp.weight")) return router;
    if (!to_hf && !strcmp(suffix, router)) return "ffn_gate_inp.weight";
    return NULL;
}

/* "gate" / "up" / "down" -> the family's per-expert name (w1 / w3 / w2, or gate_proj ...) */
static const char *expert_part(const char *which, const MoeNames *nm) {
    return !strcmp(which, "gate") ? nm->gate : !strcmp(which, "up") ? nm->up : nm->down;
}

bool gguf_model_tensors(const GgufFile *g, const Arch *arch, const ModelConfig *c, Arena *a, Diag *d,
                        TensorTable *tt) {
    memset(tt, 0, sizeof *tt);
    tt->dir = g->path;
    Tab tb = {.a = a};
    const MoeNames *nm = arch->moe_names;
    bool llama = !strcmp(arch->model_type, "mixtral");
    for (int i = 0; i < g->n_tensors; i++) {
        const TensorInfo *src = &g->t[i].ti;
        const char *name = src->name;
        int layer = -1, expert = -1, used = 0;
        char rest[128], which[8];
        if (!strcmp(name, "token_embd.weight")) {
            tab_add(&tb, src, "model.embed_tokens.weight");
            continue;
        }
        if (!strcmp(name, "output_norm.weight")) {
            tab_add(&tb, src, "model.norm.weight");
            continue;
        }
        if (!strcmp(name, "output.weight")) {
            tab_add(&tb, src, "lm_head.weight");
            continue;
        }
        if (sscanf(name, "blk.%d.%127s%n", &layer, rest, &used) != 2 || layer < 0 || layer >= c->num_hidden_layers ||
            name[used] != 0) {
            diag_error(d, "%s: tensor '%s': not a tensor of a %s model moec knows%s", g->path, name, arch->model_type,
                       layer >= c->num_hidden_layers ? arena_printf(a, " (layer %d of %" PRId64 ")", layer,
                                                                    c->num_hidden_layers)
                                                     : "");
            continue;
        }
        const char *base = arena_printf(a, "model.layers.%d.", layer);
        int n_which = 0;
        /* merged gate and up experts: shape [E, 2 I, H], each expert's gate rows then its up rows */
        if (!strcmp(rest, "ffn_gate_up_exps.weight")) {
            if (src->rank != 3 || src->shape[0] != c->num_experts || src->shape[1] % 2) {
                diag_error(d, "%s: tensor '%s': expected %" PRId64 " stacked experts [%" PRId64 ", 2 x width, cols]; got "
                           "rank %d, shape[0] %" PRId64 ", shape[1] %" PRId64, g->path, name, c->num_experts,
                           c->num_experts, src->rank, src->shape[0], src->shape[1]);
                continue;
            }
            size_t half = src->nbytes / (size_t)src->shape[0] / 2;
            for (int64_t e = 0; e < src->shape[0]; e++)
                for (int part = 0; part < 2; part++)
                    add_slice(&tb, src, arena_printf(a, "%s%sexperts.%" PRId64 ".%s.weight", base, nm->prefix, e,
                                                     part ? nm->up : nm->gate),
                              src->shape[1] / 2, (size_t)(2 * e + part) * half, half);
            continue;
        }
        /* stacked experts: ne = [cols, rows, E], shape [E, rows, cols] -> E slices [rows, cols] */
        if (sscanf(rest, "ffn_%7[a-z]_exps.weight%n", which, &n_which) == 1 && rest[n_which] == 0 &&
            (!strcmp(which, "gate") || !strcmp(which, "up") || !strcmp(which, "down"))) {
            if (src->rank != 3 || src->shape[0] != c->num_experts) {
                diag_error(d, "%s: tensor '%s': expected %" PRId64 " stacked experts [%" PRId64 ", rows, cols]; got rank %d, "
                           "%" PRId64 " first", g->path, name, c->num_experts, c->num_experts, src->rank, src->shape[0]);
                continue;
            }
            size_t slab = src->nbytes / (size_t)src->shape[0];
            for (int64_t e = 0; e < src->shape[0]; e++)
                add_slice(&tb, src, arena_printf(a, "%s%sexperts.%" PRId64 ".%s.weight", base, nm->prefix, e,
                                                 expert_part(which, nm)),
                          src->shape[1], (size_t)e * slab, slab);
            continue;
        }
        /* the old per-expert layout: blk.N.ffn_gate.E.weight */
        if (sscanf(rest, "ffn_%7[a-z].%d.weight%n", which, &expert, &n_which) == 2 && rest[n_which] == 0 &&
            (!strcmp(which, "gate") || !strcmp(which, "up") || !strcmp(which, "down"))) {
            if (expert < 0 || expert >= c->num_experts) {
                diag_error(d, "%s: tensor '%s': expert %d; expected below %" PRId64, g->path, name, expert, c->num_experts);
                continue;
            }
            tab_add(&tb, src, arena_printf(a, "%s%sexperts.%d.%s.weight", base, nm->prefix, expert, expert_part(which, nm)));
            continue;
        }
        const char *hf = gguf_layer_name(rest, nm, true, a);
        if (!hf) {
            diag_error(d, "%s: tensor '%s': not a tensor of a %s model moec knows", g->path, name, arch->model_type);
            continue;
        }
        TensorInfo *t = tab_add(&tb, src, arena_printf(a, "%s%s", base, hf));
        if (!strcmp(rest, "ffn_gate_inp_shexp.weight") && t->rank == 1) { /* llama-quantize drops the 1: [H] -> [1, H] */
            t->rank = 2;
            t->shape[1] = t->shape[0];
            t->shape[0] = 1;
        }
        bool q = !strncmp(rest, "attn_q.", 7), k = !strncmp(rest, "attn_k.", 7);
        if (llama && (q || k)) {
            int64_t heads = q ? c->num_attention_heads : c->num_key_value_heads, hd = c->head_dim;
            if (t->shape[0] != heads * hd || hd % 2) {
                diag_error(d, "%s: tensor '%s': %" PRId64 " rows; expected %" PRId64 " heads x %" PRId64, g->path, name,
                           t->shape[0], heads, hd);
                continue;
            }
            unpermute_rows(t, a, heads, hd);
        }
    }
    if (diag_failed(d)) return false;
    qsort(tb.t, (size_t)tb.n, sizeof *tb.t, by_name);
    for (int i = 1; i < tb.n; i++)
        if (!strcmp(tb.t[i].name, tb.t[i - 1].name)) {
            diag_error(d, "%s: tensor '%s': given twice (stacked and per-expert?)", g->path, tb.t[i].name);
            return false;
        }
    tt->n = tb.n;
    tt->t = tb.t;
    return true;
}
