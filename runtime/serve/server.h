/* server: `OUT serve`, an OpenAI-compatible HTTP/1.1 server around one loaded model.
 * Two threads: the engine thread owns the MoeModel and runs continuous batching over the compiled
 * batch's slots (admit queued requests into free slots, prefill them chunk by chunk between decode
 * steps, one decode step over every live slot, sample, detokenize, apply stop strings); the calling
 * thread runs the I/O loop (poll over the listening socket, every connection, a wake-up pipe from
 * the engine and a signalfd for SIGINT/SIGTERM), parses requests (http.h, json.h), answers the
 * small endpoints itself and writes the text the engine hands over, never waiting on the engine.
 * Endpoints: POST /v1/completions, POST /v1/chat/completions ("stream": server-sent events),
 * GET /v1/models, GET /health, GET /metrics (with metrics on). Errors are OpenAI-style JSON. */
#ifndef MOE_SERVE_SERVER_H
#define MOE_SERVE_SERVER_H
#include <stdbool.h>
#include <stdint.h>

#include "format.h"

typedef struct ServeOptions {
    const char *name;        /* the model id /v1/models reports (the executable's name) */
    const char *host;        /* address to bind (default 127.0.0.1) */
    int port;                /* 0: any free port (printed) */
    const char *api_key;     /* NULL: no authentication; else "Authorization: Bearer KEY" on /v1 and /metrics */
    int queue;               /* requests waiting for a slot before 503 */
    int max_conns;           /* open connections; more are answered 503 and closed */
    int64_t max_body;        /* bytes of a request body (413 beyond) */
    int64_t max_head;        /* bytes of a request head (431 beyond) */
    int idle_s;              /* seconds an idle or slow connection is kept */
    bool metrics;            /* GET /metrics */
    int threads;             /* OpenMP threads of the model (<= 0: default) */
    const char *weights;     /* .moew, or NULL: embedded */
    int64_t memory_bytes;    /* > 0: a memory budget (MoeLoadOptions.memory_bytes) */
} ServeOptions;

/* Default options (name and the rest to be set by the caller). */
ServeOptions moe_serve_defaults(void);
/* Loads the model and serves until SIGINT or SIGTERM; returns the exit status (0 after a clean
 * shutdown, 1 when the model cannot be loaded or the address cannot be bound). Messages go to
 * stderr, the first line being "listening on http://HOST:PORT". */
int moe_serve(const ServeOptions *o, const MoeProgram *prog);

/* `OUT serve [flags]`: argv[0] is "serve"; name is the executable's. Parses the flags (usage
 * errors: exit status 2) and runs moe_serve. */
int moe_serve_cli(int argc, char **argv, const char *name, const MoeProgram *prog);

#endif
