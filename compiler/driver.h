/* driver: compile_model(), the whole `moec compile` pipeline as a list of calls. */
#ifndef MOEC_DRIVER_H
#define MOEC_DRIVER_H
#include <stdbool.h>
#include <stdint.h>

#include "diag.h"
#include "format.h"
#include "interp/kernels.h"

typedef enum EmitKind { EMIT_EXE, EMIT_OBJ, EMIT_LLVM, EMIT_ASM } EmitKind;

typedef struct CompileOptions {
    const char *model_dir, *out;
    int64_t batch;            /* tokens per decode step (1) */
    int64_t context;          /* S; 0: min(max_position_embeddings, 4096) */
    int64_t prefill_chunk;    /* P; 0: a power of two in [128, 512] near 128 E / k, at most S */
    int64_t threads;          /* most threads a step runs; 0: this machine's cores */
    double capacity_factor;   /* <= 0: dropless */
    const char *triple, *cpu, *features; /* NULL: host, native */
    int amx_planes;           /* bf16 planes per activation on AMX tiles, 1 to 3; 0: 3 (exact) */
    bool sidecar;             /* weights in OUT.moew instead of inside OUT */
    EmitKind emit;
    const char *dump_after;   /* pass name or NULL */
    bool quiet;               /* no progress lines */
    MoeManifest *manifest_out; /* optional: receives the compiled program's manifest */
    const struct QuantSpec *quant; /* --quant (frontend/quantize.h), or NULL: weights as stored */
    GkAct act;                /* --act: int8 activations for block-type weights (runtime/quant.h), bf16
                               * for bf16 weights (interp/kernels.h), or exact */
    const char *chat_template; /* --chat-template FILE, or NULL: the model's own (frontend/chat_template.h) */
    bool no_chat_template;     /* --no-chat-template: embed none */
} CompileOptions;

/* Compiles o->model_dir into o->out; returns the exit status (0, 1 user error, 70 internal). */
int compile_model(const CompileOptions *o, Diag *d);

#endif
