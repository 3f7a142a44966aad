/* graphs: one builder per model family, and the blocks they compose.
 * A family (graphs/<arch>.c) provides <arch>_config (reads the keys it needs with its own defaults,
 * SEMANTICS.md §10, and validates them) and <arch>_build (composes gb_* blocks into the IR,
 * naming every value "L07.moe.router"). registry.c maps model_type to the family.
 * gb_weight checks every tensor a family needs for presence and shape as it is declared, so a
 * build reports every missing or mis-shaped tensor with the file, the HF name and both shapes. */
#ifndef MOEC_GRAPHS_H
#define MOEC_GRAPHS_H
#include "hfconfig.h"
#include "ir.h"
#include "safetensors.h"

typedef struct GraphBuilder {
    Graph *g;
    const ModelConfig *c;
    const TensorTable *tt;
    Diag *d;
    Arena *a;
    const char *weights_file;   /* what errors about missing tensors name */
} GraphBuilder;

/* HF names of one family's MoE block, relative to "model.layers.{l}.". */
typedef struct MoeNames {
    const char *prefix;         /* "block_sparse_moe." or "mlp." */
    const char *gate, *up, *down; /* per-expert: "w1", "w3", "w2" or "gate_proj", ... */
} MoeNames;

typedef struct Arch {
    const char *model_type;     /* config.json "model_type" */
    const char *hf_class;       /* architectures[0] */
    const MoeNames *moe_names;  /* HF names of its MoE block (readers of other formats map to them) */
    void (*config)(ConfigReader *r, ModelConfig *c);
    void (*build)(GraphBuilder *b);
} Arch;

/* The family for a model_type, or NULL. */
const Arch *arch_find(const char *model_type);
/* "mixtral, qwen2_moe, qwen3_moe, olmoe" */
const char *arch_names(void);

/* ---- config helpers shared by the families ---- */
typedef struct ConfigDefaults {
    int64_t num_key_value_heads;  /* 0: same as num_attention_heads */
    int64_t num_experts_per_tok;
    double rms_norm_eps, rope_theta;
    int64_t max_position_embeddings;
} ConfigDefaults;
/* Reads the keys every family has (sizes, heads, eps, theta, rope_scaling, tying, bos/eos) and
 * validates the shared invariants; head_dim = H / nh (families with an explicit head_dim override
 * it after). */
void gb_read_common(ConfigReader *r, ModelConfig *c, const ConfigDefaults *def);
/* Validates the fields a family has filled in (experts, top-k, head_dim, widths). */
void gb_check_config(ConfigReader *r, ModelConfig *c);

/* ---- blocks ---- */
/* A checkpoint tensor of the given shape (printf-style name); reports a missing or mis-shaped one
 * and returns a placeholder so the build can go on to report more. */
ValueId gb_weight(GraphBuilder *b, int rank, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
ValueId gb_weight1(GraphBuilder *b, int64_t d0, const char *name);
ValueId gb_weight2(GraphBuilder *b, int64_t d0, int64_t d1, const char *name);
/* n_exp tensors [d0, d1] named fmt with the expert index, stacked as [n_exp, d0, d1]. */
ValueId gb_expert_stack(GraphBuilder *b, int layer, const MoeNames *nm, const char *which, int64_t d0, int64_t d1);

ValueId gb_embed(GraphBuilder *b);
ValueId gb_rmsnorm(GraphBuilder *b, ValueId x, ValueId w, const char *name);
ValueId gb_matmul(GraphBuilder *b, ValueId x, ValueId w, const char *name);
ValueId gb_matmul_bias(GraphBuilder *b, ValueId x, ValueId w, ValueId bias, const char *name);
ValueId gb_add(GraphBuilder *b, ValueId x, ValueId y, const char *name);
/* Self-attention of layer l on normalised input h [T, H] per the config (biases, q/k norms,
 * clip, RoPE, GQA, window) -> [T, H]. */
ValueId gb_attention(GraphBuilder *b, int layer, ValueId h);
/* Routed experts (+ qwen2_moe's sigmoid-gated shared expert) of layer l on h [T, H]. */
ValueId gb_moe_ffn(GraphBuilder *b, int layer, ValueId h, const MoeNames *nm);
/* Dense SiLU-gated MLP "model.layers.{l}.mlp.{gate,up,down}_proj" of width I. */
ValueId gb_dense_mlp(GraphBuilder *b, int layer, ValueId h, int64_t width);
/* The whole pre-norm decoder (SEMANTICS §1): embed, L blocks, final norm, LM head (tied or not). */
void gb_decoder(GraphBuilder *b, const MoeNames *nm);

#endif
