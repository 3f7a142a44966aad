/* json: see json.h. The reader is recursive descent over a cursor; values and decoded strings
 * are bump-allocated in blocks that the JsonDoc chains together. */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reader ---------------------------------------------------------------------------------- */

typedef struct Block {
    struct Block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} Block;

struct JsonDoc {
    Block *blocks;
    JsonValue *root;
};

typedef struct Parser {
    const char *s, *end, *begin;
    JsonDoc *doc;
    char *err;
    size_t errlen;
    bool failed;
} Parser;

static void *doc_alloc(JsonDoc *d, size_t n) {
    n = (n + 15) & ~(size_t)15;
    Block *b = d->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 8192 ? n : 8192;
        if (!(b = malloc(sizeof(Block) + cap))) return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = d->blocks;
        d->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static void fail(Parser *p, const char *what) {
    if (p->failed) return;
    p->failed = true;
    if (p->err && p->errlen) snprintf(p->err, p->errlen, "%s at byte %zu", what, (size_t)(p->s - p->begin));
}

static void skip_ws(Parser *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) p->s++;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p->s; -1 (after fail) when not. */
static long hex4(Parser *p) {
    if (p->end - p->s < 4) return fail(p, "truncated \\u escape"), -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[i]);
        if (h < 0) return fail(p, "bad \\u escape"), -1;
        v = v * 16 + h;
    }
    p->s += 4;
    return v;
}

static size_t put_utf8(char *o, unsigned long cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (s < end, *s >= 0x80), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, const unsigned char *end) {
    unsigned c = s[0];
    size_t n;
    unsigned long cp, min;
    if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)(end - s) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* A string at p->s (just after the opening quote): decoded into doc memory. */
static const char *parse_string(Parser *p, size_t *len) {
    const char *q = p->s;
    while (q < p->end && *q != '"') { /* find the closing quote to size the output */
        if (*q == '\\') q++;
        q++;
    }
    if (q >= p->end) return fail(p, "unterminated string"), NULL;
    size_t cap = (size_t)(q - p->s) + 1; /* decoding never grows the text (\uXXXX is 6 bytes, <= 4 out) */
    char *out = doc_alloc(p->doc, cap), *o = out;
    if (!out) return fail(p, "out of memory"), NULL;
    while (*p->s != '"') {
        unsigned char c = (unsigned char)*p->s;
        if (c < 0x20) return fail(p, "control character in string"), NULL;
        if (c >= 0x80) {
            size_t n = utf8_len((const unsigned char *)p->s, (const unsigned char *)p->end);
            if (!n) return fail(p, "invalid UTF-8"), NULL;
            memcpy(o, p->s, n), o += n, p->s += n;
            continue;
        }
        p->s++;
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        char e = *p->s++; /* p->s < end: the closing quote follows */
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            long cp = hex4(p);
            if (cp < 0) return NULL;
            if (cp >= 0xD800 && cp <= 0xDBFF && p->end - p->s >= 6 && p->s[0] == '\\' && p->s[1] == 'u') {
                const char *save = p->s;
                p->s += 2;
                long lo = hex4(p);
                if (lo < 0) return NULL;
                if (lo >= 0xDC00 && lo <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else p->s = save; /* not a low surrogate: the high one stands alone */
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
            o += put_utf8(o, (unsigned long)cp);
            break;
        }
        default: p->s--; return fail(p, "bad escape"), NULL;
        }
    }
    p->s++; /* closing quote */
    *o = 0;
    *len = (size_t)(o - out);
    return out;
}

static bool parse_number(Parser *p, double *out) {
    const char *q = p->s;
    if (q < p->end && *q == '-') q++;
    if (q >= p->end) return fail(p, "bad number"), false;
    if (*q == '0') q++;
    else if (*q >= '1' && *q <= '9') while (q < p->end && *q >= '0' && *q <= '9') q++;
    else return fail(p, "bad number"), false;
    if (q < p->end && *q == '.') {
        q++;
        if (q >= p->end || *q < '0' || *q > '9') return fail(p, "bad number"), false;
        while (q < p->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < p->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < p->end && (*q == '+' || *q == '-')) q++;
        if (q >= p->end || *q < '0' || *q > '9') return fail(p, "bad number"), false;
        while (q < p->end && *q >= '0' && *q <= '9') q++;
    }
    char buf[401];
    size_t n = (size_t)(q - p->s);
    if (n >= sizeof buf) return fail(p, "number too long"), false;
    memcpy(buf, p->s, n);
    buf[n] = 0;
    *out = strtod(buf, NULL); /* the grammar above is a subset of strtod's; overflow gives +-inf */
    p->s = q;
    return true;
}

static bool literal(Parser *p, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n)) return fail(p, "unexpected character"), false;
    p->s += n;
    return true;
}

static JsonValue *parse_value(Parser *p, int depth) {
    skip_ws(p);
    if (p->s >= p->end) return fail(p, "unexpected end of input"), NULL;
    JsonValue *v = doc_alloc(p->doc, sizeof *v);
    if (!v) return fail(p, "out of memory"), NULL;
    memset(v, 0, sizeof *v);
    char c = *p->s;
    if (c == '{' || c == '[') {
        if (depth >= JSON_MAX_DEPTH) return fail(p, "nested too deeply"), NULL;
        bool obj = c == '{';
        char close = obj ? '}' : ']';
        v->type = obj ? JSON_OBJECT : JSON_ARRAY;
        p->s++;
        skip_ws(p);
        if (p->s < p->end && *p->s == close) {
            p->s++;
            return v;
        }
        JsonValue **tail = &v->child;
        for (;;) {
            const char *key = NULL;
            size_t key_len = 0;
            if (obj) {
                skip_ws(p);
                if (p->s >= p->end || *p->s != '"') return fail(p, "expected a string key"), NULL;
                p->s++;
                if (!(key = parse_string(p, &key_len))) return NULL;
                skip_ws(p);
                if (p->s >= p->end || *p->s != ':') return fail(p, "expected ':'"), NULL;
                p->s++;
            }
            JsonValue *m = parse_value(p, depth + 1);
            if (!m) return NULL;
            m->key = key;
            m->key_len = key_len;
            *tail = m;
            tail = &m->next;
            v->len++;
            skip_ws(p);
            if (p->s >= p->end) return fail(p, "unexpected end of input"), NULL;
            if (*p->s == ',') {
                p->s++;
                continue;
            }
            if (*p->s == close) {
                p->s++;
                return v;
            }
            return fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'"), NULL;
        }
    }
    if (c == '"') {
        p->s++;
        v->type = JSON_STRING;
        return (v->str = parse_string(p, &v->len)) ? v : NULL;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        v->type = JSON_NUMBER;
        return parse_number(p, &v->num) ? v : NULL;
    }
    if (c == 't') return v->type = JSON_TRUE, literal(p, "true") ? v : NULL;
    if (c == 'f') return v->type = JSON_FALSE, literal(p, "false") ? v : NULL;
    if (c == 'n') return v->type = JSON_NULL, literal(p, "null") ? v : NULL;
    return fail(p, "unexpected character"), NULL;
}

JsonDoc *json_parse(const char *src, size_t len, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    JsonDoc *d = calloc(1, sizeof *d);
    if (!d) {
        if (err && errlen) snprintf(err, errlen, "out of memory");
        return NULL;
    }
    Parser p = {src, src + len, src, d, err, errlen, false};
    d->root = parse_value(&p, 0);
    if (d->root) {
        skip_ws(&p);
        if (p.s != p.end) fail(&p, "trailing characters");
    }
    if (p.failed || !d->root) {
        json_free(d);
        return NULL;
    }
    return d;
}

const JsonValue *json_root(const JsonDoc *doc) { return doc->root; }

void json_free(JsonDoc *doc) {
    if (!doc) return;
    for (Block *b = doc->blocks, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    free(doc);
}

const JsonValue *json_get(const JsonValue *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    const JsonValue *found = NULL;
    for (const JsonValue *m = obj->child; m; m = m->next)
        if (m->key_len == n && !memcmp(m->key, key, n)) found = m;
    return found;
}

bool json_int(const JsonValue *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!v || v->type != JSON_NUMBER || !(v->num >= (double)lo && v->num <= (double)hi) || v->num != floor(v->num))
        return false;
    *out = (int64_t)v->num;
    return true;
}

/* ---- writer ---------------------------------------------------------------------------------- */

static bool reserve(JsonBuf *b, size_t n) {
    if (b->oom) return false;
    if (b->len + n + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void jb_raw(JsonBuf *b, const char *s, size_t n) {
    if (!reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void jb_printf(JsonBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* The comma before a value or key, when one is due. */
static void sep(JsonBuf *b) {
    if (b->after_key) {
        b->after_key = false;
        return;
    }
    if (b->depth > 0 && b->depth <= JSON_MAX_DEPTH) {
        if (!b->first[b->depth - 1]) jb_raw(b, ",", 1);
        b->first[b->depth - 1] = false;
    }
}

static void begin(JsonBuf *b, const char *c) {
    sep(b);
    jb_raw(b, c, 1);
    if (b->depth < JSON_MAX_DEPTH) b->first[b->depth] = true;
    b->depth++;
}

static void end(JsonBuf *b, const char *c) {
    jb_raw(b, c, 1);
    if (b->depth > 0) b->depth--;
}

void jb_obj(JsonBuf *b) { begin(b, "{"); }
void jb_obj_end(JsonBuf *b) { end(b, "}"); }
void jb_arr(JsonBuf *b) { begin(b, "["); }
void jb_arr_end(JsonBuf *b) { end(b, "]"); }

static void quoted(JsonBuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    jb_raw(b, "\"", 1);
    size_t run = 0; /* bytes that need no escape, appended together */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7F) {
            u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0', u[4] = hex[c >> 4], u[5] = hex[c & 15];
        } else if (c >= 0x80) { /* valid UTF-8 as it is; a byte that starts none as U+FFFD */
            size_t k = utf8_len((const unsigned char *)s + i, (const unsigned char *)s + n);
            if (!k) esc = "\\ufffd";
            else {
                run += k, i += k - 1;
                continue;
            }
        } else {
            run++;
            continue;
        }
        jb_raw(b, s + i - run, run);
        run = 0;
        if (esc) jb_raw(b, esc, strlen(esc));
        else jb_raw(b, u, 6);
    }
    jb_raw(b, s + n - run, run);
    jb_raw(b, "\"", 1);
}

void jb_key(JsonBuf *b, const char *key) {
    sep(b);
    quoted(b, key, strlen(key));
    jb_raw(b, ":", 1);
    b->after_key = true;
}

void jb_str(JsonBuf *b, const char *s, size_t n) {
    sep(b);
    quoted(b, s, n);
}

void jb_cstr(JsonBuf *b, const char *s) { jb_str(b, s, strlen(s)); }

void jb_int(JsonBuf *b, int64_t v) {
    sep(b);
    jb_printf(b, "%lld", (long long)v);
}

void jb_num(JsonBuf *b, double v) {
    sep(b);
    if (!isfinite(v)) {
        jb_raw(b, "null", 4);
        return;
    }
    char buf[32];
    for (int prec = 15; prec <= 17; prec++) { /* the shortest of these that reads back exactly */
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    jb_raw(b, buf, strlen(buf));
}

void jb_bool(JsonBuf *b, bool v) {
    sep(b);
    jb_raw(b, v ? "true" : "false", v ? 4 : 5);
}

void jb_null(JsonBuf *b) {
    sep(b);
    jb_raw(b, "null", 4);
}

void jb_free(JsonBuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void jb_reset(JsonBuf *b) {
    b->len = 0;
    if (b->p) b->p[0] = 0;
    b->oom = false;
    b->depth = 0;
    b->after_key = false;
}
