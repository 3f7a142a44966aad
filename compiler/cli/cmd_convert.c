/* moec convert: a model (HF folder or GGUF) written as one GGUF file, laid out as llama.cpp's
 * converter writes it (frontend/gguf_export.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "frontend.h"
#include "gguf_model.h"

static const char convert_usage[] =
    "usage: moec convert MODEL -o OUT.gguf\n"
    "Writes MODEL (a Hugging Face folder, or a GGUF file) as one GGUF v3 file the way llama.cpp's\n"
    "convert_hf_to_gguf.py lays it out: <arch>.* metadata (llama for Mixtral, qwen2moe, qwen3moe,\n"
    "olmoe), stacked experts, llama's q/k rows permuted for interleaved RoPE, weights in their dtype\n"
    "but for what the converter keeps in f32 (norms, biases, 1-D tensors, the router and the shared\n"
    "expert's gate: widened exactly, as ggml's CPU kernels take norms only in f32).\n"
    "No tokenizer is written, only llama.cpp's no-vocab marker (tokenizer.ggml.model 'none' and\n"
    "<arch>.vocab_size), with which llama.cpp loads the file for token ids (llama-bench).\n"
    "OUT appears only once complete.\n";

int cmd_convert(int argc, char **argv) {
    Diag d = {0};
    const char *model = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(convert_usage, stdout);
            return 0;
        } else if (!strcmp(a, "-o")) {
            if (!(out = cli_value(&d, argc, argv, &i))) return 2;
        } else if (a[0] == '-') {
            diag_error(&d, "%s: unknown option; see 'moec convert --help'", a);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            diag_error(&d, "%s: unexpected argument; see 'moec convert --help'", a);
            return 2;
        }
    }
    if (!model || !out) {
        fputs(convert_usage, stderr);
        return 2;
    }
    Arena *ar = arena_new();
    Model m;
    int rc = 1;
    if (model_load(&m, ar, &d, model) && gguf_export(&m, ar, &d, out)) {
        fprintf(stderr, "moec: wrote %s (%s, %d tensors from %s)\n", out, m.arch->model_type, m.tt.n, model);
        rc = 0;
    }
    diag_summary(&d);
    model_close(&m);
    arena_destroy(ar);
    return rc;
}
