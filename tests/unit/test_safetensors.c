/* test_safetensors: writing and reading the safetensors container (compiler/frontend/safetensors.c).
 * Good files written by st_write_file / the streaming writer read back exactly (single file and a
 * 2-shard folder with an index); every class of bad input is refused with an error naming the
 * file, the tensor and the expected / found values; the golden checkpoints read back byte-exact
 * against an independent parse of their headers. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "test.h"

static char tmp[4096];

static const char *path_in(const char *name) {
    static char p[2][4200];
    static int which;
    which ^= 1;
    snprintf(p[which], sizeof p[which], "%s/%s", tmp, name);
    return p[which];
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* A safetensors file with this header text (not padded) and n_data bytes of data 0, 1, 2, ... */
static void write_raw(const char *path, const char *header, size_t n_data) {
    size_t hl = strlen(header);
    unsigned char *b = calloc(1, 8 + hl + n_data + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < n_data; i++) b[8 + hl + i] = (unsigned char)i;
    write_bytes(path, b, 8 + hl + n_data);
    free(b);
}

/* Opens path, expects failure, and checks the first error contains every needle (NULL-ended). */
static void expect_bad_file(const char *path, const char *why, ...) {
    Diag d = {.quiet = true};
    Arena *a = arena_new();
    TensorTable tt = {0};
    bool ok = st_open_file(&tt, a, &d, path);
    test_check(!ok, __FILE__, __LINE__, why, "st_open_file fails", "it succeeded");
    EXPECT_TRUE(d.n_errors >= 1);
    if (getenv("MOEC_TEST_VERBOSE")) printf("%-28s %s\n", why, d.first);
    va_list ap;
    va_start(ap, why);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        test_check(strstr(d.first, needle) != NULL, __FILE__, __LINE__, why, needle, d.first);
    va_end(ap);
    st_close(&tt);
    arena_destroy(a);
}

static void expect_bad_dir(const char *dir, const char *why, ...) {
    Diag d = {.quiet = true};
    Arena *a = arena_new();
    TensorTable tt;
    bool ok = st_open_dir(&tt, a, &d, dir);
    test_check(!ok, __FILE__, __LINE__, why, "st_open_dir fails", "it succeeded");
    if (getenv("MOEC_TEST_VERBOSE")) printf("%-28s %s\n", why, d.first);
    va_list ap;
    va_start(ap, why);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        test_check(strstr(d.first, needle) != NULL, __FILE__, __LINE__, why, needle, d.first);
    va_end(ap);
    st_close(&tt);
    arena_destroy(a);
}

/* ---------------------------------------------------------------- good files */

static float f32_data[6] = {1, -2, 3.5f, 0.25f, -0, 1e30f};
static uint16_t bf16_data[4] = {0x3f80, 0xbf80, 0x4000, 0x7f80};
static uint16_t f16_data[8] = {0x3c00, 0xbc00, 0x4000, 0x0001, 0x7bff, 0x8000, 0x3555, 0x0400};
static float scalar_data[1] = {42};

static const StWriteTensor good[] = {
    {"w.f32", DT_F32, 2, {2, 3}, f32_data},
    {"a.bf16", DT_BF16, 1, {4}, bf16_data},
    {"m.f16", DT_F16, 4, {2, 2, 2, 1}, f16_data},
    {"s.scalar", DT_F32, 0, {0}, scalar_data},
    {"z.empty", DT_BF16, 2, {0, 5}, NULL},
    {"z.empty2", DT_F32, 1, {0}, NULL},
};
enum { N_GOOD = sizeof good / sizeof good[0] };

static size_t bytes_of(const StWriteTensor *t) {
    size_t n = dtype_size(t->dtype);
    for (int i = 0; i < t->rank; i++) n *= (size_t)t->shape[i];
    return n;
}

/* Every tensor of ws[0..n) is in tt with the same file, dtype, shape and bytes. */
static void check_table(const TensorTable *tt, const StWriteTensor *ws, int n, const char *file) {
    for (int i = 0; i < n; i++) {
        const TensorInfo *t = st_find(tt, ws[i].name);
        test_check(t != NULL, __FILE__, __LINE__, "tensor present", ws[i].name, "missing");
        if (!t) continue;
        if (file) EXPECT_STR_CONTAINS(t->file, file);
        EXPECT_EQ(t->dtype, ws[i].dtype);
        EXPECT_EQ(t->rank, ws[i].rank);
        for (int k = 0; k < ws[i].rank; k++) EXPECT_EQ(t->shape[k], ws[i].shape[k]);
        EXPECT_EQ(t->nbytes, bytes_of(&ws[i]));
        if (t->nbytes) EXPECT_TRUE(memcmp(t->data, ws[i].data, t->nbytes) == 0);
    }
    for (int i = 1; i < tt->n; i++) EXPECT_TRUE(strcmp(tt->t[i - 1].name, tt->t[i].name) < 0);
}

static void test_single_file(void) {
    Diag d = {.quiet = true};
    const char *dir = path_in("single");
    mkdir(dir, 0755);
    char file[4300];
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    EXPECT_TRUE(st_write_file(&d, file, good, N_GOOD));
    EXPECT_EQ(d.n_errors, 0);

    /* header: 8-byte length, padded to a multiple of 8, no temporary left behind */
    size_t len;
    unsigned char *raw = (unsigned char *)test_read_file(file, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | raw[i];
    EXPECT_EQ(hl % 8, 0);
    size_t data_bytes = 0;
    for (int i = 0; i < N_GOOD; i++) data_bytes += bytes_of(&good[i]);
    EXPECT_EQ(len, 8 + hl + data_bytes);
    EXPECT_TRUE(raw[8] == '{');
    cJSON *h = cJSON_ParseWithLength((const char *)raw + 8, hl);
    EXPECT_TRUE(h != NULL);
    cJSON *fmt = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "__metadata__"), "format");
    EXPECT_TRUE(cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "pt"));
    cJSON_Delete(h);
    free(raw);
    DIR *dp = opendir(dir);
    int entries = 0;
    for (struct dirent *e; (e = readdir(dp));) entries += e->d_name[0] != '.';
    closedir(dp);
    EXPECT_EQ(entries, 1);

    Arena *a = arena_new();
    TensorTable tt;
    EXPECT_TRUE(st_open_dir(&tt, a, &d, dir));
    EXPECT_EQ(tt.n, N_GOOD);
    EXPECT_EQ(tt.n_shards, 1);
    check_table(&tt, good, N_GOOD, "model.safetensors");
    EXPECT_TRUE(!strcmp(tt.t[0].name, "a.bf16"));
    EXPECT_TRUE(st_find(&tt, "nope") == NULL);
    EXPECT_TRUE(st_find(&tt, "") == NULL);
    EXPECT_EQ(st_bytes_of(&tt, DT_F32), 6 * 4 + 4);
    EXPECT_EQ(st_bytes_of(&tt, DT_BF16), 8);
    EXPECT_EQ(st_bytes_of(&tt, DT_F16), 16);
    const TensorInfo *s = st_find(&tt, "s.scalar");
    EXPECT_TRUE(s && s->rank == 0 && s->nbytes == 4);
    st_close(&tt);
    arena_destroy(a);

    /* st_open_file appends to a zeroed table */
    a = arena_new();
    TensorTable t2 = {0};
    EXPECT_TRUE(st_open_file(&t2, a, &d, file));
    check_table(&t2, good, N_GOOD, "model.safetensors");
    st_close(&t2);
    arena_destroy(a);
    EXPECT_EQ(d.n_errors, 0);
}

/* The streaming writer, fed in odd-sized pieces, writes the same bytes as st_write_file. */
static void test_streaming(void) {
    Diag d = {.quiet = true};
    const char *one = path_in("stream_ref.safetensors"), *two = path_in("stream.safetensors");
    EXPECT_TRUE(st_write_file(&d, one, good, N_GOOD));
    unsigned char all[256];
    size_t n = 0;
    for (int i = 0; i < N_GOOD; i++) {
        if (bytes_of(&good[i])) memcpy(all + n, good[i].data, bytes_of(&good[i]));
        n += bytes_of(&good[i]);
    }
    StWriter w;
    EXPECT_TRUE(st_writer_begin(&w, &d, two, good, N_GOOD));
    for (size_t at = 0; at < n; at += 7) EXPECT_TRUE(st_writer_append(&w, all + at, n - at < 7 ? n - at : 7));
    EXPECT_TRUE(st_writer_finish(&w));
    size_t l1, l2;
    char *b1 = test_read_file(one, &l1), *b2 = test_read_file(two, &l2);
    EXPECT_EQ(l1, l2);
    EXPECT_TRUE(b1 && b2 && l1 == l2 && memcmp(b1, b2, l1) == 0);
    free(b1);
    free(b2);

    /* abort leaves nothing behind */
    const char *three = path_in("aborted.safetensors");
    EXPECT_TRUE(st_writer_begin(&w, &d, three, good, N_GOOD));
    EXPECT_TRUE(st_writer_append(&w, all, 5));
    st_writer_abort(&w);
    EXPECT_TRUE(access(three, F_OK) != 0);
    DIR *dp = opendir(tmp);
    for (struct dirent *e; (e = readdir(dp));)
        test_check(strstr(e->d_name, ".tmp.") == NULL, __FILE__, __LINE__, "no temporary left", "none", e->d_name);
    closedir(dp);
}

static void test_sharded_dir(void) {
    Diag d = {.quiet = true};
    const char *dir = path_in("sharded");
    mkdir(dir, 0755);
    char p1[4300], p2[4300], idx[4300];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    EXPECT_TRUE(st_write_file(&d, p1, good, 3));
    EXPECT_TRUE(st_write_file(&d, p2, good + 3, N_GOOD - 3));
    const char *index =
        "{\"metadata\": {\"total_size\": 76}, \"weight_map\": {"
        "\"w.f32\": \"model-00001-of-00002.safetensors\", \"a.bf16\": \"model-00001-of-00002.safetensors\","
        "\"m.f16\": \"model-00001-of-00002.safetensors\", \"s.scalar\": \"model-00002-of-00002.safetensors\","
        "\"z.empty\": \"model-00002-of-00002.safetensors\"}}";
    /* z.empty2 is in shard 2 but not in the map: allowed */
    write_bytes(idx, index, strlen(index));
    /* a stray model.safetensors is ignored when the index exists */
    write_bytes(path_in("sharded/model.safetensors"), "junk", 4);
    Arena *a = arena_new();
    TensorTable tt;
    EXPECT_TRUE(st_open_dir(&tt, a, &d, dir));
    EXPECT_EQ(d.n_errors, 0);
    EXPECT_EQ(tt.n, N_GOOD);
    EXPECT_EQ(tt.n_shards, 2);
    check_table(&tt, good, 3, "model-00001-of-00002.safetensors");
    check_table(&tt, good + 3, N_GOOD - 3, "model-00002-of-00002.safetensors");
    st_close(&tt);
    arena_destroy(a);

    /* a shard named in the map is missing */
    const char *dir2 = path_in("sharded_missing");
    mkdir(dir2, 0755);
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir2);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir2);
    EXPECT_TRUE(st_write_file(&d, p1, good, 3));
    write_bytes(idx, index, strlen(index));
    expect_bad_dir(dir2, "missing shard", "model.safetensors.index.json: shard 'model-00002-of-00002.safetensors' "
                   "(for tensor 's.scalar'): no such file", NULL);

    /* a tensor mapped to the wrong shard, and one that is nowhere */
    const char *dir3 = path_in("sharded_wrong");
    mkdir(dir3, 0755);
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir3);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir3);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir3);
    EXPECT_TRUE(st_write_file(&d, p1, good, 3));
    EXPECT_TRUE(st_write_file(&d, p2, good + 3, N_GOOD - 3));
    const char *wrong = "{\"weight_map\": {\"a.bf16\": \"model-00001-of-00002.safetensors\","
                        "\"w.f32\": \"model-00002-of-00002.safetensors\","
                        "\"s.scalar\": \"model-00002-of-00002.safetensors\"}}";
    write_bytes(idx, wrong, strlen(wrong));
    expect_bad_dir(dir3, "tensor in the wrong shard", "model.safetensors.index.json", "'w.f32'",
                   "expected it in model-00002-of-00002.safetensors", "got it in model-00001-of-00002.safetensors", NULL);
    const char *ghost = "{\"weight_map\": {\"ghost\": \"model-00002-of-00002.safetensors\"}}";
    write_bytes(idx, ghost, strlen(ghost));
    expect_bad_dir(dir3, "tensor in no shard", "model.safetensors.index.json", "'ghost'",
                   "expected it in model-00002-of-00002.safetensors", "got it in no shard", NULL);
    const char *nomap = "{\"metadata\": {}}";
    write_bytes(idx, nomap, strlen(nomap));
    expect_bad_dir(dir3, "index without weight_map", "model.safetensors.index.json", "'weight_map'", "missing", NULL);
    write_bytes(idx, "{\"weight_map\": ", 15);
    expect_bad_dir(dir3, "index not JSON", "model.safetensors.index.json", "not valid JSON", NULL);

    /* the same tensor in two shards */
    const char *dup = "{\"weight_map\": {\"w.f32\": \"model-00001-of-00002.safetensors\","
                      "\"s.scalar\": \"model-00002-of-00002.safetensors\"}}";
    EXPECT_TRUE(st_write_file(&d, p2, good, 1)); /* w.f32 again */
    write_bytes(idx, dup, strlen(dup));
    expect_bad_dir(dir3, "duplicate across shards", "'w.f32'", "defined twice", "model-00001-of-00002.safetensors",
                   "model-00002-of-00002.safetensors", NULL);

    /* neither an index nor model.safetensors */
    const char *empty = path_in("empty_dir");
    mkdir(empty, 0755);
    expect_bad_dir(empty, "no weights", empty, "model.safetensors", "got neither", NULL);
    expect_bad_dir(path_in("no_such_dir"), "no folder", "no_such_dir", "not a folder", NULL);
    EXPECT_EQ(d.n_errors, 0);
}

/* ---------------------------------------------------------------- bad files */

static void test_bad_files(void) {
    const char *p = path_in("bad.safetensors");
    char h[1024];

    write_bytes(p, "\x10\0\0\0\0", 5);
    expect_bad_file(p, "shorter than 8 bytes", "bad.safetensors", "expected at least 8 bytes", "got 5", NULL);
    write_bytes(p, "", 0);
    expect_bad_file(p, "empty file", "bad.safetensors", "got 0", NULL);

    write_bytes(p, "\xe8\x03\0\0\0\0\0\0{\"a\":1}  ", 18); /* header length 1000, 10 bytes follow */
    expect_bad_file(p, "header length past EOF", "bad.safetensors", "header length", "expected at most 10 bytes",
                    "got 1000", NULL);
    write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    expect_bad_file(p, "header length 2^64-1", "bad.safetensors", "header length", "got 18446744073709551615", NULL);
    {   /* an absurd header length inside a big (sparse) file */
        FILE *f = fopen(p, "wb");
        unsigned char len8[8] = {0, 0, 0, 0x0c, 0, 0, 0, 0}; /* 192 MiB */
        fwrite(len8, 1, 8, f);
        fclose(f);
        EXPECT_TRUE(truncate(p, 256 << 20) == 0);
        expect_bad_file(p, "header length absurd", "bad.safetensors", "too large", "expected at most 104857600 bytes",
                        "got 201326592", NULL);
    }

    write_raw(p, "{\"a\": {\"dtype\": ", 0);
    expect_bad_file(p, "invalid JSON", "bad.safetensors", "not valid JSON", NULL);
    write_raw(p, "[1, 2]", 0);
    expect_bad_file(p, "not an object", "bad.safetensors", "expected an object", "got a list", NULL);
    write_raw(p, "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}} xx", 4);
    expect_bad_file(p, "junk after JSON", "bad.safetensors", "junk after the JSON", NULL);

    write_raw(p, "{\"t.w\": 7}", 0);
    expect_bad_file(p, "entry not an object", "bad.safetensors", "tensor 't.w'", "expected an object", "got a number", NULL);
    write_raw(p, "{\"t.w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8);
    expect_bad_file(p, "missing dtype", "bad.safetensors", "tensor 't.w'", "'dtype' is missing", "got nothing", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": 3, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8);
    expect_bad_file(p, "dtype wrong type", "bad.safetensors", "tensor 't.w'", "'dtype' has the wrong type", "got a number", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8);
    expect_bad_file(p, "missing shape", "bad.safetensors", "tensor 't.w'", "'shape' is missing", "expected a list of integers", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": \"2\", \"data_offsets\": [0, 8]}}", 8);
    expect_bad_file(p, "shape wrong type", "bad.safetensors", "tensor 't.w'", "'shape' has the wrong type", "got a string", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}", 8);
    expect_bad_file(p, "non-integral dim", "bad.safetensors", "tensor 't.w'", "expected an integer", "non-integral", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8);
    expect_bad_file(p, "missing data_offsets", "bad.safetensors", "tensor 't.w'", "'data_offsets' is missing",
                    "expected a list of 2 integers", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4, 8]}}", 8);
    expect_bad_file(p, "data_offsets of 3", "bad.safetensors", "tensor 't.w'", "expected a list of 2 integers",
                    "got a list of another length", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": {\"a\": 1}}}", 8);
    expect_bad_file(p, "data_offsets object", "bad.safetensors", "tensor 't.w'", "got an object", NULL);

    write_raw(p, "{\"t.ids\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 16]}}", 16);
    expect_bad_file(p, "dtype I64", "bad.safetensors", "tensor 't.ids'", "expected BF16, F16 or F32", "got I64", NULL);
    write_raw(p, "{\"t.q\": {\"dtype\": \"F8_E4M3\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 4);
    expect_bad_file(p, "dtype F8", "bad.safetensors", "tensor 't.q'", "expected BF16, F16 or F32", "got F8_E4M3", NULL);

    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [4, -2], \"data_offsets\": [0, 0]}}", 0);
    expect_bad_file(p, "negative dim", "bad.safetensors", "tensor 't.w'", "dim 1 is negative", "expected >= 0", "got -2", NULL);

    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8);
    expect_bad_file(p, "begin > end", "bad.safetensors", "tensor 't.w'", "expected begin <= end", "got begin 8 > end 4", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 8);
    expect_bad_file(p, "negative offset", "bad.safetensors", "tensor 't.w'", "expected offsets >= 0", "got -4", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [6], \"data_offsets\": [0, 24]}}", 16);
    expect_bad_file(p, "end past the data", "bad.safetensors", "tensor 't.w'", "run past the end of the data section",
                    "expected end <= 16", "got 24", NULL);

    write_raw(p, "{\"t.a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                 " \"t.b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [12, 20]}}", 20);
    expect_bad_file(p, "overlap", "bad.safetensors", "tensor 't.b'", "overlap tensor 't.a'", "expected disjoint",
                    "got 4 shared bytes", NULL);
    write_raw(p, "{\"t.a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                 " \"t.b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 16);
    expect_bad_file(p, "overlap (contained)", "bad.safetensors", "tensor 't.b'", "overlap tensor 't.a'", NULL);

    write_raw(p, "{\"t.w\": {\"dtype\": \"BF16\", \"shape\": [3, 4], \"data_offsets\": [0, 20]}}", 24);
    expect_bad_file(p, "size mismatch", "bad.safetensors", "tensor 't.w'", "[3, 4] x BF16", "expected 24 bytes", "got 20", NULL);
    snprintf(h, sizeof h, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [1099511627776, 1099511627776], \"data_offsets\": [0, 8]}}");
    write_raw(p, h, 8);
    expect_bad_file(p, "size overflow", "bad.safetensors", "tensor 't.w'", "overflows 64 bits", "expected 8 bytes", "got more than 2^64", NULL);
    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 1], \"data_offsets\": [0, 4]}}", 4);
    expect_bad_file(p, "rank 5", "bad.safetensors", "tensor 't.w'", "expected at most 4 dims", "got 5", NULL);

    write_raw(p, "{\"t.w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                 " \"t.w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8);
    expect_bad_file(p, "duplicate key in one file", "bad.safetensors", "tensor 't.w'", "defined twice", NULL);

    /* a good file cut short: the bounds check catches it */
    Diag d = {.quiet = true};
    EXPECT_TRUE(st_write_file(&d, p, good, 3));
    struct stat st;
    stat(p, &st);
    EXPECT_TRUE(truncate(p, st.st_size - 3) == 0);
    expect_bad_file(p, "truncated file", "bad.safetensors", "tensor 'm.f16'", "run past the end of the data section",
                    "truncated", NULL);

    /* __metadata__ is not a tensor; empty tensors may share an offset */
    write_raw(p, "{\"__metadata__\": {\"format\": \"pt\"}, \"e1\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
                 " \"e2\": {\"dtype\": \"F16\", \"shape\": [3, 0], \"data_offsets\": [4, 4]},"
                 " \"t.w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8);
    Arena *a = arena_new();
    TensorTable tt = {0};
    EXPECT_TRUE(st_open_file(&tt, a, &d, p));
    EXPECT_EQ(tt.n, 3);
    EXPECT_TRUE(st_find(&tt, "__metadata__") == NULL);
    st_close(&tt);
    arena_destroy(a);
    EXPECT_EQ(d.n_errors, 0);

    expect_bad_file(path_in("absent.safetensors"), "no such file", "absent.safetensors", "cannot open", NULL);
}

/* ---------------------------------------------------------------- goldens */

/* Each golden checkpoint reads back; every tensor's bytes equal an independent parse. */
static void test_goldens(void) {
    char root[4096];
    snprintf(root, sizeof root, "%s/goldens", MOEC_SHARED_DIR);
    DIR *dp = opendir(root);
    if (!dp) {
        printf("note: %s absent; golden checkpoints not checked\n", root);
        return;
    }
    int n_models = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        char dir[4400];
        snprintf(dir, sizeof dir, "%s/%s/model", root, e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        n_models++;
        Diag d = {.quiet = true};
        Arena *a = arena_new();
        TensorTable tt;
        bool ok = st_open_dir(&tt, a, &d, dir);
        test_check(ok, __FILE__, __LINE__, dir, "opens", d.first);
        if (!ok) {
            arena_destroy(a);
            continue;
        }
        EXPECT_TRUE(st_find(&tt, "model.embed_tokens.weight") != NULL);
        EXPECT_TRUE(st_find(&tt, "model.norm.weight") != NULL);
        int seen = 0;
        for (int s = 0; s < tt.n_shards; s++) {
            size_t len;
            char *raw = test_read_file(tt.shards[s].path, &len);
            uint64_t hl = 0;
            for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)raw[i];
            cJSON *h = cJSON_ParseWithLength(raw + 8, hl);
            EXPECT_TRUE(h != NULL);
            const char *base = strrchr(tt.shards[s].path, '/') + 1;
            for (cJSON *it = h ? h->child : NULL; it; it = it->next) {
                if (!strcmp(it->string, "__metadata__")) continue;
                seen++;
                const TensorInfo *t = st_find(&tt, it->string);
                test_check(t != NULL, __FILE__, __LINE__, "golden tensor found", it->string, "missing");
                if (!t) continue;
                EXPECT_TRUE(!strcmp(t->file, base));
                const char *dt = cJSON_GetObjectItem(it, "dtype")->valuestring;
                EXPECT_TRUE(!strcmp(dt, st_dtype_name(t->dtype)));
                cJSON *shape = cJSON_GetObjectItem(it, "shape");
                EXPECT_EQ(t->rank, cJSON_GetArraySize(shape));
                for (int k = 0; k < t->rank; k++) EXPECT_EQ(t->shape[k], cJSON_GetArrayItem(shape, k)->valuedouble);
                cJSON *off = cJSON_GetObjectItem(it, "data_offsets");
                size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, en = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
                EXPECT_EQ(t->nbytes, en - b);
                EXPECT_TRUE(8 + hl + en <= len && memcmp(t->data, raw + 8 + hl + b, t->nbytes) == 0);
            }
            cJSON_Delete(h);
            free(raw);
        }
        EXPECT_EQ(seen, tt.n);
        st_close(&tt);
        arena_destroy(a);
    }
    closedir(dp);
    EXPECT_TRUE(n_models >= 1);
    printf("goldens: %d checkpoints read back byte-exact\n", n_models);
}

int main(void) {
    const char *t = test_tmpdir("safetensors");
    if (!t) test_skip("no scratch folder");
    snprintf(tmp, sizeof tmp, "%s", t);
    test_single_file();
    test_streaming();
    test_sharded_dir();
    test_bad_files();
    test_goldens();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (!test_failures && system(cmd) != 0) printf("note: could not remove %s\n", tmp);
    return test_done();
}
