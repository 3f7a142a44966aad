/* engine: the server's scheduler. One thread owns the MoeModel and runs continuous batching over
 * the compiled batch's slots: requests wait in a bounded FIFO queue, each free slot takes the oldest,
 * a new request is prefilled one chunk per iteration between decode steps, and each iteration runs
 * one decode step over all slots that are generating. Each request has its own sampler (its seed)
 * and streaming detokenizer; the text it releases never ends in a partial stop string.
 *
 * Sharing: everything marked "under mu" is read and written with Engine.mu held; the I/O thread
 * takes released text from Req.out and learns of the end from Req.done. A Req is reference
 * counted (under mu): one reference for the submitter, one for the engine from engine_submit until
 * the request ends; engine_unref frees it at zero. After every iteration that released text or
 * ended a request the engine writes one byte to wake_fd. */
#ifndef MOE_SERVE_ENGINE_H
#define MOE_SERVE_ENGINE_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moe.h"
#include "tokenizer.h"

typedef struct Req Req;
struct Req {
    /* set by the submitter before engine_submit, read-only afterwards */
    int32_t *prompt;         /* [n_prompt], malloc'd, freed with the Req */
    int64_t n_prompt;
    int64_t max_tokens;      /* >= 1; n_prompt + max_tokens - 1 <= context */
    double temp, top_p;
    int64_t top_k;
    uint64_t seed;
    char **stop;             /* [n_stop] NUL-terminated non-empty strings, malloc'd, freed with the Req */
    int n_stop;
    void *user;              /* the submitter's (the connection) */
    /* under mu */
    char *out;               /* released text not yet taken by the I/O thread */
    size_t out_len, out_cap;
    int64_t n_gen;           /* tokens generated so far (the end-of-sequence token not counted) */
    bool done;               /* the engine is finished with it: out holds the last text */
    const char *finish;      /* when done: "stop", "length", or NULL (cancelled or failed) */
    char error[256];         /* when done and failed: why */
    bool cancel;             /* set by the submitter: end it as soon as possible */
    bool queued;
    int refs;
    Req *next;               /* queue link */
};

typedef struct EngineStats {   /* under mu */
    int64_t requests_done, requests_cancelled, requests_failed;
    int64_t prompt_tokens, gen_tokens;
    int64_t decode_steps, prefill_chunks;
    double busy_s;             /* wall time spent in model steps */
    int64_t *experts;          /* [n_layers][n_exp + 1]: tokens per expert, then dropped, over ended requests */
} EngineStats;

typedef struct Slot Slot;

typedef struct Engine {
    MoeModel *m;
    const MoeTokenizer *tok;
    int32_t eos;             /* -1: none */
    int64_t vocab, context, chunk;
    int n_layers, n_exp;
    int B;                   /* slots */
    int wake_fd;             /* written once per iteration that changed something */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    Req *q_head, *q_tail;
    int q_len, q_max;
    int busy;                /* slots in use */
    bool stop;
    EngineStats st;
    /* engine thread only */
    Slot *slots;             /* [B] */
    int *scratch;            /* [4 * B]: the step's slot lists */
    const float **logits;    /* [B] */
} Engine;

/* Sets e up for m (slots, samplers, statistics) and starts its thread; false (err filled) on failure. */
bool engine_start(Engine *e, MoeModel *m, const MoeTokenizer *tok, int queue_max, int wake_fd, char *err, size_t errlen);
/* Stops the thread (running requests end cancelled), joins it and frees what engine_start made. */
void engine_stop(Engine *e);
/* A zeroed Req with refs = 1 (the caller's); NULL when out of memory. */
Req *engine_req_new(void);
/* Queues r (taking the engine's reference); false when q_max requests already wait beyond the free
 * slots (r untouched). Locks mu. */
bool engine_submit(Engine *e, Req *r);
/* Asks the engine to end r; a queued r is removed at once. Call with mu held. */
void engine_cancel_locked(Engine *e, Req *r);
/* Drops one reference (mu held); frees r at zero. */
void engine_unref_locked(Req *r);

/* Stop strings: text[0, len) is all generated text, [0, sent) of it already released. Returns the
 * end of what may be released now: where the earliest stop string starts (*hit = true), else len
 * minus the longest tail that is a proper prefix of a stop string (all of it when final). */
size_t engine_stop_scan(const char *text, size_t len, size_t sent, char *const *stop, int n_stop, bool final,
                        bool *hit);

#endif
