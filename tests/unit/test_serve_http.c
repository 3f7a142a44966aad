/* test_serve_http: the server's HTTP/1.1 request parser and response head (runtime/serve/http.h),
 * and its stop-string scan (runtime/serve/engine.h): complete, incomplete and malformed heads,
 * limits (413, 431), keep-alive rules, and what text may be released. */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "http.h"
#include "test.h"

static int parse(const char *s, HttpRequest *r) { return http_parse_head(s, strlen(s), 1024, 4096, r); }

static void test_requests(void) {
    HttpRequest r;
    const char *get = "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization:  Bearer k \r\n\r\nrest";
    EXPECT_EQ(parse(get, &r), (int)strlen(get) - 4);
    EXPECT_TRUE(http_eq(r.method, "GET"));
    EXPECT_TRUE(http_eq(r.path, "/v1/models"));
    EXPECT_TRUE(http_eq(r.query, "x=1"));
    EXPECT_TRUE(http_eq(r.authorization, "Bearer k"));
    EXPECT_TRUE(r.keep_alive);
    EXPECT_EQ(r.minor, 1);
    EXPECT_EQ(r.content_length, 0);

    const char *post = "\r\nPOST /v1/completions HTTP/1.0\nContent-Length: 12\nConnection: Keep-Alive\n"
                       "Expect: 100-continue\n\n";
    EXPECT_EQ(parse(post, &r), (int)strlen(post));
    EXPECT_EQ(r.content_length, 12);
    EXPECT_TRUE(r.keep_alive && r.expect_continue);
    EXPECT_EQ(r.minor, 0);
    EXPECT_EQ(parse("GET / HTTP/1.0\r\n\r\n", &r), 18);
    EXPECT_TRUE(!r.keep_alive);
    EXPECT_TRUE(parse("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", &r) > 0 && !r.keep_alive);

    /* incomplete: more bytes may complete it */
    EXPECT_EQ(parse("", &r), 0);
    EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n", &r), 0);
    EXPECT_EQ(parse("GET / HT", &r), 0);

    /* malformed */
    const char *bad[] = {"GET  / HTTP/1.1\r\n\r\n", "GET /\r\n\r\n", "GET / HTTP/1.1 \r\n\r\n", "G(T / HTTP/1.1\r\n\r\n",
                         "GET x HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nNo colon\r\n\r\n", "GET / HTTP/1.1\r\n: v\r\n\r\n",
                         "GET / HTTP/1.1\r\nA b: v\r\n\r\n", "GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
                         "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
                         "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                         "GET / HTTP/1.1\r\nA: x\x01y\r\n\r\n", "GET / HTTP/1.1\r\nA: x\ry\r\n\r\n", "GET / HTTP/x.1\r\n\r\n"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        int n = parse(bad[k], &r);
        if (n != -400) fprintf(stderr, "case %zu: %d\n", k, n);
        EXPECT_EQ(n, -400);
    }
    EXPECT_EQ(http_parse_head("GET / HTTP/1.1\r\nA: \0\r\n\r\n", 23, 1024, 10, &r), -400);
    EXPECT_EQ(parse("GET / HTTP/2.0\r\n\r\n", &r), -505);
    EXPECT_EQ(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r), -501);
    EXPECT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 4097\r\n\r\n", &r), -413);
    EXPECT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", &r), -413);
    EXPECT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: 4096\r\n\r\n", &r) > 0, 1);

    /* limits: a head longer than max_head, too many headers */
    char big[2048];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    EXPECT_EQ(http_parse_head(big, sizeof big, 1024, 10, &r), -431);
    EXPECT_EQ(http_parse_head(big, 1000, 1024, 10, &r), 0);
    char many[8192] = "GET / HTTP/1.1\r\n";
    for (int k = 0; k <= HTTP_MAX_HEADERS; k++) strcat(many, "A: b\r\n");
    strcat(many, "\r\n");
    EXPECT_EQ(http_parse_head(many, strlen(many), sizeof many, 10, &r), -431);

    JsonBuf b = {0};
    http_write_head(&b, 404, "application/json", 12, false, "X-A: b\r\n");
    EXPECT_TRUE(b.p && !strcmp(b.p, "HTTP/1.1 404 Not Found\r\nServer: moert\r\nContent-Type: application/json\r\n"
                                    "Content-Length: 12\r\nConnection: close\r\nX-A: b\r\n\r\n"));
    jb_free(&b);
}

static size_t scan(const char *text, size_t sent, const char *s1, const char *s2, bool final, bool *hit) {
    char *stop[2] = {(char *)s1, (char *)s2};
    return engine_stop_scan(text, strlen(text), sent, stop, s2 ? 2 : s1 ? 1 : 0, final, hit);
}

static void test_stop(void) {
    bool hit;
    EXPECT_EQ(scan("hello world", 0, NULL, NULL, false, &hit), 11);
    EXPECT_TRUE(!hit);
    EXPECT_EQ(scan("hello wor", 0, "world", NULL, false, &hit), 6); /* "wor" may become "world" */
    EXPECT_TRUE(!hit);
    EXPECT_EQ(scan("hello wor", 0, "world", NULL, true, &hit), 9); /* final: nothing can follow */
    EXPECT_EQ(scan("hello world!", 6, "world", NULL, false, &hit), 6);
    EXPECT_TRUE(hit);
    EXPECT_EQ(scan("a\nb##c", 0, "##", "\n", false, &hit), 1); /* the earliest of several */
    EXPECT_TRUE(hit);
    EXPECT_EQ(scan("abc#", 0, "##", "xyz", false, &hit), 3);
    EXPECT_EQ(scan("abcxy", 0, "##", "xyz", false, &hit), 3);
    EXPECT_EQ(scan("abc", 2, "abcd", NULL, false, &hit), 3); /* held back only after what was sent */
    EXPECT_EQ(scan("", 0, "x", NULL, false, &hit), 0);
    EXPECT_EQ(scan("xx", 0, "", NULL, false, &hit), 2); /* an empty stop string never matches */
}

int main(void) {
    test_requests();
    test_stop();
    return test_done();
}
