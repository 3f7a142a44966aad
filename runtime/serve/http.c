/* http: see http.h. A head is lines ending in "\n" (a "\r" before it is dropped), up to the first
 * empty line: the request line "METHOD SP target SP HTTP/1.x", then "name: value" headers. */
#include "http.h"

#include <stdio.h>
#include <string.h>

static bool is_tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool ieq(HttpSlice s, const char *t) {
    size_t n = strlen(t);
    if (s.n != n) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s.p[i], b = (unsigned char)t[i];
        if (a >= 'A' && a <= 'Z') a = (unsigned char)(a + 32);
        if (a != b) return false;
    }
    return true;
}

bool http_eq(HttpSlice s, const char *t) { return s.n == strlen(t) && !memcmp(s.p, t, s.n); }

/* The comma-separated list v contains token t (case-insensitive). */
static bool list_has(HttpSlice v, const char *t) {
    size_t i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ',')) i++;
        size_t j = i;
        while (j < v.n && v.p[j] != ',') j++;
        size_t k = j;
        while (k > i && (v.p[k - 1] == ' ' || v.p[k - 1] == '\t')) k--;
        if (ieq((HttpSlice){v.p + i, k - i}, t)) return true;
        i = j;
    }
    return false;
}

static int request_line(HttpSlice line, HttpRequest *req) {
    const char *s = line.p, *e = line.p + line.n;
    const char *sp1 = memchr(s, ' ', line.n);
    if (!sp1 || sp1 == s) return -400;
    for (const char *q = s; q < sp1; q++)
        if (!is_tchar((unsigned char)*q)) return -400;
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(e - t));
    if (!sp2 || sp2 == t) return -400;
    for (const char *q = t; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7F) return -400;
    if (*t != '/' && !(sp2 - t == 1 && *t == '*')) return -400;
    const char *v = sp2 + 1;
    if (e - v != 8 || memcmp(v, "HTTP/", 5) || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
        return -400;
    if (v[5] != '1') return -505;
    req->method = (HttpSlice){s, (size_t)(sp1 - s)};
    const char *qm = memchr(t, '?', (size_t)(sp2 - t));
    req->path = (HttpSlice){t, (size_t)((qm ? qm : sp2) - t)};
    req->query = qm ? (HttpSlice){qm + 1, (size_t)(sp2 - qm - 1)} : (HttpSlice){sp2, 0};
    req->minor = v[7] - '0';
    return 0;
}

int http_parse_head(const char *buf, size_t len, size_t max_head, int64_t max_body, HttpRequest *req) {
    memset(req, 0, sizeof *req);
    size_t i = 0, scan = len < max_head ? len : max_head;
    while (i + 1 < scan && buf[i] == '\r' && buf[i + 1] == '\n') i += 2; /* empty lines before a request */
    while (i < scan && buf[i] == '\n') i++;
    bool have_line = false, have_cl = false, conn_close = false, conn_keep = false;
    int n_headers = 0;
    for (;;) {
        const char *nl = memchr(buf + i, '\n', scan - i);
        if (!nl) return len > max_head ? -431 : 0;
        size_t end = (size_t)(nl - buf);
        HttpSlice line = {buf + i, end - i};
        if (line.n && line.p[line.n - 1] == '\r') line.n--;
        i = end + 1;
        for (size_t k = 0; k < line.n; k++) /* no CR or NUL inside a line */
            if (line.p[k] == '\r' || line.p[k] == 0) return -400;
        if (!have_line) {
            int st = request_line(line, req);
            if (st) return st;
            have_line = true;
            continue;
        }
        if (line.n == 0) break;
        if (++n_headers > HTTP_MAX_HEADERS) return -431;
        if (line.p[0] == ' ' || line.p[0] == '\t') return -400; /* obsolete line folding */
        const char *colon = memchr(line.p, ':', line.n);
        if (!colon || colon == line.p) return -400;
        HttpSlice name = {line.p, (size_t)(colon - line.p)};
        for (size_t k = 0; k < name.n; k++)
            if (!is_tchar((unsigned char)name.p[k])) return -400;
        const char *vs = colon + 1, *ve = line.p + line.n;
        while (vs < ve && (*vs == ' ' || *vs == '\t')) vs++;
        while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        for (const char *q = vs; q < ve; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7F) return -400;
        HttpSlice value = {vs, (size_t)(ve - vs)};
        if (ieq(name, "content-length")) {
            if (value.n == 0 || value.n > 18) return value.n > 18 ? -413 : -400;
            int64_t v = 0;
            for (size_t k = 0; k < value.n; k++) {
                if (value.p[k] < '0' || value.p[k] > '9') return -400;
                v = v * 10 + (value.p[k] - '0');
            }
            if (have_cl && v != req->content_length) return -400;
            have_cl = true;
            req->content_length = v;
        } else if (ieq(name, "transfer-encoding")) {
            return -501;
        } else if (ieq(name, "connection")) {
            conn_close |= list_has(value, "close");
            conn_keep |= list_has(value, "keep-alive");
        } else if (ieq(name, "expect")) {
            req->expect_continue |= ieq(value, "100-continue");
        } else if (ieq(name, "authorization")) {
            req->authorization = value;
        }
    }
    if (req->content_length > max_body) return -413;
    req->keep_alive = req->minor >= 1 ? !conn_close : conn_keep && !conn_close;
    req->head_len = i;
    return (int)i;
}

const char *http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

void http_write_head(JsonBuf *b, int status, const char *content_type, int64_t body_len, bool keep_alive,
                     const char *extra) {
    jb_printf(b, "HTTP/1.1 %d %s\r\nServer: moert\r\n", status, http_reason(status));
    if (content_type) jb_printf(b, "Content-Type: %s\r\n", content_type);
    if (body_len >= 0) jb_printf(b, "Content-Length: %lld\r\n", (long long)body_len);
    jb_printf(b, "Connection: %s\r\n%s\r\n", keep_alive ? "keep-alive" : "close", extra ? extra : "");
}
