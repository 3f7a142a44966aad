/* frontend: a Hugging Face model folder -> ModelConfig + TensorTable + Graph.
 * model_load reads config.json (family from model_type through the graphs/ registry), maps the
 * safetensors, builds and verifies the graph. All errors go through Diag; on failure the Model is
 * left half-filled and must still be released with model_close. */
#ifndef MOEC_FRONTEND_H
#define MOEC_FRONTEND_H
#include "graphs.h"

typedef struct Model {
    const char *dir;
    const Arch *arch;
    ModelConfig cfg;
    TensorTable tt;
    Graph *g;
} Model;

/* Config only (no weights): for commands that need shapes but not tensors. */
bool model_load_config(Model *m, Arena *a, Diag *d, const char *dir);
/* Config, weights and graph. */
bool model_load(Model *m, Arena *a, Diag *d, const char *dir);
void model_close(Model *m);

#endif
