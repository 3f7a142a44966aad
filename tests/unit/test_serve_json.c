/* test_serve_json: the server's JSON reader and writer (runtime/serve/json.h): values of every
 * type, escapes and surrogate pairs, strictness (what must be refused, with the byte offset),
 * depth and length bounds, and writer output read back by the reader. */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "test.h"

static JsonDoc *parse(const char *s) {
    char err[128];
    return json_parse(s, strlen(s), err, sizeof err);
}

static void test_values(void) {
    JsonDoc *d = parse(" {\"a\": [1, -2.5e3, true, false, null], \"s\": \"x\\n\\u00e9\\ud83d\\ude00\\\"\", \"o\": {}} ");
    EXPECT_TRUE(d != NULL);
    if (!d) return;
    const JsonValue *r = json_root(d);
    EXPECT_EQ(r->type, JSON_OBJECT);
    EXPECT_EQ(r->len, 3);
    const JsonValue *a = json_get(r, "a");
    EXPECT_TRUE(a && a->type == JSON_ARRAY && a->len == 5);
    EXPECT_NEAR(a->child->num, 1, 0);
    EXPECT_NEAR(a->child->next->num, -2500, 0);
    EXPECT_EQ(a->child->next->next->type, JSON_TRUE);
    EXPECT_EQ(a->child->next->next->next->type, JSON_FALSE);
    EXPECT_EQ(a->child->next->next->next->next->type, JSON_NULL);
    const JsonValue *s = json_get(r, "s");
    EXPECT_TRUE(s && s->type == JSON_STRING);
    EXPECT_EQ(s->len, 1 + 1 + 2 + 4 + 1);
    EXPECT_TRUE(s && !memcmp(s->str, "x\n\xc3\xa9\xf0\x9f\x98\x80\"", s->len));
    EXPECT_TRUE(json_get(r, "o") && json_get(r, "o")->type == JSON_OBJECT && json_get(r, "o")->len == 0);
    EXPECT_TRUE(json_get(r, "missing") == NULL);
    int64_t i;
    EXPECT_TRUE(json_int(a->child, 0, 10, &i) && i == 1);
    EXPECT_TRUE(json_int(a->child->next, INT64_MIN, INT64_MAX, &i) && i == -2500);
    EXPECT_TRUE(!json_int(a->child->next, 0, INT64_MAX, &i));
    json_free(d);

    d = parse("{\"k\":1,\"k\":2}"); /* a repeated key: the last one */
    EXPECT_TRUE(d && json_get(json_root(d), "k")->num == 2);
    json_free(d);
    d = parse("\"\\u0000a\\ud800b\""); /* NUL inside; a lone surrogate becomes U+FFFD */
    EXPECT_TRUE(d && json_root(d)->len == 6 && !memcmp(json_root(d)->str, "\0a\xef\xbf\xbd" "b", 6));
    json_free(d);
    d = parse("[1.5, 1e400, 0, -0.0]");
    EXPECT_TRUE(d && !json_int(json_root(d)->child, 0, 10, &i));
    json_free(d);
}

static void test_refused(void) {
    const char *bad[] = {"", " ", "{", "[1,]", "{\"a\":1,}", "{a:1}", "'x'", "01", "1.", ".5", "1e", "-", "+1",
                         "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\x01\"", "\"\xff\"", "\"\xc0\xaf\"",
                         "\"\xed\xa0\x80\"", "[1] 2", "{\"a\" 1}", "[1 2]", "NaN", "Infinity", "/*c*/1", "\"\\"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char err[128] = "";
        JsonDoc *d = json_parse(bad[k], strlen(bad[k]), err, sizeof err);
        if (d) fprintf(stderr, "accepted: %s\n", bad[k]);
        EXPECT_TRUE(d == NULL);
        EXPECT_STR_CONTAINS(err, "at byte");
        json_free(d);
    }
    char err[128];
    JsonDoc *d = json_parse("[1,\n  x]", 8, err, sizeof err);
    EXPECT_TRUE(d == NULL);
    EXPECT_STR_CONTAINS(err, "unexpected character at byte 6");
    /* not NUL-terminated: only len bytes are read */
    EXPECT_TRUE((d = json_parse("[1]]", 3, NULL, 0)) != NULL);
    json_free(d);
    /* depth: JSON_MAX_DEPTH nested arrays parse, one more does not */
    char deep[2 * JSON_MAX_DEPTH + 8];
    for (int n = JSON_MAX_DEPTH; n <= JSON_MAX_DEPTH + 1; n++) {
        memset(deep, '[', (size_t)n);
        memset(deep + n, ']', (size_t)n);
        d = json_parse(deep, 2 * (size_t)n, err, sizeof err);
        EXPECT_EQ(d != NULL, n == JSON_MAX_DEPTH);
        json_free(d);
    }
    char num[500];
    memset(num, '1', sizeof num);
    EXPECT_TRUE(json_parse(num, sizeof num, err, sizeof err) == NULL);
    EXPECT_STR_CONTAINS(err, "number too long");
}

static void test_writer(void) {
    JsonBuf b = {0};
    jb_obj(&b);
    jb_key(&b, "s");
    jb_str(&b, "a\"\\\n\x01\x7f\xc3\xa9", 8);
    jb_key(&b, "arr");
    jb_arr(&b);
    jb_int(&b, -42);
    jb_num(&b, 0.1);
    jb_num(&b, 1.0 / 0.0);
    jb_bool(&b, true);
    jb_null(&b);
    jb_obj(&b);
    jb_obj_end(&b);
    jb_arr_end(&b);
    jb_key(&b, "big");
    jb_int(&b, INT64_MIN);
    jb_obj_end(&b);
    EXPECT_TRUE(!b.oom);
    const char *want = "{\"s\":\"a\\\"\\\\\\n\\u0001\\u007f\xc3\xa9\",\"arr\":[-42,0.1,null,true,null,{}],"
                       "\"big\":-9223372036854775808}";
    EXPECT_TRUE(b.p && !strcmp(b.p, want));
    if (b.p && strcmp(b.p, want)) fprintf(stderr, "got  %s\nwant %s\n", b.p, want);
    JsonDoc *d = json_parse(b.p, b.len, NULL, 0); /* what it writes, the reader reads back */
    EXPECT_TRUE(d && json_get(json_root(d), "s")->len == 8 &&
                !memcmp(json_get(json_root(d), "s")->str, "a\"\\\n\x01\x7f\xc3\xa9", 8));
    json_free(d);
    jb_reset(&b); /* bytes that are not UTF-8 (a stray continuation, a cut sequence, an overlong one,
                   * a surrogate) each become U+FFFD, so what a client parses is JSON */
    jb_str(&b, "/\x80" "a\xe4\xb8\xe4\xb8\xad\xc0\xaf\xed\xa0\x80\xe4", 14);
    want = "\"/\\ufffda\\ufffd\\ufffd\xe4\xb8\xad\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"";
    EXPECT_TRUE(b.p && !strcmp(b.p, want));
    if (b.p && strcmp(b.p, want)) fprintf(stderr, "got  %s\nwant %s\n", b.p, want);
    d = json_parse(b.p, b.len, NULL, 0);
    EXPECT_TRUE(d != NULL);
    json_free(d);
    jb_reset(&b);
    EXPECT_EQ(b.len, 0);
    jb_num(&b, 3.0000000000000004);
    EXPECT_TRUE(strtod(b.p, NULL) == 3.0000000000000004);
    jb_free(&b);
}

int main(void) {
    test_values();
    test_refused();
    test_writer();
    return test_done();
}
