/* moert_cli: prefill the prompt, then generate N tokens, printing their ids comma-separated on one
 * line, exactly like `moec run`. Output formats (shared with compiler/cli/cmd_run.c):
 *   --logits-out: raw little-endian f32, the T prompt rows [T, V], then N rows [N, V] where row s
 *                 chose generated token s (row 0 is the last prompt row again, row s > 0 comes from
 *                 the decode step that fed generated token s-1);
 *   --trace:      JSON, see runtime/trace.h;
 *   --stats:      per-layer tokens per expert and dropped assignments on stderr.
 * Sampling (--temp, --top-k, --top-p, --seed) is runtime/sampler.h; the default, temperature 0,
 * is greedy like `moec run`. */
#include "moert_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batchgen.h"
#include "model.h"
#include "moe.h"
#include "outfile.h"
#include "sampler.h"
#include "serve/server.h"
#include "textio.h"
#include "tokenizer.h"
#include "trace.h"

typedef struct CliOptions {
    const char *name;                /* argv[0]'s last component, for messages */
    int32_t *prompt;                 /* [n_prompt], malloc'd */
    int64_t n_prompt, n_gen, threads, top_k, seed;
    double temp, top_p;
    double memory_mb;                /* --memory: budget in MB (10^6 bytes), 0: none */
    const char *logits_out, *trace_out, *weights;
    bool stats, help, verbose, verify;
    bool batch;                      /* --batch-prompts: every line (or ';'-separated id list) a prompt */
    int64_t warmup;                  /* --warmup N: untimed greedy runs of the same prompt first */
    const char *tokens_arg;          /* the last --tokens value */
    /* text mode: the prompt is text (--prompt, --prompt-file or stdin), encoded with the tokenizer
     * the compiler embedded (MOE_SECTION_TOKENIZER); the output is streamed text, up to EOS */
    char *text;                      /* malloc'd */
    bool text_mode;
} CliOptions;

static const char usage[] =
    "usage: %s (--tokens 1,2,3 | --prompt TEXT | --prompt-file F | < F) [-n N] [options]\n"
    "   or: ... serve [--port P] [options]: an OpenAI-compatible HTTP server (see 'serve --help')\n"
    "Runs the compiled %.32s model: prefill the prompt, then generate N tokens with the KV cache.\n"
    "With --tokens prints the generated token ids; with a text prompt streams the generated text\n"
    "and stops at the end-of-sequence token.\n"
    "\n"
    "  --tokens IDS           prompt token ids, comma-separated\n"
    "  --prompt TEXT          prompt text (tokenized with the model's tokenizer, BOS added as it asks)\n"
    "  --prompt-file F        prompt text from a file ('-': stdin); without any prompt flag: stdin\n"
    "  --batch-prompts        every non-empty line of the prompt text is a prompt of its own (with\n"
    "                         --tokens: id lists separated by ';'); they run together in the compiled\n"
    "                         batch's slots (continuous batching) and each result is printed after its\n"
    "                         prompt's number: [1] ..., [2] ...\n"
    "  -n N                   tokens to generate (default 16)\n"
    "  --threads T            OpenMP threads (default: all cores)\n"
    "  --temp X               sampling temperature (default 0: greedy)\n"
    "  --top-k K              sample among the K most likely tokens only (default 0: all)\n"
    "  --top-p P              sample among the most likely tokens whose probability sums to P (default 1)\n"
    "  --seed S               seed of the sampler (default 0)\n"
    "  --weights FILE.moew    weights file (default: the weights embedded in this executable)\n"
    "  --logits-out FILE      write the logits as raw little-endian float32: [T, V] prompt rows,\n"
    "                         then [N, V] rows, row s being the logits that chose generated token s\n"
    "  --trace FILE           write prompt/generated ids and router choices per layer and position (JSON)\n"
    "  --stats                print per-layer expert utilisation and dropped assignments\n"
    "  --verbose              print load, prefill and decode times and tokens/s at the end\n"
    "  --memory MB            memory budget (MB = 10^6 bytes): the routed experts live in a pool of what\n"
    "                         the rest leaves and are read from the weights on demand (same tokens and\n"
    "                         logits); too small a budget is refused with the smallest that works\n"
    "  --warmup N             first run the same prompt and length N times untimed (greedy), then\n"
    "                         the timed run: warm figures in one process, as moec bench takes them\n"
    "  --verify               read every byte of the weights and check them against the model hash\n"
    "                         before running (alone: check, print and exit). Without it, loading\n"
    "                         checks the weights' header (magic, version, hash, sizes, bounds), not\n"
    "                         the bytes: a corrupted byte inside the weights would go unnoticed\n"
    "Compiled for a context of %" PRId64 " tokens, prefill chunks of %" PRId64 ", target %.64s (%.64s)%s.\n";

static void error(const CliOptions *o, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: error: ", o->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- flags ------------------------------------------------------------------------------- */

static bool parse_int(const CliOptions *o, const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        error(o, "%s: expected an integer in [%" PRId64 ", %" PRId64 "]; got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_double(const CliOptions *o, const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        error(o, "%s: expected a number in [%g, %g]; got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

/* "1,2,3" into a malloc'd array. */
static bool parse_ids(CliOptions *o, const char *flag, const char *s) {
    int32_t *v;
    int64_t n;
    int st = moe_parse_ids(s, &v, &n);
    if (st != MOE_IDS_OK) {
        error(o, "%s: %s; got '%s'", flag, moe_parse_ids_error(st), s);
        return false;
    }
    free(o->prompt);
    o->prompt = v;
    o->n_prompt = n;
    return true;
}

/* The value after argv[*i]; NULL (after an error) when missing. */
static const char *value(const CliOptions *o, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        error(o, "%s: expected a value after it", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* 0, or the exit status 2 after an error. */
static int parse(int argc, char **argv, CliOptions *o) {
    o->n_gen = 16;
    o->top_p = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            o->help = true;
            return 0;
        } else if (!strcmp(a, "--tokens")) {
            if (!(v = value(o, argc, argv, &i))) return 2;
            if (!strchr(v, ';') && !parse_ids(o, a, v)) return 2;
            o->tokens_arg = v;
        } else if (!strcmp(a, "--batch-prompts")) {
            o->batch = true;
        } else if (!strcmp(a, "--warmup")) {
            if (!(v = value(o, argc, argv, &i)) || !parse_int(o, a, v, 0, 1000, &o->warmup)) return 2;
        } else if (!strcmp(a, "--prompt")) {
            if (!(v = value(o, argc, argv, &i))) return 2;
            free(o->text);
            if (!(o->text = strdup(v))) return 2;
            o->text_mode = true;
        } else if (!strcmp(a, "--prompt-file")) {
            if (!(v = value(o, argc, argv, &i))) return 2;
            free(o->text);
            if (!(o->text = moe_read_text(v, NULL))) {
                error(o, "%s: cannot read: %s", v, strerror(errno));
                return 1;
            }
            o->text_mode = true;
        } else if (!strcmp(a, "-n")) {
            if (!(v = value(o, argc, argv, &i)) || !parse_int(o, a, v, 1, 1 << 24, &o->n_gen)) return 2;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = value(o, argc, argv, &i)) || !parse_int(o, a, v, 1, 4096, &o->threads)) return 2;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = value(o, argc, argv, &i)) || !parse_int(o, a, v, 0, INT64_MAX, &o->seed)) return 2;
        } else if (!strcmp(a, "--temp")) {
            if (!(v = value(o, argc, argv, &i)) || !parse_double(o, a, v, 0, 1e6, &o->temp)) return 2;
        } else if (!strcmp(a, "--top-k")) {
            if (!(v = value(o, argc, argv, &i)) || !parse_int(o, a, v, 0, INT32_MAX, &o->top_k)) return 2;
        } else if (!strcmp(a, "--top-p")) {
            if (!(v = value(o, argc, argv, &i)) || !parse_double(o, a, v, 0, 1, &o->top_p)) return 2;
        } else if (!strcmp(a, "--memory")) {
            if (!(v = value(o, argc, argv, &i)) || !parse_double(o, a, v, 1e-6, 1e12, &o->memory_mb)) return 2;
        } else if (!strcmp(a, "--weights")) {
            if (!(o->weights = value(o, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--logits-out")) {
            if (!(o->logits_out = value(o, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--trace")) {
            if (!(o->trace_out = value(o, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--stats")) {
            o->stats = true;
        } else if (!strcmp(a, "--verify")) {
            o->verify = true;
        } else if (!strcmp(a, "--verbose")) {
            o->verbose = true;
        } else if (a[0] == '-') {
            error(o, "%s: unknown option; see '%s --help'", a, o->name);
            return 2;
        } else {
            error(o, "%s: unexpected argument; see '%s --help'", a, o->name);
            return 2;
        }
    }
    if (o->tokens_arg && strchr(o->tokens_arg, ';') && !o->batch) {
        error(o, "--tokens: ';' separates the prompts of --batch-prompts; got '%s' without it", o->tokens_arg);
        return 2;
    }
    if (o->batch && (o->logits_out || o->trace_out)) {
        error(o, "--batch-prompts: --logits-out and --trace are per prompt; run the prompt alone for them");
        return 2;
    }
    if (o->batch && o->tokens_arg) return 0;
    if (!o->prompt && !o->text_mode && o->verify) return 0; /* --verify alone */
    if (!o->prompt && !o->text_mode) {
        if (isatty(0)) {
            error(o, "expected --tokens IDS, --prompt TEXT, --prompt-file F or text on stdin; see '%s --help'", o->name);
            return 2;
        }
        if (!(o->text = moe_read_text("-", NULL))) {
            error(o, "stdin: cannot read: %s", strerror(errno));
            return 1;
        }
        o->text_mode = true;
    }
    if (o->prompt && o->text_mode) {
        error(o, "--tokens and a text prompt: expected one of them");
        return 2;
    }
    return 0;
}

/* ---- generation -------------------------------------------------------------------------- */

/* Where each step's outputs go: logits rows to --logits-out, routes to --trace. */
typedef struct Sink {
    const MoeModel *m;
    MoeOutFile *lo;          /* NULL without --logits-out */
    MoeTrace *tr;            /* NULL without --trace */
    int64_t V;
} Sink;

static void sink_routes(const Sink *k) {
    const MoeManifest *mf = moe_model_manifest(k->m);
    for (uint32_t l = 0; l < mf->n_layers; l++) {
        int64_t rows;
        const MoeRoute *r = moe_model_routes(k->m, (int)l, &rows);
        if (r) moe_trace_add_routes(k->tr, (int)l, r, rows);
    }
}

static void on_prompt_rows(void *user, const float *rows, int64_t first_row, int64_t n_rows) {
    const Sink *k = user;
    (void)first_row;
    if (k->lo) moe_out_write(k->lo, rows, sizeof(float) * (size_t)(n_rows * k->V));
    if (k->tr) sink_routes(k);
}

/* Stats st [n_layers][n_exp + 1] of a sequence (or several) of `routed` tokens on f. */
static void moert_print_stats(FILE *f, const MoeManifest *mf, const int64_t *st, int64_t routed) {
    const int64_t E = mf->n_exp;
    int64_t total = 0;
    fprintf(f, "expert utilisation (tokens per expert over %" PRId64 " routed tokens):\n", routed);
    for (uint32_t l = 0; l < mf->n_layers; l++) {
        const int64_t *row = st + (int64_t)l * (E + 1);
        if (mf->routes_prefill[l] < 0) {
            fprintf(f, "  L%02u dense\n", l);
            continue;
        }
        fprintf(f, "  L%02u dropped %" PRId64 " |", l, row[E]);
        for (int64_t e = 0; e < E; e++) fprintf(f, " %" PRId64, row[e]);
        fputc('\n', f);
        total += row[E];
    }
    fprintf(f, "dropped assignments: %" PRId64 "\n", total);
}

/* --memory's expert pool: its size and, per MoE layer, hits, misses, bytes read and waits. */
static void print_cache_stats(FILE *f, const MoeModel *m) {
    MoeCacheInfo in;
    MoeCacheStats st;
    if (moe_model_cache_info(m, &in) != MOE_OK) return;
    fprintf(f, "expert cache: budget %.1f MB = resident %.1f MB + %" PRId64 " slots of %.3f MB (%" PRId64
            " of %" PRId64 " experts, %.1f MB); reads %s\n",
            (double)in.budget / 1e6, (double)in.resident / 1e6, in.slots, (double)in.slot_bytes / 1e6, in.slots,
            in.experts, (double)in.expert_bytes / 1e6, in.direct ? "O_DIRECT" : "buffered + fadvise(DONTNEED)");
    const MoeManifest *mf = moe_model_manifest(m);
    for (int l = -1; l < (int)mf->n_layers; l++) {
        if (l >= 0 && mf->routes_prefill[l] < 0) continue;
        moe_model_cache_stats(m, l, &st);
        int64_t n = st.hits + st.misses;
        char name[8];
        snprintf(name, sizeof name, l < 0 ? "all" : "L%02d", l);
        fprintf(f, "  %s hit rate %5.1f%% (%" PRId64 " hits, %" PRId64 " misses, %" PRId64
                " evictions) read %.1f MB, waited %.3f s\n",
                name, n ? 100.0 * (double)st.hits / (double)n : 0.0, st.hits, st.misses, st.evictions,
                (double)st.bytes_read / 1e6, st.wait_s);
    }
}

/* Checks the prompt against the manifest before anything is loaded; false after an error. */
static bool check_prompt(const CliOptions *o, const MoeManifest *mf) {
    for (int64_t i = 0; i < o->n_prompt; i++)
        if (o->prompt[i] >= mf->vocab_size) {
            error(o, "--tokens: token id %d at position %" PRId64 ": must be < vocab_size (%" PRId64 ")", o->prompt[i],
                  i, mf->vocab_size);
            return false;
        }
    int64_t ctx = o->n_prompt + o->n_gen - 1; /* the last generated token is never fed */
    if (o->n_prompt > mf->context || ctx > mf->context) {
        error(o, "--tokens: a prompt of %" PRId64 " tokens plus %" PRId64 " generated needs %" PRId64
                 " positions; expected at most the compiled context (%" PRId64 ")",
              o->n_prompt, o->n_gen, ctx, mf->context);
        return false;
    }
    return true;
}

/* Text mode: the embedded tokenizer into *tok; false after an error. */
static bool load_tokenizer(const CliOptions *o, const MoeModel *m, MoeTokenizer **tok) {
    uint64_t bytes;
    const void *blob = moert_model_tokenizer(m, &bytes);
    char err[256];
    if (!blob) {
        error(o, "--prompt: this executable carries no tokenizer (its model folder had no tokenizer.json when it "
                 "was compiled); use --tokens IDS");
        return false;
    }
    if (!(*tok = moe_tok_load(blob, (size_t)bytes, err, sizeof err))) {
        error(o, "embedded tokenizer: %s", err);
        return false;
    }
    return true;
}

/* Text mode: encodes o->text with the embedded tokenizer into o->prompt; false after an error. */
static bool encode_prompt(CliOptions *o, const MoeModel *m, MoeTokenizer **tok) {
    if (!load_tokenizer(o, m, tok)) return false;
    size_t n;
    if (moe_tok_encode(*tok, o->text, strlen(o->text), true, &o->prompt, &n) != MOE_TOK_OK || n == 0) {
        error(o, "--prompt: the text encodes to no tokens; expected at least one");
        return false;
    }
    o->n_prompt = (int64_t)n;
    return true;
}

/* ---- --batch-prompts: the prompts in the compiled batch's slots (runtime/batchgen.h) ---------- */

typedef struct BatchRun {
    MoeModel *m;
    int64_t *stats;          /* [n_seqs][n_layers][n_exp + 1] each sequence's, taken when it ends */
    int64_t *routed;         /* [n_seqs] its tokens (prompt and fed generated) */
    int64_t per_seq;
    int64_t expert_reads;    /* over decode steps and MoE layers: the distinct experts a step routes to */
    int64_t moe_layer_steps; /* decode steps x MoE layers */
    uint8_t *seen;           /* [n_exp] scratch; NULL: not counted (only --verbose shows it) */
} BatchRun;

static bool br_start(void *user, int *slot, char *err, size_t errlen) {
    BatchRun *b = user;
    if (moe_slot_start(b->m, slot) == MOE_OK) return true;
    snprintf(err, errlen, "%s", moe_model_error(b->m));
    return false;
}

static void br_finish(void *user, int slot, int seq) {
    BatchRun *b = user;
    memcpy(b->stats + seq * b->per_seq, moe_slot_stats(b->m, slot), sizeof(int64_t) * (size_t)b->per_seq);
    b->routed[seq] = moe_slot_pos(b->m, slot);
    moe_slot_free(b->m, slot);
}

static bool br_prefill(void *user, int slot, const int32_t *ids, int64_t n, const float **logits, char *err,
                       size_t errlen) {
    BatchRun *b = user;
    if (moe_slot_prefill(b->m, slot, ids, n, NULL, NULL, logits) == MOE_OK) return true;
    snprintf(err, errlen, "%s", moe_model_error(b->m));
    return false;
}

static bool br_decode(void *user, int n, const int *slots, const int32_t *ids, const float **logits, char *err,
                      size_t errlen) {
    BatchRun *b = user;
    if (moe_slots_decode(b->m, n, slots, ids, logits) != MOE_OK) {
        snprintf(err, errlen, "%s", moe_model_error(b->m));
        return false;
    }
    /* the union of the experts the step's rows route to: what its expert kernels read */
    const MoeManifest *mf = moe_model_manifest(b->m);
    for (uint32_t l = 0; b->seen && l < mf->n_layers; l++) {
        int64_t rows;
        const MoeRoute *r = moe_model_routes(b->m, (int)l, &rows);
        if (!r) continue;
        memset(b->seen, 0, (size_t)mf->n_exp);
        for (int64_t i = 0; i < rows * mf->top_k; i++) {
            int32_t e = r[i].expert;
            if (e >= 0 && e < mf->n_exp && !b->seen[e]) {
                b->seen[e] = 1;
                b->expert_reads++;
            }
        }
        b->moe_layer_steps++;
    }
    return true;
}

static int generate_batch(CliOptions *o, MoeModel *m, const MoeTokenizer *tok, double load_s) {
    const MoeManifest *mf = moe_model_manifest(m);
    char err[512];
    MoeGenSeq *seqs = NULL;
    int n = 0, rc = 1;
    BatchRun b = {m, NULL, NULL, (int64_t)mf->n_layers * (mf->n_exp + 1), 0, 0, NULL};
    if (!moe_batch_prompts(tok ? o->text : o->tokens_arg, tok, o->n_gen, &seqs, &n, err, sizeof err)) {
        error(o, "%s", err);
        return 1;
    }
    if (!moe_batch_check(seqs, n, mf->vocab_size, mf->context, "the compiled context", o->n_gen, NULL, NULL, err,
                         sizeof err)) {
        error(o, "%s", err);
        goto out;
    }
    b.stats = calloc((size_t)(n * b.per_seq), sizeof(int64_t));
    b.routed = calloc((size_t)n, sizeof(int64_t));
    b.seen = o->verbose ? calloc((size_t)mf->n_exp + 1, 1) : NULL;
    if (!b.stats || !b.routed || (o->verbose && !b.seen)) {
        error(o, "out of memory");
        goto out;
    }
    MoeGenEngine e = {&b, moe_model_slots(m), mf->vocab_size, br_start, br_finish, br_prefill, br_decode};
    MoeGenParams p = {o->n_gen, o->temp, o->top_p, o->top_k, (uint64_t)o->seed, (int32_t)mf->eos_token_id, tok != NULL};
    MoeGenStats gs;
    if (!moe_batch_generate(&e, seqs, n, &p, &gs, err, sizeof err)) {
        error(o, "%s", err);
        goto out;
    }
    moe_batch_print(stdout, tok, p.eos, seqs, n);
    if (o->stats) {
        int64_t *total = calloc((size_t)b.per_seq, sizeof(int64_t)), routed = 0;
        for (int i = 0; i <= n && total; i++) {
            if (i < n) {
                fprintf(stderr, "prompt %d: ", i + 1);
                moert_print_stats(stderr, mf, b.stats + i * b.per_seq, b.routed[i]);
                for (int64_t k = 0; k < b.per_seq; k++) total[k] += b.stats[i * b.per_seq + k];
                routed += b.routed[i];
            } else {
                fprintf(stderr, "all %d prompts: ", n);
                moert_print_stats(stderr, mf, total, routed);
            }
        }
        free(total);
        print_cache_stats(stderr, m);
    }
    if (o->verbose) {
        moert_print_batch(stderr, n, moe_model_slots(m), &gs,
                          b.moe_layer_steps ? (double)b.expert_reads / (double)b.moe_layer_steps : 0, mf->n_exp);
        moe_print_timing(stderr, load_s, gs.prefill_tokens, gs.prefill_s, gs.rows, gs.decode_s);
    }
    rc = 0;
out:
    free(b.stats);
    free(b.routed);
    free(b.seen);
    moe_batch_free(seqs, n);
    return rc;
}

static int generate(CliOptions *o, const MoeProgram *prog) {
    const MoeManifest *mf = prog->manifest;
    const int64_t V = mf->vocab_size;
    char err[512];
    int rc = 1;
    MoeModel *m = NULL;
    MoeTrace *tr = NULL;
    MoeOutFile lo = {0};
    MoeTokenizer *tok = NULL;
    MoeTextOut txt = {0};
    int32_t *gen = NULL;
    int64_t n_gen = 0;
    void *scratch = NULL;
    const float *logits;
    bool is_moe[MOE_MAX_LAYERS];
    MoeSampler smp;
    Sink sink = {NULL, NULL, NULL, V};

    double t0 = moe_now_s(), t_load, t_prefill, t_end;
    MoeLoadOptions lo_opts = {o->weights, (int)o->threads, (int64_t)llround(o->memory_mb * 1e6)};
    if (moe_model_load_opts(&m, prog, &lo_opts, err, sizeof err) != MOE_OK) {
        error(o, "%s", err);
        goto out;
    }
    if (o->verify && moe_model_verify(m) != MOE_OK) {
        error(o, "%s", moe_model_error(m));
        goto out;
    }
    if (o->verify && !o->prompt && !o->text_mode) {
        printf("%s: weights verified: %.1f MB, model hash 0x%016" PRIx64 "\n", o->name,
               (double)mf->weights_bytes / 1e6, mf->model_hash);
        rc = 0;
        goto out;
    }
    if (o->batch) {
        if (o->text_mode && !load_tokenizer(o, m, &tok)) goto out;
        rc = generate_batch(o, m, tok, moe_now_s() - t0);
        goto out;
    }
    if (o->text_mode && (!encode_prompt(o, m, &tok) || !check_prompt(o, mf))) goto out;
    for (uint32_t l = 0; l < mf->n_layers; l++) is_moe[l] = mf->routes_prefill[l] >= 0;
    if (o->trace_out && !(tr = moe_trace_new((int)mf->n_layers, (int)mf->top_k, is_moe))) {
        error(o, "out of memory");
        goto out;
    }
    if (o->logits_out && !moe_out_open(&lo, o->logits_out)) {
        error(o, "%s: cannot create: %s", o->logits_out, strerror(errno));
        goto out;
    }
    gen = malloc(sizeof(int32_t) * (size_t)o->n_gen);
    scratch = malloc(moe_sampler_scratch_bytes(V));
    if (!gen || !scratch || !moe_text_begin(&txt, tok, (int32_t)mf->eos_token_id, stdout)) {
        error(o, "out of memory");
        goto out;
    }
    moe_sampler_init(&smp, V, o->temp, o->top_k, o->top_p, (uint64_t)o->seed, scratch);
    sink = (Sink){m, lo.f ? &lo : NULL, tr, V};
    if (tr) moe_trace_add_prompt(tr, o->prompt, o->n_prompt);

    t_load = moe_now_s();
    double load_s = t_load - t0;
    for (int64_t w = 0; w < o->warmup; w++) { /* untimed: the same work, greedy, then a fresh sequence */
        int32_t id = 0;
        MoeStatus st = moe_prefill(m, o->prompt, o->n_prompt, NULL, NULL, &logits);
        for (int64_t s = 0; st == MOE_OK && s < o->n_gen; s++) {
            id = moe_sampler_argmax(logits, V);
            if (s + 1 < o->n_gen) st = moe_decode(m, id, &logits);
        }
        if (st != MOE_OK) {
            error(o, "%s", moe_model_error(m));
            goto out;
        }
        moe_model_reset(m);
    }
    t_load = moe_now_s();
    /* per-step hook for --logits-out (every prompt row) and --trace (the step's routes); without
     * one, the runtime computes only the last prompt token's logits */
    MoeRowsFn on_rows = sink.lo || sink.tr ? on_prompt_rows : NULL;
    if (moe_prefill(m, o->prompt, o->n_prompt, on_rows, &sink, &logits) != MOE_OK) {
        error(o, "%s", moe_model_error(m));
        goto out;
    }
    t_prefill = moe_now_s();
    for (int64_t s = 0; s < o->n_gen; s++) {
        if (s > 0) {
            if (moe_decode(m, gen[s - 1], &logits) != MOE_OK) {
                error(o, "%s", moe_model_error(m));
                goto out;
            }
            if (tr) sink_routes(&sink);
        }
        if (sink.lo) moe_out_write(sink.lo, logits, sizeof(float) * (size_t)V);
        gen[s] = moe_sampler_sample(&smp, logits);
        n_gen = s + 1;
        if (!moe_text_token(&txt, gen[s])) break; /* text mode: streamed, up to end-of-sequence */
    }
    t_end = moe_now_s();
    moe_text_end(&txt, gen, n_gen);
    for (int64_t s = 0; tr && s < n_gen; s++) moe_trace_add_generated(tr, gen[s]);
    if (lo.f && !moe_out_commit(&lo)) {
        error(o, "%s: cannot write the logits", o->logits_out);
        goto out;
    }
    if (tr && !moe_trace_write(tr, o->trace_out)) {
        error(o, "%s: cannot write the trace", o->trace_out);
        goto out;
    }
    if (o->stats) moert_print_stats(stderr, mf, moe_model_stats(m), moe_model_pos(m));
    if (o->stats) print_cache_stats(stderr, m);
    if (o->verbose) moe_print_timing(stderr, load_s, o->n_prompt, t_prefill - t_load, n_gen - 1, t_end - t_prefill);
    rc = 0;
out:
    if (lo.f) moe_out_abort(&lo);
    moe_text_free(&txt);
    moe_tok_free(tok);
    free(scratch);
    free(gen);
    moe_trace_free(tr);
    moe_model_free(m);
    return rc;
}

int moert_cli(int argc, char **argv, const MoeProgram *prog) {
    CliOptions o = {0};
    const char *slash = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
    o.name = slash ? slash + 1 : argc > 0 && argv[0] ? argv[0] : "moe";
    if (argc > 1 && !strcmp(argv[1], "serve")) return moe_serve_cli(argc - 1, argv + 1, o.name, prog);
    int rc = parse(argc, argv, &o);
    const MoeManifest *mf = prog->manifest;
    if (rc == 0 && o.help) {
        printf(usage, o.name, mf->family, mf->context, mf->prefill_chunk, mf->target, mf->cpu,
               mf->needs & MOE_NEED_AMX ? ", prefill on AMX tiles" : "");
    } else if (rc == 0) {
        rc = o.text_mode || o.batch || (o.verify && !o.prompt) || check_prompt(&o, mf) ? generate(&o, prog) : 1;
    }
    free(o.prompt);
    free(o.text);
    return rc;
}
