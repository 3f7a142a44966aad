/* moec demo: the README's first command; text to text on both paths, no downloads.
 *   1. synthesise the tiny Mixtral (seed 1, with its tokenizer.json) into the cache folder if absent
 *   2. compile it into DIR/mixtral-tiny.exe (compile_model; every time: it takes well under a second)
 *   3. run the generic path (`moec run`) and the executable as child processes on the same English
 *      prompt, greedy, up to 24 new tokens, with --verbose --trace: stdout is the text, stderr the timing
 *      line (runtime/outfile.h), the trace the generated ids
 *   4. print both texts, whether the ids are identical, and prefill and decode tokens/s of each
 * Each path runs 5 times, alternating, and the speeds are the best of each; texts and ids come
 * from the first run. The tiny model runs in milliseconds, so the speeds are rough (`moec bench`
 * is the measurement). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arena.h"
#include "cli.h"
#include "commands.h"
#include "driver.h"
#include "outfile.h"
#include "synth.h"
#include "textio.h"

static const char demo_usage[] =
    "usage: moec demo [--dir DIR] [--threads N]\n"
    "Synthesises the tiny Mixtral (seed 1, bf16, random weights, with a tokenizer.json) into DIR if it\n"
    "is not there yet, compiles it into DIR/mixtral-tiny.exe, and runs the generic path (moec run) and\n"
    "the executable on the same English prompt: up to 24 greedy tokens each (stopping at the end of\n"
    "the sequence). Prints both texts, whether the two paths generated identical tokens, and their\n"
    "prefill and decode tokens/s (best of 5 runs).\n"
    "\n"
    "  --dir DIR     cache folder (default $XDG_CACHE_HOME/moec or ~/.cache/moec)\n"
    "  --threads N   threads for both paths (default: all cores)\n";

enum { DEMO_GEN = 24, DEMO_REPEAT = 5 };
static const char demo_prompt[] = "The harbor town woke slowly on the morning the new ferry arrived.";

enum { PATH_GENERIC, PATH_COMPILED };

typedef struct DemoPath {
    const char *label;            /* "generic", "compiled" */
    const char *name;             /* what errors name: the model folder, the executable */
    char *argv[16];               /* the child's command line */
    char out[4300], err[4300], trace[4300]; /* its stdout, stderr and --trace files */
    char *text;                   /* stdout of the first run (malloc'd) */
    size_t text_len;
    int32_t *ids;                 /* [n_ids] generated ids of the first run (malloc'd) */
    int n_ids;
    MoeTiming t[DEMO_REPEAT];
} DemoPath;

/* The "generated_ids" of a trace (runtime/trace.h); false after diag_error. */
static bool read_trace_ids(Diag *d, const char *path, int32_t **ids, int *n) {
    char *js = moe_read_text(path, NULL);
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    free(js);
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(root, "generated_ids");
    if (!cJSON_IsArray(gen)) {
        diag_error(d, "%s: expected a trace with \"generated_ids\"; got %s", path,
                   root ? "JSON without them" : "no JSON");
        cJSON_Delete(root);
        return false;
    }
    *n = cJSON_GetArraySize(gen);
    *ids = xmalloc(sizeof(int32_t) * (size_t)(*n ? *n : 1));
    int i = 0;
    for (const cJSON *e = gen->child; e; e = e->next) (*ids)[i++] = (int32_t)e->valuedouble;
    cJSON_Delete(root);
    return true;
}

/* One run of one path: the timing line into p->t[rep]; on the first run, the text and the ids.
 * Anything else the child wrote on stderr is passed on. False after diag_error. */
static bool run_path(Diag *d, DemoPath *p, int rep) {
    int rc = cli_run_child(p->argv, p->out, p->err, NULL);
    if (rc < 0) {
        diag_error(d, "%s: cannot run: %s", p->argv[0], strerror(errno));
        return false;
    }
    FILE *f = fopen(p->err, "r");
    char line[2048];
    bool timed = false;
    while (f && fgets(line, sizeof line, f))
        if (moe_parse_timing(line, &p->t[rep])) timed = true;
        else fputs(line, stderr);
    if (f) fclose(f);
    if (rc != 0) {
        diag_error(d, "%s: the %s path %s %d on the demo prompt", p->name, p->label,
                   rc > 128 ? "was killed by signal" : "exited with status", rc > 128 ? rc - 128 : rc);
        return false;
    }
    if (!timed) {
        diag_error(d, "%s: the %s path printed no timing line; expected one with --verbose", p->name, p->label);
        return false;
    }
    if (rep > 0) return true;
    if (!(p->text = moe_read_text(p->out, &p->text_len))) {
        diag_error(d, "%s: cannot read: %s", p->out, strerror(errno));
        return false;
    }
    return read_trace_ids(d, p->trace, &p->ids, &p->n_ids);
}

/* s in double quotes, the newline text mode ends with dropped and control characters escaped so
 * that it stays on one line; UTF-8 (U+FFFD for the byte tokens that do not form a character) as is. */
static void print_text(const char *s, size_t n) {
    if (n && s[n - 1] == '\n') n--;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n') fputs("\\n", stdout);
        else if (ch == '\t') fputs("\\t", stdout);
        else if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f) printf("\\x%02x", ch);
        else putchar(ch);
    }
    putchar('"');
}

/* The fastest of the runs: on a machine busy with other work the slower ones measure that work. */
static double best_tps(const DemoPath *p, bool decode) {
    double best = 0;
    for (int r = 0; r < DEMO_REPEAT; r++) {
        double v = decode ? p->t[r].decode_tps : p->t[r].prefill_tps;
        if (v > best) best = v;
    }
    return best;
}

int cmd_demo(int argc, char **argv) {
    Diag d = {0};
    const char *dir = NULL;
    int64_t threads = omp_get_num_procs();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(demo_usage, stdout);
            return 0;
        }
        if (a[0] == '-' && (!strcmp(a, "--dir") || !strcmp(a, "--threads")) && !(v = cli_value(&d, argc, argv, &i)))
            return 2;
        if (!strcmp(a, "--dir")) {
            dir = v;
        } else if (!strcmp(a, "--threads")) {
            if (!cli_parse_int(&d, a, v, 1, 1024, &threads)) return 2;
        } else {
            diag_error(&d, "%s: unknown %s; see 'moec demo --help'", a, a[0] == '-' ? "option" : "argument");
            return 2;
        }
    }
    char base[4096], self[4096], model[4200], exe[4300], thr[24], ngen[24];
    if (!dir) {
        cli_cache_dir(base, sizeof base);
        dir = base;
    }
    if (!cli_mkdir_p(dir)) {
        diag_error(&d, "%s: cannot create the cache folder: %s", dir, strerror(errno));
        return 1;
    }
    if (!cli_self_exe(self, sizeof self)) {
        diag_error(&d, "/proc/self/exe: cannot find moec itself: %s", strerror(errno));
        return 1;
    }

    /* 1. the model, with its tokenizer.json (a folder from an older moec may lack it: replaced) */
    snprintf(model, sizeof model, "%s/mixtral-tiny", dir);
    const char *state = "cached";
    struct stat st;
    char probe[4400];
    bool have = true;
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int k = 0; k < 3; k++) {
        snprintf(probe, sizeof probe, "%s/%s", model, files[k]);
        if (stat(probe, &st) != 0) have = false;
    }
    if (!have) {
        SynthOptions so;
        synth_options_init(&so, model, SYNTH_MIXTRAL, SYNTH_TINY);
        so.seed = 1;
        so.force = stat(model, &st) == 0;
        if (!synth_write_model(&d, &so)) return 1;
        state = "synthesised now";
    }
    printf("model:    %s (%s): the tiny Mixtral, 2 layers, 4 experts, top-2, vocab 384, random weights\n", model,
           state);

    /* 2. the executable */
    snprintf(exe, sizeof exe, "%s/mixtral-tiny.exe", dir);
    CompileOptions co = {.model_dir = model, .out = exe, .batch = 1, .prefill_chunk = 0,
                        .threads = threads, .quiet = true};
    double t0 = moe_now_s();
    int rc = compile_model(&co, &d);
    if (rc) {
        diag_summary(&d);
        return rc;
    }
    printf("compile:  %s in %.2f s (moec compile, for this machine's CPU)\n", exe, moe_now_s() - t0);

    /* 3. both paths, alternating */
    snprintf(thr, sizeof thr, "%" PRId64, threads);
    snprintf(ngen, sizeof ngen, "%d", DEMO_GEN);
    DemoPath paths[2] = {{.label = "generic", .name = model}, {.label = "compiled", .name = exe}};
    for (int k = 0; k < 2; k++) {
        DemoPath *p = &paths[k];
        snprintf(p->out, sizeof p->out, "%s/demo-%d.%s.out", dir, (int)getpid(), p->label);
        snprintf(p->err, sizeof p->err, "%s/demo-%d.%s.err", dir, (int)getpid(), p->label);
        snprintf(p->trace, sizeof p->trace, "%s/demo-%d.%s.json", dir, (int)getpid(), p->label);
        char **v = p->argv;
        if (k == PATH_GENERIC) *v++ = self, *v++ = "run", *v++ = model;
        else *v++ = exe;
        char *rest[] = {"--prompt", (char *)demo_prompt, "-n", ngen, "--threads", thr, "--verbose", "--trace", p->trace};
        for (size_t j = 0; j < sizeof rest / sizeof rest[0]; j++) *v++ = rest[j];
        *v = NULL;
    }
    bool ok = true;
    for (int r = 0; r < DEMO_REPEAT && ok; r++)
        for (int k = 0; k < 2 && ok; k++) ok = run_path(&d, &paths[(k + r) % 2], r);
    for (int k = 0; k < 2; k++) {
        unlink(paths[k].out);
        unlink(paths[k].err);
        unlink(paths[k].trace);
    }

    /* 4. the texts, the tokens, the speeds */
    if (ok) {
        DemoPath *g = &paths[PATH_GENERIC], *c = &paths[PATH_COMPILED];
        printf("prompt:   ");
        print_text(demo_prompt, strlen(demo_prompt));
        printf(" (%" PRId64 " tokens); greedy, up to %d new tokens\n", g->t[0].n_prefill, DEMO_GEN);
        printf("generic:  ");
        print_text(g->text, g->text_len);
        printf("   (moec run)\n");
        printf("compiled: ");
        print_text(c->text, c->text_len);
        printf("   (mixtral-tiny.exe)\n");
        int diff = -1;
        for (int i = 0; diff < 0 && (i < g->n_ids || i < c->n_ids); i++)
            if (i >= g->n_ids || i >= c->n_ids || g->ids[i] != c->ids[i]) diff = i;
        if (diff < 0)
            printf("tokens:   identical: the same %d generated tokens on both paths%s (random\n"
                   "          weights make the text noise, but the two paths must agree on every token)\n", g->n_ids,
                   g->n_ids < DEMO_GEN ? ", the last end-of-sequence" : "");
        else
            printf("tokens:   DIFFERENT from generated token %d on (generic %d tokens, compiled %d)\n", diff, g->n_ids,
                   c->n_ids);
        double gp = best_tps(g, false), cp = best_tps(c, false), gd = best_tps(g, true), cd = best_tps(c, true);
        char hp[32], hd[32], what[64];
        snprintf(hp, sizeof hp, "prefill (%" PRId64 " tok)", g->t[0].n_prefill);
        snprintf(hd, sizeof hd, "decode (%" PRId64 " tok)", g->t[0].n_decode);
        snprintf(what, sizeof what, "tokens/s, best of %d runs", DEMO_REPEAT);
        printf("speed:    %-28s %17s %17s   (%s threads)\n", what, hp, hd, thr);
        printf("          %-28s %17.1f %17.1f\n", "generic", gp, gd);
        printf("          %-28s %17.1f %17.1f\n", "compiled", cp, cd);
        printf("          %-28s %16.2fx %16.2fx\n", "compiled / generic", gp > 0 ? cp / gp : 0, gd > 0 ? cd / gd : 0);
        printf("          (milliseconds of work on a tiny model, so rough: 'moec bench' measures properly)\n");
        if (diff >= 0) {
            diag_error(&d, "%s: the compiled path generated different tokens from the generic path (from token %d on)",
                       exe, diff);
            ok = false;
        }
    }
    for (int k = 0; k < 2; k++) {
        free(paths[k].text);
        free(paths[k].ids);
    }
    diag_summary(&d);
    return ok ? 0 : 1;
}
