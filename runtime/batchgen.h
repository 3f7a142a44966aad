/* batchgen: generate for many prompts at once on B sequence slots (continuous batching), for the
 * generation CLIs (`moec run` on the generic path, compiled executables through include/moe.h).
 *
 * The prompts are taken in order: each goes into a free slot, is prefilled there, then decodes one
 * token per step together with every other live slot (one decode step for all of them). A
 * sequence that ends (n_gen tokens, or its end-of-sequence token when stop_at_eos) frees its slot
 * at once and the next waiting prompt starts there while the others keep decoding. Each sequence
 * samples with its own sampler (the same seed for all, so a prompt draws as it would alone).
 *
 * The engine is whatever runs the steps; its calls return false after writing a one-line message
 * into err. No allocation beyond moe_batch_generate's own (freed before it returns). */
#ifndef MOE_BATCHGEN_H
#define MOE_BATCHGEN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tokenizer.h"

typedef struct MoeGenEngine {
    void *user;
    int slots;               /* B: most sequences at once */
    int64_t vocab;
    /* claims a free slot into *slot */
    bool (*start)(void *user, int *slot, char *err, size_t errlen);
    /* the sequence in slot ended (finished or failed): called once per started slot */
    void (*finish)(void *user, int slot, int seq);
    /* prompt ids[n] into slot; *logits gets the last row's [vocab] */
    bool (*prefill)(void *user, int slot, const int32_t *ids, int64_t n, const float **logits, char *err,
                    size_t errlen);
    /* one decode step: ids[i] into slots[i] (ascending); logits[i] gets slots[i]'s [vocab] */
    bool (*decode)(void *user, int n, const int *slots, const int32_t *ids, const float **logits, char *err,
                   size_t errlen);
} MoeGenEngine;

typedef struct MoeGenSeq {
    const int32_t *prompt;   /* [n_prompt], n_prompt >= 1 */
    int64_t n_prompt;
    int32_t *out;            /* [n_gen] caller-owned: the generated ids */
    int64_t n_out;           /* set: tokens generated (the end-of-sequence token included) */
} MoeGenSeq;

typedef struct MoeGenParams {
    int64_t n_gen;           /* tokens per sequence, >= 1 */
    double temp, top_p;
    int64_t top_k;
    uint64_t seed;
    int32_t eos;             /* stop_at_eos: the id that ends a sequence (kept in out) */
    bool stop_at_eos;
} MoeGenParams;

/* What a batch run did: decode steps and their rows (rows / steps is the batch achieved), prompt
 * tokens prefilled, and the wall time inside the engine's prefill and decode calls. */
typedef struct MoeGenStats {
    int64_t steps, rows, prefill_tokens;
    double prefill_s, decode_s;
} MoeGenStats;

/* Runs every sequence to its end. Returns false (err set) when an engine call fails or memory
 * runs out; the sequences' n_out then say how far each got. *st (may be NULL) gets the figures. */
bool moe_batch_generate(const MoeGenEngine *e, MoeGenSeq *seqs, int n_seqs, const MoeGenParams *p, MoeGenStats *st,
                        char *err, size_t errlen);

/* The prompts of a batch run: with tok, each non-empty line of src is a text prompt encoded with
 * it (BOS as the tokenizer asks); without, src is id lists separated by ';' ("1,2,3;4,5"). Each
 * sequence gets room for n_gen generated ids. *seqs (malloc'd, n entries) is freed with
 * moe_batch_free. False with a one-line message in err (nothing allocated then). */
bool moe_batch_prompts(const char *src, const MoeTokenizer *tok, int64_t n_gen, MoeGenSeq **seqs, int *n, char *err,
                       size_t errlen);
void moe_batch_free(MoeGenSeq *seqs, int n);
/* Checks every prompt against the model: ids below vocab, and prompt + n_gen - 1 positions within
 * max_pos (limit_name says what that limit is, as the message shows it: "the compiled context").
 * False with a one-line message in err naming the prompt. *need (may be NULL) gets the most
 * positions a prompt needs, *longest the longest prompt. */
bool moe_batch_check(const MoeGenSeq *seqs, int n, int64_t vocab, int64_t max_pos, const char *limit_name,
                     int64_t n_gen, int64_t *need, int64_t *longest, char *err, size_t errlen);
/* The --verbose line of a batch run (parsed back by moec bench with moe_parse_batch): prompts,
 * slots, decode steps and their mean rows, and the mean distinct experts a decode step routes to
 * per MoE layer (0: not measured), of n_exp:
 * "batch: N prompts on B slots | S decode steps of R rows | X of E experts per layer and step" */
void moert_print_batch(FILE *f, int n_prompts, int slots, const MoeGenStats *st, double experts, int64_t n_exp);
bool moe_parse_batch(const char *line, double *rows_per_step, double *experts_per_step);

/* Prints each sequence's result on f in order, labelled with its prompt's number: "[i] " then its
 * text up to its end-of-sequence token (tok), or its ids comma-separated; then a newline. */
void moe_batch_print(FILE *f, const MoeTokenizer *tok, int32_t eos, const MoeGenSeq *seqs, int n);

#endif
