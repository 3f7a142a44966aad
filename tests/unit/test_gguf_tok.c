/* test_gguf_tok: the tokenizer of a GGUF file (frontend/gguf_tok) against the Hugging Face
 * reference vectors. shared/goldens/gguf/tokenizers/{llama2,qwen3}.gguf hold the tokenizers of
 * shared/tokenizers/{llama2,qwen3}/tokenizer.json (llama: scores and no merges; gpt2: merges and
 * the qwen2 pre-tokenizer): every case of cases.jsonl and decode_cases.jsonl must encode and decode
 * exactly as the case file says and exactly as moec's own tokenizer.json path does. Then the
 * refusals (each names its key), and `moec run MODEL.gguf --prompt` against --tokens with the ids
 * of `moec tokenize MODEL.gguf` on the GGUF goldens' models. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arena.h"
#include "diag.h"
#include "gguf.h"
#include "gguf_tok.h"
#include "test.h"
#include "tokenizer.h"
#include "tokjson.h"

#ifndef MOEC_SHARED_DIR
#define MOEC_SHARED_DIR "../shared"
#endif
#ifndef MOEC_BIN
#define MOEC_BIN "moec"
#endif

static MoeTokenizer *load_blob(const void *blob, size_t len, const char *what) {
    char err[256];
    MoeTokenizer *t = moe_tok_load(blob, len, err, sizeof err);
    if (!t) fprintf(stderr, "%s: moe_tok_load: %s\n", what, err);
    EXPECT_TRUE(t != NULL);
    return t;
}

/* The tokenizer of a GGUF file; NULL (reported) on failure. */
static MoeTokenizer *load_gguf(const char *path) {
    Arena *a = arena_new();
    Diag d = {0};
    GgufFile g = {0};
    void *blob = NULL;
    size_t len = 0;
    MoeTokenizer *t = NULL;
    bool ok = gguf_open(&g, a, &d, path) && gguf_tokenizer_blob(&g, a, &d, &blob, &len);
    EXPECT_TRUE(ok);
    if (ok) t = load_blob(blob, len, path);
    gguf_close(&g);
    arena_destroy(a);
    return t;
}

static MoeTokenizer *load_json(const char *dir) {
    Arena *a = arena_new();
    Diag d = {0};
    void *blob = NULL;
    size_t len = 0;
    MoeTokenizer *t = NULL;
    bool ok = tokjson_load(a, &d, dir, &blob, &len);
    EXPECT_TRUE(ok);
    if (ok) t = load_blob(blob, len, dir);
    arena_destroy(a);
    return t;
}

static bool ids_equal(const int32_t *got, size_t n, const cJSON *want) {
    if (!cJSON_IsArray(want) || (size_t)cJSON_GetArraySize(want) != n) return false;
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, want) if (!cJSON_IsNumber(it) || it->valueint != got[i++]) return false;
    return true;
}

static int32_t *json_ids(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) ids[i++] = it->valueint;
    return ids;
}

/* Decodes ids in full and through a stream; both must equal want. */
static bool decode_ok(MoeTokenizer *t, const int32_t *ids, size_t n, bool skip, const char *want) {
    char *out = NULL;
    size_t len = 0, want_n = strlen(want);
    bool ok = moe_tok_decode(t, ids, n, skip, &out, &len) == MOE_TOK_OK && len == want_n && !memcmp(out, want, len);
    free(out);
    MoeTokStream *s = moe_tok_stream_new(t, skip);
    size_t an = 0;
    char *acc = malloc(want_n * 2 + 64);
    for (size_t i = 0; i <= n && ok; i++) {
        const char *chunk;
        size_t cn;
        int rc = i < n ? moe_tok_stream_feed(s, ids[i], &chunk, &cn) : moe_tok_stream_flush(s, &chunk, &cn);
        ok = rc == MOE_TOK_OK && an + cn <= want_n && !memcmp(want + an, chunk, cn);
        an += cn;
    }
    ok = ok && an == want_n;
    free(acc);
    moe_tok_stream_free(s);
    return ok;
}

static bool same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

/* Every line of cases.jsonl: encode with and without special tokens equals the case file and the
 * tokenizer.json tokenizer ref; decode equals the case file. Returns the cases that pass. */
static int run_cases(MoeTokenizer *t, MoeTokenizer *ref, const char *dir, const char *label, int *total) {
    char path[1400];
    snprintf(path, sizeof path, "%s/cases.jsonl", dir);
    char *text = test_read_file(path, NULL);
    EXPECT_TRUE(text != NULL);
    if (!text) return 0;
    int passed = 0, shown = 0;
    *total = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *c = cJSON_Parse(line);
        const cJSON *jt = cJSON_GetObjectItem(c, "text"), *jn = cJSON_GetObjectItem(c, "name");
        const cJSON *want[2] = {cJSON_GetObjectItem(c, "ids"), cJSON_GetObjectItem(c, "ids_special")};
        const cJSON *dec[2] = {cJSON_GetObjectItem(c, "decoded"), cJSON_GetObjectItem(c, "decoded_special")};
        if (!cJSON_IsString(jt) || !cJSON_IsString(jn) || !cJSON_IsString(dec[0]) || !cJSON_IsString(dec[1])) {
            EXPECT_TRUE(!"a well-formed case line");
            cJSON_Delete(c);
            continue;
        }
        (*total)++;
        bool ok = true;
        const char *what = "";
        for (int special = 0; special < 2; special++) {
            int32_t *ids = NULL, *rids = NULL;
            size_t n = 0, rn = 0;
            size_t len = strlen(jt->valuestring);
            bool enc = moe_tok_encode(t, jt->valuestring, len, special, &ids, &n) == MOE_TOK_OK &&
                       moe_tok_encode(ref, jt->valuestring, len, special, &rids, &rn) == MOE_TOK_OK;
            if (ok && !(enc && ids_equal(ids, n, want[special]))) ok = false, what = "encode vs the case file";
            if (ok && !same_ids(ids, n, rids, rn)) ok = false, what = "encode vs tokenizer.json";
            free(ids);
            free(rids);
            size_t nw;
            int32_t *w = json_ids(want[special], &nw);
            if (ok && !decode_ok(t, w, nw, false, dec[special]->valuestring)) ok = false, what = "decode";
            free(w);
        }
        if (!ok && shown++ < 10) fprintf(stderr, "%s: case '%s': %s differs\n", label, jn->valuestring, what);
        passed += ok;
        cJSON_Delete(c);
    }
    free(text);
    return passed;
}

static int run_decode_cases(MoeTokenizer *t, const char *dir, const char *label, int *total) {
    char path[1400];
    snprintf(path, sizeof path, "%s/decode_cases.jsonl", dir);
    char *text = test_read_file(path, NULL);
    EXPECT_TRUE(text != NULL);
    if (!text) return 0;
    int passed = 0;
    *total = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *c = cJSON_Parse(line);
        const cJSON *jn = cJSON_GetObjectItem(c, "name"), *jids = cJSON_GetObjectItem(c, "ids");
        const cJSON *jskip = cJSON_GetObjectItem(c, "skip_special_tokens"), *jdec = cJSON_GetObjectItem(c, "decoded");
        if (cJSON_IsString(jn) && cJSON_IsArray(jids) && cJSON_IsString(jdec)) {
            (*total)++;
            size_t n;
            int32_t *ids = json_ids(jids, &n);
            bool ok = decode_ok(t, ids, n, cJSON_IsTrue(jskip), jdec->valuestring);
            if (!ok) fprintf(stderr, "%s: decode case '%s' differs\n", label, jn->valuestring);
            passed += ok;
            free(ids);
        }
        cJSON_Delete(c);
    }
    free(text);
    return passed;
}

static void test_reference(const char *name) {
    char gguf[1200], dir[1200], label[64];
    snprintf(gguf, sizeof gguf, "%s/goldens/gguf/tokenizers/%s.gguf", MOEC_SHARED_DIR, name);
    snprintf(dir, sizeof dir, "%s/tokenizers/%s", MOEC_SHARED_DIR, name);
    snprintf(label, sizeof label, "%s.gguf", name);
    MoeTokenizer *t = load_gguf(gguf), *ref = load_json(dir);
    if (!t || !ref) {
        moe_tok_free(t);
        moe_tok_free(ref);
        return;
    }
    /* bos: the file's tokenizer.ggml.bos_token_id (qwen3's tokenizer_config.json has none) */
    EXPECT_EQ(moe_tok_bos(t), strcmp(name, "qwen3") ? moe_tok_bos(ref) : 151643);
    EXPECT_EQ(moe_tok_eos(t), moe_tok_eos(ref));
    int total = 0, dtotal = 0;
    int passed = run_cases(t, ref, dir, label, &total);
    int dpassed = run_decode_cases(t, dir, label, &dtotal);
    printf("%s: %d/%d cases (encode x2 == case file == tokenizer.json, decode x2), %d/%d decode cases\n", label,
           passed, total, dpassed, dtotal);
    EXPECT_EQ(passed, total);
    EXPECT_EQ(dpassed, dtotal);
    EXPECT_TRUE(total > 100);
    moe_tok_free(t);
    moe_tok_free(ref);
}

/* ----------------------------------------------------------------- refusals */

/* A GGUF of kvs must be refused with a first message containing needle. */
static void expect_refused(const char *dir, const char *file, const GgufKv *kvs, int n, const char *needle) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    Diag wd = {0};
    EXPECT_TRUE(gguf_write_file(&wd, path, kvs, n, NULL, 0, 32));
    Arena *a = arena_new();
    Diag d = {.quiet = true};
    GgufFile g = {0};
    void *blob = NULL;
    size_t len = 0;
    bool ok = gguf_open(&g, a, &d, path) && gguf_tokenizer_blob(&g, a, &d, &blob, &len);
    char label[300];
    snprintf(label, sizeof label, "%s: refused, the message names '%s'", file, needle);
    test_check(!ok && strstr(d.first, needle) && strstr(d.first, file), __FILE__, __LINE__, label, needle,
               ok ? "(accepted)" : d.first);
    gguf_close(&g);
    arena_destroy(a);
}

/* A small SentencePiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, ▁ a b ▁a ab ▁ab. */
#define SPM_N (3 + 256 + 6)

static void test_refusals(void) {
    const char *dir = test_tmpdir("gguf_tok");
    EXPECT_TRUE(dir != NULL);
    if (!dir) return;
    static char bytes[256][8];
    GgufStr toks[SPM_N];
    float scores[SPM_N];
    int32_t types[SPM_N];
    const char *head[3] = {"<unk>", "<s>", "</s>"}, *tail[6] = {"\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab",
                                                                   "\xE2\x96\x81" "ab"};
    for (int i = 0; i < SPM_N; i++) {
        const char *s;
        if (i < 3) {
            s = head[i];
            types[i] = 3;
        } else if (i < 259) {
            snprintf(bytes[i - 3], sizeof bytes[i - 3], "<0x%02X>", i - 3);
            s = bytes[i - 3];
            types[i] = 6;
        } else {
            s = tail[i - 259];
            types[i] = 1;
        }
        toks[i] = (GgufStr){s, strlen(s)};
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
    }
    GgufKv kv[8];
    int n = 0;
    kv[n++] = gguf_kv_str("tokenizer.ggml.model", "llama");
    kv[n++] = gguf_kv_arr("tokenizer.ggml.tokens", GGUF_STR, SPM_N, toks);
    kv[n++] = gguf_kv_arr("tokenizer.ggml.scores", GGUF_F32, SPM_N, scores);
    kv[n++] = gguf_kv_arr("tokenizer.ggml.token_type", GGUF_I32, SPM_N, types);
    kv[n++] = gguf_kv_u32("tokenizer.ggml.bos_token_id", 1);
    kv[n++] = gguf_kv_u32("tokenizer.ggml.eos_token_id", 2);

    /* the small vocabulary itself loads and encodes as the scores say: ▁ab, then ▁a b */
    char path[1400];
    snprintf(path, sizeof path, "%s/small.gguf", dir);
    Diag wd = {0};
    EXPECT_TRUE(gguf_write_file(&wd, path, kv, n, NULL, 0, 32));
    MoeTokenizer *t = load_gguf(path);
    if (t) {
        int32_t *ids = NULL;
        size_t k = 0;
        EXPECT_EQ(moe_tok_encode(t, "ab ab\n", 6, true, &ids, &k), MOE_TOK_OK);
        EXPECT_EQ(k, 4);
        if (k == 4) EXPECT_TRUE(ids[0] == 1 && ids[1] == 264 && ids[2] == 264 && ids[3] == 3 + 10);
        free(ids);
        moe_tok_free(t);
    }

    GgufKv bad[8];
    memcpy(bad, kv, sizeof kv);
    bad[0] = gguf_kv_str("tokenizer.ggml.model", "bert");
    expect_refused(dir, "model_bert.gguf", bad, n, "tokenizer.ggml.model");
    memcpy(bad, kv, sizeof kv);
    bad[1] = gguf_kv_str("tokenizer.ggml.model_x", "unused");
    expect_refused(dir, "no_tokens.gguf", bad, n, "tokenizer.ggml.tokens");
    memcpy(bad, kv, sizeof kv);
    float tied[SPM_N];
    memcpy(tied, scores, sizeof scores);
    tied[SPM_N - 1] = tied[SPM_N - 2]; /* ▁ab and ab score the same */
    bad[2] = gguf_kv_arr("tokenizer.ggml.scores", GGUF_F32, SPM_N, tied);
    expect_refused(dir, "tied_scores.gguf", bad, n, "tokenizer.ggml.scores");
    memcpy(bad, kv, sizeof kv);
    bad[1] = gguf_kv_arr("tokenizer.ggml.tokens", GGUF_STR, SPM_N - 8, toks); /* <0xF8>..: missing */
    bad[2] = gguf_kv_arr("tokenizer.ggml.scores", GGUF_F32, SPM_N - 8, scores);
    bad[3] = gguf_kv_arr("tokenizer.ggml.token_type", GGUF_I32, SPM_N - 8, types);
    expect_refused(dir, "few_bytes.gguf", bad, n, "tokenizer.ggml.tokens");
    memcpy(bad, kv, sizeof kv);
    bad[3] = gguf_kv_arr("tokenizer.ggml.token_type", GGUF_I32, SPM_N - 1, types);
    expect_refused(dir, "short_types.gguf", bad, n, "tokenizer.ggml.token_type");
    memcpy(bad, kv, sizeof kv);
    bad[4] = gguf_kv_u32("tokenizer.ggml.bos_token_id", SPM_N);
    expect_refused(dir, "bad_bos.gguf", bad, n, "tokenizer.ggml.bos_token_id");

    /* gpt2: an unknown pre-tokenizer, a missing one, missing merges */
    static const GgufStr gtoks[4] = {{"a", 1}, {"b", 1}, {"ab", 2}, {"<|end|>", 7}};
    static const GgufStr gmerges[1] = {{"a b", 3}};
    static const int32_t gtypes[4] = {1, 1, 1, 3};
    GgufKv g[6];
    int gn = 0;
    g[gn++] = gguf_kv_str("tokenizer.ggml.model", "gpt2");
    g[gn++] = gguf_kv_str("tokenizer.ggml.pre", "qwen2");
    g[gn++] = gguf_kv_arr("tokenizer.ggml.tokens", GGUF_STR, 4, gtoks);
    g[gn++] = gguf_kv_arr("tokenizer.ggml.token_type", GGUF_I32, 4, gtypes);
    g[gn++] = gguf_kv_arr("tokenizer.ggml.merges", GGUF_STR, 1, gmerges);
    snprintf(path, sizeof path, "%s/small_gpt2.gguf", dir);
    EXPECT_TRUE(gguf_write_file(&wd, path, g, gn, NULL, 0, 32));
    if ((t = load_gguf(path))) {
        int32_t *ids = NULL;
        size_t k = 0;
        EXPECT_EQ(moe_tok_encode(t, "abba<|end|>", 11, true, &ids, &k), MOE_TOK_OK);
        EXPECT_EQ(k, 4);
        if (k == 4) EXPECT_TRUE(ids[0] == 2 && ids[1] == 1 && ids[2] == 0 && ids[3] == 3);
        EXPECT_TRUE(moe_tok_is_special(t, 3));
        free(ids);
        moe_tok_free(t);
    }
    GgufKv gb[6];
    memcpy(gb, g, sizeof g);
    gb[1] = gguf_kv_str("tokenizer.ggml.pre", "olmo");
    expect_refused(dir, "pre_olmo.gguf", gb, gn, "'olmo'");
    memcpy(gb, g, sizeof g);
    gb[1] = gguf_kv_str("tokenizer.ggml.pre_x", "qwen2");
    expect_refused(dir, "no_pre.gguf", gb, gn, "tokenizer.ggml.pre");
    memcpy(gb, g, sizeof g);
    gb[4] = gguf_kv_str("tokenizer.ggml.merges_x", "");
    expect_refused(dir, "no_merges.gguf", gb, gn, "tokenizer.ggml.merges");
}

/* ----------------------------------------------------------------- moec run --prompt == --tokens */

static char *run_capture(const char *cmd, const char *out) {
    int rc = test_run(cmd, out, NULL);
    char label[1600];
    snprintf(label, sizeof label, "exit status 0: %s", cmd);
    test_check(rc == 0, __FILE__, __LINE__, label, "0", "non-zero");
    return rc == 0 ? test_read_file(out, NULL) : NULL;
}

/* The value of "key": [...] in a trace file, as text. */
static char *trace_array(const char *json, const char *key) {
    cJSON *root = cJSON_Parse(json);
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(root, key));
    cJSON_Delete(root);
    return s;
}

static void test_run_prompt(const char *golden) {
    const char *dir = test_tmpdir(golden);
    char model[1200], cmd[8000], text_file[1300], out[1300], trace_p[1300], trace_t[1300];
    snprintf(model, sizeof model, "%s/goldens/gguf/%s/model", MOEC_SHARED_DIR, golden);
    snprintf(text_file, sizeof text_file, "%s/prompt.txt", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(trace_p, sizeof trace_p, "%s/trace_prompt.json", dir);
    snprintf(trace_t, sizeof trace_t, "%s/trace_tokens.json", dir);
    FILE *f = fopen(text_file, "w");
    EXPECT_TRUE(f != NULL);
    if (!f) return;
    fputs("The harbor town woke slowly, and then the ferry came in.", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' tokenize '%s' --add-special < '%s'", MOEC_BIN, model, text_file);
    char *ids = run_capture(cmd, out);
    if (!ids) return;
    ids[strcspn(ids, "\n")] = 0;
    EXPECT_TRUE(strlen(ids) > 2);
    char *list = ids + 1; /* "[1,2,3]" -> "1,2,3" */
    list[strlen(list) - 1] = 0;
    snprintf(cmd, sizeof cmd, "'%s' run '%s' --prompt-file '%s' -n 4 --trace '%s'", MOEC_BIN, model, text_file, trace_p);
    char *gen_p = run_capture(cmd, out);
    snprintf(cmd, sizeof cmd, "'%s' run '%s' --tokens %s -n 4 --trace '%s'", MOEC_BIN, model, list, trace_t);
    char *gen_t = run_capture(cmd, out);
    char *tp = gen_p ? test_read_file(trace_p, NULL) : NULL, *tt = gen_t ? test_read_file(trace_t, NULL) : NULL;
    if (tp && tt) {
        for (int k = 0; k < 2; k++) {
            const char *key = k ? "generated_ids" : "prompt_ids";
            char *a = trace_array(tp, key), *b = trace_array(tt, key), label[200];
            snprintf(label, sizeof label, "%s: --prompt and --tokens (moec tokenize): same %s", golden, key);
            test_check(a && b && !strcmp(a, b), __FILE__, __LINE__, label, b ? b : "?", a ? a : "?");
            if (!k && a) printf("%s: --prompt gives %s\n", golden, a);
            free(a);
            free(b);
        }
    }
    free(tp);
    free(tt);
    free(gen_p);
    free(gen_t);
    free(ids);
}

/* The llama goldens' placeholder tokenizer (every score -1000) is refused by name everywhere. */
static void test_run_refused(const char *golden) {
    const char *dir = test_tmpdir(golden);
    char model[1200], cmd[8000], err[1300];
    snprintf(model, sizeof model, "%s/goldens/gguf/%s/model", MOEC_SHARED_DIR, golden);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' run '%s' --prompt hello -n 1", MOEC_BIN, model);
    int rc = test_run(cmd, NULL, err);
    char *msg = test_read_file(err, NULL);
    EXPECT_EQ(rc, 1);
    EXPECT_STR_CONTAINS(msg ? msg : "", "tokenizer.ggml.scores");
    free(msg);
}

int main(void) {
    struct stat st;
    if (stat(MOEC_SHARED_DIR "/goldens/gguf/tokenizers/qwen3.gguf", &st) != 0 ||
        stat(MOEC_SHARED_DIR "/tokenizers/qwen3/cases.jsonl", &st) != 0)
        test_skip("no " MOEC_SHARED_DIR "/goldens/gguf/tokenizers");
    test_refusals();
    test_reference("qwen3");
    test_reference("llama2");
    test_run_prompt("gguf_qwen3_moe_q8_0"); /* the qwen2 and qwen3 goldens carry the same tokenizer */
    test_run_refused("gguf_mixtral_f32");
    return test_done();
}
