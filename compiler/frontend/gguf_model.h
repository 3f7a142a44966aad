/* gguf_model: a GGUF file (llama.cpp's format) as a moec model, behind the interfaces a Hugging
 * Face folder uses, so graphs/ builds it unchanged:
 *   config   the <arch>.* keys become the config.json keys of the family, in one JSON object that
 *            the family's own <arch>_config reads (the same defaults and validation as config.json;
 *            errors name the GGUF key). Architectures: llama with experts (Mixtral), qwen2moe,
 *            qwen3moe, olmoe. A key that changes the computation and that moec does not implement
 *            is refused by name.
 *   tensors  every tensor gets its Hugging Face name and shape in a TensorTable pointing into the
 *            mapping: stacked experts (blk.N.ffn_*_exps) as per-expert slices of the same bytes,
 *            the old per-expert layout (blk.N.ffn_gate.E) as it is. Only llama's attn_q / attn_k
 *            rows are copied (into the arena): the converter permutes them within each head for
 *            ggml's interleaved RoPE, and moec computes HF's rotate-half RoPE, so the permutation is
 *            undone (whole rows, so quantised rows move as they are).
 * Dense layers of the qwen families are the layers without a router (ffn_gate_inp). */
#ifndef MOEC_GGUF_MODEL_H
#define MOEC_GGUF_MODEL_H
#include <stdbool.h>

#include "gguf.h"
#include "graphs.h"

/* The GGUF file a model path names: path itself when it is a file ending in .gguf, or the one
 * model in a folder that has no config.json but .gguf files (one file, or the first part of a
 * split set). NULL when path is not a GGUF model (an HF folder, or nothing); when a folder holds
 * several GGUF models, NULL after diag_error listing them. */
const char *gguf_model_path(Arena *a, Diag *d, const char *path);
/* The family and config of an open GGUF file: *arch set; false after diag_error. */
bool gguf_model_config(const GgufFile *g, Arena *a, Diag *d, ModelConfig *c, const Arch **arch);
/* The tensors under their HF names (sorted, for st_find); tt->n_shards = 0 (the GgufFile owns
 * the mappings). False after diag_error naming the tensor. */
bool gguf_model_tensors(const GgufFile *g, const Arch *arch, const ModelConfig *c, Arena *a, Diag *d,
                        TensorTable *tt);

/* A per-layer tensor's name after "blk.N." (GGUF) or "model.layers.N." (HF), in the other format
 * (to_hf: GGUF -> HF); NULL when it is not one (experts are not: their layouts differ). */
const char *gguf_layer_name(const char *suffix, const MoeNames *nm, bool to_hf, Arena *a);

/* llama's q/k row permutation (the converter's, for ggml's interleaved RoPE): the file's row
 * h*hd + 2j + s is HF's row h*hd + s*hd/2 + j, for heads x hd rows of row_bytes each. to_hf: file
 * order (src) -> HF order (dst); else the reverse. */
void gguf_permute_qk(const void *src, void *dst, size_t row_bytes, int64_t heads, int64_t hd, bool to_hf);

/* Writes model m (a loaded HF folder) as a GGUF v3 file the way llama.cpp's converter lays it out:
 * <arch>.* metadata, stacked experts, llama's q/k rows permuted for interleaved RoPE, ggml's
 * dimension order; tensors in their dtype (F32, F16, BF16 or block types). No tokenizer metadata.
 * Through a temporary name renamed into place; false after diag_error. */
typedef struct Model Model;
bool gguf_export(const Model *m, Arena *a, Diag *d, const char *path);

#endif
