/* synth: writes a synthetic checkpoint in exactly the Hugging Face layout (config.json +
 * model.safetensors, or N shards + model.safetensors.index.json) for one of the four families,
 * with seeded random weights (SEMANTICS.md §9 names and shapes, §10 config fields).
 * Weights are a pure function of (seed, tensor name, element index), so the same seed gives the
 * same bytes whatever the sharding, dtype rounding aside, and whatever the thread count. Tensors are
 * generated in chunks and streamed to disk; the folder is built beside out_dir under a temporary
 * name and renamed into place only once complete. `moec synth` (cmd_synth) is its command line. */
#ifndef MOEC_SYNTH_H
#define MOEC_SYNTH_H
#include <stdbool.h>
#include <stdint.h>

#include "diag.h"
#include "dtype.h"

typedef enum SynthArch { SYNTH_MIXTRAL, SYNTH_QWEN2_MOE, SYNTH_QWEN3_MOE, SYNTH_OLMOE } SynthArch;

/* tiny: the shapes of the golden configs (vocab 384, hidden 64, 2 layers, 4 experts);
 * bench: ~0.8-1 B parameters, for throughput measurements. */
typedef enum SynthPreset { SYNTH_TINY, SYNTH_BENCH } SynthPreset;

enum { SYNTH_MAX_LAYERS = 256 }; /* the runtime's MOE_MAX_LAYERS (runtime/format.h) */

typedef struct SynthOptions {
    const char *out_dir;            /* folder to create */
    SynthArch arch;
    SynthPreset preset;
    DType dtype;                    /* DT_BF16 (default), DT_F16 or DT_F32 */
    int shards;                     /* 1: model.safetensors; N > 1: N shards + index */
    uint64_t seed;
    double wstd;                    /* std of linear weights; 0: preset default (0.125 tiny, 0.02 bench) */
    bool force;                     /* replace an existing model folder, only once the new one is complete */
    bool verbose;                   /* progress line and summary on stderr */
    bool tie_word_embeddings;       /* write no lm_head.weight, config says tied */
    int64_t decoder_sparse_step;    /* qwen families; 0: 1 (every layer MoE) */
    int n_mlp_only_layers;          /* qwen families: layers forced dense */
    const int64_t *mlp_only_layers; /* [n_mlp_only_layers] */
    int64_t num_hidden_layers;      /* 0: the preset's */
    int64_t dense_intermediate_size;/* qwen families: intermediate_size, the dense layers' width; 0: the preset's */
} SynthOptions;

/* Defaults: bf16, 1 shard, seed 0, preset wstd, no force, quiet, untied, every layer MoE, the
 * preset's layer count and widths. */
void synth_options_init(SynthOptions *o, const char *out_dir, SynthArch arch, SynthPreset preset);
/* "mixtral", "qwen2_moe", "qwen3_moe", "olmoe" <-> SynthArch; parse returns false if unknown. */
bool synth_arch_parse(const char *s, SynthArch *out);
const char *synth_arch_name(SynthArch a);
/* Parameters of the model o describes (every tensor, lm_head included unless tied). */
int64_t synth_param_count(const SynthOptions *o);
/* Writes the whole model folder o->out_dir. False after diag_error (nothing left behind). */
bool synth_write_model(Diag *d, const SynthOptions *o);

#endif
