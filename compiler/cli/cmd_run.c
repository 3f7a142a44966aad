/* moec run: the generic path from the command line (prefill, then greedy decode with the KV cache).
 * Output formats (shared with compiled executables):
 *   --logits-out: raw little-endian f32, the T prompt rows [T, V], then N rows [N, V] where row s
 *                 chose generated token s (row 0 from the prefill, row s > 0 from the decode step
 *                 that fed generated token s-1);
 *   --trace:      JSON, see runtime/trace.h. */
#include <errno.h>
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batchgen.h"
#include "cli.h"
#include "commands.h"
#include "format.h"
#include "frontend.h"
#include "gguf_tok.h"
#include "interp/interp.h"
#include "outfile.h"
#include "quantize.h"
#include "sampler.h"
#include "textio.h"
#include "tokjson.h"
#include "trace.h"

static const char run_usage[] =
    "usage: moec run MODEL_DIR (--tokens 1,2,3 | --prompt TEXT | --prompt-file F | < F) [-n N] [options]\n"
    "Runs a Hugging Face MoE checkpoint on the generic path: prefill the prompt, then N decode\n"
    "steps with a KV cache (greedy unless --temp). With --tokens prints the generated ids; with a\n"
    "text prompt (the folder's tokenizer.json) streams the text and stops at end-of-sequence.\n"
    "\n"
    "  --tokens IDS           prompt token ids, comma-separated\n"
    "  --prompt TEXT          prompt text; --prompt-file F reads it from F ('-': stdin)\n"
    "  --batch-prompts        every non-empty line of the prompt text is a prompt of its own (with\n"
    "                         --tokens: id lists separated by ';'), run together on --batch slots as a\n"
    "                         program compiled with --batch B runs them; results printed as [1] ..., [2] ...\n"
    "  --batch B              slots of --batch-prompts (default: one per prompt, at most 1024); a decode\n"
    "                         step's expert capacity is then ceil(F*B*k/E)\n"
    "  -n N                   tokens to generate (default 16)\n"
    "  --temp X, --top-k K, --top-p P, --seed S   sampling (default greedy; as compiled executables)\n"
    "  --threads T            OpenMP threads (default: all cores)\n"
    "  --capacity-factor F    expert capacity C = ceil(F*T*k/E) per step (default 0: dropless)\n"
    "  --quant SPEC           block-quantise the weights at load: TYPE[,CLASS=TYPE...], e.g. q4_k,attn=q8_0\n"
    "                         (types q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q5_k q6_k; classes experts attn shared\n"
    "                         embed head; see 'moec inspect --quant SPEC' for the sizes and fallbacks)\n"
    "  --act exact|int8|bf16  f32 activations times the weights (exact, default); for block-quantised\n"
    "                         weights, activations quantised to int8 per 32 (int8, as ggml); for bf16\n"
    "                         weights, activations rounded to bf16 (bf16; the router's logits stay f32)\n"
    "  --logits-out FILE      write the logits as raw little-endian float32: [T, V] prompt rows,\n"
    "                         then [N, V] rows, row s being the logits that chose generated token s\n"
    "  --trace FILE           write prompt/generated ids and router choices per layer and position (JSON)\n"
    "  --stats                print per-layer expert utilisation and dropped assignments\n"
    "  --verbose              print load, prefill and decode times and tokens/s at the end\n"
    "  --warmup N             first run the same prompt and length N times untimed (greedy), then\n"
    "                         the timed run (as compiled executables; not with --stats)\n"
    "  --dump-ir              print the graph IR and exit\n";

typedef struct RunOptions {
    const char *model_dir;
    int32_t *prompt;
    int64_t n_prompt, n_gen;
    int64_t threads;
    double capacity_factor;
    GkAct act;               /* --act */
    bool quant;              /* --quant given: spec holds it */
    QuantSpec spec;
    const char *logits_out, *trace_out;
    bool stats, dump_ir, verbose;
    char *text;              /* text prompt (malloc'd), or NULL */
    bool batch;              /* --batch-prompts */
    int64_t slots;           /* --batch; 0: one per prompt */
    const char *tokens_arg;  /* the last --tokens value */
    int64_t warmup;          /* --warmup N */
    double temp, top_p;
    int64_t top_k, seed;
} RunOptions;

static int parse_run(int argc, char **argv, RunOptions *o, Diag *d) {
    memset(o, 0, sizeof *o);
    o->n_gen = 16;
    o->top_p = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(run_usage, stdout);
            exit(0);
        } else if (!strcmp(a, "--tokens")) {
            free(o->prompt); /* a later --tokens wins */
            o->prompt = NULL;
            if (!(v = cli_value(d, argc, argv, &i))) return 2;
            if (!strchr(v, ';') && !cli_parse_ids(d, a, v, &o->prompt, &o->n_prompt)) return 2;
            o->tokens_arg = v;
        } else if (!strcmp(a, "--batch-prompts")) {
            o->batch = true;
        } else if (!strcmp(a, "--warmup")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_int(d, a, v, 0, 1000, &o->warmup)) return 2;
        } else if (!strcmp(a, "--batch")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_int(d, a, v, 1, MOE_MAX_BATCH, &o->slots)) return 2;
        } else if (!strcmp(a, "--prompt")) {
            if (!(v = cli_value(d, argc, argv, &i))) return 2;
            free(o->text);
            o->text = strdup(v);
        } else if (!strcmp(a, "--prompt-file")) {
            if (!(v = cli_value(d, argc, argv, &i))) return 2;
            free(o->text);
            if (!(o->text = moe_read_text(v, NULL))) {
                diag_error(d, "%s: cannot read: %s", v, strerror(errno));
                return 1;
            }
        } else if (!strcmp(a, "--temp")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_double(d, a, v, 0, 1e6, &o->temp)) return 2;
        } else if (!strcmp(a, "--top-p")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_double(d, a, v, 0, 1, &o->top_p)) return 2;
        } else if (!strcmp(a, "--top-k")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_int(d, a, v, 0, INT32_MAX, &o->top_k)) return 2;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_int(d, a, v, 0, INT64_MAX, &o->seed)) return 2;
        } else if (!strcmp(a, "-n")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_int(d, a, v, 1, 1 << 24, &o->n_gen)) return 2;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_int(d, a, v, 1, 4096, &o->threads)) return 2;
        } else if (!strcmp(a, "--capacity-factor")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_double(d, a, v, 0, 1e6, &o->capacity_factor))
                return 2;
        } else if (!strcmp(a, "--quant")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !quantize_spec_parse(d, v, &o->spec)) return 2;
            o->quant = true;
        } else if (!strcmp(a, "--act")) {
            if (!(v = cli_value(d, argc, argv, &i)) || !cli_parse_act(d, a, v, &o->act)) return 2;
        } else if (!strcmp(a, "--logits-out")) {
            if (!(o->logits_out = cli_value(d, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--trace")) {
            if (!(o->trace_out = cli_value(d, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--stats")) {
            o->stats = true;
        } else if (!strcmp(a, "--verbose")) {
            o->verbose = true;
        } else if (!strcmp(a, "--dump-ir")) {
            o->dump_ir = true;
        } else if (a[0] == '-') {
            diag_error(d, "%s: unknown option; see 'moec run --help'", a);
            return 2;
        } else if (!o->model_dir) {
            o->model_dir = a;
        } else {
            diag_error(d, "%s: unexpected argument; expected one MODEL_DIR", a);
            return 2;
        }
    }
    if (!o->model_dir) {
        diag_error(d, "run: expected MODEL_DIR; see 'moec run --help'");
        return 2;
    }
    if (o->tokens_arg && strchr(o->tokens_arg, ';') && !o->batch) {
        diag_error(d, "--tokens: ';' separates the prompts of --batch-prompts; got '%s' without it", o->tokens_arg);
        return 2;
    }
    if (o->batch && (o->logits_out || o->trace_out)) {
        diag_error(d, "--batch-prompts: --logits-out and --trace are per prompt; run the prompt alone for them");
        return 2;
    }
    if (o->warmup && (o->stats || o->batch)) {
        diag_error(d, "--warmup: times one prompt; not with --stats or --batch-prompts");
        return 2;
    }
    if (o->slots && !o->batch) {
        diag_error(d, "--batch: sets the slots of --batch-prompts; got it without");
        return 2;
    }
    if (!o->prompt && !o->text && !o->dump_ir && !(o->batch && o->tokens_arg)) {
        if (isatty(0)) {
            diag_error(d, "run: expected --tokens IDS, --prompt TEXT, --prompt-file F or text on stdin; see 'moec run --help'");
            return 2;
        }
        if (!(o->text = moe_read_text("-", NULL))) {
            diag_error(d, "stdin: cannot read: %s", strerror(errno));
            return 1;
        }
    }
    if ((o->prompt || o->tokens_arg) && o->text) {
        diag_error(d, "run: --tokens and a text prompt; expected one of them");
        return 2;
    }
    return 0;
}

/* Text mode: the model's tokenizer (the folder's tokenizer.json, or the GGUF file's); false after
 * diag_error. */
static bool load_run_tokenizer(Diag *d, Arena *a, RunOptions *o, MoeTokenizer **tok) {
    char *path = arena_printf(a, "%s/tokenizer.json", o->model_dir);
    void *blob;
    size_t len;
    char err[256];
    bool is_gguf;
    if (!gguf_tokenizer_load(a, d, o->model_dir, &is_gguf, &blob, &len)) return false;
    if (is_gguf) {
        path = arena_strdup(a, o->model_dir);
    } else if (access(path, R_OK) != 0) {
        diag_error(d, "--prompt: %s has no tokenizer.json; expected one for a text prompt (or use --tokens IDS)",
                   o->model_dir);
        return false;
    } else if (!tokjson_load(a, d, path, &blob, &len)) {
        return false;
    }
    if (!(*tok = moe_tok_load(blob, len, err, sizeof err))) {
        diag_error(d, "%s: %s", path, err);
        return false;
    }
    return true;
}

/* Text mode: the model's tokenizer, and the prompt encoded with it; false after diag_error. */
static bool encode_prompt(Diag *d, Arena *a, RunOptions *o, MoeTokenizer **tok) {
    size_t n;
    if (!load_run_tokenizer(d, a, o, tok)) return false;
    if (moe_tok_encode(*tok, o->text, strlen(o->text), true, &o->prompt, &n) != MOE_TOK_OK || n == 0) {
        diag_error(d, "--prompt: the text encodes to no tokens; expected at least one");
        return false;
    }
    o->n_prompt = (int64_t)n;
    return true;
}

/* ---- --batch-prompts: the interpreter's slots under runtime/batchgen.h ---------------------- */

static void print_stats(const Model *m, const Interp *ip, int64_t steps_tokens);

typedef struct BatchInterp {
    Interp *ip;
    const Graph *g;
    int64_t V, slots;
    bool *used;              /* [slots] */
    int32_t *row_slot;       /* [max rows] */
} BatchInterp;

static bool bi_start(void *user, int *slot, char *err, size_t errlen) {
    BatchInterp *b = user;
    for (int s = 0; s < b->slots; s++)
        if (!b->used[s]) {
            b->used[s] = true;
            interp_slot_reset(b->ip, s);
            *slot = s;
            return true;
        }
    snprintf(err, errlen, "batch: no free slot"); /* batchgen starts at most `slots` sequences */
    return false;
}

static void bi_finish(void *user, int slot, int seq) {
    (void)seq;
    ((BatchInterp *)user)->used[slot] = false;
}

static bool bi_prefill(void *user, int slot, const int32_t *ids, int64_t n, const float **logits, char *err,
                       size_t errlen) {
    BatchInterp *b = user;
    (void)err, (void)errlen;
    for (int64_t t = 0; t < n; t++) b->row_slot[t] = slot;
    interp_step_slots(b->ip, ids, b->row_slot, n, n); /* capacity as a prompt run alone */
    *logits = (const float *)interp_value(b->ip, b->g->logits) + (n - 1) * b->V;
    return true;
}

static bool bi_decode(void *user, int n, const int *slots, const int32_t *ids, const float **logits, char *err,
                      size_t errlen) {
    BatchInterp *b = user;
    (void)err, (void)errlen;
    for (int i = 0; i < n; i++) b->row_slot[i] = slots[i];
    interp_step_slots(b->ip, ids, b->row_slot, n, b->slots); /* capacity of a step of B rows */
    for (int i = 0; i < n; i++) logits[i] = (const float *)interp_value(b->ip, b->g->logits) + i * b->V;
    return true;
}

static int run_batch(RunOptions *o, Model *m, Arena *a, Diag *d, const MoeTokenizer *tok, double load_s) {
    const ModelConfig *c = &m->cfg;
    char err[512];
    MoeGenSeq *seqs = NULL;
    int n = 0, rc = 1;
    BatchInterp b = {0};
    if (!moe_batch_prompts(tok ? o->text : o->tokens_arg, tok, o->n_gen, &seqs, &n, err, sizeof err)) {
        diag_error(d, "%s", err);
        return 1;
    }
    int64_t max_prompt, ctx;
    if (!moe_batch_check(seqs, n, c->vocab_size, c->max_position_embeddings, "max_position_embeddings", o->n_gen,
                         &ctx, &max_prompt, err, sizeof err)) {
        diag_error(d, "%s", err);
        goto out;
    }
    b.g = m->g;
    b.V = c->vocab_size;
    b.slots = o->slots ? o->slots : n < MOE_MAX_BATCH ? n : MOE_MAX_BATCH;
    int64_t rows = max_prompt > b.slots ? max_prompt : b.slots;
    b.ip = interp_new(m->g, ctx, rows, b.slots, o->capacity_factor, o->act);
    b.used = arena_alloc(a, sizeof(bool) * (size_t)b.slots);
    b.row_slot = arena_alloc(a, sizeof(int32_t) * (size_t)rows);
    if (!b.ip) {
        diag_error(d, "run: cannot allocate the activations and KV caches of %" PRId64 " slots of %" PRId64 " positions",
                   b.slots, ctx);
        goto out;
    }
    memset(b.used, 0, sizeof(bool) * (size_t)b.slots);
    MoeGenEngine e = {&b, (int)b.slots, b.V, bi_start, bi_finish, bi_prefill, bi_decode};
    MoeGenParams p = {o->n_gen, o->temp, o->top_p, o->top_k, (uint64_t)o->seed, (int32_t)c->eos_token_id, tok != NULL};
    MoeGenStats gs;
    if (!moe_batch_generate(&e, seqs, n, &p, &gs, err, sizeof err)) {
        diag_error(d, "%s", err);
        goto out;
    }
    moe_batch_print(stdout, tok, p.eos, seqs, n);
    if (o->stats) print_stats(m, b.ip, -1);
    if (o->verbose) {
        moert_print_batch(stderr, n, (int)b.slots, &gs, 0, c->num_experts);
        moe_print_timing(stderr, load_s, gs.prefill_tokens, gs.prefill_s, gs.rows, gs.decode_s);
    }
    rc = 0;
out:
    interp_free(b.ip);
    moe_batch_free(seqs, n);
    return rc;
}

/* Appends every router node's routes of the last step to the trace. */
static void trace_step(MoeTrace *tr, const Graph *g, const Interp *ip, int64_t T) {
    for (uint32_t i = 0; i < g->n; i++)
        if (g->nodes[i].op == OP_ROUTER)
            moe_trace_add_routes(tr, g->nodes[i].a.router.layer, interp_value(ip, (ValueId){i}), T);
}

static void print_stats(const Model *m, const Interp *ip, int64_t steps_tokens) {
    const ModelConfig *c = &m->cfg;
    if (steps_tokens >= 0)
        fprintf(stderr, "expert utilisation (tokens per expert over %" PRId64 " routed tokens):\n", steps_tokens);
    else
        fprintf(stderr, "expert utilisation (tokens per expert, all prompts):\n");
    for (int l = 0; l < (int)c->num_hidden_layers; l++) {
        const int64_t *cnt = interp_expert_counts(ip, l);
        if (!cnt) {
            fprintf(stderr, "  L%02d dense\n", l);
            continue;
        }
        fprintf(stderr, "  L%02d dropped %" PRId64 " |", l, interp_dropped(ip, l));
        for (int64_t e = 0; e < c->num_experts; e++) fprintf(stderr, " %" PRId64, cnt[e]);
        fputc('\n', stderr);
    }
    int64_t total = 0;
    for (int l = 0; l < (int)c->num_hidden_layers; l++) total += interp_dropped(ip, l);
    fprintf(stderr, "dropped assignments: %" PRId64 "\n", total);
}

int cmd_run(int argc, char **argv) {
    Diag d = {0};
    RunOptions o;
    int rc = parse_run(argc, argv, &o, &d);
    if (rc) { /* what parsing allocated before it failed */
        free(o.prompt);
        free(o.text);
        return rc;
    }
    if (o.threads) omp_set_num_threads((int)o.threads);
    Arena *a = arena_new();
    Model m;
    rc = 1;
    Interp *ip = NULL;
    MoeTrace *tr = NULL;
    float *gen_logits = NULL;
    int32_t *gen = NULL;
    MoeOutFile lo = {0};
    MoeTokenizer *tok = NULL;
    MoeTextOut txt = {0};
    void *smp_scratch = NULL;
    double t0 = moe_now_s(), t_load, t_prefill, t_end;
    if (!model_load(&m, a, &d, o.model_dir)) goto out;
    if (o.quant) {
        QuantReport qr;
        if (!quantize_model(&m, a, &d, &o.spec, false, &qr)) goto out;
        quantize_report_summary(&qr, &o.spec, stderr);
    }
    if (o.batch) {
        if (o.text && !load_run_tokenizer(&d, a, &o, &tok)) goto out;
        rc = run_batch(&o, &m, a, &d, tok, moe_now_s() - t0);
        goto out;
    }
    if (o.text && !encode_prompt(&d, a, &o, &tok)) goto out;
    const ModelConfig *c = &m.cfg;
    if (o.dump_ir) {
        ir_print(m.g, stdout);
        rc = 0;
        goto out;
    }
    for (int64_t i = 0; i < o.n_prompt; i++)
        if (o.prompt[i] >= c->vocab_size) {
            diag_error(&d, "--tokens: token id %d at position %" PRId64 ": must be < vocab_size (%" PRId64 ")",
                       o.prompt[i], i, c->vocab_size);
            goto out;
        }
    int64_t ctx = o.n_prompt + o.n_gen - 1; /* the last generated token is never fed */
    if (o.n_prompt > c->max_position_embeddings || ctx > c->max_position_embeddings) {
        diag_error(&d, "--tokens: a prompt of %" PRId64 " tokens plus %" PRId64
                       " generated needs %" PRId64 " positions; expected at most max_position_embeddings (%" PRId64 ")",
                   o.n_prompt, o.n_gen, ctx, c->max_position_embeddings);
        goto out;
    }
    ip = interp_new(m.g, ctx, o.n_prompt, 1, o.capacity_factor, o.act);
    if (!ip) {
        diag_error(&d, "run: cannot allocate the activations and KV cache for %" PRId64 " positions", ctx);
        goto out;
    }
    if (o.trace_out && !(tr = moe_trace_new((int)c->num_hidden_layers, (int)c->num_experts_per_tok, c->layer_is_moe))) {
        diag_error(&d, "run: out of memory");
        goto out;
    }
    if (o.logits_out && !moe_out_open(&lo, o.logits_out)) {
        diag_error(&d, "%s: cannot create: %s", o.logits_out, strerror(errno));
        goto out;
    }
    const int64_t V = c->vocab_size;
    gen_logits = malloc(sizeof(float) * (size_t)(V * o.n_gen));
    gen = malloc(sizeof(int32_t) * (size_t)o.n_gen);
    smp_scratch = malloc(moe_sampler_scratch_bytes(V));
    if (!gen_logits || !gen || !smp_scratch || !moe_text_begin(&txt, tok, (int32_t)c->eos_token_id, stdout)) {
        diag_error(&d, "run: out of memory");
        goto out;
    }
    MoeSampler smp;
    moe_sampler_init(&smp, V, o.temp, o.top_k, o.top_p, (uint64_t)o.seed, smp_scratch);
    if (tr) moe_trace_add_prompt(tr, o.prompt, o.n_prompt);

    t_load = moe_now_s();
    double load_s = t_load - t0;
    for (int64_t w = 0; w < o.warmup; w++) { /* untimed: the same work, greedy, then a fresh sequence */
        interp_step(ip, o.prompt, o.n_prompt);
        const float *lw = (const float *)interp_value(ip, m.g->logits) + (o.n_prompt - 1) * V;
        for (int64_t s = 0; s + 1 < o.n_gen; s++) {
            int32_t id = moe_sampler_argmax(lw, V);
            interp_step(ip, &id, 1);
            lw = interp_value(ip, m.g->logits);
        }
        interp_slot_reset(ip, 0);
    }
    t_load = moe_now_s();
    interp_step(ip, o.prompt, o.n_prompt);
    const float *logits = interp_value(ip, m.g->logits);
    if (lo.f) moe_out_write(&lo, logits, sizeof(float) * (size_t)(o.n_prompt * V));
    if (tr) trace_step(tr, m.g, ip, o.n_prompt);
    t_prefill = moe_now_s();
    int64_t n_gen = 0;
    for (int64_t s = 0; s < o.n_gen; s++) {
        if (s > 0) {
            interp_step(ip, &gen[s - 1], 1);
            if (tr) trace_step(tr, m.g, ip, 1);
            logits = interp_value(ip, m.g->logits);
        } else {
            logits += (o.n_prompt - 1) * V; /* the prefill's last row */
        }
        memcpy(gen_logits + s * V, logits, sizeof(float) * (size_t)V);
        gen[s] = moe_sampler_sample(&smp, gen_logits + s * V);
        n_gen = s + 1;
        if (!moe_text_token(&txt, gen[s])) break; /* text mode: streamed, up to end-of-sequence */
    }
    t_end = moe_now_s();
    moe_text_end(&txt, gen, n_gen);
    for (int64_t s = 0; tr && s < n_gen; s++) moe_trace_add_generated(tr, gen[s]);
    o.n_gen = n_gen;
    if (lo.f) {
        moe_out_write(&lo, gen_logits, sizeof(float) * (size_t)(o.n_gen * V));
        if (!moe_out_commit(&lo)) {
            diag_error(&d, "%s: cannot write the logits", o.logits_out);
            goto out;
        }
    }
    if (tr && !moe_trace_write(tr, o.trace_out)) {
        diag_error(&d, "%s: cannot write the trace", o.trace_out);
        goto out;
    }
    if (o.stats) print_stats(&m, ip, interp_pos(ip));
    if (o.verbose) moe_print_timing(stderr, load_s, o.n_prompt, t_prefill - t_load, o.n_gen - 1, t_end - t_prefill);
    rc = 0;
out:
    if (lo.f) moe_out_abort(&lo);
    diag_summary(&d);
    free(gen_logits);
    free(gen);
    free(smp_scratch);
    moe_text_free(&txt);
    moe_tok_free(tok);
    moe_trace_free(tr);
    interp_free(ip);
    model_close(&m);
    free(o.prompt);
    free(o.text);
    arena_destroy(a);
    return rc;
}
