/* fuzz_json: the JSON reader and writer of `OUT serve` (runtime/serve/json.c) on any bytes. A
 * document that parses is written back with the writer, which must give JSON the reader accepts
 * and that writes back to the same bytes (strings, keys and numbers survive the round trip). */
#include <stdlib.h>

#include "fuzz_util.h"
#include "json.h"

static void write_value(JsonBuf *b, const JsonValue *v) {
    switch (v->type) {
    case JSON_NULL: jb_null(b); break;
    case JSON_FALSE: jb_bool(b, false); break;
    case JSON_TRUE: jb_bool(b, true); break;
    case JSON_NUMBER: jb_num(b, v->num); break;
    case JSON_STRING: jb_str(b, v->str, v->len); break;
    case JSON_ARRAY:
    case JSON_OBJECT: {
        bool obj = v->type == JSON_OBJECT;
        if (obj) jb_obj(b);
        else jb_arr(b);
        size_t n = 0;
        for (const JsonValue *m = v->child; m; m = m->next, n++) {
            if (obj) {
                /* keys with NULs cannot go through jb_key's C string: write them raw-escaped */
                jb_str(b, m->key, m->key_len);
                jb_raw(b, ":", 1);
                b->after_key = true;
            }
            write_value(b, m);
        }
        if (n != v->len) abort();
        if (obj) jb_obj_end(b);
        else jb_arr_end(b);
        break;
    }
    default: abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *copy = malloc(size ? size : 1); /* exact size: ASan sees any read past the end */
    if (!copy) return 0;
    memcpy(copy, data, size);
    char err[128];
    JsonDoc *d = json_parse(copy, size, err, sizeof err);
    if (!d && !strstr(err, "at byte") && strcmp(err, "out of memory")) abort();
    if (d) {
        JsonBuf b1 = {0}, b2 = {0};
        write_value(&b1, json_root(d));
        JsonDoc *d2 = b1.oom ? NULL : json_parse(b1.p, b1.len, err, sizeof err);
        if (!b1.oom && !d2) abort(); /* what the writer writes, the reader reads */
        if (d2) {
            write_value(&b2, json_root(d2));
            if (!b2.oom && (b2.len != b1.len || memcmp(b1.p, b2.p, b1.len))) abort();
        }
        json_free(d2);
        jb_free(&b1);
        jb_free(&b2);
        const JsonValue *r = json_root(d);
        json_get(r, "prompt"); /* lookups on any value */
        int64_t i;
        json_int(r, INT64_MIN, INT64_MAX, &i);
    }
    json_free(d);
    free(copy);
    return 0;
}
