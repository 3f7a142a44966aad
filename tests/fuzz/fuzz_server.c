/* fuzz_server: the request handling of `OUT serve` (runtime/serve/server.c) without a model or a
 * socket. The bytes are what one connection sent: process() answers every complete request in
 * them, in order, as the I/O loop does (http.c's parser, the routing, the API key, the small
 * endpoints, the body through json.c, the fields of a completion or chat request, the chat
 * template, the tokenizer), into the connection's output buffer. The engine is a real Engine that
 * was never started: engine_submit queues into it, and this file plays the engine thread, taking
 * the request, releasing text through engine_stop_scan as engine.c does, ending it as done,
 * failed or cancelled, and pump() writes the answer (one JSON object or server-sent events).
 * Checked: every request the server hands the engine is a valid Req (engine.h), what the
 * connection gets is a sequence of well-formed responses (status line, headers, Content-Length
 * bodies that are JSON objects, OpenAI error objects on errors, events that are JSON or [DONE]),
 * and nothing leaks. server.c is included (its functions are static), as tests/unit includes the
 * kernels; the model pieces are the synthetic tokenizer of fuzz_prompt and the chat templates of
 * tests/data/chat_templates.
 *
 * Input: byte 0 sets up the server (bits 0-1: chat template none / mixtral / qwen3_moe / one that
 * did not parse; 2: an API key "k"; 3: /metrics on; 4: draining; 5: queue full; 6: small limits,
 * max_head 256 and max_body 96; 7: context 8 instead of 256), byte 1 the fake engine (bits 0-1:
 * ends stop / length / failed / cancelled; 2-4: bytes released per step - 1; 5-6: which stop
 * string the text holds; 7: only a proper prefix of it), then the connection's bytes. With
 * FUZZ_SERVER_PRINT set, what the connection got goes to stderr (to see what a seed reaches). */
#include "../../runtime/serve/server.c"

#include "fuzz_tok.h"

enum { VOCAB = 384, LAYERS = 2, EXPERTS = 4 };

/* A broken promise: which check, then abort (libFuzzer keeps the input). */
#define FAIL() (fprintf(stderr, "fuzz_server.c:%d: check failed\n", __LINE__), abort())

static MoeJinja *template_file(const char *name) {
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/tests/data/chat_templates/%s", MOEC_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    char src[16384];
    size_t n = fread(src, 1, sizeof src - 1, f);
    fclose(f);
    src[n] = 0;
    MoeJinja *t = moe_jinja_parse(src, err, sizeof err);
    if (!t) abort();
    return t;
}

/* ---- what the connection got ----------------------------------------------------------------- */

static const char *find(const char *p, const char *end, const char *s) {
    size_t n = strlen(s);
    for (; p + n <= end; p++)
        if (!memcmp(p, s, n)) return p;
    return NULL;
}

/* A JSON object (an OpenAI error object when status >= 400). */
static void check_json(const char *p, size_t n, int status) {
    char err[256];
    JsonDoc *d = json_parse(p, n, err, sizeof err);
    if (!d) fprintf(stderr, "not JSON (%s): %.*s\n", err, (int)(n > 300 ? 300 : n), p);
    if (!d || json_root(d)->type != JSON_OBJECT) FAIL();
    const JsonValue *e = json_get(json_root(d), "error"), *st = json_get(json_root(d), "status");
    if (status == 503 && !e) { /* /health while shutting down */
        if (!st || st->type != JSON_STRING || strcmp(st->str, "shutting down")) FAIL();
    } else if (status >= 400) {
        const JsonValue *msg = json_get(e, "message"), *type = json_get(e, "type");
        const JsonValue *code = json_get(e, "code"), *param = json_get(e, "param");
        if (!msg || msg->type != JSON_STRING || !msg->len || !type || type->type != JSON_STRING) FAIL();
        if (!code || (code->type != JSON_STRING && code->type != JSON_NULL)) FAIL();
        if (!param || (param->type != JSON_STRING && param->type != JSON_NULL)) FAIL();
    }
    json_free(d);
}

static bool allowed(int status, bool failed) {
    switch (status) {
    case 100: case 200: case 400: case 401: case 404: case 405: case 413: case 431: case 501: case 503: case 505:
        return true;
    case 500:
        return failed; /* only the fake engine's failure (no allocation fails here) */
    default:
        return false;
    }
}

/* out[0, len): responses, one after another; a stream of events is the last. */
static void check_output(const char *out, size_t len, bool failed) {
    if (!len) return; /* nothing answered yet: the request is incomplete */
    const char *p = out, *end = out + len;
    while (p < end) {
        if (end - p < 17 || memcmp(p, "HTTP/1.1 ", 9)) FAIL();
        int status = atoi(p + 9);
        if (!allowed(status, failed)) FAIL();
        const char *head_end = find(p, end, "\r\n\r\n");
        if (!head_end) FAIL();
        const char *body = head_end + 4;
        if (status == 100) {
            p = body;
            continue;
        }
        const char *type = find(p, head_end, "\r\nContent-Type: "), *cl = find(p, head_end, "\r\nContent-Length: ");
        if (!type) FAIL();
        type += 16;
        if (!cl) { /* server-sent events to the end */
            if (status != 200 || strncmp(type, "text/event-stream", 17)) FAIL();
            bool done = false;
            for (p = body; p < end;) {
                const char *ev_end = find(p, end, "\n\n");
                if (done || !ev_end || memcmp(p, "data: ", 6)) FAIL();
                if (ev_end - p == 12 && !memcmp(p + 6, "[DONE]", 6)) done = true;
                else check_json(p + 6, (size_t)(ev_end - p - 6), 200);
                p = ev_end + 2;
            }
            return;
        }
        char *num_end;
        long long n = strtoll(cl + 18, &num_end, 10);
        if (n < 0 || n > end - body || num_end > head_end || memcmp(num_end, "\r\n", 2)) FAIL();
        if (!strncmp(type, "application/json", 16)) check_json(body, (size_t)n, status);
        else if (strncmp(type, "text/plain", 10) || status != 200) FAIL();
        p = body + n;
    }
}

/* ---- the fake engine ------------------------------------------------------------------------- */

/* What engine.h promises of a Req the server submits. */
static void check_req(const Server *S, const Conn *c, const Req *r) {
    const int64_t ctx = S->mf->context;
    if (r->user != c || r->n_prompt < 1 || r->n_prompt > ctx || !r->prompt) FAIL();
    if (r->max_tokens < 1 || r->n_prompt + r->max_tokens - 1 > ctx) FAIL();
    for (int64_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= VOCAB) FAIL();
    if (!(r->temp >= 0 && r->temp <= 100) || !(r->top_p > 0 && r->top_p <= 1) || r->top_k < 0) FAIL();
    if (r->n_stop < 0 || r->n_stop > 4 || (r->n_stop && !r->stop)) FAIL();
    for (int i = 0; i < r->n_stop; i++)
        if (!r->stop[i] || !r->stop[i][0]) FAIL();
}

/* Plays the engine thread for c's request: admit, release text step by step (pumping between
 * steps, as a wake-up would), end it. True when it ended failed (a 500 may follow). */
static bool run_req(Server *S, Conn *c, uint8_t how) {
    Engine *e = &S->e;
    Req *r = c->req;
    check_req(S, c, r);
    pthread_mutex_lock(&e->mu);
    if (e->q_head != r || r->next || !r->queued || r->refs != 2) FAIL(); /* one connection, one request */
    e->q_head = e->q_tail = NULL;
    e->q_len--;
    r->queued = false;
    e->busy++;
    pthread_mutex_unlock(&e->mu);

    /* the generated text: around one of the stop strings (or a proper prefix of it at the end) */
    char text[512];
    size_t len = (size_t)snprintf(text, sizeof text, "Hello \xe4\xb8\xad ");
    if (r->n_stop) {
        const char *s = r->stop[(how >> 5 & 3) % r->n_stop];
        size_t n = strlen(s);
        if (how & 0x80) n--;
        if (n > sizeof text - len - 16) n = sizeof text - len - 16;
        memcpy(text + len, s, n), len += n;
    }
    if (!(how & 0x80)) len += (size_t)snprintf(text + len, sizeof text - len, " world");
    size_t step = (size_t)(how >> 2 & 7) + 1, have = 0, sent = 0;
    int end = how & 3; /* 0 stop, 1 length, 2 failed, 3 cancelled */
    bool hit = false;
    while (!hit) {
        have = have + step < len ? have + step : len;
        bool final = have == len && end < 2;
        size_t to = engine_stop_scan(text, have, sent, r->stop, r->n_stop, final, &hit);
        if (to < sent || to > have) FAIL();
        if (hit) { /* a stop string starts there, and none earlier in the unreleased text */
            bool at = false;
            for (int i = 0; i < r->n_stop; i++) at |= !strncmp(text + to, r->stop[i], strlen(r->stop[i])) &&
                                                     to + strlen(r->stop[i]) <= have;
            if (!at) FAIL();
        } else if (!final && to < have) { /* held back: a proper prefix of a stop string */
            bool prefix = false;
            for (int i = 0; i < r->n_stop; i++)
                prefix |= strlen(r->stop[i]) > have - to && !memcmp(text + to, r->stop[i], have - to);
            if (!prefix) FAIL();
        } else if (to != have) FAIL();
        pthread_mutex_lock(&e->mu);
        if (to > sent) {
            char *p = realloc(r->out, r->out_len + (to - sent));
            if (!p) FAIL();
            r->out = p;
            memcpy(r->out + r->out_len, text + sent, to - sent);
            r->out_len += to - sent;
        }
        r->n_gen++;
        pthread_mutex_unlock(&e->mu);
        sent = to;
        pump(S, c);
        if (have == len) break;
    }
    pthread_mutex_lock(&e->mu);
    e->busy--;
    r->done = true;
    r->finish = hit || end == 0 ? "stop" : end == 1 ? "length" : NULL;
    if (!r->finish && end == 2) snprintf(r->error, sizeof r->error, "the model failed: %s", "fake");
    bool failed = r->error[0] != 0;
    engine_unref_locked(r); /* the engine's reference; c's is dropped by pump */
    pthread_mutex_unlock(&e->mu);
    pump(S, c);
    if (c->req) FAIL(); /* pump drops a request that is done */
    return failed;
}

/* ---- the target ------------------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static MoeTokenizer *tok;
    static MoeJinja *templates[2];
    static char *bos, *eos;
    if (!tok) {
        tok = fuzz_synth_tokenizer(VOCAB);
        templates[0] = template_file("mixtral.jinja");
        templates[1] = template_file("qwen3_moe.jinja");
        bos = token_str(tok, moe_tok_bos(tok));
        eos = token_str(tok, moe_tok_eos(tok));
        if (!bos || !eos) abort();
    }
    if (size < 2) return 0;
    uint8_t setup = data[0], how = data[1];
    ServeOptions o = moe_serve_defaults();
    o.name = "tiny";
    o.api_key = setup & 4 ? "k" : NULL;
    o.metrics = setup & 8;
    if (setup & 0x40) o.max_head = 256, o.max_body = 96;
    static MoeManifest mf;
    mf.vocab_size = VOCAB, mf.n_layers = LAYERS, mf.n_exp = EXPERTS, mf.top_k = 2;
    mf.context = setup & 0x80 ? 8 : 256;
    mf.routes_prefill[0] = 0, mf.routes_prefill[1] = -1; /* one MoE layer, one dense */

    Server S0 = {0}, *S = &S0;
    S->o = &o;
    S->mf = &mf;
    S->tok = tok;
    S->bos = bos, S->eos = eos;
    S->t_start = 1700000000;
    S->lfd = S->wake_r = S->wake_w = S->sfd = -1;
    S->draining = setup & 0x10;
    int pick = setup & 3;
    if (pick == 1 || pick == 2) S->chat = templates[pick - 1];
    if (pick == 3) snprintf(S->chat_err, sizeof S->chat_err, "the model's chat template cannot be used: %s", "bad");
    Engine *e = &S->e; /* never started: engine_submit only queues */
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->tok = tok;
    e->eos = moe_tok_eos(tok);
    e->vocab = VOCAB, e->context = mf.context, e->chunk = 16;
    e->n_layers = LAYERS, e->n_exp = EXPERTS;
    e->B = 2;
    e->q_max = setup & 0x20 ? 0 : 4;
    e->busy = setup & 0x20 ? e->B : 0;
    e->wake_fd = -1;
    if (!(e->st.experts = calloc(LAYERS * (EXPERTS + 1), sizeof(int64_t)))) abort();
    for (int i = 0; i < LAYERS * (EXPERTS + 1); i++) e->st.experts[i] = i * 3;

    Conn *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->fd = -1;
    c->in_len = c->in_cap = size - 2;
    if (!(c->in = malloc(c->in_len ? c->in_len : 1))) abort(); /* exact size: ASan sees a read past the end */
    memcpy(c->in, data + 2, c->in_len);
    S->conns = &c;
    S->n_conns = 1;

    bool failed = false;
    for (;;) {
        size_t before = c->in_len;
        process(S, c);
        if (c->req) failed |= run_req(S, c, how);
        else if (c->in_len == before || c->close_after) break; /* waits for more bytes, or done */
    }
    if (e->q_len || e->q_head) FAIL();
    if (getenv("FUZZ_SERVER_PRINT")) fwrite(c->out.p ? c->out.p : "", 1, c->out.len, stderr); /* to see a seed's answers */
    check_output(c->out.p, c->out.len, failed);
    if (c->out.oom || S->tmp.oom) FAIL();

    conn_close(S, 0);
    jb_free(&S->tmp);
    free(e->st.experts);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    return 0;
}
