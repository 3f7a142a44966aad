/* moec kld: how far a (quantised) model's next-token distributions are from a reference's, on the
 * same tokens: KL divergence, top-1 agreement and both perplexities (the arithmetic is kld.h).
 *
 * Each side is a model folder or GGUF file, run in this process on the generic path (interp.h:
 * every row's logits of a step, as `moec run --logits-out` writes them), or an executable made by
 * `moec compile`, run as a child per window with --tokens and --logits-out (T + 1 rows; the first
 * T are the prompt's). The sides run one after the other, not side by side: REF's scored rows
 * are kept in memory ([scored positions, V] floats), then QUANT runs and each of its rows is
 * compared as it comes, so only one model is loaded at a time. */
#include <errno.h>
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "format.h"
#include "frontend.h"
#include "gguf_tok.h"
#include "interp/interp.h"
#include "kld.h"
#include "outfile.h"
#include "quantize.h"
#include "textio.h"
#include "tokenizer.h"
#include "tokjson.h"

static const char kld_usage[] =
    "usage: moec kld REF QUANT (--text FILE | --tokens IDS) [options]\n"
    "Runs two models on the same tokens and compares QUANT's next-token distribution with REF's at\n"
    "every scored position, as llama-perplexity --kl-divergence does: the mean, median, 99th\n"
    "percentile and maximum of KL(P_ref || P_quant) (nats, from the f32 logits through a log-softmax\n"
    "in double), top-1 agreement (the share of positions where both argmaxes are the same token) and\n"
    "each model's perplexity over the text (exp of the mean negative log-likelihood of the actual\n"
    "next token). REF and QUANT are model folders or GGUF files (run on the generic path, in this\n"
    "process) or executables made by 'moec compile' (run with --tokens and --logits-out). Both must\n"
    "have the same vocabulary.\n"
    "\n"
    "Windows: the tokens are cut into windows of --ctx tokens (the last may be shorter), each run from\n"
    "an empty KV cache, as llama-perplexity does; when the text's first token is BOS, every window\n"
    "starts with BOS (in place of its first token). Scored positions: by default those in the second\n"
    "half of each window (rows L/2 .. L-2 of a window of L tokens, each predicting the next token),\n"
    "so every scored prediction sees at least L/2 tokens, llama-perplexity's choice; --score all\n"
    "scores every row but the last (0 .. L-2).\n"
    "\n"
    "  --text FILE        the text to score ('-': stdin), tokenised with REF's tokenizer (tokenizer.json,\n"
    "                     the GGUF metadata, or the one compiled into an executable)\n"
    "  --tokens IDS       token ids, comma-separated (at least 2)\n"
    "  --ctx N            window length (default: min(512, both models' context))\n"
    "  --score half|all   which positions of each window are scored (default half, as above)\n"
    "  --threads T        OpenMP threads, in this process and for executables (default: all cores)\n"
    "  --quant SPEC       block-quantise QUANT's weights at load, as 'moec run --quant' (a folder or GGUF)\n"
    "  --act exact|int8|bf16\n"
    "                     QUANT's activations: int8 against block-quantised weights, bf16 against bf16\n"
    "                     weights (as 'moec run --act'; default exact)\n"
    "  --ref-quant SPEC   the same for REF (default: its weights as stored)\n"
    "  --ref-act exact|int8|bf16\n"
    "  --ref-cache FILE   REF's logits of the scored rows: read from FILE when it holds those of this very\n"
    "                     run (the same REF path, --ref-quant, --ref-act, tokens, --ctx and --score), else\n"
    "                     computed and written there, so that one REF serves many QUANTs (as\n"
    "                     llama-perplexity --kl-divergence-base); REF's path is checked, not its bytes\n"
    "  --json FILE        the figures as JSON\n";

/* One of the two models. */
typedef struct Side {
    const char *role;         /* "REF", "QUANT" */
    const char *path;
    bool exe;                 /* a compiled executable (else a folder or GGUF file) */
    bool quant, act_given;
    QuantSpec spec;           /* --quant / --ref-quant */
    GkAct act;
    int64_t vocab, context;
    /* generic path */
    Arena *a;
    Model m;
    Interp *ip;
    /* executable: the last window's logits */
    float *rows;              /* [L + 1, V] */
    char tmp[64];             /* --logits-out file */
} Side;

typedef struct KldOptions {
    Side side[2];             /* REF, QUANT */
    int32_t *ids;             /* [n] */
    int64_t n, ctx, threads;
    const char *text_path, *json, *ref_cache;
    bool score_all;
} KldOptions;

static int parse_kld(int argc, char **argv, KldOptions *o, Diag *d) {
    memset(o, 0, sizeof *o);
    o->side[0].role = "REF";
    o->side[1].role = "QUANT";
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        Side *s = !strncmp(a, "--ref-", 6) ? &o->side[0] : &o->side[1];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(kld_usage, stdout);
            exit(0);
        } else if (!strcmp(a, "--tokens")) {
            free(o->ids);
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_ids(d, a, v, &o->ids, &o->n)) return 2;
        } else if (!strcmp(a, "--text")) {
            if (!(o->text_path = cli_value(d, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_int(d, a, v, 2, 1 << 24, &o->ctx)) return 2;
        } else if (!strcmp(a, "--score")) {
            if (!(v = cli_value(d, argc, argv, &i))) return 2;
            if (strcmp(v, "half") && strcmp(v, "all")) {
                diag_error(d, "--score: expected half or all; got '%s'", v);
                return 2;
            }
            o->score_all = !strcmp(v, "all");
        } else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_int(d, a, v, 1, 4096, &o->threads)) return 2;
        } else if (!strcmp(a, "--quant") || !strcmp(a, "--ref-quant")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !quantize_spec_parse(d, v, &s->spec)) return 2;
            s->quant = true;
        } else if (!strcmp(a, "--act") || !strcmp(a, "--ref-act")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_act(d, a, v, &s->act)) return 2;
            s->act_given = true;
        } else if (!strcmp(a, "--ref-cache")) {
            if (!(o->ref_cache = cli_value(d, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--json")) {
            if (!(o->json = cli_value(d, argc, argv, &i))) return 2;
        } else if (a[0] == '-' && a[1]) {
            diag_error(d, "%s: unknown option; see 'moec kld --help'", a);
            return 2;
        } else if (n_paths < 2) {
            o->side[n_paths++].path = a;
        } else {
            diag_error(d, "%s: unexpected argument; expected two models, REF and QUANT", a);
            return 2;
        }
    }
    if (n_paths < 2) {
        diag_error(d, "kld: expected two models, REF and QUANT; see 'moec kld --help'");
        return 2;
    }
    if (!o->ids == !o->text_path) {
        diag_error(d, "kld: expected one of --text FILE and --tokens IDS");
        return 2;
    }
    return 0;
}

/* ---- executables -------------------------------------------------------------------------- */

static bool is_elf(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    FILE *f = fopen(path, "rb");
    unsigned char m[4] = {0};
    bool elf = f && fread(m, 1, 4, f) == 4 && !memcmp(m, "\x7f" "ELF", 4);
    if (f) fclose(f);
    return elf;
}

/* A temporary file name for a child's output (created empty, so no one else takes it). */
static bool tmp_name(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/moec-kld-%s-XXXXXX", tag);
    int fd = mkstemp(buf);
    if (fd < 0) return false;
    close(fd);
    return true;
}

/* Runs argv with stdout to out_path (may be NULL); on failure shows the child's stderr. */
static bool run_exe(Diag *d, char **argv, const char *out_path) {
    char errf[64];
    if (!tmp_name(errf, sizeof errf, "err")) {
        diag_error(d, "/tmp: cannot create a temporary file: %s", strerror(errno));
        return false;
    }
    int rc = cli_run_child(argv, out_path, errf, NULL);
    if (rc != 0) {
        size_t len = 0;
        char *msg = moe_read_text(errf, &len);
        while (msg && len && (msg[len - 1] == '\n')) msg[--len] = 0;
        diag_error(d, "%s: exited with status %d%s%s", argv[0], rc, msg && *msg ? ": " : "", msg ? msg : "");
        free(msg);
    }
    unlink(errf);
    return rc == 0;
}

/* Runs the executable on ids[0..L) (-n 1) and reads its [L + 1, V] logits into s->rows. */
static bool exe_window(Side *s, Diag *d, const int32_t *ids, int64_t L, int64_t threads, int64_t *V_out) {
    char *list = xmalloc((size_t)L * 12 + 1), *p = list, thr[24];
    for (int64_t i = 0; i < L; i++) p += sprintf(p, "%s%d", i ? "," : "", ids[i]);
    snprintf(thr, sizeof thr, "%" PRId64, threads);
    char *argv[] = {(char *)s->path, "--tokens", list, "-n", "1", "--threads", thr, "--logits-out", s->tmp, NULL};
    bool ok = run_exe(d, argv, NULL);
    free(list);
    if (!ok) return false;
    size_t len = 0;
    FILE *f = fopen(s->tmp, "rb");
    struct stat st;
    if (f && fstat(fileno(f), &st) == 0) len = (size_t)st.st_size;
    int64_t rows = L + 1, V = (int64_t)(len / sizeof(float)) / rows;
    if (!f || len == 0 || len % (sizeof(float) * (size_t)rows) != 0) {
        diag_error(d, "%s: --logits-out %s: expected %" PRId64 " rows of float32 logits; got %zu bytes", s->path,
                   s->tmp, rows, len);
        if (f) fclose(f);
        return false;
    }
    free(s->rows);
    s->rows = xmalloc(len);
    ok = fread(s->rows, 1, len, f) == len;
    fclose(f);
    if (!ok) diag_error(d, "%s: cannot read %s", s->path, s->tmp);
    *V_out = V;
    return ok;
}

/* The executable's context (from its --help) and vocabulary (from a one-token run). */
static bool exe_probe(Side *s, Diag *d, int64_t threads) {
    char out[64];
    if (!tmp_name(out, sizeof out, "help") || !tmp_name(s->tmp, sizeof s->tmp, "logits")) {
        diag_error(d, "/tmp: cannot create a temporary file: %s", strerror(errno));
        return false;
    }
    char *argv[] = {(char *)s->path, "--help", NULL};
    bool ok = run_exe(d, argv, out);
    char *help = ok ? moe_read_text(out, NULL) : NULL;
    const char *at = help ? strstr(help, "Compiled for a context of ") : NULL;
    unlink(out);
    if (ok && (!at || sscanf(at, "Compiled for a context of %" SCNd64, &s->context) != 1)) {
        diag_error(d, "%s: --help: no 'Compiled for a context of N tokens' line; expected an executable made by "
                      "'moec compile'", s->path);
        ok = false;
    }
    free(help);
    int32_t zero = 0;
    return ok && exe_window(s, d, &zero, 1, threads, &s->vocab);
}

/* The tokenizer compiled into an executable (its weights' MOE_SECTION_TOKENIZER); false after
 * diag_error. */
static bool exe_tokenizer_blob(Diag *d, Arena *a, const char *path, void **blob, size_t *len) {
    FILE *f = fopen(path, "rb");
    MoeTrailer tr;
    MoeWeightsHeader h;
    bool ok = f && fseek(f, -(long)sizeof tr, SEEK_END) == 0 && fread(&tr, sizeof tr, 1, f) == 1 &&
              !memcmp(tr.magic, MOE_TRAILER_MAGIC, 8) && fseek(f, (long)tr.header_offset, SEEK_SET) == 0 &&
              fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, MOE_WEIGHTS_MAGIC, 8);
    const MoeSection *sec = NULL;
    for (uint32_t i = 0; ok && i < h.n_sections && i < MOE_MAX_SECTIONS; i++)
        if (h.sections[i].kind == MOE_SECTION_TOKENIZER) sec = &h.sections[i];
    if (ok && sec) {
        *len = (size_t)sec->size;
        *blob = arena_alloc(a, *len + 1);
        ok = fseek(f, (long)(tr.header_offset + sec->offset), SEEK_SET) == 0 && fread(*blob, 1, *len, f) == *len;
    }
    if (f) fclose(f);
    if (!ok || !sec)
        diag_error(d, "--text: %s: %s; expected an executable with its weights and tokenizer embedded (or use --tokens IDS)",
                   path, !ok ? "cannot read its embedded weights header" : "carries no tokenizer");
    return ok && sec;
}

/* ---- the generic path --------------------------------------------------------------------- */

/* Loads the side's model (quantised as asked); false after diag_error. */
static bool side_load(Side *s, Diag *d) {
    if (s->exe) return true;
    s->a = arena_new();
    if (!model_load(&s->m, s->a, d, s->path)) return false;
    if (s->quant) {
        QuantReport qr;
        if (!quantize_model(&s->m, s->a, d, &s->spec, false, &qr)) return false;
        fprintf(stderr, "moec: kld: %s: ", s->role);
        quantize_report_summary(&qr, &s->spec, stderr);
    }
    return true;
}

static void side_close(Side *s) {
    interp_free(s->ip);
    s->ip = NULL;
    if (s->a) {
        model_close(&s->m);
        arena_destroy(s->a);
        s->a = NULL;
    }
    free(s->rows);
    s->rows = NULL;
}

/* The logits [L, V] of the window ids[0..L), borrowed until the next call; NULL after diag_error. */
static const float *side_window(Side *s, Diag *d, const int32_t *ids, int64_t L, int64_t threads) {
    if (s->exe) {
        int64_t V;
        if (!exe_window(s, d, ids, L, threads, &V)) return NULL;
        if (V != s->vocab) {
            diag_error(d, "%s: --logits-out: expected rows of %" PRId64 " logits; got %" PRId64, s->path, s->vocab, V);
            return NULL;
        }
        return s->rows;
    }
    interp_free(s->ip);
    if (!(s->ip = interp_new(s->m.g, L, L, 1, 0, s->act))) {
        diag_error(d, "%s: cannot allocate the activations and KV cache for %" PRId64 " positions", s->path, L);
        return NULL;
    }
    interp_step(s->ip, ids, L);
    return interp_value(s->ip, s->m.g->logits);
}

/* Vocabulary and context of a side, without loading weights (an executable runs once). */
static bool side_probe(Side *s, Diag *d, int64_t threads) {
    s->exe = is_elf(s->path);
    if (s->exe) {
        if (s->quant || s->act_given) {
            diag_error(d, "%s: %s is a compiled executable; its weights and activations were fixed by 'moec "
                          "compile' (--quant/--act apply to folders and GGUF files)",
                       s->path, s->role);
            return false;
        }
        return exe_probe(s, d, threads);
    }
    Arena *a = arena_new();
    Model m;
    bool ok = model_load_config(&m, a, d, s->path);
    if (ok) s->vocab = m.cfg.vocab_size, s->context = m.cfg.max_position_embeddings;
    model_close(&m);
    arena_destroy(a);
    return ok;
}

/* ---- tokens and windows ------------------------------------------------------------------- */

/* --text: the text encoded with REF's tokenizer (BOS added as it asks); *bos its BOS id or -1. */
static bool encode_text(Diag *d, KldOptions *o, int32_t *bos) {
    const Side *s = &o->side[0];
    Arena *a = arena_new();
    void *blob = NULL;
    size_t len = 0, n = 0, tlen = 0;
    bool is_gguf = false, ok;
    char err[256], *text = NULL, *path = arena_printf(a, "%s/tokenizer.json", s->path);
    MoeTokenizer *tok = NULL;
    if (s->exe) {
        ok = exe_tokenizer_blob(d, a, s->path, &blob, &len);
    } else if (!(ok = gguf_tokenizer_load(a, d, s->path, &is_gguf, &blob, &len))) {
    } else if (!is_gguf && access(path, R_OK) != 0) {
        diag_error(d, "--text: %s has no tokenizer.json; expected one to tokenise the text (or use --tokens IDS)",
                   s->path);
        ok = false;
    } else if (!is_gguf) {
        ok = tokjson_load(a, d, path, &blob, &len);
    }
    if (ok && !(tok = moe_tok_load(blob, len, err, sizeof err))) {
        diag_error(d, "%s: tokenizer: %s", s->path, err);
        ok = false;
    }
    if (ok && !(text = moe_read_text(o->text_path, &tlen))) {
        diag_error(d, "%s: cannot read: %s", o->text_path, strerror(errno));
        ok = false;
    }
    if (ok && moe_tok_encode(tok, text, tlen, true, &o->ids, &n) != MOE_TOK_OK) {
        diag_error(d, "%s: cannot tokenise the text", o->text_path);
        ok = false;
    }
    if (ok) {
        o->n = (int64_t)n;
        *bos = moe_tok_bos(tok);
    }
    free(text);
    moe_tok_free(tok);
    arena_destroy(a);
    return ok;
}

typedef struct Window {
    int64_t start, len;       /* tokens ids[start .. start + len) */
    int64_t first, end;       /* scored rows first .. end - 1; row j predicts ids[start + j + 1] */
} Window;

/* ---- --ref-cache ------------------------------------------------------------------------- */

/* What REF's cached rows were computed from: a cache is used only when its header is this one. */
typedef struct RefCacheHeader {
    char magic[8];            /* "MOEKLDR1" */
    int64_t vocab, n_tokens, ctx, score_all, scored;
    uint64_t ids_hash;        /* FNV-1a of the token ids */
    char ref[480];            /* "path|--ref-quant|--ref-act" */
} RefCacheHeader;             /* then float32 rows [scored, vocab] */

static void ref_cache_header(const KldOptions *o, int64_t scored, RefCacheHeader *h) {
    const Side *r = &o->side[0];
    memset(h, 0, sizeof *h);
    memcpy(h->magic, "MOEKLDR1", 8);
    h->vocab = r->vocab, h->n_tokens = o->n, h->ctx = o->ctx, h->score_all = o->score_all, h->scored = scored;
    h->ids_hash = 1469598103934665603ull;
    for (int64_t i = 0; i < o->n; i++) h->ids_hash = (h->ids_hash ^ (uint32_t)o->ids[i]) * 1099511628211ull;
    snprintf(h->ref, sizeof h->ref, "%s|%s|%s", r->path, r->quant ? r->spec.text : "-",
             gk_act_name(r->act));
}

/* True when path holds the rows of exactly this run (read into rows, bytes long). */
static bool ref_cache_read(const char *path, const RefCacheHeader *want, float *rows, size_t bytes) {
    FILE *f = fopen(path, "rb");
    RefCacheHeader h;
    bool ok = f && fread(&h, sizeof h, 1, f) == 1 && !memcmp(&h, want, sizeof h) && fread(rows, 1, bytes, f) == bytes;
    if (f) fclose(f);
    return ok;
}

static bool ref_cache_write(Diag *d, const char *path, const RefCacheHeader *h, const float *rows, size_t bytes) {
    MoeOutFile out = {0};
    if (!moe_out_open(&out, path)) {
        diag_error(d, "%s: cannot create: %s", path, strerror(errno));
        return false;
    }
    moe_out_write(&out, h, sizeof *h);
    moe_out_write(&out, rows, bytes);
    if (!moe_out_commit(&out)) {
        diag_error(d, "%s: cannot write REF's logits", path);
        return false;
    }
    return true;
}

/* ---- output ------------------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

/* "as stored", "as stored --act bf16", "--quant q8_0 --act int8", "compiled executable" */
static const char *side_desc(const Side *s, char *buf, size_t n) {
    if (s->exe) snprintf(buf, n, "compiled executable");
    else if (s->quant) snprintf(buf, n, "--quant %s --act %s", s->spec.text, gk_act_name(s->act));
    else if (s->act != GK_ACT_EXACT) snprintf(buf, n, "as stored --act %s", gk_act_name(s->act));
    else snprintf(buf, n, "as stored");
    return buf;
}

static void print_report(const KldOptions *o, const KldSummary *m, int64_t n_win, FILE *f) {
    char b0[160], b1[160];
    const Side *r = &o->side[0], *q = &o->side[1];
    fprintf(f, "moec kld: %" PRId64 " tokens in %" PRId64 " window%s of %" PRId64 ", %" PRId64
               " positions scored (%s)\n\n",
            o->n, n_win, n_win == 1 ? "" : "s", o->ctx, m->n, o->score_all ? "every row but the last of each window" : "the second half of each window");
    fprintf(f, "%-22s %-24s %s\n", "", "REF", "QUANT");
    fprintf(f, "%-22s %-24s %s\n", "model", r->path, q->path);
    fprintf(f, "%-22s %-24s %s\n", "weights", side_desc(r, b0, sizeof b0), side_desc(q, b1, sizeof b1));
    fprintf(f, "%-22s %-24.4f %.4f  (ratio %.6f)\n", "perplexity", m->ppl_ref, m->ppl_quant, m->ppl_quant / m->ppl_ref);
    fprintf(f, "%-22s %-24.6f %.6f\n", "mean NLL (nats)", m->nll_ref, m->nll_quant);
    fprintf(f, "\nKL(REF || QUANT), nats  mean %.6f +- %.6f, median %.6f, p99 %.6f, max %.6f\n", m->kl_mean, m->kl_se,
            m->kl_median, m->kl_p99, m->kl_max);
    fprintf(f, "top-1 agreement         %.4f (%" PRId64 " of %" PRId64 " positions)\n", m->top1,
            (int64_t)(m->top1 * (double)m->n + 0.5), m->n);
}

static bool write_json(const KldOptions *o, const KldSummary *m, int64_t n_win, Diag *d) {
    MoeOutFile out = {0};
    if (!moe_out_open(&out, o->json)) {
        diag_error(d, "%s: cannot create: %s", o->json, strerror(errno));
        return false;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fputs("{\n", f);
    for (int k = 0; k < 2; k++) {
        const Side *s = &o->side[k];
        fprintf(f, "  \"%s\": {\"model\": ", k ? "quant" : "ref");
        json_str(f, s->path);
        fprintf(f, ", \"executable\": %s, \"quant\": ", s->exe ? "true" : "false");
        if (s->quant) json_str(f, s->spec.text);
        else fputs("null", f);
        fprintf(f, ", \"act\": \"%s\", \"perplexity\": %.6f, \"mean_nll\": %.8f},\n",
                gk_act_name(s->act), k ? m->ppl_quant : m->ppl_ref, k ? m->nll_quant : m->nll_ref);
    }
    fprintf(f, "  \"tokens\": %" PRId64 ", \"ctx\": %" PRId64 ", \"windows\": %" PRId64 ", \"scored\": %" PRId64
               ", \"score\": \"%s\",\n",
            o->n, o->ctx, n_win, m->n, o->score_all ? "all" : "half");
    fprintf(f, "  \"kl_mean\": %.9g, \"kl_se\": %.9g, \"kl_median\": %.9g, \"kl_p99\": %.9g, \"kl_max\": %.9g,\n",
            m->kl_mean, m->kl_se, m->kl_median, m->kl_p99, m->kl_max);
    fprintf(f, "  \"top1\": %.6f, \"ppl_ratio\": %.9g\n}\n", m->top1, m->ppl_quant / m->ppl_ref);
    fclose(f);
    moe_out_write(&out, buf, len);
    free(buf);
    if (!moe_out_commit(&out)) {
        diag_error(d, "%s: cannot write", o->json);
        return false;
    }
    return true;
}

/* ---- the command -------------------------------------------------------------------------- */

int cmd_kld(int argc, char **argv) {
    Diag d = {0};
    KldOptions o;
    int rc = parse_kld(argc, argv, &o, &d);
    if (rc) {
        free(o.ids);
        return rc;
    }
    if (!o.threads) o.threads = omp_get_num_procs();
    omp_set_num_threads((int)o.threads);
    Side *ref = &o.side[0], *qs = &o.side[1];
    Window *win = NULL;
    float *ref_rows = NULL; /* [scored, V]: REF's logits of every scored row */
    KldStats st = {0};
    int32_t bos = -1;
    rc = 1;
    if (!side_probe(ref, &d, o.threads) || !side_probe(qs, &d, o.threads)) goto out;
    if (ref->vocab != qs->vocab) {
        diag_error(&d, "%s: vocabulary of %" PRId64 " tokens; expected the same as REF %s (%" PRId64 ")", qs->path,
                   qs->vocab, ref->path, ref->vocab);
        goto out;
    }
    const int64_t V = ref->vocab;
    if (o.text_path && !encode_text(&d, &o, &bos)) goto out;
    if (o.n < 2) {
        diag_error(&d, "%s: %" PRId64 " token%s; expected at least 2", o.text_path ? o.text_path : "--tokens", o.n,
                   o.n == 1 ? "" : "s");
        goto out;
    }
    for (int64_t i = 0; i < o.n; i++)
        if (o.ids[i] >= V) {
            diag_error(&d, "--tokens: token id %d at position %" PRId64 ": must be < vocab_size (%" PRId64 ")", o.ids[i],
                       i, V);
            goto out;
        }
    int64_t max_ctx = ref->context < qs->context ? ref->context : qs->context;
    if (o.ctx > max_ctx) {
        diag_error(&d, "--ctx: %" PRId64 " positions; expected at most the models' context (%" PRId64 ")", o.ctx,
                   max_ctx);
        goto out;
    }
    if (!o.ctx) o.ctx = max_ctx < 512 ? max_ctx : 512;

    /* the windows and their scored rows */
    int64_t n_win = 0, scored = 0;
    win = xmalloc(sizeof(Window) * (size_t)(o.n / o.ctx + 1));
    for (int64_t s = 0; s < o.n; s += o.ctx) {
        int64_t L = o.n - s < o.ctx ? o.n - s : o.ctx;
        if (L < 2) break;
        Window w = {s, L, o.score_all ? 0 : L / 2, L - 1};
        win[n_win++] = w;
        scored += w.end - w.first;
    }
    if (scored == 0) {
        diag_error(&d, "kld: %" PRId64 " tokens leave no position to score (--score half scores rows L/2 .. L-2 of "
                       "a window of L); expected at least 3 tokens, or --score all", o.n);
        goto out;
    }
    size_t ref_bytes = sizeof(float) * (size_t)scored * (size_t)V;
    if (!(ref_rows = malloc(ref_bytes))) {
        diag_error(&d, "kld: cannot hold REF's logits of %" PRId64 " positions (%.1f GB); expected fewer tokens",
                   scored, (double)ref_bytes / 1e9);
        goto out;
    }
    RefCacheHeader ch;
    ref_cache_header(&o, scored, &ch);
    bool cached = o.ref_cache && ref_cache_read(o.ref_cache, &ch, ref_rows, ref_bytes);
    if (cached) fprintf(stderr, "moec: kld: REF %s: the logits of %" PRId64 " rows from %s\n", ref->path, scored, o.ref_cache);
    int32_t *wids = xmalloc(sizeof(int32_t) * (size_t)o.ctx);
    for (int k = cached; k < 2; k++) {
        Side *s = &o.side[k];
        double t0 = moe_now_s();
        if (!side_load(s, &d)) {
            free(wids);
            goto out;
        }
        double t1 = moe_now_s();
        int64_t row = 0;
        for (int64_t w = 0; w < n_win; w++) {
            memcpy(wids, o.ids + win[w].start, sizeof(int32_t) * (size_t)win[w].len);
            if (bos >= 0 && o.ids[0] == bos) wids[0] = bos; /* every window starts as the text does */
            const float *lg = side_window(s, &d, wids, win[w].len, o.threads);
            if (!lg) {
                free(wids);
                goto out;
            }
            for (int64_t j = win[w].first; j < win[w].end; j++, row++) {
                const float *x = lg + j * V;
                float *r = ref_rows + row * V;
                if (k == 0) memcpy(r, x, sizeof(float) * (size_t)V);
                else kld_stats_add(&st, kld_row(r, x, V, o.ids[win[w].start + j + 1]));
            }
        }
        side_close(s);
        double t2 = moe_now_s();
        fprintf(stderr, "moec: kld: %s %s: %" PRId64 " window%s, %" PRId64 " tokens in %.1f s (%.1f tok/s; load %.1f s)\n",
                s->role, s->path, n_win, n_win == 1 ? "" : "s", o.n, t2 - t1, (double)o.n / (t2 - t1), t1 - t0);
        if (k == 0 && o.ref_cache && !ref_cache_write(&d, o.ref_cache, &ch, ref_rows, ref_bytes)) {
            free(wids);
            goto out;
        }
    }
    free(wids);
    KldSummary m = kld_summarize(&st);
    print_report(&o, &m, n_win, stdout);
    if (o.json && !write_json(&o, &m, n_win, &d)) goto out;
    rc = 0;
out:
    diag_summary(&d);
    for (int k = 0; k < 2; k++) {
        side_close(&o.side[k]);
        if (o.side[k].tmp[0]) unlink(o.side[k].tmp);
    }
    kld_stats_free(&st);
    free(ref_rows);
    free(win);
    free(o.ids);
    return rc;
}
