/* fuzz_prompt: the prompt readers of `moec run` and compiled executables. First byte even: a
 * --tokens value through moe_parse_ids; odd: a --prompt-file through moe_read_text, encoded with
 * the synthetic tokenizer `moec synth` writes, and the bytes also taken as ids for the streaming
 * decoder (any id, in range or not, must be handled). */
#include "fuzz_tok.h"
#include "textio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static MoeTokenizer *tok;
    if (!tok) tok = fuzz_synth_tokenizer(384);
    if (size < 1) return 0;
    if (!(data[0] & 1)) {
        char *s = fuzz_cstr(data + 1, size - 1);
        int32_t *ids;
        int64_t n;
        if (moe_parse_ids(s, &ids, &n) == MOE_IDS_OK) free(ids);
        free(s);
        return 0;
    }
    const char *path = fuzz_file("prompt.txt", data + 1, size - 1);
    size_t len;
    char *text = moe_read_text(path, &len);
    if (!text) abort(); /* a readable file must read */
    int32_t *ids = NULL;
    size_t n = 0;
    if (moe_tok_encode(tok, text, len, true, &ids, &n) == 0) free(ids);
    free(text);
    MoeTokStream *s = moe_tok_stream_new(tok, false);
    const char *piece;
    size_t plen;
    for (size_t i = 1; s && i + 2 <= size; i += 2) {
        int32_t id = (int32_t)(((uint32_t)data[i] << 8 | data[i + 1]) % 512) - 64; /* some out of range */
        moe_tok_stream_feed(s, id, &piece, &plen);
    }
    if (s) moe_tok_stream_flush(s, &piece, &plen);
    moe_tok_stream_free(s);
    return 0;
}
