/* trace: the --trace record of a generation, shared by `moec run` and compiled executables.
 * JSON: {"prompt_ids": [...], "generated_ids": [...], "router_topk": [layer][position] -> [ids,
 * highest probability first] or null for a dense layer, "router_weights": same shape}, positions
 * being every prompt token then every fed generated token. */
#ifndef MOE_TRACE_H
#define MOE_TRACE_H
#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"

typedef struct MoeTrace MoeTrace;

/* layer_is_moe[n_layers] is copied. NULL on allocation failure. */
MoeTrace *moe_trace_new(int n_layers, int top_k, const bool *layer_is_moe);
void moe_trace_free(MoeTrace *t);
void moe_trace_add_prompt(MoeTrace *t, const int32_t *ids, int64_t n);
void moe_trace_add_generated(MoeTrace *t, int32_t id);
/* Appends T positions' routes [T, top_k] of an MoE layer. */
void moe_trace_add_routes(MoeTrace *t, int layer, const MoeRoute *routes, int64_t T);
/* Writes the JSON (temporary name, renamed into place); false when the file cannot be written. */
bool moe_trace_write(const MoeTrace *t, const char *path);

#endif
