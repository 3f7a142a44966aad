/* fuzz_tok: the synthetic tokenizer `moec synth` writes (vocab tokens), loaded once for the fuzz
 * targets that encode text (fuzz_prompt, fuzz_server); aborts if it cannot be made. */
#ifndef MOEC_FUZZ_TOK_H
#define MOEC_FUZZ_TOK_H
#include "fuzz_util.h"
#include "tokenizer.h"
#include "tokjson.h"

static inline MoeTokenizer *fuzz_synth_tokenizer(int vocab) {
    Diag d = {.quiet = true};
    char path[512];
    snprintf(path, sizeof path, "%s/synth-tokenizer.json", fuzz_dir());
    Arena *a = arena_new();
    void *blob;
    size_t len;
    char err[256];
    if (!tokjson_write_synthetic(&d, path, vocab) || !tokjson_load(a, &d, path, &blob, &len)) abort();
    MoeTokenizer *t = moe_tok_load(blob, len, err, sizeof err);
    arena_destroy(a);
    if (!t) abort();
    return t;
}

#endif
