/* json: the server's own small JSON reader and writer (RFC 8259), so that compiled executables
 * need no JSON library. The reader parses a whole document into a read-only tree that the
 * JsonDoc owns (one chain of blocks, freed by json_free); it is strict (no comments, no trailing
 * commas, UTF-8 only, no control characters in strings), bounded (depth <= JSON_MAX_DEPTH, numbers
 * <= 400 characters) and never reads outside [src, src + len). Strings are decoded to UTF-8
 * (\u escapes included; a lone surrogate becomes U+FFFD) and NUL-terminated, NULs inside
 * counted in len. The writer appends to a growable JsonBuf; after a failed allocation it stops
 * writing and sets oom, so a caller checks once at the end. */
#ifndef MOE_SERVE_JSON_H
#define MOE_SERVE_JSON_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64

typedef enum JsonType { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonValue JsonValue;
struct JsonValue {
    JsonType type;
    double num;             /* JSON_NUMBER */
    const char *str;        /* JSON_STRING: decoded, NUL-terminated */
    size_t len;             /* JSON_STRING: bytes; JSON_ARRAY / JSON_OBJECT: members */
    const char *key;        /* a member of an object: its decoded key (NUL-terminated) */
    size_t key_len;
    JsonValue *child;       /* JSON_ARRAY / JSON_OBJECT: the first member, in document order */
    JsonValue *next;        /* the next member of the enclosing array or object */
};

typedef struct JsonDoc JsonDoc;

/* Parses len bytes (need not be NUL-terminated); NULL with a one-line reason in err (naming the
 * byte offset) when they are not one JSON value (surrounding whitespace allowed) or memory runs out. */
JsonDoc *json_parse(const char *src, size_t len, char *err, size_t errlen);
/* The document's top-level value (borrowed from doc). */
const JsonValue *json_root(const JsonDoc *doc);
/* Frees doc and every value in it; NULL is fine. */
void json_free(JsonDoc *doc);
/* The value of obj's member key (the last one if repeated); NULL when obj is not an object or has none. */
const JsonValue *json_get(const JsonValue *obj, const char *key);
/* True when v is a number with an integral value in [lo, hi]; *out gets it. */
bool json_int(const JsonValue *v, int64_t lo, int64_t hi, int64_t *out);

/* ---- writer ---- */
typedef struct JsonBuf {
    char *p;                /* malloc'd, NUL-terminated when len > 0 */
    size_t len, cap;
    bool oom;               /* an allocation failed: the contents are incomplete */
    int depth;
    bool first[JSON_MAX_DEPTH]; /* per open array/object: no member written yet */
    bool after_key;
} JsonBuf;

/* Appends n raw bytes (no escaping, no commas). */
void jb_raw(JsonBuf *b, const char *s, size_t n);
/* Appends formatted raw text (printf). */
void jb_printf(JsonBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Structure: each value and key inserts the comma it needs. */
void jb_obj(JsonBuf *b);
void jb_obj_end(JsonBuf *b);
void jb_arr(JsonBuf *b);
void jb_arr_end(JsonBuf *b);
void jb_key(JsonBuf *b, const char *key);
/* Values: a string of n bytes, escaped (control characters as \u00XX, valid UTF-8 as it is, each
 * byte that starts no valid UTF-8 sequence as \ufffd: the output is UTF-8 whatever the bytes). */
void jb_str(JsonBuf *b, const char *s, size_t n);
void jb_cstr(JsonBuf *b, const char *s);
void jb_int(JsonBuf *b, int64_t v);
/* A double in the shortest %.17g form that reads back the same; non-finite as null. */
void jb_num(JsonBuf *b, double v);
void jb_bool(JsonBuf *b, bool v);
void jb_null(JsonBuf *b);
/* Frees the buffer and zeroes b. */
void jb_free(JsonBuf *b);
/* Empties b (keeps the allocation). */
void jb_reset(JsonBuf *b);

#endif
