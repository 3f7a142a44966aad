/* synth: synthetic Hugging Face checkpoints (see synth.h).
 *
 *   synth_write_model
 *     preset_spec      arch x preset (+ options) -> Spec: every config value
 *     build_tensors    Spec -> the list of HF tensors, SEMANTICS.md §9 (names, shapes, init kind)
 *     write_config     Spec -> config.json, SEMANTICS.md §10 fields, in the goldens' key order
 *     write_shard      for each shard: stream every tensor's values, chunk by chunk, to the file
 *     write_index      model.safetensors.index.json when sharded
 *     rename the temporary folder into place
 *
 * Value of element i of tensor T: a counter-based hash of (seed, name of T, i) turned into an
 * approximately normal number (Irwin-Hall sum of four 16-bit uniforms), then scaled per kind:
 * linear N(0, wstd), router gates N(0, 4 wstd), embeddings N(0, 1), norm weights 1 + N(0, 0.1),
 * biases N(0, 0.8 wstd). No state is carried from one element to the next, so chunks fill in
 * parallel and the bytes do not depend on the thread count, the chunk size or the sharding. */
#define _GNU_SOURCE /* nftw */
#include "synth.h"
#include "tokjson.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "commands.h"
#include "safetensors.h"

enum { CHUNK_ELEMS = 1 << 22 }; /* values generated per write: 8 MiB of bf16 */

/* ---------------------------------------------------------------- presets */

typedef struct Preset {
    int64_t vocab_size, hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads;
    int64_t head_dim;                   /* written to config.json when non-zero (qwen3_moe) */
    int64_t num_experts, num_experts_per_tok;
    int64_t expert_size;                /* routed expert width (intermediate_size or moe_intermediate_size) */
    int64_t dense_size;                 /* qwen intermediate_size (dense layers), else 0 */
    int64_t shared_size;                /* qwen2_moe shared_expert_intermediate_size, else 0 */
    bool norm_topk_prob;
    double rms_norm_eps, rope_theta;
    int64_t max_position_embeddings;
} Preset;

/* [arch][preset]. tiny = the golden configs in shared/goldens/<arch>_tiny_bf16/model. */
static const Preset presets[4][2] = {
    [SYNTH_MIXTRAL] = {
        [SYNTH_TINY] = {384, 64, 2, 4, 2, 0, 4, 2, 96, 0, 0, true, 1e-5, 1e6, 256},
        [SYNTH_BENCH] = {32000, 1024, 8, 16, 4, 0, 8, 2, 3584, 0, 0, true, 1e-5, 1e6, 32768},
    },
    [SYNTH_QWEN2_MOE] = {
        [SYNTH_TINY] = {384, 64, 2, 4, 2, 0, 4, 2, 96, 192, 192, false, 1e-6, 1e4, 256},
        [SYNTH_BENCH] = {32000, 1024, 8, 16, 16, 0, 32, 4, 512, 2816, 2048, false, 1e-6, 1e6, 8192},
    },
    [SYNTH_QWEN3_MOE] = {
        [SYNTH_TINY] = {384, 64, 2, 4, 2, 16, 4, 2, 96, 192, 0, true, 1e-6, 1e6, 256},
        [SYNTH_BENCH] = {32000, 1024, 8, 16, 4, 64, 128, 8, 384, 3072, 0, true, 1e-6, 1e6, 32768},
    },
    [SYNTH_OLMOE] = {
        [SYNTH_TINY] = {384, 64, 2, 4, 2, 0, 4, 2, 96, 0, 0, false, 1e-5, 1e4, 256},
        [SYNTH_BENCH] = {32000, 1024, 8, 16, 16, 0, 64, 8, 512, 0, 0, false, 1e-5, 1e4, 4096},
    },
};

static const struct {
    const char *model_type, *hf_class;
} arch_names[4] = {
    [SYNTH_MIXTRAL] = {"mixtral", "MixtralForCausalLM"},
    [SYNTH_QWEN2_MOE] = {"qwen2_moe", "Qwen2MoeForCausalLM"},
    [SYNTH_QWEN3_MOE] = {"qwen3_moe", "Qwen3MoeForCausalLM"},
    [SYNTH_OLMOE] = {"olmoe", "OlmoeForCausalLM"},
};

/* Everything config.json says, resolved. */
typedef struct Spec {
    SynthArch arch;
    Preset p;
    int64_t hd;                         /* head dim actually used */
    bool qkv_bias;                      /* qwen2_moe only */
    bool *is_moe;                       /* [num_hidden_layers] */
    int64_t decoder_sparse_step;
    double wstd;
} Spec;

static bool is_qwen(SynthArch a) { return a == SYNTH_QWEN2_MOE || a == SYNTH_QWEN3_MOE; }

void synth_options_init(SynthOptions *o, const char *out_dir, SynthArch arch, SynthPreset preset) {
    memset(o, 0, sizeof *o);
    o->out_dir = out_dir;
    o->arch = arch;
    o->preset = preset;
    o->dtype = DT_BF16;
    o->shards = 1;
}

bool synth_arch_parse(const char *s, SynthArch *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, arch_names[i].model_type)) return *out = (SynthArch)i, true;
    return false;
}

const char *synth_arch_name(SynthArch a) { return (unsigned)a < 4 ? arch_names[a].model_type : "?"; }

/* Validates o and resolves it into s; false after diag_error. */
static bool spec_of(Diag *d, Arena *a, const SynthOptions *o, Spec *s) {
    if ((unsigned)o->arch >= 4 || (unsigned)o->preset >= 2) {
        diag_error(d, "synth: arch/preset: out of range; expected mixtral|qwen2_moe|qwen3_moe|olmoe and tiny|bench");
        return false;
    }
    memset(s, 0, sizeof *s);
    s->arch = o->arch;
    s->p = presets[o->arch][o->preset];
    s->hd = s->p.head_dim ? s->p.head_dim : s->p.hidden_size / s->p.num_attention_heads;
    s->qkv_bias = o->arch == SYNTH_QWEN2_MOE;
    s->wstd = o->wstd > 0 ? o->wstd : o->preset == SYNTH_TINY ? 0.125 : 0.02;
    s->decoder_sparse_step = o->decoder_sparse_step ? o->decoder_sparse_step : 1;
    if (o->num_hidden_layers > 0 && o->num_hidden_layers <= SYNTH_MAX_LAYERS) s->p.num_hidden_layers = o->num_hidden_layers;
    if (o->dense_intermediate_size > 0) s->p.dense_size = o->dense_intermediate_size;
    bool ok = true;
    if (o->dtype != DT_BF16 && o->dtype != DT_F16 && o->dtype != DT_F32) {
        diag_error(d, "synth: dtype: not supported; expected bf16, f16 or f32, got %s", dtype_name(o->dtype));
        ok = false;
    }
    if (!(o->wstd >= 0 && o->wstd <= 100)) {
        diag_error(d, "synth: wstd: out of range; expected a number in (0, 100], got %g", o->wstd);
        ok = false;
    }
    if (o->shards < 1 || o->shards > 99999) {
        diag_error(d, "synth: shards: out of range; expected 1..99999, got %d", o->shards);
        ok = false;
    }
    if (!is_qwen(o->arch) && (o->decoder_sparse_step || o->n_mlp_only_layers)) {
        diag_error(d, "synth: %s: dense layers (decoder_sparse_step, mlp_only_layers) are not part of this family; "
                      "expected qwen2_moe or qwen3_moe", synth_arch_name(o->arch));
        ok = false;
    }
    if (!is_qwen(o->arch) && o->dense_intermediate_size) {
        diag_error(d, "synth: %s: dense_intermediate_size: this family has no dense layers; expected qwen2_moe or "
                      "qwen3_moe", synth_arch_name(o->arch));
        ok = false;
    }
    if (o->num_hidden_layers < 0 || o->num_hidden_layers > SYNTH_MAX_LAYERS) {
        diag_error(d, "synth: num_hidden_layers: out of range; expected 1..%d, got %" PRId64, SYNTH_MAX_LAYERS,
                   o->num_hidden_layers);
        ok = false;
    }
    if (o->dense_intermediate_size < 0 || o->dense_intermediate_size > (1 << 20)) {
        diag_error(d, "synth: dense_intermediate_size: out of range; expected 1..%d, got %" PRId64, 1 << 20,
                   o->dense_intermediate_size);
        ok = false;
    }
    if (o->decoder_sparse_step < 0) {
        diag_error(d, "synth: decoder_sparse_step: must be >= 1; got %" PRId64, o->decoder_sparse_step);
        ok = false;
    }
    int64_t L = s->p.num_hidden_layers;
    for (int i = 0; i < o->n_mlp_only_layers; i++)
        if (o->mlp_only_layers[i] < 0 || o->mlp_only_layers[i] >= L) {
            diag_error(d, "synth: mlp_only_layers: layer out of range; expected 0..%" PRId64 ", got %" PRId64, L - 1,
                       o->mlp_only_layers[i]);
            ok = false;
        }
    s->is_moe = arena_alloc(a, sizeof(bool) * (size_t)L);
    for (int64_t l = 0; l < L; l++) {
        bool listed = false;
        for (int i = 0; i < o->n_mlp_only_layers; i++) listed |= o->mlp_only_layers[i] == l;
        s->is_moe[l] = !listed && s->decoder_sparse_step > 0 && (l + 1) % s->decoder_sparse_step == 0;
    }
    return ok;
}

/* ---------------------------------------------------------------- tensor list (SEMANTICS §9) */

typedef enum Init { INIT_LINEAR, INIT_ROUTER, INIT_EMBED, INIT_NORM, INIT_BIAS } Init;

typedef struct SynthTensor {
    const char *name;
    int rank;
    int64_t shape[2];
    Init init;
    int shard;                          /* 0-based shard that holds it */
} SynthTensor;

typedef struct TList {
    SynthTensor *t;                     /* [n], xrealloc'd */
    int n, cap;
    Arena *a;
} TList;

static void add(TList *tl, Init init, int64_t d0, int64_t d1, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void add(TList *tl, Init init, int64_t d0, int64_t d1, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (tl->n == tl->cap) {
        tl->cap = tl->cap ? tl->cap * 2 : 256;
        tl->t = xrealloc(tl->t, sizeof *tl->t * (size_t)tl->cap);
    }
    tl->t[tl->n++] = (SynthTensor){.name = arena_strdup(tl->a, name), .rank = d1 ? 2 : 1, .shape = {d0, d1}, .init = init};
}

/* A SiLU-gated MLP: gate/up [ff, H], down [H, ff]; the names after prefix. */
static void add_mlp(TList *tl, int64_t H, int64_t ff, const char *prefix, const char *gate, const char *up,
                    const char *down) {
    add(tl, INIT_LINEAR, ff, H, "%s%s.weight", prefix, gate);
    add(tl, INIT_LINEAR, ff, H, "%s%s.weight", prefix, up);
    add(tl, INIT_LINEAR, H, ff, "%s%s.weight", prefix, down);
}

static void build_tensors(TList *tl, const Spec *s, bool tied) {
    const Preset *p = &s->p;
    int64_t H = p->hidden_size, q_out = p->num_attention_heads * s->hd, kv_out = p->num_key_value_heads * s->hd;
    add(tl, INIT_EMBED, p->vocab_size, H, "model.embed_tokens.weight");
    for (int64_t l = 0; l < p->num_hidden_layers; l++) {
        char P[64], Q[160];
        snprintf(P, sizeof P, "model.layers.%" PRId64 ".", l);
        add(tl, INIT_NORM, H, 0, "%sinput_layernorm.weight", P);
        add(tl, INIT_LINEAR, q_out, H, "%sself_attn.q_proj.weight", P);
        if (s->qkv_bias) add(tl, INIT_BIAS, q_out, 0, "%sself_attn.q_proj.bias", P);
        add(tl, INIT_LINEAR, kv_out, H, "%sself_attn.k_proj.weight", P);
        if (s->qkv_bias) add(tl, INIT_BIAS, kv_out, 0, "%sself_attn.k_proj.bias", P);
        add(tl, INIT_LINEAR, kv_out, H, "%sself_attn.v_proj.weight", P);
        if (s->qkv_bias) add(tl, INIT_BIAS, kv_out, 0, "%sself_attn.v_proj.bias", P);
        add(tl, INIT_LINEAR, H, q_out, "%sself_attn.o_proj.weight", P);
        if (s->arch == SYNTH_QWEN3_MOE) { /* per head, shared by all heads */
            add(tl, INIT_NORM, s->hd, 0, "%sself_attn.q_norm.weight", P);
            add(tl, INIT_NORM, s->hd, 0, "%sself_attn.k_norm.weight", P);
        } else if (s->arch == SYNTH_OLMOE) { /* whole projection */
            add(tl, INIT_NORM, q_out, 0, "%sself_attn.q_norm.weight", P);
            add(tl, INIT_NORM, kv_out, 0, "%sself_attn.k_norm.weight", P);
        }
        add(tl, INIT_NORM, H, 0, "%spost_attention_layernorm.weight", P);
        if (s->arch == SYNTH_MIXTRAL) {
            add(tl, INIT_ROUTER, p->num_experts, H, "%sblock_sparse_moe.gate.weight", P);
            for (int64_t e = 0; e < p->num_experts; e++) {
                snprintf(Q, sizeof Q, "%sblock_sparse_moe.experts.%" PRId64 ".", P, e);
                add(tl, INIT_LINEAR, p->expert_size, H, "%sw1.weight", Q);
                add(tl, INIT_LINEAR, H, p->expert_size, "%sw2.weight", Q);
                add(tl, INIT_LINEAR, p->expert_size, H, "%sw3.weight", Q);
            }
        } else if (s->is_moe[l]) {
            add(tl, INIT_ROUTER, p->num_experts, H, "%smlp.gate.weight", P);
            for (int64_t e = 0; e < p->num_experts; e++) {
                snprintf(Q, sizeof Q, "%smlp.experts.%" PRId64 ".", P, e);
                add_mlp(tl, H, p->expert_size, Q, "gate_proj", "up_proj", "down_proj");
            }
            if (s->arch == SYNTH_QWEN2_MOE) {
                snprintf(Q, sizeof Q, "%smlp.shared_expert.", P);
                add_mlp(tl, H, p->shared_size, Q, "gate_proj", "up_proj", "down_proj");
                add(tl, INIT_ROUTER, 1, H, "%smlp.shared_expert_gate.weight", P);
            }
        } else { /* qwen dense layer */
            snprintf(Q, sizeof Q, "%smlp.", P);
            add_mlp(tl, H, p->dense_size, Q, "gate_proj", "up_proj", "down_proj");
        }
    }
    add(tl, INIT_NORM, H, 0, "model.norm.weight");
    if (!tied) add(tl, INIT_LINEAR, p->vocab_size, H, "lm_head.weight");
}

static int64_t numel(const SynthTensor *t) { return t->rank == 1 ? t->shape[0] : t->shape[0] * t->shape[1]; }

int64_t synth_param_count(const SynthOptions *o) {
    Diag d = {.quiet = true};
    Arena *a = arena_new();
    Spec s;
    int64_t total = -1;
    if (spec_of(&d, a, o, &s)) {
        TList tl = {.a = a};
        build_tensors(&tl, &s, o->tie_word_embeddings);
        total = 0;
        for (int i = 0; i < tl.n; i++) total += numel(&tl.t[i]);
        free(tl.t);
    }
    arena_destroy(a);
    return total;
}

/* ---------------------------------------------------------------- values */

static inline uint64_t mix64(uint64_t z) { /* splitmix64's finaliser */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t tensor_key(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return mix64(mix64(seed) ^ h);
}

/* Approximately N(0, 1): sum of four uniform 16-bit numbers, centred and scaled to unit variance. */
static inline float normal_at(uint64_t key, uint64_t i) {
    uint64_t r = mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
    int32_t s = (int32_t)(r & 0xffff) + (int32_t)(r >> 16 & 0xffff) + (int32_t)(r >> 32 & 0xffff) + (int32_t)(r >> 48);
    return (float)(s - 131070) * (1.7320508075688772f / 65536.0f);
}

/* Elements [first, first + n) of a tensor, as dtype, into out. */
static void fill_values(void *out, DType dt, Init init, double wstd, uint64_t key, uint64_t first, int64_t n) {
    float scale = (float)wstd, offset = 0.0f;
    switch (init) {
    case INIT_LINEAR: break;
    case INIT_ROUTER: scale = (float)(4 * wstd); break;
    case INIT_EMBED: scale = 1.0f; break;
    case INIT_NORM: scale = 0.1f, offset = 1.0f; break;
    case INIT_BIAS: scale = (float)(0.8 * wstd); break;
    }
    if (dt == DT_F32) {
        float *o = out;
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (int64_t i = 0; i < n; i++) o[i] = offset + scale * normal_at(key, first + (uint64_t)i);
    } else if (dt == DT_BF16) {
        uint16_t *o = out;
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (int64_t i = 0; i < n; i++) o[i] = f32_to_bf16(offset + scale * normal_at(key, first + (uint64_t)i));
    } else {
        uint16_t *o = out;
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (int64_t i = 0; i < n; i++) o[i] = f32_to_f16(offset + scale * normal_at(key, first + (uint64_t)i));
    }
}

/* ---------------------------------------------------------------- progress */

typedef struct Progress {
    bool on;
    uint64_t done, total;               /* bytes of tensor data */
    double t0, last;                    /* seconds */
} Progress;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress_add(Progress *pg, uint64_t bytes) {
    pg->done += bytes;
    if (!pg->on) return;
    double t = now_s();
    if (t - pg->last < 0.1 && pg->done < pg->total) return;
    pg->last = t;
    fprintf(stderr, "\rsynth: %" PRIu64 "/%" PRIu64 " MB", pg->done / 1000000, pg->total / 1000000);
    fflush(stderr);
}

/* ---------------------------------------------------------------- files */

static bool write_text(Diag *d, const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    size_t n = strlen(text);
    bool ok = f && fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = false;
    if (!ok) diag_error(d, "%s: cannot write: %s", path, strerror(errno));
    return ok;
}

static bool write_json(Diag *d, const char *path, cJSON *j) {
    char *text = cJSON_Print(j);
    MOE_ASSERT(text);
    bool ok = write_text(d, path, text);
    cJSON_free(text);
    return ok;
}

static const char *torch_dtype(DType t) { return t == DT_F32 ? "float32" : t == DT_F16 ? "float16" : "bfloat16"; }

/* config.json with the fields of SEMANTICS §10 for the family, keys in the goldens' order. */
static bool write_config(Diag *d, const char *path, const Spec *s, const SynthOptions *o) {
    const Preset *p = &s->p;
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(arch_names[s->arch].hf_class));
    cJSON_AddStringToObject(j, "model_type", arch_names[s->arch].model_type);
    cJSON_AddNumberToObject(j, "vocab_size", (double)p->vocab_size);
    cJSON_AddNumberToObject(j, "hidden_size", (double)p->hidden_size);
    cJSON_AddNumberToObject(j, "num_hidden_layers", (double)p->num_hidden_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", (double)p->num_attention_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", (double)p->num_key_value_heads);
    cJSON_AddNumberToObject(j, "max_position_embeddings", (double)p->max_position_embeddings);
    cJSON_AddNumberToObject(j, "rms_norm_eps", p->rms_norm_eps);
    cJSON_AddNumberToObject(j, "rope_theta", p->rope_theta);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", o->tie_word_embeddings);
    cJSON_AddNumberToObject(j, "bos_token_id", 1);
    cJSON_AddNumberToObject(j, "eos_token_id", 2);
    cJSON_AddNumberToObject(j, "initializer_range", 0.02);
    cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
    switch (s->arch) {
    case SYNTH_MIXTRAL:
        cJSON_AddNumberToObject(j, "intermediate_size", (double)p->expert_size);
        cJSON_AddNumberToObject(j, "num_local_experts", (double)p->num_experts);
        cJSON_AddNumberToObject(j, "num_experts_per_tok", (double)p->num_experts_per_tok);
        cJSON_AddNullToObject(j, "sliding_window");
        cJSON_AddNumberToObject(j, "router_aux_loss_coef", 0.02);
        cJSON_AddNumberToObject(j, "router_jitter_noise", 0.0);
        break;
    case SYNTH_OLMOE:
        cJSON_AddNumberToObject(j, "intermediate_size", (double)p->expert_size);
        cJSON_AddNumberToObject(j, "num_experts", (double)p->num_experts);
        cJSON_AddNumberToObject(j, "num_experts_per_tok", (double)p->num_experts_per_tok);
        cJSON_AddBoolToObject(j, "norm_topk_prob", p->norm_topk_prob);
        cJSON_AddNullToObject(j, "clip_qkv");
        cJSON_AddBoolToObject(j, "attention_bias", false);
        cJSON_AddNumberToObject(j, "router_aux_loss_coef", 0.01);
        break;
    case SYNTH_QWEN2_MOE:
    case SYNTH_QWEN3_MOE: {
        cJSON_AddNumberToObject(j, "intermediate_size", (double)p->dense_size);
        cJSON_AddNumberToObject(j, "moe_intermediate_size", (double)p->expert_size);
        if (s->arch == SYNTH_QWEN2_MOE)
            cJSON_AddNumberToObject(j, "shared_expert_intermediate_size", (double)p->shared_size);
        cJSON_AddNumberToObject(j, "num_experts", (double)p->num_experts);
        cJSON_AddNumberToObject(j, "num_experts_per_tok", (double)p->num_experts_per_tok);
        cJSON_AddBoolToObject(j, "norm_topk_prob", p->norm_topk_prob);
        cJSON_AddNumberToObject(j, "decoder_sparse_step", (double)s->decoder_sparse_step);
        cJSON *only = cJSON_AddArrayToObject(j, "mlp_only_layers");
        for (int i = 0; i < o->n_mlp_only_layers; i++)
            cJSON_AddItemToArray(only, cJSON_CreateNumber((double)o->mlp_only_layers[i]));
        if (s->arch == SYNTH_QWEN3_MOE) {
            cJSON_AddBoolToObject(j, "attention_bias", false);
            cJSON_AddNumberToObject(j, "head_dim", (double)s->hd);
        }
        cJSON_AddBoolToObject(j, "use_sliding_window", false);
        cJSON_AddNullToObject(j, "sliding_window");
        cJSON_AddNumberToObject(j, "max_window_layers", (double)p->num_hidden_layers);
        cJSON_AddNumberToObject(j, "router_aux_loss_coef", 0.001);
        break;
    }
    }
    cJSON_AddBoolToObject(j, "output_router_logits", false);
    if (s->arch == SYNTH_OLMOE) cJSON_AddNumberToObject(j, "pad_token_id", 1);
    cJSON_AddStringToObject(j, "torch_dtype", torch_dtype(o->dtype));
    bool ok = write_json(d, path, j);
    cJSON_Delete(j);
    return ok;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const SynthTensor *)a)->name, ((const SynthTensor *)b)->name);
}

static void shard_name(char *buf, size_t n, int shard, int n_shards) {
    snprintf(buf, n, "model-%05d-of-%05d.safetensors", shard + 1, n_shards);
}

/* model.safetensors.index.json: total_size and the weight_map, sorted by name as HF writes it. */
static bool write_index(Diag *d, const char *path, const TList *tl, int n_shards, uint64_t total) {
    SynthTensor *sorted = xmalloc(sizeof *sorted * (size_t)tl->n);
    memcpy(sorted, tl->t, sizeof *sorted * (size_t)tl->n);
    qsort(sorted, (size_t)tl->n, sizeof *sorted, cmp_tensor_name);
    cJSON *j = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON *map = cJSON_AddObjectToObject(j, "weight_map");
    for (int i = 0; i < tl->n; i++) {
        char file[64];
        shard_name(file, sizeof file, sorted[i].shard, n_shards);
        cJSON_AddStringToObject(map, sorted[i].name, file);
    }
    bool ok = write_json(d, path, j);
    cJSON_Delete(j);
    free(sorted);
    return ok;
}

/* Splits the tensors (in order) into n_shards runs of about equal bytes, none empty. */
static void assign_shards(TList *tl, int n_shards, size_t esize) {
    uint64_t total = 0, at = 0;
    for (int i = 0; i < tl->n; i++) total += (uint64_t)numel(&tl->t[i]) * esize;
    int prev = 0;
    for (int i = 0; i < tl->n; i++) {
        int s = total ? (int)(at * (uint64_t)n_shards / total) : 0;
        if (s > n_shards - 1) s = n_shards - 1;
        if (s < n_shards - (tl->n - i)) s = n_shards - (tl->n - i); /* leave a tensor for each later shard */
        if (i == 0) s = 0;
        else if (s > prev + 1) s = prev + 1;                       /* skip no shard */
        tl->t[i].shard = prev = s;
        at += (uint64_t)numel(&tl->t[i]) * esize;
    }
}

/* Overlaps generation with disk writes: a writer thread appends filled buffers while the caller
 * (its OpenMP team) fills the next one. Two buffers of CHUNK_ELEMS floats; the caller waits when
 * both are queued. After a write error the thread drains the queue without writing. */
typedef struct Stream {
    StWriter *w;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *buf[2];
    size_t len[2];                      /* bytes queued in buf[i]; 0: free to fill */
    int fill, drain;                    /* the buffer the caller fills next / the thread writes next */
    bool closing, failed;
} Stream;

static void *stream_main(void *arg) {
    Stream *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->len[st->drain] && !st->closing) pthread_cond_wait(&st->cv, &st->mu);
        if (!st->len[st->drain]) break; /* closing and drained */
        size_t n = st->len[st->drain];
        bool failed = st->failed;
        pthread_mutex_unlock(&st->mu);
        bool ok = failed || st_writer_append(st->w, st->buf[st->drain], n);
        pthread_mutex_lock(&st->mu);
        if (!ok) st->failed = true;
        st->len[st->drain] = 0;
        st->drain ^= 1;
        pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static bool stream_start(Stream *st, StWriter *w, void *bufs) {
    memset(st, 0, sizeof *st);
    st->w = w;
    st->buf[0] = bufs;
    st->buf[1] = (char *)bufs + (size_t)CHUNK_ELEMS * sizeof(float);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    if (pthread_create(&st->thread, NULL, stream_main, st) != 0) {
        pthread_mutex_destroy(&st->mu);
        pthread_cond_destroy(&st->cv);
        return false;
    }
    return true;
}

/* The next free buffer (waits for the writer); NULL once a write has failed. */
static void *stream_buffer(Stream *st) {
    pthread_mutex_lock(&st->mu);
    while (st->len[st->fill] && !st->failed) pthread_cond_wait(&st->cv, &st->mu);
    void *b = st->failed ? NULL : st->buf[st->fill];
    pthread_mutex_unlock(&st->mu);
    return b;
}

static void stream_submit(Stream *st, size_t n) {
    MOE_ASSERT(n > 0);
    pthread_mutex_lock(&st->mu);
    st->len[st->fill] = n;
    st->fill ^= 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* Waits for the queue to drain and the thread to end; false if a write failed. */
static bool stream_stop(Stream *st) {
    pthread_mutex_lock(&st->mu);
    st->closing = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    return !st->failed;
}

/* Streams the tensors of one shard to path. bufs holds 2 x CHUNK_ELEMS floats. */
static bool write_shard(Diag *d, const char *path, const TList *tl, int shard, const Spec *s, const SynthOptions *o,
                        void *bufs, Progress *pg) {
    size_t esize = dtype_size(o->dtype);
    int n = 0;
    StWriteTensor *ws = xcalloc((size_t)tl->n, sizeof *ws);
    for (int i = 0; i < tl->n; i++) {
        const SynthTensor *t = &tl->t[i];
        if (t->shard != shard) continue;
        ws[n++] = (StWriteTensor){.name = t->name, .dtype = o->dtype, .rank = t->rank, .shape = {t->shape[0], t->shape[1]}};
    }
    StWriter w;
    bool ok = st_writer_begin(&w, d, path, ws, n);
    free(ws);
    if (!ok) return false;
    Stream st;
    if (!stream_start(&st, &w, bufs)) {
        diag_error(d, "%s: cannot start the writer thread", path);
        st_writer_abort(&w);
        return false;
    }
    for (int i = 0; ok && i < tl->n; i++) {
        const SynthTensor *t = &tl->t[i];
        if (t->shard != shard) continue;
        uint64_t key = tensor_key(o->seed, t->name);
        int64_t total = numel(t);
        for (int64_t at = 0; ok && at < total; at += CHUNK_ELEMS) {
            int64_t m = total - at < CHUNK_ELEMS ? total - at : CHUNK_ELEMS;
            void *buf = stream_buffer(&st);
            if (!buf) {
                ok = false;
                break;
            }
            fill_values(buf, o->dtype, t->init, s->wstd, key, (uint64_t)at, m);
            stream_submit(&st, (size_t)m * esize);
            progress_add(pg, (uint64_t)m * esize);
        }
    }
    if (!stream_stop(&st) || !ok) {
        st_writer_abort(&w);
        return false;
    }
    return st_writer_finish(&w);
}

/* ---------------------------------------------------------------- folders */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* mkdir -p of the folder that will hold path. */
static bool make_parent(Diag *d, Arena *a, const char *path) {
    char *p = arena_strdup(a, path);
    char *slash = strrchr(p, '/');
    if (!slash || slash == p) return true;
    *slash = 0;
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) break;
        *c = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        diag_error(d, "%s: cannot create folder: %s", p, strerror(errno));
        return false;
    }
    return true;
}

/* An existing folder --force may replace: empty, or a model (config.json, model.safetensors or
 * an index in it). Refusing anything else keeps a slip like `moec synth ~ --force` from deleting
 * a home folder. */
static bool replaceable(Arena *a, const char *dir) {
    static const char *const marks[] = {"config.json", "model.safetensors", "model.safetensors.index.json"};
    struct stat st;
    for (int i = 0; i < 3; i++)
        if (stat(arena_printf(a, "%s/%s", dir, marks[i]), &st) == 0) return true;
    DIR *dp = opendir(dir);
    if (!dp) return false;
    bool empty = true;
    for (struct dirent *e; empty && (e = readdir(dp));) empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(dp);
    return empty;
}

bool synth_write_model(Diag *d, const SynthOptions *o) {
    double t0 = now_s();
    Arena *a = arena_new();
    Spec s;
    TList tl = {.a = a};
    void *buf = NULL;
    const char *tmp = NULL;
    bool ok = false;
    if (!o->out_dir || !o->out_dir[0]) {
        diag_error(d, "synth: output folder: missing; expected a path, got nothing");
        goto done;
    }
    if (!spec_of(d, a, o, &s)) goto done;
    build_tensors(&tl, &s, o->tie_word_embeddings);
    if (o->shards > tl.n) {
        diag_error(d, "synth: shards: more shards than tensors; expected at most %d, got %d", tl.n, o->shards);
        goto done;
    }

    /* out_dir without trailing slashes; the temporary folder sits beside it (same file system). */
    char *out = arena_strdup(a, o->out_dir);
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--) out[n - 1] = 0;
    struct stat st;
    bool exists = lstat(out, &st) == 0;
    if (exists && !o->force) {
        diag_error(d, "%s: already exists; expected a new folder (or --force to replace a model folder)", out);
        goto done;
    }
    if (exists && (!S_ISDIR(st.st_mode) || !replaceable(a, out))) {
        diag_error(d, "%s: exists and is not a model folder; expected an empty folder or one with config.json or "
                      "model.safetensors to replace, got neither", out);
        goto done;
    }
    if (!make_parent(d, a, out)) goto done;
    tmp = arena_printf(a, "%s.tmp.%d", out, (int)getpid());
    remove_tree(tmp);
    if (mkdir(tmp, 0755) != 0) {
        diag_error(d, "%s: cannot create folder: %s", tmp, strerror(errno));
        tmp = NULL;
        goto done;
    }

    size_t esize = dtype_size(o->dtype);
    uint64_t params = 0;
    for (int i = 0; i < tl.n; i++) params += (uint64_t)numel(&tl.t[i]);
    Progress pg = {.on = o->verbose && isatty(STDERR_FILENO), .total = params * esize, .t0 = t0};
    if (o->verbose)
        fprintf(stderr, "synth: %s %s, %s, %.1f M parameters (%" PRIu64 "), %.1f MB -> %s\n",
                synth_arch_name(o->arch), o->preset == SYNTH_TINY ? "tiny" : "bench", dtype_name(o->dtype),
                (double)params / 1e6, params, (double)pg.total / 1e6, out);

    if (!write_config(d, arena_printf(a, "%s/config.json", tmp), &s, o)) goto done;

    /* a tokenizer.json that fits the synthetic vocabulary, so the model goes text to text */
    if (s.p.vocab_size >= TOKJSON_SYNTH_MIN_VOCAB &&
        !tokjson_write_synthetic(d, arena_printf(a, "%s/tokenizer.json", tmp), (int)s.p.vocab_size))
        goto done;

    buf = xmalloc(2 * (size_t)CHUNK_ELEMS * sizeof(float));
    assign_shards(&tl, o->shards, esize);
    for (int sh = 0; sh < o->shards; sh++) {
        char file[64] = "model.safetensors";
        if (o->shards > 1) shard_name(file, sizeof file, sh, o->shards);
        if (!write_shard(d, arena_printf(a, "%s/%s", tmp, file), &tl, sh, &s, o, buf, &pg)) goto done;
    }
    if (o->shards > 1 &&
        !write_index(d, arena_printf(a, "%s/model.safetensors.index.json", tmp), &tl, o->shards, pg.total))
        goto done;

    /* Into place: the old folder (--force) moves aside only now that the new one is complete. */
    if (lstat(out, &st) == 0) {
        if (!o->force) {
            diag_error(d, "%s: appeared while writing; expected a new folder (or --force)", out);
            goto done;
        }
        const char *old = arena_printf(a, "%s.old.%d", out, (int)getpid());
        remove_tree(old);
        if (rename(out, old) != 0) {
            diag_error(d, "%s: cannot move aside to %s: %s", out, old, strerror(errno));
            goto done;
        }
        if (rename(tmp, out) != 0) {
            diag_error(d, "%s: cannot rename to %s: %s", tmp, out, strerror(errno));
            rename(old, out);
            goto done;
        }
        remove_tree(old);
    } else if (rename(tmp, out) != 0) {
        diag_error(d, "%s: cannot rename to %s: %s", tmp, out, strerror(errno));
        goto done;
    }
    tmp = NULL;
    ok = true;
    if (o->verbose) {
        double dt = now_s() - t0;
        fprintf(stderr, "%ssynth: wrote %s: %.1f M parameters, %.1f MB in %d file%s, %.2f s (%.0f MB/s)\n",
                pg.on ? "\r" : "", out, (double)params / 1e6, (double)pg.total / 1e6, o->shards,
                o->shards > 1 ? "s" : "", dt, dt > 0 ? (double)pg.total / 1e6 / dt : 0.0);
    }
done:
    if (tmp) remove_tree(tmp);
    if (!ok && o->verbose && isatty(STDERR_FILENO) && buf) fputc('\n', stderr);
    free(buf);
    free(tl.t);
    arena_destroy(a);
    return ok;
}

/* ---------------------------------------------------------------- moec synth */

static const char synth_usage[] =
    "usage: moec synth OUT_DIR --arch mixtral|qwen2_moe|qwen3_moe|olmoe [--preset tiny|bench]\n"
    "                  [--dtype bf16|f16|f32] [--shards N] [--seed S] [--wstd X] [--force]\n"
    "                  [--tied] [--decoder-sparse-step N] [--mlp-only-layers L,L,...]\n"
    "                  [--dense-intermediate-size N] [--layers N]\n"
    "Writes a synthetic checkpoint in the Hugging Face layout: config.json and model.safetensors\n"
    "(or N shards model-0000i-of-0000N.safetensors + model.safetensors.index.json), seeded random\n"
    "weights.\n"
    "  --preset tiny    the golden shapes: vocab 384, hidden 64, 2 layers, 4 experts (default)\n"
    "  --preset bench   ~0.8-1 B parameters (mixtral: 791 M, 1.6 GB in bf16)\n"
    "  --dtype          stored dtype (default bf16)\n"
    "  --shards N       split into N files with an index (default 1)\n"
    "  --seed S         PRNG seed (default 0); same seed, same bytes\n"
    "  --wstd X         std of linear weights (default 0.125 tiny, 0.02 bench)\n"
    "  --force          replace an existing model folder once the new one is complete\n"
    "  --tied           tie_word_embeddings: true, no lm_head.weight\n"
    "  --decoder-sparse-step N, --mlp-only-layers L,...   qwen: make some layers dense\n"
    "  --dense-intermediate-size N   qwen: intermediate_size, the dense layers' width (default: the preset's)\n"
    "  --layers N       num_hidden_layers (default: the preset's)\n";

/* Flag values, parsed here rather than through cli.c so that synth.c links on its own (the
 * tests/tools programs link it with safetensors.c, arena.c and diag.c only). */
static const char *flag_value(Diag *d, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        diag_error(d, "%s: value missing; expected a value after it", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static bool parse_i64(Diag *d, const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        diag_error(d, "%s: not an integer in range; expected %" PRId64 "..%" PRId64 ", got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

/* "0,2,5" -> *out (malloc'd), *n. */
static bool parse_layers(Diag *d, const char *flag, const char *s, int64_t **out, int *n) {
    int cap = 1;
    for (const char *c = s; *c; c++) cap += *c == ',';
    int64_t *v = xmalloc(sizeof *v * (size_t)cap);
    int k = 0;
    for (const char *c = s;; c++) {
        char *end;
        errno = 0;
        long long x = strtoll(c, &end, 10);
        if (errno || end == c || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            diag_error(d, "%s: not a list of layer numbers; expected e.g. 0,2, got '%s'", flag, s);
            free(v);
            return false;
        }
        v[k++] = x;
        c = end;
        if (!*c) break;
    }
    *out = v;
    *n = k;
    return true;
}

int cmd_synth(int argc, char **argv) {
    Diag d = {0};
    SynthOptions o;
    synth_options_init(&o, NULL, SYNTH_MIXTRAL, SYNTH_TINY);
    o.verbose = true;
    bool have_arch = false;
    int64_t *only = NULL, n;
    for (int i = 1; i < argc && !diag_failed(&d); i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(synth_usage, stdout);
            free(only);
            return 0;
        } else if (!strcmp(a, "--arch")) {
            if ((v = flag_value(&d, argc, argv, &i)) && !(have_arch = synth_arch_parse(v, &o.arch)))
                diag_error(&d, "--arch: unknown family; expected mixtral, qwen2_moe, qwen3_moe or olmoe, got '%s'", v);
        } else if (!strcmp(a, "--preset")) {
            if ((v = flag_value(&d, argc, argv, &i))) {
                if (!strcmp(v, "tiny")) o.preset = SYNTH_TINY;
                else if (!strcmp(v, "bench")) o.preset = SYNTH_BENCH;
                else diag_error(&d, "--preset: unknown preset; expected tiny or bench, got '%s'", v);
            }
        } else if (!strcmp(a, "--dtype")) {
            if ((v = flag_value(&d, argc, argv, &i))) {
                if (!strcmp(v, "bf16")) o.dtype = DT_BF16;
                else if (!strcmp(v, "f16")) o.dtype = DT_F16;
                else if (!strcmp(v, "f32")) o.dtype = DT_F32;
                else diag_error(&d, "--dtype: unknown dtype; expected bf16, f16 or f32, got '%s'", v);
            }
        } else if (!strcmp(a, "--shards")) {
            if ((v = flag_value(&d, argc, argv, &i)) && parse_i64(&d, a, v, 1, 99999, &n)) o.shards = (int)n;
        } else if (!strcmp(a, "--seed")) {
            if ((v = flag_value(&d, argc, argv, &i)) && parse_i64(&d, a, v, 0, INT64_MAX, &n)) o.seed = (uint64_t)n;
        } else if (!strcmp(a, "--wstd")) {
            if ((v = flag_value(&d, argc, argv, &i))) {
                char *end;
                o.wstd = strtod(v, &end);
                if (end == v || *end || !(o.wstd > 0 && o.wstd <= 100))
                    diag_error(&d, "--wstd: not a number in range; expected a number in (0, 100], got '%s'", v);
            }
        } else if (!strcmp(a, "--decoder-sparse-step")) {
            if ((v = flag_value(&d, argc, argv, &i))) parse_i64(&d, a, v, 1, 1 << 20, &o.decoder_sparse_step);
        } else if (!strcmp(a, "--mlp-only-layers")) {
            free(only);
            only = NULL;
            o.n_mlp_only_layers = 0;
            if ((v = flag_value(&d, argc, argv, &i)) && parse_layers(&d, a, v, &only, &o.n_mlp_only_layers))
                o.mlp_only_layers = only;
        } else if (!strcmp(a, "--dense-intermediate-size")) {
            if ((v = flag_value(&d, argc, argv, &i))) parse_i64(&d, a, v, 1, 1 << 20, &o.dense_intermediate_size);
        } else if (!strcmp(a, "--layers")) {
            if ((v = flag_value(&d, argc, argv, &i))) parse_i64(&d, a, v, 1, SYNTH_MAX_LAYERS, &o.num_hidden_layers);
        } else if (!strcmp(a, "--force")) {
            o.force = true;
        } else if (!strcmp(a, "--tied")) {
            o.tie_word_embeddings = true;
        } else if (a[0] == '-') {
            diag_error(&d, "%s: unknown option; expected one of those in moec synth --help", a);
        } else if (o.out_dir) {
            diag_error(&d, "%s: extra argument; expected one OUT_DIR (already '%s')", a, o.out_dir);
        } else {
            o.out_dir = a;
        }
    }
    if (!diag_failed(&d) && !o.out_dir) diag_error(&d, "synth: OUT_DIR: missing; expected a folder to create");
    if (!diag_failed(&d) && !have_arch)
        diag_error(&d, "synth: --arch: missing; expected mixtral, qwen2_moe, qwen3_moe or olmoe");
    if (diag_failed(&d)) {
        fputs(synth_usage, stderr);
        free(only);
        return 2;
    }
    bool ok = synth_write_model(&d, &o);
    diag_summary(&d);
    free(only);
    return ok ? 0 : 1;
}
