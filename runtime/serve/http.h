/* http: the server's HTTP/1.1 request parser and response writer (RFC 9112), on bytes the caller
 * has read. http_parse_head looks at one request head in a buffer: it never reads outside
 * [buf, buf + len), never allocates, and the HttpRequest it fills points into the buffer
 * (borrowed while the buffer is unchanged). Bodies are Content-Length only: Transfer-Encoding
 * is refused (501). Responses are written into a JsonBuf (json.h). */
#ifndef MOE_SERVE_HTTP_H
#define MOE_SERVE_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

typedef struct HttpSlice {
    const char *p;
    size_t n;
} HttpSlice;

typedef struct HttpRequest {
    HttpSlice method;        /* "GET", "POST", ... (case-sensitive, as the RFC says) */
    HttpSlice path;          /* the target up to '?' */
    HttpSlice query;         /* after '?' (may be empty) */
    int minor;               /* HTTP/1.minor: 0 or 1 */
    int64_t content_length;  /* 0 without the header */
    bool keep_alive;         /* HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "keep-alive" */
    bool expect_continue;    /* "Expect: 100-continue" */
    HttpSlice authorization; /* the Authorization value (empty: none) */
    size_t head_len;         /* bytes of the request line and headers, the blank line included */
} HttpRequest;

enum { HTTP_MAX_HEADERS = 100 };

/* Parses the head at buf[0, len): > 0 is its length (req filled; the body, content_length bytes,
 * follows), 0 means incomplete (no blank line yet and len <= max_head), and < 0 is minus the
 * HTTP status to answer with before closing: 400 malformed, 413 content_length > max_body,
 * 431 head longer than max_head or more than HTTP_MAX_HEADERS headers, 501 Transfer-Encoding,
 * 505 not HTTP/1.x. */
int http_parse_head(const char *buf, size_t len, size_t max_head, int64_t max_body, HttpRequest *req);
/* True when s equals the NUL-terminated text t. */
bool http_eq(HttpSlice s, const char *t);
/* The reason phrase of status ("OK", "Not Found", ...; "Unknown" for others). */
const char *http_reason(int status);
/* Appends a response head: the status line, Content-Type, Content-Length (when body_len >= 0),
 * Connection (keep-alive or close), then extra (zero or more "Name: value\r\n" lines, may be
 * NULL) and the blank line. */
void http_write_head(JsonBuf *b, int status, const char *content_type, int64_t body_len, bool keep_alive,
                     const char *extra);

#endif
