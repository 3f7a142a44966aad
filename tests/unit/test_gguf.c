/* test_gguf: reading and writing GGUF files (compiler/frontend/gguf.c).
 * (a) every golden GGUF (goldens/gguf/<case>/model, split parts included) opens, with each
 *     tensor's ggml type, the tensor count and a few metadata values as case.json records them;
 *     the tokenizer GGUFs give their string arrays of 32000 and 151936 tokens;
 * (b) files from gguf_write_file read back exactly (every value type, every supported tensor
 *     type, two alignments, a 3-part split), through gguf_open and gguf_open_buffer;
 * (c) every class of bad input (bad magic and version, truncation at every byte, hostile
 *     counts and lengths, bad dims and types, misaligned, overlapping and out-of-range tensors,
 *     duplicates, broken splits) fails with one error naming the key or tensor. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "test.h"

static const char *tmp;

static const char *path_in(const char *name) {
    static char p[4][4200];
    static int which;
    which = (which + 1) % 4;
    snprintf(p[which], sizeof p[which], "%s/%s", tmp, name);
    return p[which];
}

static const char *base_of(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static void check_needles(const char *why, const char *text, va_list ap) {
    for (const char *needle; (needle = va_arg(ap, const char *));)
        test_check(strstr(text, needle) != NULL, __FILE__, __LINE__, why, needle, text);
}

/* Opens path, expects failure with one first error containing every needle (NULL-ended). */
static void expect_bad_file_(const char *path, const char *why, ...) {
    Diag d = {.quiet = true};
    Arena *a = arena_new();
    GgufFile g;
    bool ok = gguf_open(&g, a, &d, path);
    test_check(!ok, __FILE__, __LINE__, why, "gguf_open fails", "it succeeded");
    EXPECT_TRUE(d.n_errors >= 1);
    if (getenv("MOEC_TEST_VERBOSE")) printf("%-28s %s\n", why, d.first);
    va_list ap;
    va_start(ap, why);
    check_needles(why, d.first, ap);
    va_end(ap);
    gguf_close(&g);
    arena_destroy(a);
}

static void expect_bad_buf_(const void *bytes, size_t n, const char *why, ...) {
    Diag d = {.quiet = true};
    Arena *a = arena_new();
    GgufFile g;
    bool ok = gguf_open_buffer(&g, a, &d, "bad.gguf", bytes, n);
    test_check(!ok, __FILE__, __LINE__, why, "gguf_open_buffer fails", "it succeeded");
    EXPECT_TRUE(d.n_errors >= 1);
    if (getenv("MOEC_TEST_VERBOSE")) printf("%-28s %s\n", why, d.first);
    va_list ap;
    va_start(ap, why);
    check_needles(why, d.first, ap);
    va_end(ap);
    gguf_close(&g);
    arena_destroy(a);
}

/* the needle lists end with NULL by themselves */
#define expect_bad_file(path, ...) expect_bad_file_(path, __VA_ARGS__, NULL)
#define expect_bad_buf(bytes, n, ...) expect_bad_buf_(bytes, n, __VA_ARGS__, NULL)

/* ---------------------------------------------------------------- (a) the goldens */

static void check_meta_u32(const GgufFile *g, const char *key, const cJSON *want) {
    Diag d = {.quiet = true};
    uint32_t v = 0;
    bool ok = gguf_get_u32(g, &d, key, &v);
    test_check(ok, __FILE__, __LINE__, key, "readable as uint32", d.first);
    if (cJSON_IsNumber(want)) EXPECT_EQ(v, want->valueint);
}

static void golden_case(const char *dir, const char *name) {
    char p[9000];
    snprintf(p, sizeof p, "%s/%s/case.json", dir, name);
    char *text = test_read_file(p, NULL);
    if (!text) return; /* not a case folder */
    cJSON *c = cJSON_Parse(text);
    free(text);
    EXPECT_TRUE(c != NULL);
    if (!c) return;
    const cJSON *gg = cJSON_GetObjectItem(c, "gguf");
    const cJSON *files = cJSON_GetObjectItem(c, "model_files");
    const cJSON *types = cJSON_GetObjectItem(gg, "tensor_types");
    EXPECT_TRUE(cJSON_IsArray(files) && cJSON_IsObject(types));
    snprintf(p, sizeof p, "%s/%s/%s/%s", dir, name, cJSON_GetObjectItem(c, "model_dir")->valuestring,
             cJSON_GetArrayItem(files, 0)->valuestring);
    Diag d = {0};
    Arena *a = arena_new();
    GgufFile g;
    bool ok = gguf_open(&g, a, &d, p);
    test_check(ok, __FILE__, __LINE__, name, "opens", d.first);
    if (ok) {
        EXPECT_EQ(g.n_parts, cJSON_GetArraySize(files));
        EXPECT_EQ(g.n_tensors, cJSON_GetObjectItem(gg, "tensor_count")->valueint);
        EXPECT_EQ(g.n_tensors, cJSON_GetArraySize(types));
        for (const cJSON *t = types->child; t; t = t->next) {
            const GgufTensor *x = gguf_find(&g, t->string);
            test_check(x != NULL, __FILE__, __LINE__, name, t->string, "no such tensor");
            if (!x) continue;
            test_check(!strcmp(gguf_ggml_type_name(x->ggml_type), t->valuestring), __FILE__, __LINE__, t->string,
                       t->valuestring, gguf_ggml_type_name(x->ggml_type));
            /* the bytes lie in the tensor's own part, after its data section start */
            const GgufPart *pt = &g.parts[x->part];
            const char *base = (const char *)pt->map + pt->data_start;
            EXPECT_TRUE((const char *)x->ti.data == base + x->offset);
            EXPECT_TRUE(x->offset + x->ti.nbytes <= pt->size - pt->data_start);
            EXPECT_EQ(x->offset % g.parts[x->part].alignment, 0);
            EXPECT_TRUE(!strcmp(x->ti.file, base_of(pt->path)));
            for (int k = 0; k < x->ti.rank; k++) EXPECT_EQ(x->ti.shape[k], x->ne[x->ti.rank - 1 - k]);
        }
        const char *arch = NULL;
        EXPECT_TRUE(gguf_get_str(&g, &d, "general.architecture", &arch));
        if (arch) {
            test_check(!strcmp(arch, cJSON_GetObjectItem(gg, "architecture")->valuestring), __FILE__, __LINE__, name,
                       cJSON_GetObjectItem(gg, "architecture")->valuestring, arch);
            char key[128];
            snprintf(key, sizeof key, "%s.expert_count", arch);
            check_meta_u32(&g, key, cJSON_GetObjectItem(c, "num_experts"));
            snprintf(key, sizeof key, "%s.expert_used_count", arch);
            check_meta_u32(&g, key, cJSON_GetObjectItem(c, "num_experts_per_tok"));
            snprintf(key, sizeof key, "%s.block_count", arch);
            check_meta_u32(&g, key, cJSON_GetObjectItem(c, "num_hidden_layers"));
        }
        check_meta_u32(&g, "general.file_type", cJSON_GetObjectItem(gg, "general.file_type"));
        const GgufTensor *emb = gguf_find(&g, "token_embd.weight");
        EXPECT_TRUE(emb && emb->ti.rank == 2);
        if (emb) EXPECT_EQ(emb->ti.shape[0], cJSON_GetObjectItem(c, "vocab_size")->valueint);
        const GgufKv *toks = gguf_get_str_arr(&g, &d, "tokenizer.ggml.tokens");
        EXPECT_TRUE(toks != NULL);
        if (toks) EXPECT_EQ(toks->n, cJSON_GetObjectItem(c, "vocab_size")->valueint);
        /* a split: per-part counts as recorded */
        const cJSON *split = cJSON_GetObjectItem(gg, "split");
        if (cJSON_IsArray(split)) {
            EXPECT_EQ(g.n_parts, 3);
            EXPECT_EQ(g.n_tensors, 27);
            int k = 0;
            for (const cJSON *s = split->child; s && k < g.n_parts; s = s->next, k++)
                EXPECT_EQ(g.parts[k].n_tensors, cJSON_GetObjectItem(s, "n_tensors")->valueint);
            /* a later part is refused with the name of the first */
            snprintf(p, sizeof p, "%s/%s/model/%s", dir, name, cJSON_GetArrayItem(files, 1)->valuestring);
            expect_bad_file(p, "later split part", "split.no", "part 2 of 3", "-00001-of-00003.gguf instead");
            /* a part missing: the first two parts copied without the third */
            for (int i = 0; i < 2; i++) {
                char src[9000];
                snprintf(src, sizeof src, "%s/%s/model/%s", dir, name, cJSON_GetArrayItem(files, i)->valuestring);
                size_t n;
                char *bytes = test_read_file(src, &n);
                write_bytes(path_in(cJSON_GetArrayItem(files, i)->valuestring), bytes, n);
                free(bytes);
            }
            expect_bad_file(path_in(cJSON_GetArrayItem(files, 0)->valuestring), "split part missing",
                            "split part 3 of 3", "-00003-of-00003.gguf", "cannot open");
        }
    }
    gguf_close(&g);
    arena_destroy(a);
    cJSON_Delete(c);
}

static int golden_cases(void) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/goldens/gguf", MOEC_SHARED_DIR);
    DIR *dp = opendir(dir);
    if (!dp) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "tokenizers") == 0) continue;
        golden_case(dir, e->d_name);
        n++;
    }
    closedir(dp);
    EXPECT_TRUE(n >= 8);
    return n;
}

static void tokenizer_gguf(const char *file, uint64_t n_tokens, const char *model, const char *tok1, int eos) {
    char p[4200];
    snprintf(p, sizeof p, "%s/goldens/gguf/tokenizers/%s", MOEC_SHARED_DIR, file);
    Diag d = {0};
    Arena *a = arena_new();
    GgufFile g;
    bool ok = gguf_open(&g, a, &d, p);
    test_check(ok, __FILE__, __LINE__, file, "opens", d.first);
    if (ok) {
        EXPECT_EQ(g.n_tensors, 0);
        const GgufKv *toks = gguf_get_str_arr(&g, &d, "tokenizer.ggml.tokens");
        EXPECT_TRUE(toks != NULL);
        if (toks) {
            EXPECT_EQ(toks->n, n_tokens);
            test_check(!strcmp(gguf_arr_str(toks, 1).s, tok1), __FILE__, __LINE__, file, tok1, gguf_arr_str(toks, 1).s);
        }
        const GgufKv *types = gguf_get_num_arr(&g, &d, "tokenizer.ggml.token_type");
        EXPECT_TRUE(types && types->n == n_tokens);
        if (types) EXPECT_EQ(gguf_arr_i64(types, 1), !strcmp(model, "llama") ? 3 : 1); /* CONTROL / NORMAL */
        const char *m = NULL;
        EXPECT_TRUE(gguf_get_str(&g, &d, "tokenizer.ggml.model", &m));
        if (m) test_check(!strcmp(m, model), __FILE__, __LINE__, file, model, m);
        uint32_t eos_id = 0;
        EXPECT_TRUE(gguf_get_u32(&g, &d, "tokenizer.ggml.eos_token_id", &eos_id));
        EXPECT_EQ(eos_id, eos);
        if (!strcmp(model, "llama")) {
            const GgufKv *scores = gguf_get_num_arr(&g, &d, "tokenizer.ggml.scores");
            EXPECT_TRUE(scores && scores->n == n_tokens && scores->elem == GGUF_F32);
        } else {
            const GgufKv *merges = gguf_get_str_arr(&g, &d, "tokenizer.ggml.merges");
            EXPECT_TRUE(merges && merges->n == 151387);
        }
        /* wrong-type lookups name the key */
        Diag q = {.quiet = true};
        EXPECT_TRUE(!gguf_get_num_arr(&g, &q, "tokenizer.ggml.tokens"));
        EXPECT_STR_CONTAINS(q.first, "'tokenizer.ggml.tokens': wrong type");
        char buf[256];
        gguf_kv_format(toks, buf, sizeof buf);
        EXPECT_STR_CONTAINS(buf, "array[string; ");
    }
    gguf_close(&g);
    arena_destroy(a);
}

/* ---------------------------------------------------------------- (b) round trips */

static uint8_t blob[1 << 16]; /* tensor payloads: bytes 0, 1, 2, ... */

static StWriteTensor wt(const char *name, DType dt, int rank, int64_t s0, int64_t s1, int64_t s2) {
    StWriteTensor t = {.name = name, .dtype = dt, .rank = rank, .shape = {s0, s1, s2}, .data = blob};
    return t;
}

static size_t wt_bytes(const StWriteTensor *t) {
    size_t n = (size_t)(t->shape[t->rank - 1] / dtype_block_elems(t->dtype)) * dtype_block_bytes(t->dtype);
    for (int k = 0; k + 1 < t->rank; k++) n *= (size_t)t->shape[k];
    return n;
}

static void check_read_back(const GgufFile *g, const StWriteTensor *ts, int n_t, uint32_t alignment) {
    EXPECT_EQ(g->n_tensors, n_t);
    EXPECT_EQ(g->version, 3);
    EXPECT_EQ(g->alignment, alignment);
    for (int i = 0; i < n_t && i < g->n_tensors; i++) {
        const GgufTensor *x = gguf_find(g, ts[i].name);
        test_check(x == &g->t[i], __FILE__, __LINE__, "tensors in file order", ts[i].name, x ? x->ti.name : "none");
        if (!x) continue;
        EXPECT_EQ(x->ti.dtype, ts[i].dtype);
        EXPECT_EQ(x->ti.rank, ts[i].rank);
        for (int k = 0; k < ts[i].rank; k++) {
            EXPECT_EQ(x->ti.shape[k], ts[i].shape[k]);
            EXPECT_EQ(x->ne[ts[i].rank - 1 - k], ts[i].shape[k]);
        }
        for (int k = ts[i].rank; k < MOE_MAX_DIMS; k++) EXPECT_EQ(x->ne[k], 1);
        EXPECT_EQ(x->ti.nbytes, wt_bytes(&ts[i]));
        EXPECT_EQ(x->offset % alignment, 0);
        EXPECT_EQ(((const char *)x->ti.data - (const char *)g->parts[0].map) % alignment, 0);
        EXPECT_TRUE(memcmp(x->ti.data, blob, x->ti.nbytes) == 0);
        EXPECT_EQ(x->ggml_type, gguf_ggml_of_dtype(ts[i].dtype));
    }
    EXPECT_TRUE(gguf_find(g, "no.such.tensor") == NULL);
}

static const int32_t ARR_I32[] = {-1, 0, 7, 2147483647};
static const float ARR_F32[] = {0.5f, -2.0f, 1e-5f};
static const uint8_t ARR_BOOL[] = {1, 0, 1};
static const GgufStr ARR_STR[] = {{"<unk>", 5}, {"a\"b", 3}, {"", 0}, {"x\0y", 3}};

static int round_trip_kvs(GgufKv *kv) {
    int n = 0;
    kv[n++] = gguf_kv_str("general.architecture", "mixtral");
    kv[n++] = (GgufKv){.key = "k.u8", .type = GGUF_U8, .v.u = 200};
    kv[n++] = (GgufKv){.key = "k.i8", .type = GGUF_I8, .v.i = -100};
    kv[n++] = (GgufKv){.key = "k.u16", .type = GGUF_U16, .v.u = 60000};
    kv[n++] = (GgufKv){.key = "k.i16", .type = GGUF_I16, .v.i = -30000};
    kv[n++] = gguf_kv_u32("k.u32", 4000000000u);
    kv[n++] = gguf_kv_i32("k.i32", -2000000000);
    kv[n++] = gguf_kv_f32("k.f32", 1e-5f);
    kv[n++] = gguf_kv_bool("k.bool", true);
    kv[n++] = (GgufKv){.key = "k.u64", .type = GGUF_U64, .v.u = 1ull << 40};
    kv[n++] = (GgufKv){.key = "k.i64", .type = GGUF_I64, .v.i = -(1ll << 40)};
    kv[n++] = (GgufKv){.key = "k.f64", .type = GGUF_F64, .v.f = 0.1};
    kv[n++] = gguf_kv_arr("k.arr_i32", GGUF_I32, 4, ARR_I32);
    kv[n++] = gguf_kv_arr("k.arr_f32", GGUF_F32, 3, ARR_F32);
    kv[n++] = gguf_kv_arr("k.arr_bool", GGUF_BOOL, 3, ARR_BOOL);
    kv[n++] = gguf_kv_arr("k.arr_str", GGUF_STR, 4, ARR_STR);
    kv[n++] = gguf_kv_arr("k.arr_empty", GGUF_U8, 0, NULL);
    return n;
}

static void check_kvs(const GgufFile *g) {
    Diag d = {0};
    const char *s = NULL;
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0;
    float f = 0;
    bool b = false;
    EXPECT_TRUE(gguf_get_str(g, &d, "general.architecture", &s) && !strcmp(s, "mixtral"));
    EXPECT_TRUE(gguf_get_u32(g, &d, "k.u8", &u32) && u32 == 200);
    EXPECT_TRUE(gguf_get_i32(g, &d, "k.i8", &i32) && i32 == -100);
    EXPECT_TRUE(gguf_get_u32(g, &d, "k.u16", &u32) && u32 == 60000);
    EXPECT_TRUE(gguf_get_i32(g, &d, "k.i16", &i32) && i32 == -30000);
    EXPECT_TRUE(gguf_get_u32(g, &d, "k.u32", &u32) && u32 == 4000000000u);
    EXPECT_TRUE(gguf_get_i32(g, &d, "k.i32", &i32) && i32 == -2000000000);
    EXPECT_TRUE(gguf_get_f32(g, &d, "k.f32", &f) && f == 1e-5f);
    EXPECT_TRUE(gguf_get_bool(g, &d, "k.bool", &b) && b);
    EXPECT_TRUE(gguf_get_u64(g, &d, "k.u64", &u64) && u64 == 1ull << 40);
    EXPECT_TRUE(gguf_get_f32(g, &d, "k.f64", &f) && f == 0.1f);
    EXPECT_EQ(gguf_kv_find(g, "k.i64")->v.i, -(1ll << 40));
    EXPECT_EQ(gguf_kv_find(g, "k.f64")->v.f == 0.1, 1);
    const GgufKv *ai = gguf_get_num_arr(g, &d, "k.arr_i32");
    EXPECT_TRUE(ai && ai->n == 4 && ai->elem == GGUF_I32);
    for (uint64_t i = 0; ai && i < 4; i++) EXPECT_EQ(gguf_arr_i64(ai, i), ARR_I32[i]);
    const GgufKv *af = gguf_get_num_arr(g, &d, "k.arr_f32");
    for (uint64_t i = 0; af && i < 3; i++) EXPECT_NEAR(gguf_arr_f64(af, i), ARR_F32[i], 0);
    const GgufKv *ab = gguf_get_num_arr(g, &d, "k.arr_bool");
    EXPECT_TRUE(ab && gguf_arr_i64(ab, 0) == 1 && gguf_arr_i64(ab, 1) == 0);
    const GgufKv *as = gguf_get_str_arr(g, &d, "k.arr_str");
    EXPECT_TRUE(as && as->n == 4);
    for (uint64_t i = 0; as && i < 4; i++) {
        GgufStr x = gguf_arr_str(as, i);
        EXPECT_EQ(x.len, ARR_STR[i].len);
        EXPECT_TRUE(memcmp(x.s, ARR_STR[i].s, x.len) == 0 && x.s[x.len] == 0);
    }
    const GgufKv *ae = gguf_get_num_arr(g, &d, "k.arr_empty");
    EXPECT_TRUE(ae && ae->n == 0);
    EXPECT_EQ(d.n_errors, 0);
    /* iteration in file order */
    EXPECT_TRUE(g->n_kv >= 17);
    if (g->n_kv >= 2) EXPECT_TRUE(!strcmp(g->kv[0].key, "general.architecture") || !strcmp(g->kv[1].key, "general.architecture"));

    /* mismatches name the key, the expected and the found type */
    Diag q = {.quiet = true};
    EXPECT_TRUE(!gguf_get_u32(g, &q, "general.architecture", &u32));
    EXPECT_STR_CONTAINS(q.first, "key 'general.architecture': wrong type; expected a uint32, got a string");
    q = (Diag){.quiet = true};
    EXPECT_TRUE(!gguf_get_u32(g, &q, "k.i32", &u32));
    EXPECT_STR_CONTAINS(q.first, "key 'k.i32': value out of range; expected a uint32, got -2000000000");
    q = (Diag){.quiet = true};
    EXPECT_TRUE(!gguf_get_i32(g, &q, "k.u32", &i32));
    EXPECT_STR_CONTAINS(q.first, "'k.u32': value out of range");
    q = (Diag){.quiet = true};
    EXPECT_TRUE(!gguf_get_f32(g, &q, "k.missing", &f));
    EXPECT_STR_CONTAINS(q.first, "key 'k.missing': missing");
    q = (Diag){.quiet = true};
    EXPECT_TRUE(!gguf_get_bool(g, &q, "k.u8", &b));
    EXPECT_STR_CONTAINS(q.first, "'k.u8': wrong type; expected a bool, got 200");
    q = (Diag){.quiet = true};
    EXPECT_TRUE(!gguf_get_str_arr(g, &q, "k.arr_i32"));
    EXPECT_STR_CONTAINS(q.first, "'k.arr_i32': wrong type; expected an array of strings, got an array of int32");
    q = (Diag){.quiet = true};
    EXPECT_TRUE(!gguf_get_str(g, &q, "k.arr_str", &s));
    EXPECT_STR_CONTAINS(q.first, "'k.arr_str'");
    EXPECT_TRUE(gguf_kv_find(g, "nope") == NULL);

    char buf[160];
    gguf_kv_format(gguf_kv_find(g, "k.u32"), buf, sizeof buf);
    EXPECT_STR_CONTAINS(buf, "uint32 4000000000");
    gguf_kv_format(gguf_kv_find(g, "general.architecture"), buf, sizeof buf);
    EXPECT_STR_CONTAINS(buf, "string \"mixtral\"");
    gguf_kv_format(gguf_kv_find(g, "k.arr_str"), buf, sizeof buf);
    EXPECT_STR_CONTAINS(buf, "array[string; 4] \"<unk>\", \"a\\\"b\", \"\", \"x\\x00y\"");
    gguf_kv_format(gguf_kv_find(g, "k.arr_i32"), buf, 12);
    EXPECT_EQ(strlen(buf), 11);
    EXPECT_STR_CONTAINS(buf, "...");
}

static void round_trip(uint32_t alignment) {
    GgufKv kv[32];
    int n_kv = round_trip_kvs(kv);
    StWriteTensor ts[] = {
        wt("token_embd.weight", DT_F32, 2, 3, 5, 0),     wt("blk.0.attn_norm.weight", DT_F32, 1, 7, 0, 0),
        wt("f16", DT_F16, 2, 2, 3, 0),                   wt("bf16", DT_BF16, 2, 2, 4, 0),
        wt("q4_0", DT_Q4_0, 2, 2, 64, 0),                wt("q4_1", DT_Q4_1, 1, 32, 0, 0),
        wt("q5_0", DT_Q5_0, 1, 32, 0, 0),                wt("q5_1", DT_Q5_1, 1, 64, 0, 0),
        wt("q8_0", DT_Q8_0, 2, 3, 32, 0),                wt("blk.0.ffn_up_exps.weight", DT_Q4_K, 3, 2, 1, 256),
        wt("q5_k", DT_Q5_K, 1, 256, 0, 0),               wt("q6_k", DT_Q6_K, 2, 2, 256, 0),
        wt("empty", DT_F32, 2, 0, 4, 0),
    };
    int n_t = (int)(sizeof ts / sizeof ts[0]);
    char name[64];
    snprintf(name, sizeof name, "rt%u.gguf", alignment);
    const char *path = path_in(name);
    Diag d = {0};
    EXPECT_TRUE(gguf_write_file(&d, path, kv, n_kv, ts, n_t, alignment));
    Arena *a = arena_new();
    GgufFile g;
    bool ok = gguf_open(&g, a, &d, path);
    test_check(ok, __FILE__, __LINE__, "round trip opens", "ok", d.first);
    if (ok) {
        check_read_back(&g, ts, n_t, alignment);
        check_kvs(&g);
        EXPECT_EQ(g.n_kv, n_kv + (alignment != 32));
    }
    gguf_close(&g);
    /* the same bytes through the buffer entry */
    size_t n;
    char *bytes = test_read_file(path, &n);
    ok = gguf_open_buffer(&g, a, &d, path, bytes, n);
    test_check(ok, __FILE__, __LINE__, "round trip from memory", "ok", d.first);
    if (ok) check_read_back(&g, ts, n_t, alignment);
    gguf_close(&g);
    free(bytes);
    arena_destroy(a);
}

/* A 3-part split written part by part; opened from the first, its tensors come from all. */
static void write_split(const char *dir_name, int parts, const int *split_no, int tensors_count, bool dup) {
    static const char *const names[3][2] = {{"a.0", "a.1"}, {"b.0", "b.1"}, {"c.0", "c.1"}};
    for (int k = 0; k < parts; k++) {
        GgufKv kv[4];
        int n = 0;
        if (k == 0) kv[n++] = gguf_kv_str("general.architecture", "qwen3moe");
        kv[n++] = (GgufKv){.key = "split.no", .type = GGUF_U16, .v.u = (uint64_t)split_no[k]};
        kv[n++] = (GgufKv){.key = "split.count", .type = GGUF_U16, .v.u = (uint64_t)parts};
        kv[n++] = gguf_kv_i32("split.tensors.count", tensors_count);
        StWriteTensor ts[2] = {wt(names[k][0], DT_F32, 1, 8 + k, 0, 0), wt(names[k][1], DT_Q8_0, 2, 2, 32, 0)};
        if (dup && k == 2) ts[1].name = "a.1";
        char file[128];
        snprintf(file, sizeof file, "%s-%05d-of-%05d.gguf", dir_name, k + 1, parts);
        Diag d = {0};
        EXPECT_TRUE(gguf_write_file(&d, path_in(file), kv, n, ts, 2, 32));
    }
}

static void split_files(void) {
    const int good[3] = {0, 1, 2};
    write_split("sp", 3, good, 6, false);
    Diag d = {0};
    Arena *a = arena_new();
    GgufFile g;
    bool ok = gguf_open(&g, a, &d, path_in("sp-00001-of-00003.gguf"));
    test_check(ok, __FILE__, __LINE__, "split opens", "ok", d.first);
    if (ok) {
        EXPECT_EQ(g.n_parts, 3);
        EXPECT_EQ(g.n_tensors, 6);
        const GgufTensor *c0 = gguf_find(&g, "c.0");
        EXPECT_TRUE(c0 && c0->part == 2 && c0->ti.shape[0] == 10);
        if (c0) EXPECT_STR_CONTAINS(c0->ti.file, "sp-00003-of-00003.gguf");
        if (c0) EXPECT_TRUE(c0->ti.data == (const char *)g.parts[2].map + g.parts[2].data_start);
        if (c0) EXPECT_TRUE(memcmp(c0->ti.data, blob, c0->ti.nbytes) == 0);
        const GgufTensor *b1 = gguf_find(&g, "b.1");
        EXPECT_TRUE(b1 && b1->part == 1 && b1->ti.dtype == DT_Q8_0);
        const char *arch = NULL;
        EXPECT_TRUE(gguf_get_str(&g, &d, "general.architecture", &arch));
    }
    gguf_close(&g);
    arena_destroy(a);

    expect_bad_file(path_in("sp-00002-of-00003.gguf"), "later part", "sp-00002-of-00003.gguf: key 'split.no'",
                    "part 2 of 3", "sp-00001-of-00003.gguf instead");
    const int wrong_no[3] = {0, 2, 2};
    write_split("spno", 3, wrong_no, 6, false);
    expect_bad_file(path_in("spno-00001-of-00003.gguf"), "wrong split.no", "spno-00002-of-00003.gguf: key 'split.no'",
                    "expected 1", "got 2");
    write_split("spcount", 3, good, 7, false);
    expect_bad_file(path_in("spcount-00001-of-00003.gguf"), "split.tensors.count", "split.tensors.count", "expected 6",
                    "got 7");
    write_split("spdup", 3, good, 6, true);
    expect_bad_file(path_in("spdup-00001-of-00003.gguf"), "duplicate across parts", "tensor 'a.1': defined twice",
                    "also in spdup-00001-of-00003.gguf");
    write_split("spmiss", 3, good, 6, false);
    unlink(path_in("spmiss-00002-of-00003.gguf"));
    expect_bad_file(path_in("spmiss-00001-of-00003.gguf"), "split part missing", "split part 2 of 3", "cannot open",
                    "spmiss-00002-of-00003.gguf");
    /* the first part under another name cannot find the rest */
    size_t n;
    char *bytes = test_read_file(path_in("sp-00001-of-00003.gguf"), &n);
    write_bytes(path_in("renamed.gguf"), bytes, n);
    expect_bad_file(path_in("renamed.gguf"), "split renamed", "renamed.gguf: key 'split.count'", "-00001-of-00003.gguf",
                    NULL);
    expect_bad_buf(bytes, n, "split from memory", "split.count");
    free(bytes);
}

/* ---------------------------------------------------------------- (c) bad files */

/* The small good file every patch starts from: two keys, three tensors; the last tensor ends
 * the file exactly (no padding), so every truncation is an error. */
static char *base_file(size_t *n) {
    GgufKv kv[3] = {gguf_kv_str("general.architecture", "llama"), gguf_kv_u32("llama.expert_count", 4),
                    gguf_kv_arr("tokenizer.ggml.tokens", GGUF_STR, 4, ARR_STR)};
    StWriteTensor ts[3] = {wt("blk.0.ffn_up_exps.weight", DT_Q8_0, 2, 2, 32, 0), wt("output_norm.weight", DT_F32, 1, 8, 0, 0),
                           wt("token_embd.weight", DT_F32, 2, 2, 8, 0)};
    Diag d = {0};
    EXPECT_TRUE(gguf_write_file(&d, path_in("base.gguf"), kv, 3, ts, 3, 32));
    return test_read_file(path_in("base.gguf"), n);
}

/* Offset of the bytes just after the tensor name's text in the tensor infos. */
static size_t after_name(const char *b, size_t n, const char *name) {
    size_t len = strlen(name);
    for (size_t i = 8; i + len <= n; i++)
        if (!memcmp(b + i, name, len) && (uint64_t)(unsigned char)b[i - 8] == len && b[i + len] != '.') return i + len;
    fprintf(stderr, "no %s in the file\n", name);
    exit(1);
}

static void put64(char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (char)(v >> (8 * i));
}
static void put32(char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (char)(v >> (8 * i));
}

static void bad_files(void) {
    size_t n;
    char *base = base_file(&n);
    char *b = malloc(n);
    Diag d = {0};
    Arena *a = arena_new();
    GgufFile g;
    EXPECT_TRUE(gguf_open_buffer(&g, a, &d, "base.gguf", base, n));
    arena_destroy(a);
    /* the last tensor ends the file: 2 x 8 F32 = 64 bytes at an aligned offset */
    const size_t up = after_name(base, n, "blk.0.ffn_up_exps.weight");
    const size_t norm = after_name(base, n, "output_norm.weight");
    const size_t emb = after_name(base, n, "token_embd.weight");
    /* layout after a name: u32 n_dims, i64 ne[n_dims], u32 type, u64 offset */
    const size_t norm_off = norm + 4 + 8 + 4, emb_off = emb + 4 + 16 + 4, up_type = up + 4 + 16;

#define PATCH(stmt, why, ...)                                                                       \
    do {                                                                                            \
        memcpy(b, base, n);                                                                         \
        stmt;                                                                                       \
        expect_bad_buf(b, n, why, __VA_ARGS__);                                               \
    } while (0)

    PATCH(b[0] = 'X', "bad magic", "bad.gguf: magic: not a GGUF file", "58 47 55 46");
    PATCH(put32(b + 4, 1), "version 1", "version", "expected 2 or 3, got 1");
    PATCH(put32(b + 4, 4), "version 4", "version", "expected 2 or 3, got 4");
    PATCH(put32(b + 4, 0x03000000u), "big-endian", "big-endian");
    PATCH(put64(b + 8, 1ull << 60), "tensor count 2^60", "header: tensor count too large", "got 1152921504606846976");
    PATCH(put64(b + 16, 1ull << 60), "kv count 2^60", "header: key/value count too large");
    PATCH(put64(b + 8, 5), "tensor count 5", "tensor #4");
    PATCH(put64(b + 24, 1ull << 40), "key length 2^40", "key #0", "key name too long");
    PATCH(put64(b + 24, 1000), "key past the end", "key #0", "key name runs past the end");
    PATCH(put64(b + 24, 2000), "key too long", "key #0", "too long");
    PATCH(b[32] = 0, "NUL in a key", "key #0", "NUL byte");
    {
        const size_t arch_type = 24 + 8 + strlen("general.architecture");
        PATCH(put64(b + arch_type + 4, 1ull << 40), "string value past the end", "key 'general.architecture'",
              "string value runs past the end");
        PATCH(put32(b + arch_type, 13), "unknown value type", "key 'general.architecture'", "unknown value type", "got 13");
        PATCH(put32(b + arch_type, GGUF_BOOL); b[arch_type + 4] = 5, "bool 5", "key 'general.architecture'", "not a bool");
        PATCH(put32(b + arch_type, GGUF_U32), "retyped key desyncs", "key #1");
    }
    {
        const size_t toks = after_name(base, n, "tokenizer.ggml.tokens");
        PATCH(put32(b + toks + 4, GGUF_ARR), "nested array", "key 'tokenizer.ggml.tokens'", "arrays of arrays");
        PATCH(put32(b + toks + 4, 77), "bad element type", "key 'tokenizer.ggml.tokens'", "unknown array element type");
        PATCH(put64(b + toks + 8, 1ull << 62), "array too long", "key 'tokenizer.ggml.tokens'", "array length too large");
        PATCH(put64(b + toks + 16, 1ull << 50), "array string past end", "key 'tokenizer.ggml.tokens'",
              "string element 0 runs past the end");
    }
    PATCH(put32(b + up, 5), "n_dims 5", "tensor 'blk.0.ffn_up_exps.weight'", "n_dims <= 4, got 5");
    PATCH(put32(b + up_type, 10), "type Q2_K", "tensor 'blk.0.ffn_up_exps.weight': type Q2_K is not supported",
          "F32, F16, BF16, Q4_0");
    PATCH(put32(b + up_type, 99), "unknown type", "tensor 'blk.0.ffn_up_exps.weight': unknown ggml type 99");
    PATCH(put32(b + up_type, 4), "retired type id", "unknown ggml type 4");
    PATCH(put64(b + up + 4, 33), "row not whole blocks", "tensor 'blk.0.ffn_up_exps.weight'", "multiple of 32, got 33");
    PATCH(put64(b + up + 4, (uint64_t)-32), "negative ne", "tensor 'blk.0.ffn_up_exps.weight'", "negative");
    PATCH(put64(b + emb + 4, 1ull << 40); put64(b + emb + 12, 1ull << 40), "element overflow",
          "tensor 'token_embd.weight'", "overflows");
    PATCH(put64(b + emb + 4, 1ull << 62); put64(b + emb + 12, 1), "byte overflow", "tensor 'token_embd.weight'",
          "overflows");
    PATCH(put64(b + norm_off, 36), "misaligned", "tensor 'output_norm.weight': data offset is not aligned", "got 36");
    PATCH(put64(b + norm_off, 0), "overlap", "overlap tensor", "output_norm.weight");
    PATCH(put64(b + emb_off, 1024), "past the end", "tensor 'token_embd.weight'", "past the end of the data section");
    PATCH(put64(b + emb_off, UINT64_MAX - 31), "offset near 2^64", "tensor 'token_embd.weight'", "past the end");
    PATCH(memcpy(b + emb - strlen("output_norm.weight"), "output_norm.weight", strlen("output_norm.weight"));
          put64(b + emb - strlen("output_norm.weight") - 8, strlen("output_norm.weight")),
          "name length patched", "tensor #2"); /* a shorter name desyncs the infos */

    /* every truncation fails, through memory and (a few) through files */
    for (size_t cut = 0; cut < n; cut++) {
        char why[64];
        snprintf(why, sizeof why, "truncated to %zu bytes", cut);
        Diag q = {.quiet = true};
        Arena *ta = arena_new();
        bool ok = gguf_open_buffer(&g, ta, &q, "cut.gguf", base, cut);
        test_check(!ok && q.n_errors >= 1 && strstr(q.first, "cut.gguf: "), __FILE__, __LINE__, why,
                   "one error naming the file", q.first);
        gguf_close(&g);
        arena_destroy(ta);
    }
    write_bytes(path_in("cut.gguf"), base, 0);
    expect_bad_file(path_in("cut.gguf"), "empty file", "cut.gguf: magic", "an empty file");
    write_bytes(path_in("cut.gguf"), base, n / 2);
    expect_bad_file(path_in("cut.gguf"), "half a file", "cut.gguf");
    write_bytes(path_in("cut.gguf"), base, n - 1);
    expect_bad_file(path_in("cut.gguf"), "one byte short", "tensor 'token_embd.weight'", "past the end");
    expect_bad_file(path_in("no-such.gguf"), "missing file", "no-such.gguf", "cannot open");
    expect_bad_file(tmp, "a folder", "not a regular file");

    /* the writer makes the rest */
    GgufKv kv[3] = {gguf_kv_str("general.architecture", "llama"), gguf_kv_u32("llama.expert_count", 4),
                    gguf_kv_u32("llama.expert_count", 8)};
    StWriteTensor ts[2] = {wt("token_embd.weight", DT_F32, 1, 8, 0, 0), wt("token_embd.weight", DT_F32, 1, 8, 0, 0)};
    EXPECT_TRUE(gguf_write_file(&d, path_in("dupkey.gguf"), kv, 3, ts, 1, 32));
    expect_bad_file(path_in("dupkey.gguf"), "duplicate key", "key 'llama.expert_count': defined twice");
    EXPECT_TRUE(gguf_write_file(&d, path_in("dupname.gguf"), kv, 2, ts, 2, 32));
    expect_bad_file(path_in("dupname.gguf"), "duplicate tensor", "dupname.gguf: tensor 'token_embd.weight': defined twice");
    GgufKv al = gguf_kv_u32("general.alignment", 24);
    EXPECT_TRUE(gguf_write_file(&d, path_in("align24.gguf"), &al, 1, ts, 1, 32));
    expect_bad_file(path_in("align24.gguf"), "alignment 24", "key 'general.alignment': not a power of two", "got 24");
    al = gguf_kv_str("general.alignment", "32");
    EXPECT_TRUE(gguf_write_file(&d, path_in("alignstr.gguf"), &al, 1, ts, 1, 32));
    expect_bad_file(path_in("alignstr.gguf"), "alignment a string", "key 'general.alignment': wrong type", "a string");
    /* a file with no tensors may end right after its metadata (the tokenizer GGUFs do) */
    EXPECT_TRUE(gguf_write_file(&d, path_in("notensors.gguf"), kv, 2, NULL, 0, 32));
    a = arena_new();
    EXPECT_TRUE(gguf_open(&g, a, &d, path_in("notensors.gguf")) && g.n_tensors == 0 && g.n_kv == 2);
    gguf_close(&g);
    arena_destroy(a);
    EXPECT_EQ(d.n_errors, 0);
    free(b);
    free(base);
}

int main(void) {
    tmp = test_tmpdir("gguf");
    if (!tmp) {
        fprintf(stderr, "no temporary folder\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof blob; i++) blob[i] = (uint8_t)(i * 7 + 1);
    EXPECT_TRUE(!strcmp(gguf_ggml_type_name(10), "Q2_K") && !strcmp(gguf_ggml_type_name(30), "BF16"));
    EXPECT_TRUE(!strcmp(gguf_ggml_type_name(4), "?") && !strcmp(gguf_ggml_type_name(1000), "?"));
    round_trip(32);
    round_trip(64);
    split_files();
    bad_files();
    int n_cases = golden_cases();
    if (n_cases >= 0) {
        tokenizer_gguf("llama2.gguf", 32000, "llama", "<s>", 2);
        tokenizer_gguf("qwen3.gguf", 151936, "gpt2", "\"", 151645);
    } else {
        printf("goldens/gguf not found under %s: golden checks skipped\n", MOEC_SHARED_DIR);
    }
    return test_done();
}
