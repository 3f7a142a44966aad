/* server: see server.h. The I/O loop, in the order one poll round handles things:
 *
 *   signals   first SIGINT/SIGTERM: stop listening, queued requests get 503, running ones finish
 *             (at most DRAIN_S seconds); a second one (or the deadline) cancels them
 *   wake-ups  the engine released text or ended requests: pump every connection that has one
 *   accept    new connections (non-blocking; beyond max_conns answered 503 and closed)
 *   each      read what arrived (bounded by max_head + max_body), parse and answer complete
 *   connection requests in order, write what is pending; a peer that hangs up cancels its request
 *   timers    idle or slow connections are closed after idle_s seconds
 *
 * A connection has at most one completion in flight; pipelined requests wait in its buffer. */
#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "http.h"
#include "json.h"
#include "model.h"
#include "moe.h"
#include "outfile.h"
#include "tokenizer.h"
#include "jinja.h"

#define DRAIN_S 30.0 /* seconds running requests get to finish after SIGINT/SIGTERM */

typedef struct Conn {
    int fd;
    char *in;                /* received, not yet consumed */
    size_t in_len, in_cap;
    JsonBuf out;             /* to send, from out_off */
    size_t out_off;
    double last;             /* time of the last progress */
    bool close_after;        /* close once out is sent */
    bool continue_sent;
    bool keep_alive;         /* of the request in flight */
    double linger_until;     /* > 0: answered and shut down for writing; what arrives is read and dropped
                              * until the peer closes or this time, so that it gets the answer, not a reset */
    /* the completion in flight */
    Req *req;
    bool stream, chat, include_usage;
    char id[48];
    int64_t created;
    JsonBuf text;            /* not streaming: the text so far */
} Conn;

typedef struct Server {
    const ServeOptions *o;
    const MoeManifest *mf;
    MoeModel *m;
    MoeTokenizer *tok;
    Engine e;
    bool engine_up;
    int lfd, wake_r, wake_w, sfd;
    Conn **conns;            /* [n_conns] */
    int n_conns;
    struct pollfd *pfd;      /* [3 + max_conns] */
    bool draining, cancelled;
    double drain_deadline;
    uint64_t next_id;
    int64_t t_start;
    int64_t status_count[600];
    JsonBuf tmp;
    MoeJinja *chat;          /* the model's chat template, NULL: none (or it did not parse: chat_err) */
    char chat_err[256];
    char *bos, *eos;         /* the tokenizer's BOS and EOS strings, "" when none */
} Server;

static double now_s(void) { return moe_now_s(); }

/* ---- responses ------------------------------------------------------------------------------- */

static void count_status(Server *S, int status) {
    if (status >= 100 && status < 600) S->status_count[status]++;
}

static void respond(Server *S, Conn *c, int status, const char *type, const JsonBuf *body, bool keep_alive,
                    const char *extra) {
    count_status(S, status);
    http_write_head(&c->out, status, type, (int64_t)body->len, keep_alive, extra);
    jb_raw(&c->out, body->p ? body->p : "", body->len);
    if (!keep_alive) c->close_after = true;
}

/* An OpenAI-style error: {"error":{"message","type","param","code"}}; extra: header lines or NULL. */
static void verror(Server *S, Conn *c, int status, const char *extra, const char *code, const char *param,
                   bool keep_alive, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    const char *type = status == 401 ? "authentication_error"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    JsonBuf *b = &S->tmp;
    jb_reset(b);
    jb_obj(b);
    jb_key(b, "error");
    jb_obj(b);
    jb_key(b, "message");
    jb_cstr(b, msg);
    jb_key(b, "type");
    jb_cstr(b, type);
    jb_key(b, "param");
    if (param) jb_cstr(b, param);
    else jb_null(b);
    jb_key(b, "code");
    if (code) jb_cstr(b, code);
    else jb_null(b);
    jb_obj_end(b);
    jb_obj_end(b);
    jb_raw(b, "\n", 1);
    respond(S, c, status, "application/json", b, keep_alive, extra);
}

static void respond_error(Server *S, Conn *c, int status, const char *code, const char *param, bool keep_alive,
                          const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void respond_error(Server *S, Conn *c, int status, const char *code, const char *param, bool keep_alive,
                          const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(S, c, status, NULL, code, param, keep_alive, fmt, ap);
    va_end(ap);
}

/* 405 with the Allow header. */
static void respond_405(Server *S, Conn *c, const char *allow, bool keep_alive, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void respond_405(Server *S, Conn *c, const char *allow, bool keep_alive, const char *fmt, ...) {
    char extra[64];
    snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
    va_list ap;
    va_start(ap, fmt);
    verror(S, c, 405, extra, "method_not_allowed", NULL, keep_alive, fmt, ap);
    va_end(ap);
}

/* ---- the small endpoints --------------------------------------------------------------------- */

static void get_models(Server *S, Conn *c, bool keep_alive) {
    JsonBuf *b = &S->tmp;
    jb_reset(b);
    jb_obj(b);
    jb_key(b, "object");
    jb_cstr(b, "list");
    jb_key(b, "data");
    jb_arr(b);
    jb_obj(b);
    jb_key(b, "id");
    jb_cstr(b, S->o->name);
    jb_key(b, "object");
    jb_cstr(b, "model");
    jb_key(b, "created");
    jb_int(b, S->t_start);
    jb_key(b, "owned_by");
    jb_cstr(b, "moec");
    jb_key(b, "context_length");
    jb_int(b, S->mf->context);
    jb_obj_end(b);
    jb_arr_end(b);
    jb_obj_end(b);
    jb_raw(b, "\n", 1);
    respond(S, c, 200, "application/json", b, keep_alive, NULL);
}

static void get_health(Server *S, Conn *c, bool keep_alive) {
    pthread_mutex_lock(&S->e.mu);
    int busy = S->e.busy, queued = S->e.q_len;
    pthread_mutex_unlock(&S->e.mu);
    JsonBuf *b = &S->tmp;
    jb_reset(b);
    jb_obj(b);
    jb_key(b, "status");
    jb_cstr(b, S->draining ? "shutting down" : "ok");
    jb_key(b, "slots_total");
    jb_int(b, S->e.B);
    jb_key(b, "slots_busy");
    jb_int(b, busy);
    jb_key(b, "queue");
    jb_int(b, queued);
    jb_key(b, "queue_max");
    jb_int(b, S->e.q_max);
    jb_obj_end(b);
    jb_raw(b, "\n", 1);
    respond(S, c, S->draining ? 503 : 200, "application/json", b, keep_alive, NULL);
}

/* Prometheus text format 0.0.4. */
static void get_metrics(Server *S, Conn *c, bool keep_alive) {
    JsonBuf *b = &S->tmp;
    jb_reset(b);
    pthread_mutex_lock(&S->e.mu);
    EngineStats st = S->e.st;
    int busy = S->e.busy, queued = S->e.q_len;
    int64_t *ex = NULL;
    size_t ex_n = (size_t)S->e.n_layers * (size_t)(S->e.n_exp + 1);
    if ((ex = malloc(sizeof(int64_t) * (ex_n ? ex_n : 1)))) memcpy(ex, st.experts, sizeof(int64_t) * ex_n);
    pthread_mutex_unlock(&S->e.mu);
    count_status(S, 200); /* this response, counted in itself */
    jb_printf(b, "# HELP moe_http_requests_total HTTP requests answered, by status code.\n"
                 "# TYPE moe_http_requests_total counter\n");
    for (int s = 100; s < 600; s++)
        if (S->status_count[s]) jb_printf(b, "moe_http_requests_total{code=\"%d\"} %" PRId64 "\n", s, S->status_count[s]);
    S->status_count[200]--;
    jb_printf(b,
              "# HELP moe_completions_total Completions that ended, by how.\n"
              "# TYPE moe_completions_total counter\n"
              "moe_completions_total{result=\"done\"} %" PRId64 "\n"
              "moe_completions_total{result=\"cancelled\"} %" PRId64 "\n"
              "moe_completions_total{result=\"failed\"} %" PRId64 "\n"
              "# HELP moe_prompt_tokens_total Prompt tokens of ended completions.\n"
              "# TYPE moe_prompt_tokens_total counter\n"
              "moe_prompt_tokens_total %" PRId64 "\n"
              "# HELP moe_generated_tokens_total Tokens generated by ended completions.\n"
              "# TYPE moe_generated_tokens_total counter\n"
              "moe_generated_tokens_total %" PRId64 "\n"
              "# HELP moe_engine_busy_seconds_total Wall time the engine spent in model steps.\n"
              "# TYPE moe_engine_busy_seconds_total counter\n"
              "moe_engine_busy_seconds_total %.6f\n"
              "# HELP moe_decode_steps_total Batched decode steps.\n"
              "# TYPE moe_decode_steps_total counter\n"
              "moe_decode_steps_total %" PRId64 "\n"
              "# HELP moe_generated_tokens_per_second Generated tokens per second of engine time.\n"
              "# TYPE moe_generated_tokens_per_second gauge\n"
              "moe_generated_tokens_per_second %.3f\n"
              "# HELP moe_queue_length Requests waiting for a slot.\n"
              "# TYPE moe_queue_length gauge\n"
              "moe_queue_length %d\n"
              "# HELP moe_queue_capacity Requests the queue holds before answering 503.\n"
              "# TYPE moe_queue_capacity gauge\n"
              "moe_queue_capacity %d\n"
              "# HELP moe_slots_busy Batch slots holding a sequence.\n"
              "# TYPE moe_slots_busy gauge\n"
              "moe_slots_busy %d\n"
              "# HELP moe_slots_total Batch slots of the compiled model.\n"
              "# TYPE moe_slots_total gauge\n"
              "moe_slots_total %d\n"
              "# HELP moe_connections Open client connections.\n"
              "# TYPE moe_connections gauge\n"
              "moe_connections %d\n",
              st.requests_done, st.requests_cancelled, st.requests_failed, st.prompt_tokens, st.gen_tokens, st.busy_s,
              st.decode_steps, st.busy_s > 0 ? (double)st.gen_tokens / st.busy_s : 0.0, queued, S->e.q_max, busy,
              S->e.B, S->n_conns);
    if (ex) {
        const int E = S->e.n_exp;
        jb_printf(b, "# HELP moe_expert_tokens_total Tokens routed to each expert, per layer (ended completions).\n"
                     "# TYPE moe_expert_tokens_total counter\n");
        for (int l = 0; l < S->e.n_layers; l++)
            for (int x = 0; S->mf->routes_prefill[l] >= 0 && x < E; x++)
                jb_printf(b, "moe_expert_tokens_total{layer=\"%d\",expert=\"%d\"} %" PRId64 "\n", l, x,
                          ex[(size_t)l * (size_t)(E + 1) + (size_t)x]);
        jb_printf(b, "# HELP moe_expert_utilisation Share of a layer's routed tokens each expert took.\n"
                     "# TYPE moe_expert_utilisation gauge\n");
        for (int l = 0; l < S->e.n_layers; l++) {
            const int64_t *row = ex + (size_t)l * (size_t)(E + 1);
            int64_t sum = 0;
            for (int x = 0; x < E; x++) sum += row[x];
            for (int x = 0; S->mf->routes_prefill[l] >= 0 && x < E; x++)
                jb_printf(b, "moe_expert_utilisation{layer=\"%d\",expert=\"%d\"} %.6f\n", l, x,
                          sum ? (double)row[x] / (double)sum : 0.0);
        }
        jb_printf(b, "# HELP moe_expert_dropped_total Assignments dropped by expert capacity, per layer.\n"
                     "# TYPE moe_expert_dropped_total counter\n");
        for (int l = 0; l < S->e.n_layers; l++)
            if (S->mf->routes_prefill[l] >= 0)
                jb_printf(b, "moe_expert_dropped_total{layer=\"%d\"} %" PRId64 "\n", l,
                          ex[(size_t)l * (size_t)(E + 1) + (size_t)E]);
        free(ex);
    }
    respond(S, c, 200, "text/plain; version=0.0.4; charset=utf-8", b, keep_alive, NULL);
}

/* ---- completions ----------------------------------------------------------------------------- */

typedef struct ChatMsg {
    const char *role, *content;
} ChatMsg;

/* The prompt text of a chat: msgs[n] rendered with the model's chat template, with the generation
 * prompt added; *out malloc'd. False with an error code and message when it cannot be rendered. */
static bool render_chat(Server *S, const ChatMsg *msgs, int n, char **out, const char **code, char *err,
                        size_t errlen) {
    if (S->chat) {
        MoeChatMessage *m = malloc(sizeof *m * (size_t)n);
        if (!m) {
            *code = NULL;
            snprintf(err, errlen, "out of memory");
            return false;
        }
        for (int i = 0; i < n; i++) m[i] = (MoeChatMessage){msgs[i].role, msgs[i].content};
        int rc = moe_chat_render(S->chat, m, n, true, S->bos, S->eos, out, err, errlen);
        free(m);
        *code = "chat_template_error";
        return rc == 0;
    }
    if (S->chat_err[0]) {
        *code = "chat_template_error";
        snprintf(err, errlen, "%s", S->chat_err);
        return false;
    }
    *code = "chat_template_missing";
    snprintf(err, errlen, "this model has no chat template: use /v1/completions with a prompt");
    return false;
}

/* The token's string as a malloc'd C string ("" for none). */
static char *token_str(const MoeTokenizer *t, int32_t id) {
    size_t n = 0;
    const char *p = id >= 0 ? moe_tok_token(t, id, &n) : NULL;
    char *s = malloc(n + 1);
    if (s) memcpy(s, p ? p : "", n), s[n] = 0;
    return s;
}

/* Parses the model's chat template, if it has one; a template that does not parse is reported on
 * stderr and makes chat requests fail with its message. */
static void load_chat(Server *S) {
    uint64_t bytes;
    const char *src = moert_model_chat_template(S->m, &bytes);
    S->bos = token_str(S->tok, moe_tok_bos(S->tok));
    S->eos = token_str(S->tok, moe_tok_eos(S->tok));
    if (!src) return;
    char err[200];
    if (!(S->chat = moe_jinja_parse(src, err, sizeof err))) {
        snprintf(S->chat_err, sizeof S->chat_err, "the model's chat template cannot be used: %s", err);
        fprintf(stderr, "%s: warning: %s\n", S->o->name, S->chat_err);
    }
}

/* Sampling and length fields of a completion request into r; false after an error response. */
static bool parse_params(Server *S, Conn *c, const JsonValue *root, bool chat, Req *r, int64_t *max_tokens) {
    const JsonValue *v;
    int64_t i;
    r->temp = 1.0, r->top_p = 1.0, r->top_k = 0;
    r->seed = (uint64_t)time(NULL) ^ (S->next_id * 0x9E3779B97F4A7C15ull);
    *max_tokens = -1;
    if ((v = json_get(root, "max_tokens")) && v->type != JSON_NULL) {
        if (!json_int(v, 1, INT32_MAX, &i)) goto bad_max;
        *max_tokens = i;
    }
    if (chat && (v = json_get(root, "max_completion_tokens")) && v->type != JSON_NULL) {
        if (!json_int(v, 1, INT32_MAX, &i)) goto bad_max;
        *max_tokens = i;
    }
    if ((v = json_get(root, "temperature")) && v->type != JSON_NULL) {
        if (v->type != JSON_NUMBER || !(v->num >= 0 && v->num <= 100)) {
            respond_error(S, c, 400, "invalid_value", "temperature", c->keep_alive,
                          "temperature: expected a number in [0, 100]");
            return false;
        }
        r->temp = v->num;
    }
    if ((v = json_get(root, "top_p")) && v->type != JSON_NULL) {
        if (v->type != JSON_NUMBER || !(v->num > 0 && v->num <= 1)) {
            respond_error(S, c, 400, "invalid_value", "top_p", c->keep_alive, "top_p: expected a number in (0, 1]");
            return false;
        }
        r->top_p = v->num;
    }
    if ((v = json_get(root, "top_k")) && v->type != JSON_NULL) {
        if (!json_int(v, -1, INT32_MAX, &i)) {
            respond_error(S, c, 400, "invalid_value", "top_k", c->keep_alive, "top_k: expected an integer >= -1");
            return false;
        }
        r->top_k = i < 0 ? 0 : i;
    }
    if ((v = json_get(root, "seed")) && v->type != JSON_NULL) {
        if (!json_int(v, INT64_MIN, INT64_MAX, &i)) {
            respond_error(S, c, 400, "invalid_value", "seed", c->keep_alive, "seed: expected an integer");
            return false;
        }
        r->seed = (uint64_t)i;
    }
    if ((v = json_get(root, "n")) && v->type != JSON_NULL && !(json_int(v, 1, 1, &i))) {
        respond_error(S, c, 400, "invalid_value", "n", c->keep_alive, "n: only 1 is supported");
        return false;
    }
    if ((v = json_get(root, "stop")) && v->type != JSON_NULL) {
        const JsonValue *one = v->type == JSON_STRING ? v : v->child;
        int n = v->type == JSON_STRING ? 1 : (int)v->len;
        if ((v->type != JSON_STRING && v->type != JSON_ARRAY) || n > 4) {
            respond_error(S, c, 400, "invalid_value", "stop", c->keep_alive,
                          "stop: expected a string or an array of at most 4 strings");
            return false;
        }
        if (n && !(r->stop = calloc((size_t)n, sizeof(char *)))) goto nomem;
        for (int k = 0; k < n; k++, one = one->next) {
            if (one->type != JSON_STRING) {
                respond_error(S, c, 400, "invalid_value", "stop", c->keep_alive, "stop: expected strings");
                return false;
            }
            if (one->len == 0) continue;
            if (!(r->stop[r->n_stop] = malloc(one->len + 1))) goto nomem;
            memcpy(r->stop[r->n_stop], one->str, one->len + 1);
            r->n_stop++;
        }
    }
    if ((v = json_get(root, "stream")) && v->type != JSON_NULL) {
        if (v->type != JSON_TRUE && v->type != JSON_FALSE) {
            respond_error(S, c, 400, "invalid_value", "stream", c->keep_alive, "stream: expected true or false");
            return false;
        }
        c->stream = v->type == JSON_TRUE;
    }
    v = json_get(json_get(root, "stream_options"), "include_usage");
    c->include_usage = v && v->type == JSON_TRUE;
    return true;
bad_max:
    respond_error(S, c, 400, "invalid_value", "max_tokens", c->keep_alive, "max_tokens: expected an integer >= 1");
    return false;
nomem:
    respond_error(S, c, 500, NULL, NULL, c->keep_alive, "out of memory");
    return false;
}

/* The prompt ids of a completion request into r; false after an error response. */
static bool parse_prompt(Server *S, Conn *c, const JsonValue *root, bool chat, Req *r) {
    const JsonValue *v;
    char *text = NULL;
    size_t text_len = 0;
    bool add_special = true;
    if (chat) {
        v = json_get(root, "messages");
        if (!v || v->type != JSON_ARRAY || v->len == 0 || v->len > 4096) {
            respond_error(S, c, 400, "invalid_value", "messages", c->keep_alive,
                          "messages: expected a non-empty array of {\"role\", \"content\"} objects");
            return false;
        }
        ChatMsg *msgs = calloc(v->len, sizeof *msgs);
        char **owned = calloc(v->len, sizeof *owned);
        int n = 0;
        bool ok = msgs && owned;
        for (const JsonValue *m = v->child; ok && m; m = m->next, n++) {
            const JsonValue *role = json_get(m, "role"), *content = json_get(m, "content");
            if (!role || role->type != JSON_STRING) ok = false;
            else if (content && content->type == JSON_STRING) msgs[n] = (ChatMsg){role->str, content->str};
            else if (content && content->type == JSON_ARRAY) { /* [{"type": "text", "text": ...}, ...] */
                JsonBuf all = {0};
                for (const JsonValue *part = content->child; ok && part; part = part->next) {
                    const JsonValue *t = json_get(part, "text");
                    if (!t || t->type != JSON_STRING) ok = false;
                    else jb_raw(&all, t->str, t->len);
                }
                jb_raw(&all, "", 0);
                owned[n] = all.p;
                if (all.oom) ok = false;
                msgs[n] = (ChatMsg){role->str, all.p ? all.p : ""};
            } else if (!content || content->type == JSON_NULL) msgs[n] = (ChatMsg){role->str, ""};
            else ok = false;
        }
        char err[256];
        const char *code = NULL;
        if (!ok) {
            respond_error(S, c, 400, "invalid_value", "messages", c->keep_alive,
                          "messages: each must be an object with a string \"role\" and a string (or text parts) \"content\"");
        } else if (!render_chat(S, msgs, n, &text, &code, err, sizeof err)) {
            respond_error(S, c, code ? 400 : 500, code, "messages", c->keep_alive, "%s", err);
            ok = false;
        }
        for (int k = 0; owned && k < (int)v->len; k++) free(owned[k]);
        free(owned);
        free(msgs);
        if (!ok) return false;
        text_len = strlen(text);
        add_special = false; /* the template writes the special tokens it wants */
    } else {
        v = json_get(root, "prompt");
        if (v && v->type == JSON_ARRAY && v->len == 1 && v->child->type == JSON_STRING) v = v->child;
        if (v && v->type == JSON_ARRAY && v->len > 0 && v->child->type == JSON_NUMBER) { /* token ids */
            if (!(r->prompt = malloc(sizeof(int32_t) * v->len))) {
                respond_error(S, c, 500, NULL, NULL, c->keep_alive, "out of memory");
                return false;
            }
            for (const JsonValue *t = v->child; t; t = t->next) {
                int64_t id;
                if (!json_int(t, 0, S->mf->vocab_size - 1, &id)) {
                    respond_error(S, c, 400, "invalid_value", "prompt", c->keep_alive,
                                  "prompt: token ids must be integers in [0, %" PRId64 ")", S->mf->vocab_size);
                    return false;
                }
                r->prompt[r->n_prompt++] = (int32_t)id;
            }
            return true;
        }
        if (!v || v->type != JSON_STRING) {
            respond_error(S, c, 400, "invalid_value", "prompt", c->keep_alive,
                          "prompt: expected a string (or one string in an array, or an array of token ids)");
            return false;
        }
        text = (char *)v->str;
        text_len = v->len;
    }
    size_t n = 0;
    int st = moe_tok_encode(S->tok, text, text_len, add_special, &r->prompt, &n);
    if (chat) free(text);
    if (st != MOE_TOK_OK) {
        respond_error(S, c, st == MOE_TOK_ENOMEM ? 500 : 400, NULL, "prompt", c->keep_alive, "the prompt cannot be tokenized");
        return false;
    }
    r->n_prompt = (int64_t)n;
    return true;
}

static void completion_head(Server *S, Conn *c, JsonBuf *b, bool chunk);

static void new_completion(Server *S, Conn *c, const char *body, size_t len, bool chat) {
    char err[256];
    JsonDoc *d = json_parse(body, len, err, sizeof err);
    if (!d) {
        respond_error(S, c, 400, "invalid_json", NULL, c->keep_alive, "the body is not valid JSON: %s", err);
        return;
    }
    const JsonValue *root = json_root(d);
    Req *r = engine_req_new();
    int64_t max_tokens;
    c->stream = c->include_usage = false;
    if (!r) {
        respond_error(S, c, 500, NULL, NULL, c->keep_alive, "out of memory");
    } else if (root->type != JSON_OBJECT) {
        respond_error(S, c, 400, "invalid_value", NULL, c->keep_alive, "the body must be a JSON object");
    } else if (parse_params(S, c, root, chat, r, &max_tokens) && parse_prompt(S, c, root, chat, r)) {
        const int64_t ctx = S->mf->context;
        if (r->n_prompt == 0) {
            respond_error(S, c, 400, "invalid_value", chat ? "messages" : "prompt", c->keep_alive,
                          "the prompt is empty: expected at least one token");
        } else if (r->n_prompt > ctx) {
            respond_error(S, c, 400, "context_length_exceeded", chat ? "messages" : "prompt", c->keep_alive,
                          "the prompt is %" PRId64 " tokens; this model's context is %" PRId64 " tokens", r->n_prompt,
                          ctx);
        } else {
            int64_t room = ctx - r->n_prompt + 1; /* the last generated token is never fed */
            if (max_tokens < 0) max_tokens = chat ? room : 16;
            r->max_tokens = max_tokens < room ? max_tokens : room;
            r->user = c;
            if (!engine_submit(&S->e, r)) {
                respond_error(S, c, 503, "queue_full", NULL, c->keep_alive,
                              S->draining ? "the server is shutting down"
                                          : "the server is busy: every slot is in use and the queue is full");
            } else {
                c->req = r;
                r = NULL;
                c->chat = chat;
                c->created = (int64_t)time(NULL);
                snprintf(c->id, sizeof c->id, "%s-%" PRIu64, chat ? "chatcmpl" : "cmpl", ++S->next_id);
                jb_reset(&c->text);
                if (c->stream) {
                    count_status(S, 200);
                    http_write_head(&c->out, 200, "text/event-stream", -1, false, "Cache-Control: no-cache\r\n");
                    if (chat) { /* the first chunk names the role */
                        JsonBuf *b = &S->tmp;
                        jb_reset(b);
                        jb_raw(b, "data: ", 6);
                        completion_head(S, c, b, true);
                        jb_obj(b);
                        jb_key(b, "index");
                        jb_int(b, 0);
                        jb_key(b, "delta");
                        jb_obj(b);
                        jb_key(b, "role");
                        jb_cstr(b, "assistant");
                        jb_key(b, "content");
                        jb_cstr(b, "");
                        jb_obj_end(b);
                        jb_key(b, "logprobs");
                        jb_null(b);
                        jb_key(b, "finish_reason");
                        jb_null(b);
                        jb_obj_end(b);
                        jb_arr_end(b);
                        jb_obj_end(b);
                        jb_raw(b, "\n\n", 2);
                        jb_raw(&c->out, b->p, b->len);
                    }
                }
            }
        }
    }
    if (r) {
        pthread_mutex_lock(&S->e.mu);
        engine_unref_locked(r);
        pthread_mutex_unlock(&S->e.mu);
    }
    json_free(d);
}

/* The head of a completion object or chunk, up to the opened "choices" array. */
static void completion_head(Server *S, Conn *c, JsonBuf *b, bool chunk) {
    jb_obj(b);
    jb_key(b, "id");
    jb_cstr(b, c->id);
    jb_key(b, "object");
    jb_cstr(b, c->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    jb_key(b, "created");
    jb_int(b, c->created);
    jb_key(b, "model");
    jb_cstr(b, S->o->name);
    jb_key(b, "choices");
    jb_arr(b);
}

static void usage(JsonBuf *b, const Req *r, int64_t n_gen) {
    jb_key(b, "usage");
    jb_obj(b);
    jb_key(b, "prompt_tokens");
    jb_int(b, r->n_prompt);
    jb_key(b, "completion_tokens");
    jb_int(b, n_gen);
    jb_key(b, "total_tokens");
    jb_int(b, r->n_prompt + n_gen);
    jb_obj_end(b);
}

/* One server-sent event with text (and the end when finish is not NULL). */
static void sse_chunk(Server *S, Conn *c, const char *text, size_t n, const char *finish) {
    JsonBuf *b = &S->tmp;
    jb_reset(b);
    jb_raw(b, "data: ", 6);
    completion_head(S, c, b, true);
    jb_obj(b);
    jb_key(b, "index");
    jb_int(b, 0);
    if (c->chat) {
        jb_key(b, "delta");
        jb_obj(b);
        if (!finish || n) {
            jb_key(b, "content");
            jb_str(b, text, n);
        }
        jb_obj_end(b);
    } else {
        jb_key(b, "text");
        jb_str(b, text, n);
    }
    jb_key(b, "logprobs");
    jb_null(b);
    jb_key(b, "finish_reason");
    if (finish) jb_cstr(b, finish);
    else jb_null(b);
    jb_obj_end(b);
    jb_arr_end(b);
    jb_obj_end(b);
    jb_raw(b, "\n\n", 2);
    jb_raw(&c->out, b->p, b->len);
}

static void drop_req(Server *S, Conn *c) {
    pthread_mutex_lock(&S->e.mu);
    engine_cancel_locked(&S->e, c->req);
    engine_unref_locked(c->req);
    pthread_mutex_unlock(&S->e.mu);
    c->req = NULL;
}

/* Moves what the engine released for c's request into c's output. */
static void pump(Server *S, Conn *c) {
    Req *r = c->req;
    pthread_mutex_lock(&S->e.mu);
    bool done = r->done;
    const char *finish = r->finish;
    int64_t n_gen = r->n_gen;
    char error[256];
    snprintf(error, sizeof error, "%s", r->error);
    size_t n = r->out_len;
    char *text = NULL;
    if (n && (text = malloc(n))) memcpy(text, r->out, n);
    if (text) r->out_len = 0;
    pthread_mutex_unlock(&S->e.mu);
    if (n && !text) return; /* out of memory: try again at the next wake-up */
    if (c->stream) {
        if (n) sse_chunk(S, c, text, n, NULL);
        if (done) {
            if (finish) {
                sse_chunk(S, c, "", 0, finish);
                if (c->include_usage) {
                    JsonBuf *b = &S->tmp;
                    jb_reset(b);
                    jb_raw(b, "data: ", 6);
                    completion_head(S, c, b, true);
                    jb_arr_end(b);
                    usage(b, r, n_gen);
                    jb_obj_end(b);
                    jb_raw(b, "\n\n", 2);
                    jb_raw(&c->out, b->p, b->len);
                }
            } else {
                static const char head[] = "data: {\"error\":{\"message\":",
                                  tail[] = ",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
                JsonBuf *b = &S->tmp;
                jb_reset(b);
                jb_raw(b, head, sizeof head - 1);
                jb_cstr(b, error[0] ? error : "the request was cancelled: the server is shutting down");
                jb_raw(b, tail, sizeof tail - 1); /* the blank line ends the event */
                jb_raw(&c->out, b->p, b->len);
            }
            jb_raw(&c->out, "data: [DONE]\n\n", 14);
            c->close_after = true;
            drop_req(S, c);
        }
    } else {
        if (n) jb_raw(&c->text, text, n);
        if (done) {
            if (!finish) {
                respond_error(S, c, error[0] ? 500 : 503, NULL, NULL, c->keep_alive, "%s",
                              error[0] ? error : "the request was cancelled: the server is shutting down");
            } else {
                JsonBuf *b = &S->tmp;
                jb_reset(b);
                completion_head(S, c, b, false);
                jb_obj(b);
                jb_key(b, "index");
                jb_int(b, 0);
                if (c->chat) {
                    jb_key(b, "message");
                    jb_obj(b);
                    jb_key(b, "role");
                    jb_cstr(b, "assistant");
                    jb_key(b, "content");
                    jb_str(b, c->text.p ? c->text.p : "", c->text.len);
                    jb_obj_end(b);
                } else {
                    jb_key(b, "text");
                    jb_str(b, c->text.p ? c->text.p : "", c->text.len);
                }
                jb_key(b, "logprobs");
                jb_null(b);
                jb_key(b, "finish_reason");
                jb_cstr(b, finish);
                jb_obj_end(b);
                jb_arr_end(b);
                usage(b, r, n_gen);
                jb_obj_end(b);
                jb_raw(b, "\n", 1);
                if (b->oom || c->text.oom) respond_error(S, c, 500, NULL, NULL, c->keep_alive, "out of memory");
                else respond(S, c, 200, "application/json", b, c->keep_alive, NULL);
            }
            drop_req(S, c);
            jb_reset(&c->text);
        }
    }
    free(text);
}

/* ---- requests -------------------------------------------------------------------------------- */

/* Constant-time comparison of the Authorization value with "Bearer KEY". */
static bool authorized(const Server *S, HttpSlice auth) {
    const char *key = S->o->api_key;
    if (!key) return true;
    size_t n = strlen(key);
    if (auth.n != n + 7 || memcmp(auth.p, "Bearer ", 7)) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(auth.p[7 + i] ^ key[i]);
    return diff == 0;
}

static void handle(Server *S, Conn *c, const HttpRequest *h, const char *body) {
    bool ka = c->keep_alive = h->keep_alive && !S->draining;
    bool get = http_eq(h->method, "GET"), post = http_eq(h->method, "POST");
    int which = http_eq(h->path, "/v1/completions")        ? 1
                : http_eq(h->path, "/v1/chat/completions") ? 2
                : http_eq(h->path, "/v1/models")           ? 3
                : http_eq(h->path, "/health")              ? 4
                : http_eq(h->path, "/metrics") && S->o->metrics ? 5
                                                                : 0;
    if (!which) {
        respond_error(S, c, 404, "not_found", NULL, ka, "no such endpoint: %.*s", (int)(h->path.n > 200 ? 200 : h->path.n),
                      h->path.p);
        return;
    }
    if ((which <= 2 && !post) || (which > 2 && !get)) {
        respond_405(S, c, which <= 2 ? "POST" : "GET", ka, "%.*s: expected %s", (int)h->path.n, h->path.p,
                    which <= 2 ? "POST" : "GET");
        return;
    }
    if (which != 4 && !authorized(S, h->authorization)) {
        respond_error(S, c, 401, "invalid_api_key", NULL, ka, "expected the header 'Authorization: Bearer <key>' with this server's key");
        return;
    }
    if (which == 3) get_models(S, c, ka);
    else if (which == 4) get_health(S, c, ka);
    else if (which == 5) get_metrics(S, c, ka);
    else if (S->draining) respond_error(S, c, 503, "shutting_down", NULL, ka, "the server is shutting down");
    else new_completion(S, c, body, (size_t)h->content_length, which == 2);
}

/* Answers every complete request in c's buffer, in order, until one is in flight. */
static void process(Server *S, Conn *c) {
    while (!c->req && !c->close_after && c->in_len) {
        HttpRequest h;
        int n = http_parse_head(c->in, c->in_len, (size_t)S->o->max_head, S->o->max_body, &h);
        if (n < 0) {
            respond_error(S, c, -n, NULL, NULL, false, "%s", -n == 413 ? "the request body is too large"
                                                           : -n == 431 ? "the request head is too large"
                                                           : -n == 501 ? "Transfer-Encoding is not supported: send Content-Length"
                                                           : -n == 505 ? "expected HTTP/1.x"
                                                                       : "malformed HTTP request");
            return;
        }
        if (n == 0) return;
        size_t total = (size_t)n + (size_t)h.content_length;
        if (c->in_len < total) {
            if (h.expect_continue && !c->continue_sent) {
                jb_raw(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
                c->continue_sent = true;
            }
            return;
        }
        c->continue_sent = false;
        handle(S, c, &h, c->in + n);
        memmove(c->in, c->in + total, c->in_len - total);
        c->in_len -= total;
    }
}

/* ---- connections ----------------------------------------------------------------------------- */

static void conn_close(Server *S, int i) {
    Conn *c = S->conns[i];
    if (c->req) drop_req(S, c);
    close(c->fd);
    free(c->in);
    jb_free(&c->out);
    jb_free(&c->text);
    free(c);
    S->conns[i] = S->conns[--S->n_conns];
}

/* Reads what is there; false when the peer is gone. */
static bool conn_read(Server *S, Conn *c) {
    size_t max = (size_t)(S->o->max_head + S->o->max_body);
    if (c->in_len == c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 4096;
        if (cap > max) cap = max;
        if (cap == c->in_cap) return true; /* full: the parser answers 413/431 or a request is in flight */
        char *p = realloc(c->in, cap);
        if (!p) return true;
        c->in = p, c->in_cap = cap;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n > 0) {
        c->in_len += (size_t)n;
        c->last = now_s();
        return true;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

/* Sends what is pending; false when the peer is gone. */
static bool conn_write(Conn *c) {
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        c->out_off += (size_t)n;
        c->last = now_s();
    }
    jb_reset(&c->out);
    c->out_off = 0;
    return true;
}

static void accept_all(Server *S) {
    for (;;) {
        int fd = accept4(S->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        Conn *c = S->n_conns < S->o->max_conns ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            static const char body[] = "{\"error\":{\"message\":\"too many connections\",\"type\":\"server_error\","
                                       "\"param\":null,\"code\":\"too_many_connections\"}}\n";
            char busy[256];
            int n = snprintf(busy, sizeof busy, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", sizeof body - 1, body);
            count_status(S, 503);
            (void)!send(fd, busy, (size_t)n, MSG_NOSIGNAL);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->last = now_s();
        S->conns[S->n_conns++] = c;
    }
}

/* ---- setup and the loop ---------------------------------------------------------------------- */

static int listen_on(const ServeOptions *o, char *shown, size_t shown_len) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int rc = getaddrinfo(o->host, port, &hints, &res);
    if (rc) {
        fprintf(stderr, "%s: error: --host %s: %s\n", o->name, o->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 128)) {
            err = errno;
            close(fd);
            fd = -1;
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char host[NI_MAXHOST], serv[NI_MAXSERV];
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(shown, shown_len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
    }
    freeaddrinfo(res);
    if (fd < 0) fprintf(stderr, "%s: error: cannot listen on %s port %d: %s\n", o->name, o->host, o->port, strerror(err));
    return fd;
}

ServeOptions moe_serve_defaults(void) {
    return (ServeOptions){.name = "moe", .host = "127.0.0.1", .port = 8080, .queue = 64, .max_conns = 256,
                          .max_body = 1 << 20, .max_head = 16 << 10, .idle_s = 60};
}

static void start_drain(Server *S) {
    S->draining = true;
    S->drain_deadline = now_s() + DRAIN_S;
    if (S->lfd >= 0) close(S->lfd);
    S->lfd = -1;
    pthread_mutex_lock(&S->e.mu);
    while (S->e.q_head) engine_cancel_locked(&S->e, S->e.q_head); /* answered 503 by pump */
    pthread_mutex_unlock(&S->e.mu);
}

static void cancel_all(Server *S) {
    S->cancelled = true;
    pthread_mutex_lock(&S->e.mu);
    for (int i = 0; i < S->n_conns; i++)
        if (S->conns[i]->req) engine_cancel_locked(&S->e, S->conns[i]->req);
    pthread_mutex_unlock(&S->e.mu);
}

static void loop(Server *S) {
    const ServeOptions *o = S->o;
    for (;;) {
        struct pollfd *p = S->pfd;
        p[0] = (struct pollfd){S->lfd, POLLIN, 0}; /* fd -1 is skipped by poll */
        p[1] = (struct pollfd){S->wake_r, POLLIN, 0};
        p[2] = (struct pollfd){S->sfd, POLLIN, 0};
        for (int i = 0; i < S->n_conns; i++) {
            Conn *c = S->conns[i];
            short ev = POLLRDHUP;
            if (c->linger_until > 0) ev = POLLIN;
            else if (c->in_len < (size_t)(o->max_head + o->max_body) && !c->close_after) ev |= POLLIN;
            if (c->out.len > c->out_off) ev |= POLLOUT;
            p[3 + i] = (struct pollfd){c->fd, ev, 0};
        }
        int n_polled = S->n_conns;
        if (poll(p, 3 + (nfds_t)n_polled, 500) < 0 && errno != EINTR) break;
        if (p[2].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(S->sfd, &si, sizeof si) == sizeof si) {
                if (!S->draining) {
                    fprintf(stderr, "serve: signal %u: finishing the running requests (again to cancel them)\n",
                            si.ssi_signo);
                    start_drain(S);
                } else if (!S->cancelled) {
                    fprintf(stderr, "serve: signal %u: cancelling the running requests\n", si.ssi_signo);
                    cancel_all(S);
                }
            }
        }
        if (p[1].revents & POLLIN) {
            char buf[256];
            while (read(S->wake_r, buf, sizeof buf) > 0) {
            }
        }
        /* connections polled this round: read, detect hang-ups (a hang-up cancels the request) */
        for (int i = n_polled - 1; i >= 0; i--) {
            Conn *c = S->conns[i];
            short re = p[3 + i].revents;
            bool gone = (re & (POLLERR | POLLNVAL)) != 0;
            if (!gone && c->linger_until > 0 && (re & (POLLIN | POLLHUP))) {
                char sink[4096];
                ssize_t n = recv(c->fd, sink, sizeof sink, 0);
                gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
            } else if (!gone && (re & POLLIN)) gone = !conn_read(S, c);
            if (!gone && (re & (POLLHUP | POLLRDHUP)) && !(re & POLLIN)) gone = true;
            if (gone) conn_close(S, i);
        }
        if (S->lfd >= 0 && (p[0].revents & POLLIN)) accept_all(S);
        double t = now_s();
        for (int i = S->n_conns - 1; i >= 0; i--) {
            Conn *c = S->conns[i];
            if (c->linger_until > 0) {
                if (t > c->linger_until) conn_close(S, i);
                continue;
            }
            if (c->req) pump(S, c);
            process(S, c);
            if (c->req) pump(S, c); /* a request that failed at once */
            if (!conn_write(c)) {
                conn_close(S, i);
                continue;
            }
            bool flushed = c->out.len == 0;
            if (flushed && c->close_after && !c->req) {
                shutdown(c->fd, SHUT_WR);
                c->linger_until = t + 2;
            }
            else if (!c->req && (t - c->last > o->idle_s || (S->draining && flushed && !c->in_len)))
                conn_close(S, i);
            else if (S->draining && t > S->drain_deadline + 5) conn_close(S, i); /* a client that does not read */
        }
        if (S->draining && !S->cancelled && t > S->drain_deadline) cancel_all(S);
        if (S->draining && S->n_conns == 0) break;
    }
}

int moe_serve(const ServeOptions *o, const MoeProgram *prog) {
    Server S0 = {0}, *S = &S0;
    S->o = o;
    S->mf = prog->manifest;
    S->lfd = S->wake_r = S->wake_w = S->sfd = -1;
    S->t_start = (int64_t)time(NULL);
    char err[512];
    int rc = 1;
    /* SIGINT/SIGTERM are read from a signalfd: blocked before any thread (OpenMP's included) starts */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    int pipefd[2] = {-1, -1};
    MoeLoadOptions lo = {o->weights, o->threads, o->memory_bytes};
    if (moe_model_load_opts(&S->m, prog, &lo, err, sizeof err) != MOE_OK) {
        fprintf(stderr, "%s: error: %s\n", o->name, err);
        goto out;
    }
    uint64_t bytes;
    const void *blob = moert_model_tokenizer(S->m, &bytes);
    if (!blob) {
        fprintf(stderr, "%s: error: this executable carries no tokenizer (its model folder had no tokenizer.json "
                        "when it was compiled); the server needs one\n", o->name);
        goto out;
    }
    if (!(S->tok = moe_tok_load(blob, (size_t)bytes, err, sizeof err))) {
        fprintf(stderr, "%s: error: embedded tokenizer: %s\n", o->name, err);
        goto out;
    }
    load_chat(S);
    S->conns = calloc((size_t)o->max_conns, sizeof *S->conns);
    S->pfd = calloc((size_t)o->max_conns + 3, sizeof *S->pfd);
    if (!S->conns || !S->pfd || pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) ||
        (S->sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        fprintf(stderr, "%s: error: cannot set up: %s\n", o->name, strerror(errno));
        goto out;
    }
    S->wake_r = pipefd[0], S->wake_w = pipefd[1];
    char shown[NI_MAXHOST + 16];
    if ((S->lfd = listen_on(o, shown, sizeof shown)) < 0) goto out;
    if (!engine_start(&S->e, S->m, S->tok, o->queue, S->wake_w, err, sizeof err)) {
        fprintf(stderr, "%s: error: %s\n", o->name, err);
        goto out;
    }
    S->engine_up = true;
    fprintf(stderr, "listening on http://%s (model %s, %d slot%s, context %" PRId64 ", queue %d%s%s)\n", shown, o->name,
            S->e.B, S->e.B == 1 ? "" : "s", S->mf->context, o->queue, o->api_key ? ", API key required" : "",
            o->metrics ? ", /metrics" : "");
    fflush(stderr);
    loop(S);
    rc = 0;
    fprintf(stderr, "serve: stopped\n");
out:
    while (S->n_conns) conn_close(S, S->n_conns - 1);
    if (S->engine_up) engine_stop(&S->e);
    if (S->lfd >= 0) close(S->lfd);
    if (S->sfd >= 0) close(S->sfd);
    if (pipefd[0] >= 0) close(pipefd[0]), close(pipefd[1]);
    free(S->conns);
    free(S->pfd);
    jb_free(&S->tmp);
    moe_jinja_free(S->chat);
    free(S->bos);
    free(S->eos);
    moe_tok_free(S->tok);
    moe_model_free(S->m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
