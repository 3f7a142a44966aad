/* moe.h: the public API of libmoert, the runtime that runs a model compiled by `moec compile`.
 *
 *   MoeModel *m;
 *   char err[256];
 *   if (moe_model_load(&m, &moe_program, NULL, 0, err, sizeof err) != MOE_OK) { puts(err); return 1; }
 *   const float *logits;                                    // [vocab_size]
 *   if (moe_prefill(m, prompt, n_prompt, NULL, NULL, &logits) != MOE_OK) puts(moe_model_error(m));
 *   for (...) { int32_t id = pick(logits); moe_decode(m, id, &logits); }
 *   moe_model_free(m);
 *
 * A program compiled with --batch B holds B sequences at once, each in a slot (its own KV cache,
 * position and expert stats): start a slot, prefill it, then advance any set of live slots by one
 * token each in one decode step (moe_slots_decode), and free it; the other slots keep their state
 * meanwhile, so slots can come and go while the rest decode (continuous batching). Each slot's
 * tokens and logits are exactly those it would get alone. The single-sequence calls (moe_prefill,
 * moe_decode, moe_model_reset, moe_model_pos, moe_model_stats) work on slot 0, claiming it when free:
 * the B = 1 case.
 *
 *   int s; moe_slot_start(m, &s); moe_slot_prefill(m, s, prompt, n, NULL, NULL, &logits);
 *   int slots[] = {s, t}; int32_t ids[] = {a, b}; const float *lg[2];
 *   moe_slots_decode(m, 2, slots, ids, lg);                // lg[0]: s's logits, lg[1]: t's
 *   moe_slot_free(m, s);
 *
 * From load on, a background thread maps the weights' pages in (so that the first steps of a
 * fresh process do not fault them in one by one); MOE_NO_PREFAULT=1 in the environment turns it off.
 *
 * Everything is allocated in moe_model_load (weights mmap'd read-only, arena, KV cache, stats);
 * no step allocates (the first moe_tokenize or moe_detokenize builds the embedded tokenizer, and
 * they use temporary memory). A pointer the runtime hands out is borrowed: it stays valid until the
 * next call on the same handle. No call exits or aborts on bad input: each returns a MoeStatus,
 * and the one-line message of the last failure comes from moe_model_error(m). A handle is used by
 * one thread at a time (each step runs on the handle's own OpenMP threads). */
#ifndef MOE_H
#define MOE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MOE_API __attribute__((visibility("default")))
#else
#define MOE_API
#endif

typedef struct MoeModel MoeModel;          /* opaque: one loaded model and its B sequence slots */
typedef struct MoeProgram MoeProgram;      /* runtime/format.h: what `moec compile` emitted */
typedef struct MoeManifest MoeManifest;    /* runtime/format.h */
typedef struct MoeRoute MoeRoute;          /* runtime/dtype.h: {int32 expert; float weight} */

typedef enum MoeStatus {
    MOE_OK = 0,
    MOE_ERR_ARG = 1,      /* a bad argument: NULL, n < 1, token id outside [0, vocab_size) */
    MOE_ERR_IO = 2,       /* a file cannot be opened, read or mapped */
    MOE_ERR_FORMAT = 3,   /* not a (valid) weights file or program: magic, version, truncation, layout */
    MOE_ERR_MISMATCH = 4, /* valid weights, but of another model or compile: hash or sizes differ */
    MOE_ERR_NOMEM = 5,    /* the arena, KV cache or stats cannot be allocated */
    MOE_ERR_CONTEXT = 6,  /* the sequence would outgrow the compiled context (manifest.context) */
    MOE_ERR_BUSY = 7,     /* moe_slot_start: every slot holds a sequence */
} MoeStatus;

/* Called by moe_prefill after each step with the logits of prompt tokens first_row ..
 * first_row + n_rows - 1 (0-based within that moe_prefill call), rows [n_rows, vocab_size] f32,
 * in order; the rows and the step's moe_model_routes are borrowed until the callback returns. */
typedef void (*MoeRowsFn)(void *user, const float *rows, int64_t first_row, int64_t n_rows);

/* Loads prog with its weights: weights_path is a .moew file, or NULL for the weights embedded in
 * the running executable (/proc/self/exe). Checks the weights against prog's manifest, maps them
 * read-only and allocates everything; n_threads <= 0: OpenMP's default. On failure *out = NULL
 * and err (errlen bytes, may be NULL) holds a one-line message naming the file and the problem. */
MOE_API MoeStatus moe_model_load(MoeModel **out, const MoeProgram *prog, const char *weights_path, int n_threads,
                                 char *err, size_t errlen);
/* moe_model_load with options; a zeroed MoeLoadOptions (or NULL) is moe_model_load(NULL, 0). */
typedef struct MoeLoadOptions {
    const char *weights_path; /* a .moew file; NULL: the weights embedded in the running executable */
    int n_threads;            /* <= 0: OpenMP's default */
    /* > 0: a memory budget in bytes. Everything but the routed experts stays resident (non-expert
     * weights, arena, KV cache); the routed experts live in a pool of what remains and are read
     * from the weights file when a router picks them (O_DIRECT: they never fill the page cache),
     * the least recently used evicted. Tokens and logits are bit-identical to an unbounded run.
     * A budget that cannot hold the resident part plus the experts one layer of one step can need
     * is refused (MOE_ERR_NOMEM, with the smallest budget that works in the message). 0: no budget
     * (every expert mapped, as moe_model_load). */
    int64_t memory_bytes;
} MoeLoadOptions;
MOE_API MoeStatus moe_model_load_opts(MoeModel **out, const MoeProgram *prog, const MoeLoadOptions *opts, char *err,
                                      size_t errlen);

/* The expert pool of a model loaded with a memory budget. */
typedef struct MoeCacheInfo {
    int64_t budget;           /* memory_bytes */
    int64_t resident;         /* bytes kept resident: non-expert weights, tokenizer, arena, KV cache, tables */
    int64_t slots, slot_bytes;/* the pool: slots of slot_bytes each (resident + slots slot_bytes <= budget) */
    int64_t experts;          /* routed experts of the model (layers x n_exp) */
    int64_t expert_bytes;     /* their bytes in the weights */
    int direct;               /* 1: reads use O_DIRECT; 0: buffered, then dropped from the page cache */
} MoeCacheInfo;
/* Counters of one MoE layer since load (layer -1: all layers). */
typedef struct MoeCacheStats {
    int64_t hits, misses;     /* experts a router picked that were in the pool / had to be read */
    int64_t evictions;        /* experts dropped from the pool to make room */
    int64_t bytes_read;       /* bytes read from the weights file (with alignment slack) */
    double wait_s;            /* time thread 0 spent on this layer's experts: lookups and its share of the reads */
} MoeCacheStats;
/* MOE_ERR_ARG when m has no memory budget (or a bad layer). */
MOE_API MoeStatus moe_model_cache_info(const MoeModel *m, MoeCacheInfo *info);
MOE_API MoeStatus moe_model_cache_stats(const MoeModel *m, int layer, MoeCacheStats *stats);
/* Unmaps and frees everything of m (NULL is fine). */
MOE_API void moe_model_free(MoeModel *m);
/* The message of the last failed call on m ("" when none). */
MOE_API const char *moe_model_error(const MoeModel *m);
/* The vocabulary size (the length of a logits row) and the context (positions per sequence). */
MOE_API int64_t moe_model_vocab(const MoeModel *m);
MOE_API int64_t moe_model_context(const MoeModel *m);
/* The manifest m was compiled with (lives as long as the program; fields in format.h). */
MOE_API const MoeManifest *moe_model_manifest(const MoeModel *m);
/* Recomputes the model hash over every byte of m's weights (and tokenizer) and compares it with
 * the one the program was compiled with: MOE_ERR_MISMATCH when a byte changed after compile.
 * moe_model_load checks only the stored hashes and sizes, not the bytes; this reads all of them
 * (about 0.3 s per GB once they are in memory). */
MOE_API MoeStatus moe_model_verify(MoeModel *m);
/* The same check on a weights file without its program: a .moew file, or an executable with its
 * weights embedded, against the hash its own header holds; *hash (may be NULL) gets it. */
MOE_API MoeStatus moe_weights_verify(const char *path, uint64_t *hash, char *err, size_t errlen);
/* Starts a new sequence in slot 0: position 0 and the expert statistics cleared. */
MOE_API void moe_model_reset(MoeModel *m);
/* Tokens of slot 0's sequence in the KV cache. */
MOE_API int64_t moe_model_pos(const MoeModel *m);

/* Feeds the n prompt tokens ids[n] at positions pos .. pos+n-1 in prefill_chunk steps (the last
 * one padded with token 0; padded rows are ignored), calling on_rows (may be NULL) after each step.
 * *logits (may be NULL) gets the last token's logits [vocab_size]. Every row's logits are computed
 * only for on_rows: without it each step computes those of its last token only (faster), with the
 * same routes and stats. MOE_ERR_CONTEXT when pos + n > context, MOE_ERR_ARG for a bad id; on
 * error nothing has run. */
MOE_API MoeStatus moe_prefill(MoeModel *m, const int32_t *ids, int64_t n, MoeRowsFn on_rows, void *user,
                              const float **logits);
/* Feeds one token at position pos; *logits (may be NULL) gets its logits [vocab_size]. */
MOE_API MoeStatus moe_decode(MoeModel *m, int32_t id, const float **logits);
/* The routes [*n_rows, top_k] of layer's router in the last step (valid rows only: a prefill
 * step's tokens in order, a decode step's slots in ascending slot order); NULL (and *n_rows = 0)
 * for a dense layer, a bad layer or before any step. */
MOE_API const MoeRoute *moe_model_routes(const MoeModel *m, int layer, int64_t *n_rows);
/* Expert statistics of slot 0's sequence, [n_layers][n_exp + 1] int64: tokens each expert
 * processed, then assignments dropped by expert capacity; real tokens only (padding is not counted). */
MOE_API const int64_t *moe_model_stats(const MoeModel *m);

/* ---- text: the tokenizer embedded at compile time ---- */
/* Encodes text (NUL-terminated) into ids[cap], with the BOS/EOS the tokenizer adds for a prompt
 * when add_special. Returns the ids it takes (more than cap: only cap written; call again with
 * room), or -1 (moe_model_error says why: no tokenizer embedded, out of memory). */
MOE_API int64_t moe_tokenize(MoeModel *m, const char *text, bool add_special, int32_t *ids, int64_t cap);
/* Decodes ids[n] into buf[cap] as NUL-terminated UTF-8 (special tokens skipped). Returns the
 * bytes of the text without the NUL (cap or more: buf holds a NUL-terminated prefix; call again
 * with room), or -1 (moe_model_error says why). */
MOE_API int64_t moe_detokenize(MoeModel *m, const int32_t *ids, int64_t n, char *buf, int64_t cap);
/* The end-of-sequence token of the model (-1: none). */
MOE_API int32_t moe_model_eos(const MoeModel *m);

/* ---- slots (moec compile --batch B) ---- */
/* B: slots 0 .. B-1. */
MOE_API int moe_model_slots(const MoeModel *m);
/* Claims the lowest free slot for a new sequence: position 0, stats cleared; *slot gets it.
 * MOE_ERR_BUSY (and *slot = -1) when all B hold a sequence. */
MOE_API MoeStatus moe_slot_start(MoeModel *m, int *slot);
/* Frees slot (its sequence ends; a free or bad slot: no effect). */
MOE_API void moe_slot_free(MoeModel *m, int slot);
/* moe_prefill for one started slot: its n tokens at its position, in prefill_chunk steps; the
 * other slots' state is untouched. MOE_ERR_ARG for a slot that is not started. */
MOE_API MoeStatus moe_slot_prefill(MoeModel *m, int slot, const int32_t *ids, int64_t n, MoeRowsFn on_rows,
                                   void *user, const float **logits);
/* One decode step over n distinct started slots (1 <= n <= B, any order): feeds ids[i] to
 * slots[i] at its position; logits (may be NULL) [n]: logits[i] gets slots[i]'s [vocab_size].
 * Only these n rows are computed (an idle slot costs nothing). On error nothing has run. */
MOE_API MoeStatus moe_slots_decode(MoeModel *m, int n, const int *slots, const int32_t *ids, const float **logits);
/* Tokens of slot's sequence in its KV cache (0 for a bad slot). */
MOE_API int64_t moe_slot_pos(const MoeModel *m, int slot);
/* Expert statistics of slot's sequence, as moe_model_stats; NULL for a bad slot. */
MOE_API const int64_t *moe_slot_stats(const MoeModel *m, int slot);

#ifdef __cplusplus
}
#endif
#endif
