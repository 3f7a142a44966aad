/* slots: several prompts at once in the slots of a model compiled with --batch B (continuous
 * batching through the C API). Every live slot advances one token per moe_slots_decode step; a
 * prompt that ends frees its slot and the next waiting prompt is prefilled there while the others
 * keep their state. Greedy; prints each result as "[i] text" in prompt order.
 *
 *   moec compile MODEL_DIR -o model.o --emit obj --weights sidecar --batch 4
 *   cc -o slots slots.c model.o $(pkg-config --cflags --libs moert)
 *   ./slots model.o.moew 24 "first prompt" "second prompt" "third prompt" ...
 */
#include <stdio.h>
#include <stdlib.h>

#include "moe.h"

extern const MoeProgram moe_program; /* defined by model.o */

enum { MAX_SLOTS = 64, MAX_IDS = 4096 };

typedef struct Seq {
    int32_t ids[MAX_IDS]; /* prompt, then generated */
    int64_t n_prompt, n;
    int slot;             /* -1: waiting or done */
} Seq;

static int32_t argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (int32_t)best;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s WEIGHTS.moew N PROMPT...\n", argv[0]);
        return 2;
    }
    int n_gen = atoi(argv[2]), n_seq = argc - 3, next = 0, live = 0;
    char err[256];
    MoeModel *m;
    if (moe_model_load(&m, &moe_program, argv[1], 0, err, sizeof err) != MOE_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int64_t vocab = moe_model_vocab(m);
    int32_t eos = moe_model_eos(m);
    Seq *seq = calloc((size_t)n_seq, sizeof *seq);
    for (int i = 0; i < n_seq; i++) {
        seq[i].n_prompt = seq[i].n = moe_tokenize(m, argv[3 + i], true, seq[i].ids, MAX_IDS);
        seq[i].slot = -1;
        if (seq[i].n < 1 || seq[i].n + n_gen > MAX_IDS || seq[i].n + n_gen > moe_model_context(m)) {
            fprintf(stderr, "prompt %d: cannot encode it, or too long\n", i + 1);
            return 1;
        }
    }
    int slot_of_seq[MAX_SLOTS], slots[MAX_SLOTS];
    int32_t ids[MAX_SLOTS];
    const float *logits[MAX_SLOTS];
    for (;;) {
        /* start waiting prompts in free slots: prefill, then their first token */
        int s;
        while (next < n_seq && moe_slot_start(m, &s) == MOE_OK) {
            Seq *q = &seq[next];
            const float *lg;
            if (moe_slot_prefill(m, s, q->ids, q->n, NULL, NULL, &lg) != MOE_OK) {
                fprintf(stderr, "%s\n", moe_model_error(m));
                return 1;
            }
            q->ids[q->n++] = argmax(lg, vocab);
            if (q->n - q->n_prompt == n_gen || q->ids[q->n - 1] == eos) {
                moe_slot_free(m, s); /* done at once */
            } else {
                q->slot = s;
                slot_of_seq[s] = next;
                live++;
            }
            next++;
        }
        if (live == 0) break;
        /* one decode step: every live slot's last token */
        int n = 0;
        for (int i = 0; i < n_seq; i++)
            if (seq[i].slot >= 0) {
                slots[n] = seq[i].slot;
                ids[n++] = seq[i].ids[seq[i].n - 1];
            }
        if (moe_slots_decode(m, n, slots, ids, logits) != MOE_OK) {
            fprintf(stderr, "%s\n", moe_model_error(m));
            return 1;
        }
        for (int k = 0; k < n; k++) {
            Seq *q = &seq[slot_of_seq[slots[k]]];
            q->ids[q->n++] = argmax(logits[k], vocab);
            if (q->n - q->n_prompt == n_gen || q->ids[q->n - 1] == eos) {
                moe_slot_free(m, q->slot);
                q->slot = -1;
                live--;
            }
        }
    }
    static char text[1 << 16];
    for (int i = 0; i < n_seq; i++) {
        int64_t k = seq[i].n - seq[i].n_prompt;
        if (k > 0 && seq[i].ids[seq[i].n - 1] == eos) k--; /* the end-of-sequence token is not text */
        moe_detokenize(m, seq[i].ids + seq[i].n_prompt, k, text, sizeof text);
        printf("[%d] %s\n", i + 1, text);
    }
    free(seq);
    moe_model_free(m);
    return 0;
}
