/* hfconfig: config.json (through cJSON) -> a typed, validated ModelConfig.
 * The family-independent part lives here: reading the file, typed key access with defaults and
 * clear errors, rope_scaling, the RoPE frequency table. Which keys a family reads, and their
 * defaults (SEMANTICS.md §10), is decided by that family's <arch>_config in graphs/.
 * Fields that fix tensor shapes (vocab_size, hidden_size, ...) are required: a checkpoint without
 * them cannot be read correctly, whatever the config class default says. */
#ifndef MOEC_HFCONFIG_H
#define MOEC_HFCONFIG_H
#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "diag.h"
#include "dtype.h"

typedef struct cJSON cJSON;

typedef enum QkNorm { QK_NORM_NONE, QK_NORM_PER_HEAD, QK_NORM_FULL } QkNorm;
typedef enum RopeType { ROPE_DEFAULT, ROPE_LINEAR, ROPE_YARN } RopeType;

typedef struct RopeScaling {
    RopeType type;
    double factor;
    double original_max_position_embeddings; /* 0 when absent */
    double beta_fast, beta_slow;
    double attention_factor;                 /* 0 when absent (derived) */
    double mscale, mscale_all_dim;           /* 0 when absent */
} RopeScaling;

typedef struct ModelConfig {
    const char *dir;                    /* the model folder */
    const char *model_type;             /* "mixtral", "qwen2_moe", ... */
    int64_t vocab_size;                 /* V */
    int64_t hidden_size;                /* H */
    int64_t num_hidden_layers;          /* L */
    int64_t num_attention_heads;        /* nh */
    int64_t num_key_value_heads;        /* nkv */
    int64_t head_dim;                   /* hd actually used by attention */
    int64_t num_experts;                /* E (num_local_experts for mixtral) */
    int64_t num_experts_per_tok;        /* k */
    int64_t expert_intermediate_size;   /* width of a routed expert */
    int64_t dense_intermediate_size;    /* width of a dense MLP layer (qwen), else 0 */
    int64_t shared_expert_intermediate_size; /* qwen2_moe, else 0 */
    bool norm_topk_prob;                /* renormalise the top-k weights */
    bool *layer_is_moe;                 /* [L] */
    double rms_norm_eps;
    double rope_theta;
    RopeScaling rope_scaling;
    int64_t max_position_embeddings;
    int64_t sliding_window;             /* 0: no window */
    bool qkv_bias, o_bias;
    QkNorm qk_norm;
    double clip_qkv;                    /* 0: none */
    bool tie_word_embeddings;
    int64_t bos_token_id, eos_token_id; /* -1 when absent */
} ModelConfig;

/* Typed access to one config.json. Every getter reports a type error through d, naming the key. */
typedef struct ConfigReader {
    cJSON *root;
    const char *file;                   /* "config.json" path as shown in errors */
    Diag *d;
    Arena *a;
    /* NULL, or {config key, the name to show for it, ...} NULL-terminated: a config made from
     * another file's keys (GGUF) names them in errors, e.g. "llama.embedding_length" for hidden_size */
    const char *const *key_names;
} ConfigReader;

/* Reads and parses dir/config.json into r (root must be an object); false after diag_error. */
bool cfg_open(ConfigReader *r, Arena *a, Diag *d, const char *dir);
void cfg_close(ConfigReader *r);
/* A reader over a config object made in memory (root is taken over; cfg_close deletes it); file
 * is what errors name. */
void cfg_from_json(ConfigReader *r, Arena *a, Diag *d, const char *file, cJSON *root, const char *const *key_names);
/* The name errors show for key ("hidden_size", or its GGUF key through key_names). */
const char *cfg_key(const ConfigReader *r, const char *key);
bool cfg_has(ConfigReader *r, const char *key);          /* present and not null */
int64_t cfg_int_req(ConfigReader *r, const char *key);   /* required positive-or-zero integer */
int64_t cfg_int(ConfigReader *r, const char *key, int64_t def); /* absent or null -> def */
double cfg_num(ConfigReader *r, const char *key, double def);
bool cfg_bool(ConfigReader *r, const char *key, bool def);
const char *cfg_str(ConfigReader *r, const char *key, const char *def);
/* Integer list (absent or null -> 0 entries); *out arena-allocated. */
int cfg_int_list(ConfigReader *r, const char *key, int64_t **out);
/* An integer or a list of integers (eos_token_id): a single value gives a list of one. */
int cfg_int_list_or_int(ConfigReader *r, const char *key, int64_t **out);
/* Reads rope_scaling per SEMANTICS §3: null/absent -> default; linear and yarn; others refused. */
void cfg_rope_scaling(ConfigReader *r, RopeScaling *rs);
/* Reports "key: must be <cond>; got X" when !ok. */
bool cfg_check(ConfigReader *r, bool ok, const char *key, const char *must, int64_t got);

/* inv_freq[head_dim/2] as HF computes it in float32 (rope_theta, scaling), and the factor that
 * multiplies cos and sin (yarn attention_factor, else 1). */
void cfg_rope_table(const ModelConfig *c, float *inv_freq, float *mscale);

#endif
