/* fuzz_tokenizer: a tokenizer.json through tokjson_load (first byte even), or a serialised
 * tokenizer blob, as an executable's tokenizer section holds it, through moe_tok_load (odd).
 * Whatever loads then encodes a mixed text and decodes the ids back, whole and streamed. */
#include "fuzz_util.h"
#include "tokenizer.h"
#include "tokjson.h"

static void exercise(const void *blob, size_t len) {
    char err[256];
    MoeTokenizer *t = moe_tok_load(blob, len, err, sizeof err);
    if (!t) return;
    static const char text[] = "Hello, world! 12345 <s> caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80  tabs\tand\nnewlines";
    int32_t *ids = NULL;
    size_t n = 0;
    if (moe_tok_encode(t, text, sizeof text - 1, true, &ids, &n) == 0) {
        char *out = NULL;
        size_t out_len = 0;
        if (moe_tok_decode(t, ids, n, false, &out, &out_len) == 0) free(out);
        MoeTokStream *s = moe_tok_stream_new(t, true);
        const char *piece;
        size_t plen;
        for (size_t i = 0; s && i < n; i++) moe_tok_stream_feed(s, ids[i], &piece, &plen);
        if (s) moe_tok_stream_flush(s, &piece, &plen);
        moe_tok_stream_free(s);
    }
    free(ids);
    moe_tok_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) {
        exercise(data + 1, size - 1);
        return 0;
    }
    const char *path = fuzz_file("tokenizer.json", data + 1, size - 1);
    Arena *a = arena_new();
    Diag d = {.quiet = true};
    void *blob;
    size_t len;
    if (tokjson_load(a, &d, path, &blob, &len)) exercise(blob, len);
    arena_destroy(a);
    return 0;
}
