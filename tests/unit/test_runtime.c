/* libmoert (runtime/) on a fake compiled program: hand-written step functions with a tiny
 * manifest stand in for what `moec compile` emits, and a small .moew writer stands in for its
 * weights. Checks weights loading (sidecar and embedded) and each refusal, chunked prefill with
 * padding, decode, the context limit, routes and stats, the sampler, the shipped CLI
 * (runtime/moert_cli.c) run in-process, and the --verbose timing line read back. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "exec.h"
#include "format.h"
#include "model.h"
#include "moe.h"
#include "moert_cli.h"
#include "outfile.h"
#include "sampler.h"
#include "test.h"

/* ---- the fake program ---------------------------------------------------------------------
 * V = 11 tokens, 3 layers (layer 1 dense), E = 4 experts, top-2, context S = 18, prefill chunks of
 * P = 4 with capacity 2 (so prefill steps drop), decode capacity 1.
 * A step writes ids into the KV cache (one int32 per position), then for each of its rows
 * computes logits from all ids up to that position (so chunking and padding must not disturb
 * the sequence) plus the weights, and routes from (id, position, layer); thread 0 then adds the
 * step's stats like a compiled MoE kernel: kept tokens per expert in token order, then drops.
 * prefill_last writes the logits of row last_row only, into row 0, and poisons the other rows. */
enum { V = 11, NL = 3, E = 4, K = 2, S = 18, P = 4, CAP_P = 2, CAP_D = 1 };
enum { OFF_LP = 0, OFF_LD = 192, OFF_RP0 = 256, OFF_RP2 = 320, OFF_RD0 = 384, OFF_RD2 = 400, ARENA = 448 };
static const uint64_t HASH = 0x1234abcd5678ef01ull;

static MoeManifest fake_manifest(void) {
    MoeManifest mf = {0};
    mf.format_version = MOE_FORMAT_VERSION;
    mf.n_layers = NL;
    mf.model_hash = HASH;
    snprintf(mf.family, sizeof mf.family, "fake");
    snprintf(mf.target, sizeof mf.target, "x86_64-unknown-linux-gnu");
    snprintf(mf.cpu, sizeof mf.cpu, "generic");
    mf.vocab_size = V, mf.n_exp = E, mf.top_k = K, mf.batch = 1, mf.context = S, mf.prefill_chunk = P;
    mf.capacity_prefill = CAP_P, mf.capacity_decode = CAP_D;
    mf.arena_bytes = ARENA, mf.kv_bytes = S * 4, mf.weights_bytes = V * 4;
    mf.logits_prefill = OFF_LP, mf.logits_decode = OFF_LD;
    for (int l = 0; l < MOE_MAX_LAYERS; l++) mf.routes_prefill[l] = mf.routes_decode[l] = -1;
    mf.routes_prefill[0] = OFF_RP0, mf.routes_prefill[2] = OFF_RP2;
    mf.routes_decode[0] = OFF_RD0, mf.routes_decode[2] = OFF_RD2;
    mf.bos_token_id = -1, mf.eos_token_id = -1;
    return mf;
}

static float weight(int v) { return 0.25f * (float)v; }

/* Logits [V] at position p of a sequence whose ids[0..p] are given. */
static void want_row(const int32_t *ids, int64_t p, const float *w, float *out) {
    int64_t h = 0;
    for (int64_t i = 0; i <= p; i++) h = (h + (ids[i] + 1) * (i + 1)) % 1009;
    for (int v = 0; v < V; v++) out[v] = (float)((h * 7 + v * 13) % 23) + w[v];
}

static MoeRoute want_route(int32_t id, int64_t p, int l, int j) {
    int32_t e0 = (id + 3 * l) % E, e = j == 0 ? e0 : (e0 + 1 + (int32_t)(p % (E - 1))) % E;
    return (MoeRoute){e, 0.75f - 0.5f * (float)j + 0.01f * (float)l};
}

/* Tokens kept per expert (capacity C, token order) and dropped of T rows of routes. */
static void count_routes(const MoeRoute *r, int64_t T, int64_t C, int64_t *st) {
    for (int e = 0; e < E; e++) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++)
            for (int j = 0; j < K; j++)
                if (r[t * K + j].expert == e) {
                    if (n < C) n++;
                    else st[E]++;
                }
        st[e] += n;
    }
}

/* As count_routes over a step's T rows, each row's counts into its slot's stats (slot[t] * NL (E + 1)
 * + l (E + 1)), as compiled routers count them. */
static void count_routes_slots(const MoeRoute *r, int64_t T, int64_t C, int64_t *stats, const int32_t *slot, int l) {
    for (int e = 0; e < E; e++) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++)
            for (int j = 0; j < K; j++)
                if (r[t * K + j].expert == e) {
                    int64_t *st = stats + (int64_t)slot[t] * NL * (E + 1) + l * (E + 1);
                    st[n < C ? e : E]++;
                    n++;
                }
    }
}

static int64_t steps_full, steps_last; /* prefill steps run, by kind */

/* A step of which n rows are real (prefill: a->last_row + 1 of P), which alone it reads and
 * writes, as compiled kernels do. only_row >= 0: the logits of that row only, into row 0
 * (prefill_last); -1: every real row. */
static void fake_step(const MoeStepArgs *a, int32_t ith, int32_t nth, int64_t n, int64_t off_logits,
                      const int64_t *off_routes, int64_t C, int64_t only_row) {
    int32_t *kv = (int32_t *)a->kv; /* [batch][S]: each slot's ids by position */
    for (int64_t t = ith; t < n; t += nth) kv[a->slot[t] * S + a->pos[t]] = a->ids[t];
    moert_barrier();
    float *logits = (float *)(a->arena + off_logits); /* [rows of the step, V] */
    for (int64_t t = ith; t < n; t += nth) {
        if (only_row < 0) want_row(kv + a->slot[t] * S, a->pos[t], (const float *)a->weights, logits + t * V);
        else if (t > 0)
            for (int v = 0; v < V; v++) logits[t * V + v] = -1e30f;
        if (t == 0 && only_row >= 0)
            want_row(kv + a->slot[only_row] * S, a->pos[only_row], (const float *)a->weights, logits);
        for (int l = 0; l < NL; l++)
            if (off_routes[l] >= 0)
                for (int j = 0; j < K; j++)
                    ((MoeRoute *)(a->arena + off_routes[l]))[t * K + j] = want_route(a->ids[t], a->pos[t], l, j);
    }
    moert_barrier();
    if (ith == 0)
        for (int l = 0; l < NL; l++)
            if (off_routes[l] >= 0)
                count_routes_slots((const MoeRoute *)(a->arena + off_routes[l]), n, C, a->stats, a->slot, l);
}

static const int64_t routes_p[NL] = {OFF_RP0, -1, OFF_RP2};
static void fake_prefill(const MoeStepArgs *a, int32_t ith, int32_t nth) {
    if (ith == 0) steps_full++;
    fake_step(a, ith, nth, a->last_row + 1, OFF_LP, routes_p, CAP_P, -1);
}
static MoeManifest manifest;
static void fake_decode(const MoeStepArgs *a, int32_t ith, int32_t nth) { /* offsets of the manifest in use */
    const int64_t rd[NL] = {manifest.routes_decode[0], -1, manifest.routes_decode[2]};
    fake_step(a, ith, nth, a->last_row + 1, manifest.logits_decode, rd, CAP_D, -1);
}
static void fake_prefill_last(const MoeStepArgs *a, int32_t ith, int32_t nth) {
    if (ith == 0) steps_last++;
    fake_step(a, ith, nth, a->last_row + 1, OFF_LP, routes_p, CAP_P, a->last_row);
}

static MoeProgram program = {&manifest, fake_prefill, fake_decode, fake_prefill_last};

/* ---- .moew files ------------------------------------------------------------------------- */

typedef struct MoewSpec {
    const char *magic;
    uint32_t version;
    uint64_t hash;
    uint64_t weights_bytes;  /* section size written */
    int64_t cut;             /* > 0: keep only this many bytes of the file */
    uint64_t extra_total;    /* added to total_size */
} MoewSpec;

static MoewSpec good_spec(void) { return (MoewSpec){MOE_WEIGHTS_MAGIC, MOE_FORMAT_VERSION, HASH, V * 4, 0, 0}; }

/* The weights file's bytes (header, weights at 4096, tokenizer "hello" at 8192); *len set. */
static char *moew_bytes(MoewSpec sp, size_t *len) {
    size_t total = 2 * MOE_ALIGN + 5;
    char *b = calloc(1, total);
    MoeWeightsHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, sp.magic, 8);
    h.format_version = sp.version;
    h.n_sections = 2;
    h.model_hash = sp.hash;
    h.total_size = total + sp.extra_total;
    h.sections[0] = (MoeSection){MOE_SECTION_WEIGHTS, 0, MOE_ALIGN, sp.weights_bytes};
    h.sections[1] = (MoeSection){MOE_SECTION_TOKENIZER, 0, 2 * MOE_ALIGN, 5};
    memcpy(b, &h, sizeof h);
    for (int v = 0; v < V; v++) {
        float w = weight(v);
        memcpy(b + MOE_ALIGN + 4 * v, &w, 4);
    }
    memcpy(b + 2 * MOE_ALIGN, "hello", 5);
    *len = sp.cut > 0 ? (size_t)sp.cut : total;
    return b;
}

static void write_file(const char *path, const void *p, size_t n, const char *mode) {
    FILE *f = fopen(path, mode);
    EXPECT_TRUE(f && fwrite(p, 1, n, f) == n);
    if (f) fclose(f);
}

static const char *tmp;
static char good_path[4200];

static const char *path_in_tmp(const char *name) {
    static char buf[8][4200];
    static int i;
    char *p = buf[i++ % 8];
    snprintf(p, 4200, "%s/%s", tmp, name);
    return p;
}

static const char *write_moew(const char *name, MoewSpec sp) {
    size_t n;
    char *b = moew_bytes(sp, &n);
    const char *path = path_in_tmp(name);
    write_file(path, b, n, "wb");
    free(b);
    return path;
}

/* ---- load -------------------------------------------------------------------------------- */

/* Loading path must fail with st and a message containing each of the words. */
static void expect_load_error(const char *path, MoeStatus st, const char *w1, const char *w2) {
    MoeModel *m = (MoeModel *)1;
    char err[512] = "untouched";
    MoeStatus got = moe_model_load(&m, &program, path, 1, err, sizeof err);
    EXPECT_EQ(got, st);
    EXPECT_TRUE(m == NULL);
    EXPECT_STR_CONTAINS(err, w1);
    if (w2) EXPECT_STR_CONTAINS(err, w2);
    if (got != st) fprintf(stderr, "  message: %s\n", err);
}

static void t_load_errors(void) {
    MoewSpec sp;
    expect_load_error(path_in_tmp("missing.moew"), MOE_ERR_IO, "missing.moew: cannot open", "No such file");

    sp = good_spec(), sp.magic = "GGUF\0\0\0\0";
    expect_load_error(write_moew("magic.moew", sp), MOE_ERR_FORMAT, "magic.moew: not a moec weights file", "MOEWGT01");

    sp = good_spec(), sp.version = 7;
    char want_version[64];
    snprintf(want_version, sizeof want_version, "version.moew: format version 7; expected %u", MOE_FORMAT_VERSION);
    expect_load_error(write_moew("version.moew", sp), MOE_ERR_FORMAT, want_version, NULL);

    sp = good_spec(), sp.hash = 0xabcdull;
    expect_load_error(write_moew("hash.moew", sp), MOE_ERR_MISMATCH,
                      "hash.moew: model hash 0x000000000000abcd does not match the program's 0x1234abcd5678ef01",
                      "another model");

    sp = good_spec(), sp.cut = 6000;
    expect_load_error(write_moew("cut.moew", sp), MOE_ERR_FORMAT, "cut.moew: truncated", "8197");

    sp = good_spec(), sp.cut = 100;
    expect_load_error(write_moew("short.moew", sp), MOE_ERR_FORMAT, "short.moew: truncated: 100 bytes", NULL);

    sp = good_spec(), sp.cut = 0;
    write_file(path_in_tmp("empty.moew"), "", 0, "wb");
    expect_load_error(path_in_tmp("empty.moew"), MOE_ERR_FORMAT, "empty.moew: truncated: 0 bytes", NULL);

    sp = good_spec(), sp.weights_bytes = 40;
    expect_load_error(write_moew("size.moew", sp), MOE_ERR_MISMATCH, "size.moew: weights section of 40 bytes",
                      "expects 44");

    sp = good_spec(), sp.weights_bytes = 5000; /* runs past the end of the weights */
    expect_load_error(write_moew("bounds.moew", sp), MOE_ERR_FORMAT, "bounds.moew: weights section", "outside");

    expect_load_error(tmp, MOE_ERR_IO, "not a regular file", NULL); /* a directory */

    /* a malformed program is refused before any file is read */
    MoeManifest saved = manifest;
    manifest.format_version = 9;
    expect_load_error(good_path, MOE_ERR_FORMAT, "program: format version 9", NULL);
    manifest = saved;
    manifest.logits_prefill = ARENA - 8;
    expect_load_error(good_path, MOE_ERR_FORMAT, "program: logits offsets", NULL);
    manifest = saved;
    manifest.batch = 0;
    expect_load_error(good_path, MOE_ERR_FORMAT, "batch 0; expected 1 to", NULL);
    manifest.batch = MOE_MAX_BATCH + 1;
    expect_load_error(good_path, MOE_ERR_FORMAT, "batch 1025; expected 1 to 1024", NULL);
    manifest = saved;
    program.prefill_last = NULL;
    expect_load_error(good_path, MOE_ERR_FORMAT, "program: no prefill_last step function", NULL);
    program.prefill_last = fake_prefill_last;

    /* NULL arguments */
    char err[128];
    EXPECT_EQ(moe_model_load(NULL, &program, good_path, 1, err, sizeof err), MOE_ERR_ARG);
    MoeModel *m;
    EXPECT_EQ(moe_model_load(&m, NULL, good_path, 1, NULL, 0), MOE_ERR_ARG);
}

static void t_load_ok(void) {
    MoeModel *m = NULL;
    char err[512];
    EXPECT_EQ(moe_model_load(&m, &program, good_path, 2, err, sizeof err), MOE_OK);
    if (!m) return;
    EXPECT_TRUE(!strcmp(moe_model_error(m), ""));
    EXPECT_TRUE(moe_model_manifest(m) == &manifest);
    EXPECT_EQ(moe_model_pos(m), 0);
    EXPECT_EQ(moert_model_threads(m), 2);
    uint64_t tb;
    const char *tok = moert_model_tokenizer(m, &tb);
    EXPECT_EQ(tb, 5);
    EXPECT_TRUE(tok && !memcmp(tok, "hello", 5));
    /* "hello" is no tokenizer blob: the text calls say so, the rest of the model still runs */
    int32_t ids[4];
    char text[8];
    EXPECT_EQ(moe_tokenize(m, "hi", true, ids, 4), -1);
    EXPECT_STR_CONTAINS(moe_model_error(m), "tokenize: ");
    EXPECT_STR_CONTAINS(moe_model_error(m), "embedded tokenizer: ");
    EXPECT_EQ(moe_detokenize(m, ids, 0, text, sizeof text), -1);
    EXPECT_EQ(moe_model_vocab(m), V);
    EXPECT_EQ(moe_model_context(m), S);
    EXPECT_EQ(moe_model_slots(m), 1);
    int64_t rows = 7;
    EXPECT_TRUE(moe_model_routes(m, 0, &rows) == NULL); /* no step yet */
    EXPECT_EQ(rows, 0);
    const int64_t *st = moe_model_stats(m);
    int64_t sum = 0;
    for (int i = 0; i < NL * (E + 1); i++) sum += st[i];
    EXPECT_EQ(sum, 0);
    moe_model_free(m);
    moe_model_free(NULL);
}

/* Weights appended to a copy of an "executable", then a MoeTrailer. */
static void t_embedded(void) {
    char exe[4200], plain[4200];
    snprintf(exe, sizeof exe, "%s", path_in_tmp("fake_exe"));
    snprintf(plain, sizeof plain, "%s", path_in_tmp("plain_exe"));
    char *code = calloc(1, 2 * MOE_ALIGN);
    for (int i = 0; i < 5000; i++) code[i] = (char)(i * 31);
    write_file(plain, code, 5000, "wb");
    write_file(exe, code, 2 * MOE_ALIGN, "wb"); /* 5000 bytes of "code", padded to 8192 */
    size_t n;
    char *b = moew_bytes(good_spec(), &n);
    write_file(exe, b, n, "ab");
    MoeTrailer t;
    memcpy(t.magic, MOE_TRAILER_MAGIC, 8);
    t.header_offset = 2 * MOE_ALIGN;
    write_file(exe, &t, sizeof t, "ab");

    MoeModel *m = NULL;
    char err[512];
    EXPECT_EQ(moert_model_load_embedded(&m, &program, exe, 1, err, sizeof err), MOE_OK);
    if (m) {
        const float *logits;
        int32_t ids[2] = {3, 5};
        EXPECT_EQ(moe_prefill(m, ids, 2, NULL, NULL, &logits), MOE_OK);
        float w[V], want[V];
        for (int v = 0; v < V; v++) w[v] = weight(v);
        want_row(ids, 1, w, want);
        for (int v = 0; v < V; v++) EXPECT_NEAR(logits[v], want[v], 0);
        moe_model_free(m);
    }

    /* no trailer; the running test binary has none either */
    m = (MoeModel *)1;
    EXPECT_EQ(moert_model_load_embedded(&m, &program, plain, 1, err, sizeof err), MOE_ERR_FORMAT);
    EXPECT_TRUE(m == NULL);
    EXPECT_STR_CONTAINS(err, "plain_exe: no weights embedded in this executable");
    EXPECT_EQ(moe_model_load(&m, &program, NULL, 1, err, sizeof err), MOE_ERR_FORMAT);
    EXPECT_STR_CONTAINS(err, "test_runtime");
    EXPECT_STR_CONTAINS(err, ": no weights embedded in this executable (no MOEEMBED trailer)");

    /* a trailer whose header offset is not aligned */
    t.header_offset = 5000;
    write_file(plain, &t, sizeof t, "ab");
    EXPECT_EQ(moert_model_load_embedded(&m, &program, plain, 1, err, sizeof err), MOE_ERR_FORMAT);
    EXPECT_STR_CONTAINS(err, "header at offset 5000");
    free(b);
    free(code);
}

/* ---- steps ------------------------------------------------------------------------------- */

typedef struct Collect {
    MoeModel *m;
    const int32_t *seq;      /* the whole sequence so far */
    int64_t pos0;            /* position of the prefill's first token */
    float *rows;             /* [n, V] */
    int64_t next_row, calls, bad_routes;
    int64_t stats[NL][E + 1]; /* expected, from the real rows of each step */
} Collect;

static void on_rows(void *user, const float *rows, int64_t first, int64_t n) {
    Collect *c = user;
    EXPECT_EQ(first, c->next_row);
    memcpy(c->rows + first * V, rows, sizeof(float) * (size_t)(n * V));
    c->next_row = first + n;
    c->calls++;
    for (int l = 0; l < NL; l++) {
        int64_t nr;
        const MoeRoute *r = moe_model_routes(c->m, l, &nr);
        if (l == 1) {
            EXPECT_TRUE(r == NULL);
            continue;
        }
        EXPECT_EQ(nr, n);
        if (!r || nr != n) return;
        for (int64_t t = 0; t < n; t++)
            for (int j = 0; j < K; j++) {
                int64_t p = c->pos0 + first + t;
                MoeRoute w = want_route(c->seq[p], p, l, j);
                if (r[t * K + j].expert != w.expert || r[t * K + j].weight != w.weight) c->bad_routes++;
            }
        count_routes(r, n, CAP_P, c->stats[l]); /* every prompt step is a prefill step */
    }
}

static void expect_rows(const int32_t *seq, int64_t pos0, int64_t n, const float *rows) {
    float w[V], want[V];
    for (int v = 0; v < V; v++) w[v] = weight(v);
    int bad = 0;
    for (int64_t t = 0; t < n; t++) {
        want_row(seq, pos0 + t, w, want);
        if (memcmp(want, rows + t * V, sizeof want)) bad++;
    }
    EXPECT_EQ(bad, 0);
}

static void expect_stats(MoeModel *m, int64_t want[NL][E + 1]) {
    const int64_t *st = moe_model_stats(m);
    for (int l = 0; l < NL; l++)
        for (int e = 0; e <= E; e++) EXPECT_EQ(st[l * (E + 1) + e], want[l][e]);
}

static void seq_fill(int32_t *seq, int64_t n, int salt) {
    for (int64_t i = 0; i < n; i++) seq[i] = (int32_t)((i * 5 + salt * 3 + 1) % V);
}

/* Prefill of n tokens from position 0, compared row by row with the reference. */
static void t_prefill_len(MoeModel *m, int64_t n, int salt) {
    int32_t seq[S];
    float rows[S * V];
    seq_fill(seq, n, salt);
    Collect c = {m, seq, 0, rows, 0, 0, 0, {{0}}};
    moe_model_reset(m);
    const float *last = NULL;
    EXPECT_EQ(moe_prefill(m, seq, n, on_rows, &c, &last), MOE_OK);
    EXPECT_EQ(moe_model_pos(m), n);
    EXPECT_EQ(c.next_row, n);
    /* chunks of P, the last partial, even where its padding would run past the context */
    int64_t chunks = (n + P - 1) / P;
    EXPECT_EQ(c.calls, chunks);
    EXPECT_EQ(c.bad_routes, 0);
    expect_rows(seq, 0, n, rows);
    EXPECT_TRUE(last == NULL || !memcmp(last, rows + (n - 1) * V, sizeof(float) * V));
    expect_stats(m, c.stats);

    /* without on_rows: prefill_last steps only, the same last logits, routes and stats */
    int64_t full0 = steps_full, last0 = steps_last;
    moe_model_reset(m);
    last = NULL;
    EXPECT_EQ(moe_prefill(m, seq, n, NULL, NULL, &last), MOE_OK);
    EXPECT_EQ(moe_model_pos(m), n);
    EXPECT_EQ(steps_full - full0, 0);
    EXPECT_EQ(steps_last - last0, chunks);
    EXPECT_TRUE(last != NULL);
    if (last) expect_rows(seq, n - 1, 1, last);
    int64_t nr, want_nr = n - (chunks - 1) * P; /* rows of the last step */
    const MoeRoute *r = moe_model_routes(m, 0, &nr);
    EXPECT_EQ(nr, want_nr);
    if (r && nr == want_nr) EXPECT_EQ(r[(nr - 1) * K].expert, want_route(seq[n - 1], n - 1, 0, 0).expert);
    expect_stats(m, c.stats);
}

static void t_steps(int threads) {
    MoeModel *m = NULL;
    char err[512];
    EXPECT_EQ(moe_model_load(&m, &program, good_path, threads, err, sizeof err), MOE_OK);
    if (!m) return;
    int64_t lens[] = {1, P - 1, P, P + 1, 2 * P + 3, S - 1, S}; /* S - 1, S: last chunks whose padding passes S */
    for (int i = 0; i < (int)(sizeof lens / sizeof lens[0]); i++) t_prefill_len(m, lens[i], i);

    /* prefill, decode, prefill again (not chunk-aligned), decode to the end of the context */
    int32_t seq[S];
    float rows[S * V];
    seq_fill(seq, S, 9);
    moe_model_reset(m);
    EXPECT_EQ(moe_model_pos(m), 0);
    Collect c = {m, seq, 0, rows, 0, 0, 0, {{0}}};
    EXPECT_EQ(moe_prefill(m, seq, 5, on_rows, &c, NULL), MOE_OK);
    const float *logits = NULL;
    for (int64_t p = 5; p < 7; p++) {
        EXPECT_EQ(moe_decode(m, seq[p], &logits), MOE_OK);
        EXPECT_EQ(moe_model_pos(m), p + 1);
        if (logits) expect_rows(seq, p, 1, logits);
        for (int l = 0; l < NL; l += 2) {
            int64_t nr;
            const MoeRoute *r = moe_model_routes(m, l, &nr);
            EXPECT_EQ(nr, 1);
            if (r) EXPECT_EQ(r[1].expert, want_route(seq[p], p, l, 1).expert);
            if (r) count_routes(r, 1, CAP_D, c.stats[l]);
        }
    }
    c.pos0 = 7, c.next_row = 0;
    EXPECT_EQ(moe_prefill(m, seq + 7, 6, on_rows, &c, &logits), MOE_OK);
    EXPECT_EQ(moe_model_pos(m), 13);
    expect_rows(seq, 7, 6, rows);
    expect_rows(seq, 12, 1, logits);
    for (int64_t p = 13; p < S; p++) {
        EXPECT_EQ(moe_decode(m, seq[p], &logits), MOE_OK);
        for (int l = 0; l < NL; l += 2) {
            int64_t nr;
            const MoeRoute *r = moe_model_routes(m, l, &nr);
            if (r) count_routes(r, 1, CAP_D, c.stats[l]);
        }
    }
    expect_rows(seq, S - 1, 1, logits);
    expect_stats(m, c.stats);

    /* the context is full: everything further is refused and changes nothing */
    EXPECT_EQ(moe_decode(m, 1, &logits), MOE_ERR_CONTEXT);
    EXPECT_STR_CONTAINS(moe_model_error(m), "decode: slot 0: position 18 is past the compiled context of 18");
    EXPECT_EQ(moe_prefill(m, seq, 1, NULL, NULL, NULL), MOE_ERR_CONTEXT);
    EXPECT_EQ(moe_model_pos(m), S);
    moe_model_reset(m);
    int32_t big[S + 1] = {0};
    EXPECT_EQ(moe_prefill(m, big, S + 1, NULL, NULL, NULL), MOE_ERR_CONTEXT);
    EXPECT_STR_CONTAINS(moe_model_error(m),
                        "19 tokens at position 0 need 19 positions; the program was compiled for a context of 18");
    EXPECT_EQ(moe_model_pos(m), 0);

    /* bad ids and arguments */
    int32_t bad[3] = {1, V, 2};
    EXPECT_EQ(moe_prefill(m, bad, 3, NULL, NULL, NULL), MOE_ERR_ARG);
    EXPECT_STR_CONTAINS(moe_model_error(m), "prefill: token id 11 at position 1: must be in [0, 11)");
    bad[1] = -3;
    EXPECT_EQ(moe_prefill(m, bad, 3, NULL, NULL, NULL), MOE_ERR_ARG);
    EXPECT_EQ(moe_decode(m, V + 5, NULL), MOE_ERR_ARG);
    EXPECT_STR_CONTAINS(moe_model_error(m), "decode: token id 16");
    EXPECT_EQ(moe_prefill(m, bad, 0, NULL, NULL, NULL), MOE_ERR_ARG);
    EXPECT_EQ(moe_prefill(m, NULL, 2, NULL, NULL, NULL), MOE_ERR_ARG);
    EXPECT_EQ(moe_model_pos(m), 0);
    int64_t nr;
    EXPECT_TRUE(moe_model_routes(m, 1, &nr) == NULL && nr == 0);
    EXPECT_TRUE(moe_model_routes(m, NL, &nr) == NULL && nr == 0);
    EXPECT_TRUE(moe_model_routes(m, -1, &nr) == NULL && nr == 0);
    EXPECT_EQ(moe_prefill(NULL, bad, 1, NULL, NULL, NULL), MOE_ERR_ARG);
    EXPECT_EQ(moe_decode(NULL, 1, NULL), MOE_ERR_ARG);
    moe_model_free(m);
}

/* ---- sampler ----------------------------------------------------------------------------- */

static void t_sampler(void) {
    enum { NV = 50 };
    float logits[NV];
    for (int i = 0; i < NV; i++) logits[i] = (float)((i * 37) % NV) * 0.1f;
    int32_t am = moe_sampler_argmax(logits, NV);
    EXPECT_NEAR(logits[am], 4.9f, 0);
    void *scratch = malloc(moe_sampler_scratch_bytes(NV));
    MoeSampler s;
    /* greedy forms */
    moe_sampler_init(&s, NV, 0, 0, 1, 1, scratch);
    EXPECT_EQ(moe_sampler_sample(&s, logits), am);
    moe_sampler_init(&s, NV, 1.5, 1, 1, 1, scratch);
    for (int i = 0; i < 20; i++) EXPECT_EQ(moe_sampler_sample(&s, logits), am);
    moe_sampler_init(&s, NV, 1.5, 0, 1e-6, 1, scratch);
    for (int i = 0; i < 20; i++) EXPECT_EQ(moe_sampler_sample(&s, logits), am);
    moe_sampler_init(&s, NV, 1.5, 10, 1e-6, 1, scratch);
    for (int i = 0; i < 20; i++) EXPECT_EQ(moe_sampler_sample(&s, logits), am);
    float ties[4] = {1, 3, 3, 2}; /* ties go to the lower id */
    EXPECT_EQ(moe_sampler_argmax(ties, 4), 1);
    moe_sampler_init(&s, 4, 1, 0, 0, 1, scratch);
    EXPECT_EQ(moe_sampler_sample(&s, ties), 1);

    /* same seed, same sequence; another seed, another one */
    int32_t a[64], b[64], c[64];
    moe_sampler_init(&s, NV, 2, 0, 1, 42, scratch);
    for (int i = 0; i < 64; i++) a[i] = moe_sampler_sample(&s, logits);
    moe_sampler_init(&s, NV, 2, 0, 1, 42, scratch);
    for (int i = 0; i < 64; i++) b[i] = moe_sampler_sample(&s, logits);
    moe_sampler_init(&s, NV, 2, 0, 1, 43, scratch);
    for (int i = 0; i < 64; i++) c[i] = moe_sampler_sample(&s, logits);
    EXPECT_TRUE(!memcmp(a, b, sizeof a));
    EXPECT_TRUE(memcmp(a, c, sizeof a) != 0);
    /* the PRNG is fixed: splitmix64's first output for seed 0 is 0xe220a8397b1dcdaf */
    moe_sampler_init(&s, NV, 1, 0, 1, 0, scratch);
    EXPECT_NEAR(moe_sampler_uniform(&s), (double)(0xe220a8397b1dcdafull >> 11) * 0x1.0p-53, 0);

    /* frequencies: N draws from {0.5, 1.5, 1.0} at temperature 0.5, plain, top-k 2, top-p 0.8.
     * Each count is Binomial(N, p): 6 standard deviations is a loose bound (two-sided tail
     * probability 2e-9), and with a fixed seed the outcome never changes anyway. */
    enum { N = 40000 };
    float three[3] = {0.5f, 1.5f, 1.0f};
    double e[3], z = 0;
    for (int i = 0; i < 3; i++) z += (e[i] = exp(three[i] / 0.5));
    double want_all[3] = {e[0] / z, e[1] / z, e[2] / z};
    double want_k2[3] = {0, e[1] / (e[1] + e[2]), e[2] / (e[1] + e[2])};
    double want_p[3] = {0, 1, 0}; /* p(1) = 0.66 < 0.8 needs token 2 as well: */
    if (want_all[1] < 0.8) want_p[1] = want_k2[1], want_p[2] = want_k2[2];
    struct {
        int64_t k;
        double p;
        const double *want;
    } cases[3] = {{0, 1, want_all}, {2, 1, want_k2}, {0, 0.8, want_p}};
    for (int ci = 0; ci < 3; ci++) {
        int64_t cnt[3] = {0};
        moe_sampler_init(&s, 3, 0.5, cases[ci].k, cases[ci].p, 1234 + (uint64_t)ci, scratch);
        for (int i = 0; i < N; i++) cnt[moe_sampler_sample(&s, three)]++;
        for (int i = 0; i < 3; i++) {
            double p = cases[ci].want[i], sd = sqrt(p * (1 - p) / N);
            EXPECT_NEAR((double)cnt[i] / N, p, 6 * sd + 1e-12);
        }
    }
    free(scratch);
}

/* ---- the shipped CLI --------------------------------------------------------------------- */

/* Runs moert_cli on "fake" + args (NULL-terminated) with stdout/stderr to files; returns rc. */
static int cli(char **out, char **err, ...) {
    char *argv[32] = {"fake"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; argc < 31 && (a = va_arg(ap, char *));) argv[argc++] = a;
    va_end(ap);
    const char *po = path_in_tmp("cli.out"), *pe = path_in_tmp("cli.err");
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fo, 1);
    dup2(fe, 2);
    int rc = moert_cli(argc, argv, &program);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so), close(se), close(fo), close(fe);
    *out = test_read_file(po, NULL);
    *err = test_read_file(pe, NULL);
    return rc;
}

static void t_cli(void) {
    char *out, *err, lpath[4200], tpath[4200];
    snprintf(lpath, sizeof lpath, "%s", path_in_tmp("logits.bin"));
    snprintf(tpath, sizeof tpath, "%s", path_in_tmp("trace.json"));
    char wflag[] = "--weights";

    /* greedy generation, mirroring `moec run` */
    int32_t seq[S];
    int64_t np = 6, ng = 5;
    seq_fill(seq, np, 4);
    char tokens[128] = "", *t = tokens;
    for (int64_t i = 0; i < np; i++) t += sprintf(t, "%s%d", i ? "," : "", seq[i]);
    float w[V], rows[S * V];
    for (int v = 0; v < V; v++) w[v] = weight(v);
    char want_out[128] = "", *wo = want_out;
    for (int64_t p = np - 1; p < np + ng - 1; p++) {
        want_row(seq, p, w, rows + p * V);
        seq[p + 1] = moe_sampler_argmax(rows + p * V, V);
        wo += sprintf(wo, "%s%d", p > np - 1 ? "," : "", seq[p + 1]);
    }
    sprintf(wo, "\n");
    for (int64_t p = 0; p < np; p++) want_row(seq, p, w, rows + p * V);
    int rc = cli(&out, &err, "--tokens", tokens, "-n", "5", wflag, good_path, "--threads", "3", "--logits-out", lpath,
                 "--trace", tpath, "--stats", (char *)NULL);
    EXPECT_EQ(rc, 0);
    EXPECT_STR_CONTAINS(out, want_out);
    EXPECT_TRUE(!strcmp(out, want_out));
    if (rc) fprintf(stderr, "  stderr: %s", err);
    EXPECT_STR_CONTAINS(err, "expert utilisation (tokens per expert over 10 routed tokens):");
    EXPECT_STR_CONTAINS(err, "  L01 dense\n");
    EXPECT_STR_CONTAINS(err, "dropped assignments: ");
    size_t n;
    char *lg = test_read_file(lpath, &n);
    EXPECT_EQ(n, sizeof(float) * (size_t)((np + ng) * V));
    if (lg && n == sizeof(float) * (size_t)((np + ng) * V)) {
        EXPECT_TRUE(!memcmp(lg, rows, sizeof(float) * (size_t)(np * V)));                       /* prompt rows */
        EXPECT_TRUE(
            !memcmp(lg + sizeof(float) * np * V, rows + (np - 1) * V, sizeof(float) * (size_t)(ng * V))); /* gen rows */
    }
    free(lg);
    char *tr = test_read_file(tpath, NULL);
    EXPECT_TRUE(tr != NULL);
    if (tr) {
        char want_ids[128];
        snprintf(want_ids, sizeof want_ids, "\"prompt_ids\": [%d, %d, %d, %d, %d, %d]", seq[0], seq[1], seq[2], seq[3],
                 seq[4], seq[5]);
        EXPECT_STR_CONTAINS(tr, want_ids);
        EXPECT_STR_CONTAINS(tr, "\"router_topk\": [\n    [[");
        EXPECT_STR_CONTAINS(tr, "],\n    [null, null, null, null, null, null, null, null, null, null],\n    [[");
    }
    free(tr), free(out), free(err);

    /* without --logits-out and --trace no prompt row's logits are needed: prefill_last, the same ids */
    int64_t full0 = steps_full, last0 = steps_last;
    EXPECT_EQ(cli(&out, &err, "--tokens", tokens, "-n", "5", wflag, good_path, "--threads", "3", (char *)NULL), 0);
    EXPECT_TRUE(out && !strcmp(out, want_out));
    EXPECT_EQ(steps_full - full0, 0);
    EXPECT_EQ(steps_last - last0, 2); /* 6 prompt tokens in chunks of 4 */
    free(out), free(err);

    /* sampling: the same seed gives the same ids */
    char *out2, *err2;
    EXPECT_EQ(cli(&out, &err, "--tokens", "1,2", "-n", "8", "--temp", "3", "--seed", "7", "--top-p", "0.9", wflag,
                  good_path, (char *)NULL), 0);
    EXPECT_EQ(cli(&out2, &err2, "--tokens", "1,2", "-n", "8", "--temp", "3", "--seed", "7", "--top-p", "0.9", wflag,
                  good_path, (char *)NULL), 0);
    EXPECT_TRUE(out && out2 && !strcmp(out, out2));
    free(out), free(err), free(out2), free(err2);

    /* usage errors exit 2, runtime errors 1, each one line */
    struct { int rc; const char *a1, *a2, *a3, *a4, *msg;
    } bad[] = {
        {2, "--bogus", NULL, NULL, NULL, "fake: error: --bogus: unknown option; see 'fake --help'\n"},
        {2, "--tokens", "1,2", "-n", "0", "fake: error: -n: expected an integer in [1, 16777216]; got '0'\n"},
        {2, "--tokens", "1,x", NULL, NULL,
         "fake: error: --tokens: expected comma-separated token ids like 1,2,3; got '1,x'\n"},
        {2, "--tokens", "1", "--prompt", "x", "fake: error: --tokens and a text prompt: expected one of them\n"},
        {1, "--prompt-file", "/nonexistent/p.txt", NULL, NULL,
         "fake: error: /nonexistent/p.txt: cannot read: No such file or directory\n"},
        {2, "--tokens", "1", "--top-p", "1.5", "fake: error: --top-p: expected a number in [0, 1]; got '1.5'\n"},
        {2, "--tokens", NULL, NULL, NULL, "fake: error: --tokens: expected a value after it\n"},
        {1, "--tokens", "1,11", NULL, NULL,
         "fake: error: --tokens: token id 11 at position 1: must be < vocab_size (11)\n"},
        {1, "--tokens", "1", "-n", "19",
         "fake: error: --tokens: a prompt of 1 tokens plus 19 generated needs 19 positions; expected at most the "
         "compiled context (18)\n"},
        {1, "--tokens", "1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9", NULL, NULL,
         "fake: error: --tokens: a prompt of 19 tokens plus 16 generated needs 34 positions; expected at most the "
         "compiled context (18)\n"},
        {1, "--tokens", "1", "--weights", "/nonexistent/w.moew",
         "fake: error: /nonexistent/w.moew: cannot open: No such file or directory\n"},
    };
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        rc = cli(&out, &err, bad[i].a1, bad[i].a2, bad[i].a3, bad[i].a4, (char *)NULL);
        EXPECT_EQ(rc, bad[i].rc);
        EXPECT_TRUE(err && !strcmp(err, bad[i].msg));
        if (err && strcmp(err, bad[i].msg)) fprintf(stderr, "  got: %s  want: %s", err, bad[i].msg);
        free(out), free(err);
    }
    /* the full context: a prompt of 18 and one generated token */
    EXPECT_EQ(
        cli(&out, &err, "--tokens", "1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8", "-n", "1", wflag, good_path, (char *)NULL),
        0);
    free(out), free(err);
    EXPECT_EQ(cli(&out, &err, "--help", (char *)NULL), 0);
    EXPECT_STR_CONTAINS(out, "usage: fake (--tokens 1,2,3 | --prompt TEXT | --prompt-file F | < F) [-n N] [options]");
    EXPECT_STR_CONTAINS(out, "Compiled for a context of 18 tokens, prefill chunks of 4");
    free(out), free(err);
}

/* moert_barrier inside moert_exec: in every round each thread writes its value, and after the barrier
 * reads every other thread's value of that round; a second barrier keeps the next round's writes
 * from overtaking the reads. Also with more threads than cores. */
enum { BAR_MAX_THREADS = 8 };
static volatile int64_t bar_val[BAR_MAX_THREADS];
static int64_t bar_bad[BAR_MAX_THREADS], bar_rounds, bar_nth[BAR_MAX_THREADS];
static void bar_step(const MoeStepArgs *a, int32_t ith, int32_t nth) {
    (void)a;
    bar_nth[ith] = nth;
    for (int64_t r = 0; r < bar_rounds; r++) {
        bar_val[ith] = r * BAR_MAX_THREADS + ith;
        moert_barrier();
        for (int32_t j = 0; j < nth; j++) bar_bad[ith] += bar_val[j] != r * BAR_MAX_THREADS + j;
        moert_barrier();
    }
}

static void t_barrier(void) {
    const int threads[] = {1, 2, 3, BAR_MAX_THREADS};
    for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
        memset(bar_bad, 0, sizeof bar_bad), memset(bar_nth, 0, sizeof bar_nth);
        bar_rounds = threads[i] > 2 ? 300 : 20000;
        MoeStepArgs a = {0};
        moert_exec(bar_step, &a, threads[i]);
        int64_t bad = 0;
        for (int j = 0; j < threads[i]; j++) bad += bar_bad[j];
        EXPECT_EQ(bar_nth[0], threads[i]);
        EXPECT_EQ(bad, 0);
    }
    moert_barrier(); /* outside a step: one thread, returns */
}

/* moe_print_timing's line read back by moe_parse_timing (what moec demo does with it) */
static void t_timing(void) {
    char buf[512] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    moe_print_timing(f, 0.25, 42, 0.002, 17, 0.0005);
    fclose(f);
    MoeTiming t;
    EXPECT_TRUE(moe_parse_timing(buf, &t));
    EXPECT_NEAR(t.load_s, 0.25, 1e-9);
    EXPECT_EQ(t.n_prefill, 42);
    EXPECT_NEAR(t.prefill_s, 0.002, 1e-9);
    EXPECT_NEAR(t.prefill_tps, 21000.0, 1e-9);
    EXPECT_EQ(t.n_decode, 17);
    EXPECT_NEAR(t.decode_tps, 34000.0, 1e-9);
    EXPECT_TRUE(!moe_parse_timing("timing: load 1 s | prefill", &t));
    EXPECT_TRUE(!moe_parse_timing("moec: note: something else\n", &t));
}

/* A chat template section (MOE_SECTION_CHAT_TEMPLATE: the text and a NUL) after the tokenizer:
 * moert_model_chat_template gives it; none in good.moew; a section without its NUL is refused. */
static void t_chat_template(void) {
    static const char text[] = "{{ messages[0].content }}";
    for (int nul = 1; nul >= 0; nul--) {
        size_t n, total = 3 * MOE_ALIGN + sizeof text - (size_t)!nul;
        char *b = moew_bytes(good_spec(), &n);
        b = realloc(b, total);
        memset(b + n, 0, total - n);
        memcpy(b + 3 * MOE_ALIGN, text, sizeof text - (size_t)!nul);
        MoeWeightsHeader h;
        memcpy(&h, b, sizeof h);
        h.sections[h.n_sections++] = (MoeSection){MOE_SECTION_CHAT_TEMPLATE, 0, 3 * MOE_ALIGN, sizeof text - (size_t)!nul};
        h.total_size = total;
        memcpy(b, &h, sizeof h);
        const char *path = path_in_tmp(nul ? "chat.moew" : "chat_nonul.moew");
        write_file(path, b, total, "wb");
        free(b);
        if (!nul) {
            expect_load_error(path, MOE_ERR_FORMAT, "chat template section", "NUL");
            continue;
        }
        MoeModel *m = NULL;
        char err[512];
        EXPECT_EQ(moe_model_load(&m, &program, path, 1, err, sizeof err), MOE_OK);
        if (!m) continue;
        uint64_t bytes = 0;
        const char *t = moert_model_chat_template(m, &bytes);
        EXPECT_EQ(bytes, sizeof text - 1);
        EXPECT_TRUE(t && !strcmp(t, text));
        moe_model_free(m);
    }
    MoeModel *m = NULL;
    char err[512];
    EXPECT_EQ(moe_model_load(&m, &program, good_path, 1, err, sizeof err), MOE_OK);
    uint64_t bytes = 7;
    EXPECT_TRUE(m && moert_model_chat_template(m, &bytes) == NULL);
    EXPECT_EQ(bytes, 0);
    moe_model_free(m);
}

/* Resident KiB of this process (/proc/self/statm), or -1. */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = -1;
    if (f && fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
    if (f) fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* The arena and the KV cache cost nothing until a step writes them: loading a model with 64 MiB of
 * each grows the process by far less than either (they were cleared at load, 147 MB and 0.2 s
 * before a Qwen3-MoE bench preset's first prefill), and the steps still run on them. */
static void t_lazy_buffers(void) {
    MoeManifest saved = manifest;
    manifest.arena_bytes = 64 << 20, manifest.kv_bytes = 64 << 20;
    MoeModel *m = NULL;
    char err[512];
    long before = rss_kib();
    EXPECT_EQ(moe_model_load(&m, &program, good_path, 2, err, sizeof err), MOE_OK);
    long grown = rss_kib() - before;
    EXPECT_TRUE(before >= 0);
    EXPECT_TRUE(grown < 16 * 1024);
    if (m) {
        int32_t seq[S];
        const float *lg;
        seq_fill(seq, S, 5);
        EXPECT_EQ(moe_prefill(m, seq, 6, NULL, NULL, &lg), MOE_OK);
        expect_rows(seq, 5, 1, lg);
        moe_model_free(m);
    }
    manifest = saved;
}

/* ---- huge pages for weights the page cache holds in small folios ------------------------- */

/* A weights file of n bytes of weights at MOE_WEIGHTS_OFFSET, written in write() calls of wr bytes
 * up to the middle of the weights and of wr2 bytes from there. */
static const char *write_big_moew(const char *name, size_t n, size_t wr, size_t wr2) {
    const char *path = path_in_tmp(name);
    size_t total = MOE_WEIGHTS_OFFSET + n;
    char *b = malloc(total);
    EXPECT_TRUE(b != NULL);
    if (!b) return path;
    for (size_t i = 0; i < total; i++) b[i] = (char)(i * 131 >> 7);
    MoeWeightsHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MOE_WEIGHTS_MAGIC, 8);
    h.format_version = MOE_FORMAT_VERSION, h.n_sections = 1, h.model_hash = HASH, h.total_size = total;
    h.sections[0] = (MoeSection){MOE_SECTION_WEIGHTS, 0, MOE_WEIGHTS_OFFSET, n};
    memset(b, 0, MOE_HEADER_BYTES);
    memcpy(b, &h, sizeof h);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT_TRUE(fd >= 0);
    for (size_t at = 0, w; fd >= 0 && at < total; at += w) {
        w = at < MOE_WEIGHTS_OFFSET + n / 2 ? wr : wr2;
        size_t k = total - at < w ? total - at : w;
        EXPECT_EQ((int64_t)write(fd, b + at, k), (int64_t)k);
    }
    if (fd >= 0) close(fd);
    free(b);
    return path;
}

/* KiB of path's mappings in this process mapped as 2 MiB file pages (/proc/self/smaps). */
static long file_pmd_kib(const char *path) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[4400];
    long sum = 0, kib;
    bool in = false;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            size_t n = strlen(line), pn = strlen(path);
            in = n > pn && !strncmp(line + n - pn - 1, path, pn); /* the line ends "path\n" */
        } else if (in && sscanf(line, "FilePmdMapped: %ld", &kib) == 1) {
            sum += kib;
        }
    }
    if (f) fclose(f);
    return sum;
}

/* Loads path and waits (up to 20 s) for the prefault thread to map its weights as 2 MiB pages;
 * returns the share of the weights so mapped, in percent. */
static long huge_share(const char *path, int64_t n) {
    MoeModel *m = NULL;
    char err[512];
    EXPECT_EQ(moe_model_load(&m, &program, path, 1, err, sizeof err), MOE_OK);
    long kib = 0;
    for (int i = 0; m && i < 400 && kib < n / 1024; i++) {
        usleep(50000);
        kib = file_pmd_kib(path);
    }
    moe_model_free(m);
    return kib * 100 / (n / 1024);
}

/* Weights written in 4 KiB writes, as cp leaves a copy, sit in the page cache in 4 KiB folios; the
 * prefault thread reads them again into 2 MiB folios, so they map as huge pages like a file written
 * in large writes; also when only the second half is small (a process that stopped half-way through
 * the re-read). Only where the file system and kernel give a file written in 4 MiB writes 2 MiB
 * folios at all (ext4 on Linux 6.16 or later, transparent huge pages not "never"). */
static void t_huge_reread(void) {
    MoeManifest saved = manifest;
    const int64_t n = 64 << 20;
    manifest.weights_bytes = n;
    const char *large = write_big_moew("large.moew", (size_t)n, 4 << 20, 4 << 20);
    long control = huge_share(large, n);
    unlink(large);
    if (control < 75) {
        fprintf(stderr, "  t_huge_reread: skipped: a file written in 4 MiB writes maps %ld%% as 2 MiB pages here\n",
                control);
    } else {
        for (int half = 0; half < 2; half++) {
            const char *small = write_big_moew("small.moew", (size_t)n, half ? 4 << 20 : 4096, 4096);
            long got = huge_share(small, n);
            EXPECT_TRUE(got >= 75);
            if (got < 75)
                fprintf(stderr, "  t_huge_reread: %s small: %ld%% as 2 MiB pages (large writes: %ld%%)\n",
                        half ? "second half" : "all", got, control);
            unlink(small);
        }
    }
    manifest = saved;
}

/* ---- slots: the fake program compiled for batch 3 ---------------------------------------- */

/* Three sequences in three slots, decoded together in various subsets and orders: each slot's
 * logits are its own sequence's, routes come in ascending slot order, stats per slot; the slot
 * calls' errors. */
static void t_slots(void) {
    MoeManifest saved = manifest;
    enum { B = 3, LD = 448, RD0 = 600, RD2 = 656, ARENA_B = 1024 }; /* logits [3][V], routes [3][K] x 2 */
    manifest.batch = B, manifest.kv_bytes = B * S * 4, manifest.arena_bytes = ARENA_B;
    manifest.logits_decode = LD, manifest.routes_decode[0] = RD0, manifest.routes_decode[2] = RD2;
    MoeModel *m = NULL;
    char err[512];
    EXPECT_EQ(moe_model_load(&m, &program, good_path, 2, err, sizeof err), MOE_OK);
    if (!m) {
        fprintf(stderr, "  %s\n", err);
        manifest = saved;
        return;
    }
    EXPECT_EQ(moe_model_slots(m), B);
    int32_t seq[B][S];
    int slot[B + 1];
    for (int b = 0; b < B; b++) {
        seq_fill(seq[b], S, 20 + b);
        EXPECT_EQ(moe_slot_start(m, &slot[b]), MOE_OK);
        EXPECT_EQ(slot[b], b); /* the lowest free slot */
    }
    EXPECT_EQ(moe_slot_start(m, &slot[B]), MOE_ERR_BUSY);
    EXPECT_EQ(slot[B], -1);
    EXPECT_STR_CONTAINS(moe_model_error(m), "all 3 slots hold a sequence");
    /* prompts of different lengths, prefilled in slot order 2, 0, 1 */
    const int64_t len[B] = {3, 9, 5};
    const float *lg[B];
    for (int k = 0; k < B; k++) {
        int b = (k + 2) % B;
        EXPECT_EQ(moe_slot_prefill(m, b, seq[b], len[b], NULL, NULL, &lg[0]), MOE_OK);
        expect_rows(seq[b], len[b] - 1, 1, lg[0]);
    }
    for (int b = 0; b < B; b++) EXPECT_EQ(moe_slot_pos(m, b), len[b]);
    int64_t pos[B] = {len[0], len[1], len[2]};
    /* decode steps over subsets in any order: {2, 0}, {1, 2, 0}, {1} */
    const int subsets[3][B + 1] = {{2, 2, 0}, {3, 1, 2, 0}, {1, 1}};
    for (int k = 0; k < 3; k++) {
        int n = subsets[k][0];
        const int *sl = subsets[k] + 1;
        int32_t ids[B];
        for (int i = 0; i < n; i++) ids[i] = seq[sl[i]][pos[sl[i]]];
        EXPECT_EQ(moe_slots_decode(m, n, sl, ids, lg), MOE_OK);
        for (int i = 0; i < n; i++) {
            expect_rows(seq[sl[i]], pos[sl[i]], 1, lg[i]);
            pos[sl[i]]++;
        }
        int64_t nr;
        const MoeRoute *r = moe_model_routes(m, 0, &nr);
        EXPECT_EQ(nr, n);
        for (int row = 0, b = 0; r && b < B; b++) /* rows in ascending slot order */
            for (int i = 0; i < n; i++)
                if (sl[i] == b) {
                    EXPECT_EQ(r[row * K].expert, want_route(seq[b][pos[b] - 1], pos[b] - 1, 0, 0).expert);
                    row++;
                }
    }
    for (int b = 0; b < B; b++) EXPECT_EQ(moe_slot_pos(m, b), pos[b]);
    /* each slot's stats: its own tokens only (layer 0 and 2 route K per token; capacity may drop) */
    for (int b = 0; b < B; b++) {
        const int64_t *st = moe_slot_stats(m, b);
        int64_t total = 0;
        for (int l = 0; l < NL; l += 2)
            for (int e = 0; e <= E; e++) total += st[l * (E + 1) + e];
        EXPECT_EQ(total, 2 * K * pos[b]);
    }
    EXPECT_TRUE(moe_slot_stats(m, B) == NULL);
    /* errors: nothing runs */
    int32_t id2[2] = {1, 2};
    EXPECT_EQ(moe_slots_decode(m, 2, (const int[]){1, 1}, id2, lg), MOE_ERR_ARG);
    EXPECT_STR_CONTAINS(moe_model_error(m), "decode: slot 1 given twice");
    EXPECT_EQ(moe_slots_decode(m, 1, (const int[]){5}, id2, lg), MOE_ERR_ARG);
    EXPECT_STR_CONTAINS(moe_model_error(m), "decode: slot 5: must be in [0, 3)");
    EXPECT_EQ(moe_slots_decode(m, 4, (const int[]){0, 1, 2, 0}, id2, lg), MOE_ERR_ARG);
    EXPECT_STR_CONTAINS(moe_model_error(m), "expected 1 to 3 slots; got 4");
    EXPECT_EQ(moe_slots_decode(m, 1, (const int[]){0}, (const int32_t[]){V}, lg), MOE_ERR_ARG);
    EXPECT_STR_CONTAINS(moe_model_error(m), "token id 11");
    moe_slot_free(m, 1);
    moe_slot_free(m, 1); /* twice: no effect */
    moe_slot_free(m, 7); /* bad: no effect */
    EXPECT_EQ(moe_slots_decode(m, 1, (const int[]){1}, id2, lg), MOE_ERR_ARG);
    EXPECT_STR_CONTAINS(moe_model_error(m), "decode: slot 1 holds no sequence (start it first)");
    EXPECT_EQ(moe_slot_prefill(m, 1, id2, 2, NULL, NULL, NULL), MOE_ERR_ARG);
    EXPECT_STR_CONTAINS(moe_model_error(m), "prefill: slot 1 holds no sequence");
    for (int b = 0; b < B; b++) EXPECT_EQ(moe_slot_pos(m, b), pos[b]); /* untouched by the errors */
    /* a freed slot starts again empty; the others keep decoding from where they were */
    EXPECT_EQ(moe_slot_start(m, &slot[0]), MOE_OK);
    EXPECT_EQ(slot[0], 1);
    EXPECT_EQ(moe_slot_pos(m, 1), 0);
    seq_fill(seq[1], S, 40);
    EXPECT_EQ(moe_slot_prefill(m, 1, seq[1], 4, NULL, NULL, NULL), MOE_OK);
    pos[1] = 4;
    int32_t ids[B] = {seq[0][pos[0]], seq[1][pos[1]], seq[2][pos[2]]};
    EXPECT_EQ(moe_slots_decode(m, 3, (const int[]){0, 1, 2}, ids, lg), MOE_OK);
    for (int b = 0; b < B; b++) expect_rows(seq[b], pos[b], 1, lg[b]);
    moe_model_free(m);
    manifest = saved;
}

int main(void) {
    manifest = fake_manifest();
    tmp = test_tmpdir("runtime");
    if (!tmp) test_skip("cannot create a temporary folder");
    snprintf(good_path, sizeof good_path, "%s", write_moew("good.moew", good_spec()));
    t_load_errors();
    t_load_ok();
    t_embedded();
    t_chat_template();
    t_steps(1);
    t_steps(3);
    t_slots();
    t_lazy_buffers();
    t_huge_reread();
    t_sampler();
    t_cli();
    t_timing();
    t_barrier();
    return test_done();
}
