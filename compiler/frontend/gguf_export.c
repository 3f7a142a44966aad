/* gguf_export: a loaded model written as a GGUF file, laid out as llama.cpp's converter lays out
 * the same checkpoint (gguf_model.h), so that moec's reader and other GGUF readers see what they
 * would see in a converted file: `moec convert`, and the GGUF form of `moec synth`. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "frontend.h"
#include "gguf_model.h"

typedef struct Out {
    GgufKv *kv;
    int n_kv;
    StWriteTensor *t;
    int n_t, cap_t;
    Arena *a;
} Out;

static void kv(Out *o, GgufKv v) { o->kv[o->n_kv++] = v; }

/* llama.cpp's converter writes these in f32 whatever the output type: 1-D tensors, norms, biases,
 * the router and the shared expert's gate (conversion/base.py, prepare_tensors); ggml's CPU kernels
 * take norms and biases only in f32. */
static bool kept_f32(const char *name, int rank) {
    size_t n = strlen(name);
    bool weight = n > 7 && !strcmp(name + n - 7, ".weight");
    return rank <= 1 || !weight || (n > 12 && !strcmp(name + n - 12, "_norm.weight")) || strstr(name, ".ffn_gate_inp");
}

static StWriteTensor *tensor(Out *o, const char *name, const TensorInfo *ti) {
    if (o->n_t == o->cap_t) {
        int cap = o->cap_t ? 2 * o->cap_t : 256;
        StWriteTensor *t = arena_alloc(o->a, sizeof *t * (size_t)cap);
        if (o->n_t) memcpy(t, o->t, sizeof *t * (size_t)o->n_t);
        o->t = t;
        o->cap_t = cap;
    }
    StWriteTensor *t = &o->t[o->n_t++];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = ti->dtype;
    t->rank = ti->rank;
    memcpy(t->shape, ti->shape, sizeof t->shape);
    t->data = ti->data;
    if ((ti->dtype == DT_BF16 || ti->dtype == DT_F16) && kept_f32(name, ti->rank)) { /* widened exactly */
        size_t n = ti->nbytes / 2;
        float *f = arena_alloc(o->a, n * sizeof *f);
        for (size_t i = 0; i < n; i++) f[i] = dtype_load_f32(ti->dtype, ti->data, i);
        t->dtype = DT_F32;
        t->data = f;
    }
    return t;
}

/* llama's converter permutes q/k rows within each head for ggml's interleaved RoPE (gguf_model.h). */
static const void *permute_rows(Arena *a, const StWriteTensor *t, size_t nbytes, int64_t heads, int64_t hd) {
    char *out = arena_alloc(a, nbytes);
    gguf_permute_qk(t->data, out, nbytes / (size_t)t->shape[0], heads, hd, false);
    return out;
}

static const char *gguf_arch_of(const char *model_type) {
    return !strcmp(model_type, "mixtral") ? "llama" : !strcmp(model_type, "qwen2_moe") ? "qwen2moe"
           : !strcmp(model_type, "qwen3_moe")                                       ? "qwen3moe"
                                                                                     : "olmoe";
}

static void metadata(Out *o, const ModelConfig *c, const char *arch) {
    Arena *a = o->a;
#define K(suffix) arena_printf(a, "%s.%s", arch, suffix)
    bool llama = !strcmp(arch, "llama"), qwen = !strncmp(arch, "qwen", 4);
    kv(o, gguf_kv_str("general.architecture", arch));
    kv(o, gguf_kv_str("general.name", "moec export"));
    kv(o, gguf_kv_u32(K("context_length"), (uint32_t)c->max_position_embeddings));
    kv(o, gguf_kv_u32(K("embedding_length"), (uint32_t)c->hidden_size));
    kv(o, gguf_kv_u32(K("block_count"), (uint32_t)c->num_hidden_layers));
    int64_t ff = qwen ? c->dense_intermediate_size : c->expert_intermediate_size;
    if (ff > 0) kv(o, gguf_kv_u32(K("feed_forward_length"), (uint32_t)ff));
    if (qwen) kv(o, gguf_kv_u32(K("expert_feed_forward_length"), (uint32_t)c->expert_intermediate_size));
    if (c->shared_expert_intermediate_size > 0)
        kv(o, gguf_kv_u32(K("expert_shared_feed_forward_length"), (uint32_t)c->shared_expert_intermediate_size));
    kv(o, gguf_kv_u32(K("attention.head_count"), (uint32_t)c->num_attention_heads));
    kv(o, gguf_kv_u32(K("attention.head_count_kv"), (uint32_t)c->num_key_value_heads));
    kv(o, gguf_kv_f32(K("rope.freq_base"), (float)c->rope_theta));
    kv(o, gguf_kv_f32(K("attention.layer_norm_rms_epsilon"), (float)c->rms_norm_eps));
    kv(o, gguf_kv_u32(K("expert_count"), (uint32_t)c->num_experts));
    kv(o, gguf_kv_u32(K("expert_used_count"), (uint32_t)c->num_experts_per_tok));
    if (!strcmp(arch, "qwen3moe") || c->head_dim != c->hidden_size / c->num_attention_heads) {
        kv(o, gguf_kv_u32(K("attention.key_length"), (uint32_t)c->head_dim));
        kv(o, gguf_kv_u32(K("attention.value_length"), (uint32_t)c->head_dim));
    }
    if (llama) kv(o, gguf_kv_u32(K("rope.dimension_count"), (uint32_t)c->head_dim));
    bool arch_norm = llama || !strcmp(arch, "qwen3moe"); /* what the reader assumes without the key */
    if (c->norm_topk_prob != arch_norm) kv(o, gguf_kv_bool(K("expert_weights_norm"), c->norm_topk_prob));
    if (c->sliding_window > 0) kv(o, gguf_kv_u32(K("attention.sliding_window"), (uint32_t)c->sliding_window));
    if (c->clip_qkv > 0) kv(o, gguf_kv_f32(K("attention.clamp_kqv"), (float)c->clip_qkv));
    const RopeScaling *rs = &c->rope_scaling;
    if (rs->type != ROPE_DEFAULT) {
        kv(o, gguf_kv_str(K("rope.scaling.type"), rs->type == ROPE_LINEAR ? "linear" : "yarn"));
        kv(o, gguf_kv_f32(K("rope.scaling.factor"), (float)rs->factor));
        if (rs->original_max_position_embeddings > 0)
            kv(o, gguf_kv_u32(K("rope.scaling.original_context_length"), (uint32_t)rs->original_max_position_embeddings));
    }
    /* no tokenizer is written: llama.cpp's "no vocab" marker, with the vocabulary size its loader
     * then takes from <arch>.vocab_size, so llama.cpp loads the file (llama-bench and
     * llama-batched-bench feed token ids and need no tokenizer) */
    kv(o, gguf_kv_str("tokenizer.ggml.model", "none"));
    kv(o, gguf_kv_u32(K("vocab_size"), (uint32_t)c->vocab_size));
    if (c->bos_token_id >= 0) kv(o, gguf_kv_u32("tokenizer.ggml.bos_token_id", (uint32_t)c->bos_token_id));
    if (c->eos_token_id >= 0) kv(o, gguf_kv_u32("tokenizer.ggml.eos_token_id", (uint32_t)c->eos_token_id));
#undef K
}

/* The E experts' <part> matrices of layer l stacked into one [E, rows, cols] tensor. */
static bool stack_experts(Out *o, Diag *d, const Model *m, int64_t l, const char *hf_part, const char *gguf_part) {
    const ModelConfig *c = &m->cfg;
    const MoeNames *nm = m->arch->moe_names;
    const TensorInfo *first = NULL;
    char *data = NULL;
    for (int64_t e = 0; e < c->num_experts; e++) {
        const char *name = arena_printf(o->a, "model.layers.%" PRId64 ".%sexperts.%" PRId64 ".%s.weight", l, nm->prefix, e,
                                        hf_part);
        const TensorInfo *ti = st_find(&m->tt, name);
        if (!ti || (first && (ti->dtype != first->dtype || ti->nbytes != first->nbytes || ti->shape[0] != first->shape[0]))) {
            diag_error(d, "%s: tensor '%s': %s; expected one like expert 0's to stack them", m->dir, name,
                       ti ? "another dtype or shape" : "missing");
            return false;
        }
        if (!first) {
            first = ti;
            data = arena_alloc(o->a, ti->nbytes * (size_t)c->num_experts);
        }
        memcpy(data + (size_t)e * ti->nbytes, ti->data, ti->nbytes);
    }
    StWriteTensor *t = tensor(o, arena_printf(o->a, "blk.%" PRId64 ".ffn_%s_exps.weight", l, gguf_part), first);
    t->rank = 3;
    t->shape[0] = c->num_experts;
    t->shape[1] = first->shape[0];
    t->shape[2] = first->shape[1];
    t->data = data;
    return true;
}

bool gguf_export(const Model *m, Arena *a, Diag *d, const char *path) {
    const ModelConfig *c = &m->cfg;
    const char *arch = gguf_arch_of(m->arch->model_type);
    bool llama = !strcmp(arch, "llama");
    const MoeNames *nm = m->arch->moe_names;
    Out o = {.kv = arena_alloc(a, sizeof(GgufKv) * 64), .a = a};
    metadata(&o, c, arch);
    const char *experts = arena_printf(a, "%sexperts.", nm->prefix);
    for (int i = 0; i < m->tt.n; i++) {
        const TensorInfo *ti = &m->tt.t[i];
        int layer = -1, used = 0;
        char rest[160];
        if (!strcmp(ti->name, "model.embed_tokens.weight")) tensor(&o, "token_embd.weight", ti);
        else if (!strcmp(ti->name, "model.norm.weight")) tensor(&o, "output_norm.weight", ti);
        else if (!strcmp(ti->name, "lm_head.weight")) tensor(&o, "output.weight", ti);
        else if (sscanf(ti->name, "model.layers.%d.%159s%n", &layer, rest, &used) == 2 && !ti->name[used]) {
            if (!strncmp(rest, experts, strlen(experts))) continue; /* stacked below */
            const char *g = gguf_layer_name(rest, nm, false, a);
            if (!g) {
                diag_error(d, "%s: tensor '%s': no GGUF name for it", m->dir, ti->name);
                continue;
            }
            StWriteTensor *t = tensor(&o, arena_printf(a, "blk.%d.%s", layer, g), ti);
            bool q = !strcmp(rest, "self_attn.q_proj.weight") || !strcmp(rest, "self_attn.q_proj.bias");
            bool k = !strcmp(rest, "self_attn.k_proj.weight") || !strcmp(rest, "self_attn.k_proj.bias");
            if (llama && (q || k))
                t->data = permute_rows(a, t, t->dtype == ti->dtype ? ti->nbytes : ti->nbytes * 2, /* widened */
                                       q ? c->num_attention_heads : c->num_key_value_heads, c->head_dim);
        } else {
            diag_error(d, "%s: tensor '%s': no GGUF name for it", m->dir, ti->name);
        }
    }
    for (int64_t l = 0; l < c->num_hidden_layers && !diag_failed(d); l++) {
        if (!c->layer_is_moe[l]) continue;
        if (!stack_experts(&o, d, m, l, nm->gate, "gate") || !stack_experts(&o, d, m, l, nm->up, "up") ||
            !stack_experts(&o, d, m, l, nm->down, "down"))
            return false;
    }
    if (diag_failed(d)) return false;
    return gguf_write_file(d, path, o.kv, o.n_kv, o.t, o.n_t, 32);
}
