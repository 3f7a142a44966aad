/* generate: the C API's worked example. Loads a model compiled into this program and generates
 * text for a prompt, greedily.
 *
 *   moec compile MODEL_DIR -o model.o --emit obj --weights sidecar   # model.o + model.o.moew
 *   cc -o generate generate.c model.o $(pkg-config --cflags --libs moert)
 *   ./generate model.o.moew "The capital of France is" 32
 *
 * The program object defines `moe_program` (its manifest and compiled steps); the weights file
 * must come from the same compile (the runtime checks the hash). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"

extern const MoeProgram moe_program; /* defined by model.o */

/* The most likely token: greedy decoding. */
static int32_t argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (int32_t)best;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s WEIGHTS.moew PROMPT [N]\n", argv[0]);
        return 2;
    }
    int n_gen = argc > 3 ? atoi(argv[3]) : 16;
    char err[256];
    MoeModel *m;
    if (moe_model_load(&m, &moe_program, argv[1], 0 /* threads: all cores */, err, sizeof err) != MOE_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int64_t ctx = moe_model_context(m), vocab = moe_model_vocab(m);

    /* the prompt's ids, with the BOS the tokenizer adds */
    int64_t n = moe_tokenize(m, argv[2], true, NULL, 0);
    int32_t *ids = n > 0 ? malloc(sizeof(int32_t) * (size_t)(n + n_gen)) : NULL;
    if (!ids || moe_tokenize(m, argv[2], true, ids, n) != n || n + n_gen > ctx) {
        fprintf(stderr, "cannot encode the prompt, or it is too long: %s\n", moe_model_error(m));
        moe_model_free(m);
        return 1;
    }

    const float *logits; /* [vocab], borrowed until the next call */
    if (moe_prefill(m, ids, n, NULL, NULL, &logits) != MOE_OK) {
        fprintf(stderr, "%s\n", moe_model_error(m));
        moe_model_free(m);
        return 1;
    }
    /* generate greedily up to the end-of-sequence token, then print the text (decoded as a whole:
     * a single token may end inside a UTF-8 character) */
    int32_t *gen = ids + n;
    int k = 0;
    while (k < n_gen) {
        gen[k] = argmax(logits, vocab);
        if (gen[k] == moe_model_eos(m)) break;
        if (++k < n_gen && moe_decode(m, gen[k - 1], &logits) != MOE_OK) {
            fprintf(stderr, "%s\n", moe_model_error(m));
            break;
        }
    }
    static char text[1 << 16];
    moe_detokenize(m, gen, k, text, sizeof text);
    printf("%s\n", text);
    free(ids);
    moe_model_free(m);
    return 0;
}
