/* frontend: a model -> ModelConfig + TensorTable + Graph. A model is a Hugging Face folder
 * (config.json + safetensors) or a GGUF file (a .gguf file, the first part of a split set, or a
 * folder holding one GGUF model and no config.json: frontend/gguf_model.h).
 * model_load reads the config (family from model_type through the graphs/ registry), maps the
 * weights, builds and verifies the graph. All errors go through Diag; on failure the Model is
 * left half-filled and must still be released with model_close. */
#ifndef MOEC_FRONTEND_H
#define MOEC_FRONTEND_H
#include "gguf.h"
#include "graphs.h"

typedef struct Model {
    const char *dir;            /* the path given (a folder or a .gguf file) */
    const char *gguf_path;      /* the GGUF file read, or NULL for a Hugging Face folder */
    GgufFile gguf;
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
