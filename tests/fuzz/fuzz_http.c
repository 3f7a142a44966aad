/* fuzz_http: the request-head parser of `OUT serve` (runtime/serve/http.c) on any bytes. Checks
 * what a caller relies on: a parsed head lies inside the buffer and its slices within it, an
 * incomplete one stays incomplete or becomes an error (never a different head) when fewer bytes
 * are there, and the answer is one of the documented statuses. The first byte picks the limits. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "http.h"

static void inside(const char *buf, size_t len, HttpSlice s) {
    if (s.n && (s.p < buf || s.p + s.n > buf + len)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t max_head = 64 + (size_t)(data[0] & 0x3F) * 64;
    int64_t max_body = (data[0] & 0x40) ? 10 : 1 << 20;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    char *copy = malloc(len ? len : 1); /* an exact-size heap copy: ASan sees any read past the end */
    if (!copy) return 0;
    memcpy(copy, buf, len);
    HttpRequest r;
    int n = http_parse_head(copy, len, max_head, max_body, &r);
    if (n > 0) {
        if ((size_t)n > len || (size_t)n != r.head_len || r.content_length < 0 || r.content_length > max_body) abort();
        inside(copy, len, r.method), inside(copy, len, r.path), inside(copy, len, r.query);
        inside(copy, len, r.authorization);
        if (r.minor < 0 || r.minor > 9 || !r.method.n || !r.path.n) abort();
        HttpRequest again; /* the head alone parses the same */
        if (http_parse_head(copy, (size_t)n, max_head, max_body, &again) != n) abort();
    } else if (n < 0) {
        if (n != -400 && n != -413 && n != -431 && n != -501 && n != -505) abort();
    }
    if (n >= 0 && len > 0) { /* a prefix: incomplete, or an error found early, never a head */
        int m = http_parse_head(copy, len / 2, max_head, max_body, &r);
        if (m > 0 && (n == 0 || m != n)) abort();
    }
    JsonBuf b = {0};
    http_write_head(&b, 400 + (int)(len % 200), "application/json", (int64_t)len, len & 1, NULL);
    jb_free(&b);
    free(copy);
    return 0;
}
