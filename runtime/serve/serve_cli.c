/* serve_cli: the flags of `OUT serve` into ServeOptions (server.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

static const char usage[] =
    "usage: %s serve [--port P] [--host H] [--api-key KEY] [options]\n"
    "Serves the compiled model over HTTP/1.1 with OpenAI's API: POST /v1/completions and\n"
    "/v1/chat/completions (\"stream\": true for server-sent events), GET /v1/models, /health, /metrics.\n"
    "Requests share the compiled batch's slots (continuous batching); beyond them they queue.\n"
    "SIGINT/SIGTERM: stop accepting, finish the running requests, exit 0 (a second signal cancels them).\n"
    "\n"
    "  --host H               address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port P               TCP port (default 8080; 0: a free one). The first stderr line is\n"
    "                         'listening on http://HOST:PORT ...'\n"
    "  --api-key KEY          require 'Authorization: Bearer KEY' (all but /health)\n"
    "  --queue N              requests waiting for a slot before 503 (default 64)\n"
    "  --max-conns N          open connections (default 256)\n"
    "  --max-body BYTES       largest request body (default 1048576; 413 beyond)\n"
    "  --idle-timeout S       seconds an idle or slow connection is kept (default 60)\n"
    "  --metrics              GET /metrics in Prometheus text format\n"
    "  --threads T            OpenMP threads (default: all cores)\n"
    "  --weights FILE.moew    weights file (default: the weights embedded in this executable)\n"
    "  --memory MB            memory budget (MB = 10^6 bytes): routed experts loaded on demand (as OUT --memory)\n";

static bool int_flag(const char *name, const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: error: %s: expected an integer in [%" PRId64 ", %" PRId64 "]; got '%s'\n", name, flag, lo,
                hi, s ? s : "");
        return false;
    }
    *out = v;
    return true;
}

int moe_serve_cli(int argc, char **argv, const char *name, const MoeProgram *prog) {
    ServeOptions o = moe_serve_defaults();
    o.name = name;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(usage, name);
            return 0;
        } else if (!strcmp(a, "--metrics")) {
            o.metrics = true;
            continue;
        } else if (!v) {
            fprintf(stderr, "%s: error: %s: %s\n", name, a,
                    a[0] == '-' ? "unknown option or missing value; see 'serve --help'" : "unexpected argument");
            return 2;
        }
        i++;
        if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--api-key")) o.api_key = v;
        else if (!strcmp(a, "--weights")) o.weights = v;
        else if (!strcmp(a, "--port")) {
            if (!int_flag(name, a, v, 0, 65535, &n)) return 2;
            o.port = (int)n;
        } else if (!strcmp(a, "--queue")) {
            if (!int_flag(name, a, v, 0, 1 << 20, &n)) return 2;
            o.queue = (int)n;
        } else if (!strcmp(a, "--max-conns")) {
            if (!int_flag(name, a, v, 1, 1 << 16, &n)) return 2;
            o.max_conns = (int)n;
        } else if (!strcmp(a, "--max-body")) {
            if (!int_flag(name, a, v, 1024, (int64_t)1 << 30, &n)) return 2;
            o.max_body = n;
        } else if (!strcmp(a, "--idle-timeout")) {
            if (!int_flag(name, a, v, 1, 86400, &n)) return 2;
            o.idle_s = (int)n;
        } else if (!strcmp(a, "--threads")) {
            if (!int_flag(name, a, v, 1, 4096, &n)) return 2;
            o.threads = (int)n;
        } else if (!strcmp(a, "--memory")) {
            char *end;
            double mb = strtod(v, &end);
            if (end == v || *end || !(mb >= 1e-6 && mb <= 1e12)) {
                fprintf(stderr, "%s: error: --memory: expected a number in [1e-06, 1e+12]; got '%s'\n", name, v);
                return 2;
            }
            o.memory_bytes = (int64_t)(mb * 1e6 + 0.5);
        } else {
            fprintf(stderr, "%s: error: %s: unknown option; see '%s serve --help'\n", name, a, name);
            return 2;
        }
    }
    if (o.api_key && !o.api_key[0]) {
        fprintf(stderr, "%s: error: --api-key: expected a non-empty key\n", name);
        return 2;
    }
    return moe_serve(&o, prog);
}
