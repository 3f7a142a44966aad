#include "textio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int moe_parse_ids(const char *s, int32_t **ids, int64_t *n) {
    int64_t cap = 16, cnt = 0;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)cap);
    if (!v) return MOE_IDS_NOMEM;
    for (const char *p = s; *p;) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            return MOE_IDS_MALFORMED;
        }
        if (cnt == cap) {
            int32_t *w = realloc(v, sizeof(int32_t) * (size_t)(cap *= 2));
            if (!w) {
                free(v);
                return MOE_IDS_NOMEM;
            }
            v = w;
        }
        v[cnt++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (cnt == 0) {
        free(v);
        return MOE_IDS_EMPTY;
    }
    *ids = v;
    *n = cnt;
    return MOE_IDS_OK;
}

const char *moe_parse_ids_error(int status) {
    switch (status) {
    case MOE_IDS_MALFORMED: return "expected comma-separated token ids like 1,2,3";
    case MOE_IDS_EMPTY: return "expected at least one token id";
    case MOE_IDS_NOMEM: return "out of memory";
    default: return "ok";
    }
}

char *moe_read_text(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f) ? errno : 0;
    if (f != stdin) fclose(f);
    if (buf && err) {
        free(buf);
        buf = NULL;
        errno = err;
    }
    if (!buf) return NULL;
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

bool moe_text_begin(MoeTextOut *o, const MoeTokenizer *t, int32_t eos, FILE *f) {
    o->f = f;
    o->st = NULL;
    if (!t) return true;
    o->eos = moe_tok_eos(t) >= 0 ? moe_tok_eos(t) : eos;
    o->st = moe_tok_stream_new(t, true);
    return o->st != NULL;
}

bool moe_text_token(MoeTextOut *o, int32_t id) {
    if (!o->st) return true;
    if (id == o->eos) return false;
    const char *p;
    size_t n;
    if (moe_tok_stream_feed(o->st, id, &p, &n) == MOE_TOK_OK && n) {
        fwrite(p, 1, n, o->f);
        fflush(o->f);
    }
    return true;
}

void moe_text_end(MoeTextOut *o, const int32_t *ids, int64_t n) {
    const char *p;
    size_t len;
    if (o->st && moe_tok_stream_flush(o->st, &p, &len) == MOE_TOK_OK && len) fwrite(p, 1, len, o->f);
    for (int64_t s = 0; !o->st && s < n; s++) fprintf(o->f, "%s%d", s ? "," : "", ids[s]);
    fputc('\n', o->f);
    fflush(o->f);
    moe_text_free(o);
}

void moe_text_free(MoeTextOut *o) {
    moe_tok_stream_free(o->st);
    o->st = NULL;
}
