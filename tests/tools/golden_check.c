/* golden_check: runs a model command on every prompt of a golden case (../shared/goldens/<case>)
 * and compares with Hugging Face's reference: generated ids and router top-k ids exactly (prompt
 * positions and fed generated tokens), every logit within --tol (default 1e-4 absolute).
 *
 *   golden_check CASE_DIR [--tol X] -- CMD ARGS...
 *
 * In CMD ARGS, "{model}" is replaced by CASE_DIR/model. The tool appends
 * "--tokens IDS -n N --logits-out F --trace F" and reads the ids printed on stdout; then runs
 * CMD with "--tokens IDS -n N" alone (no prompt row's logits needed: a compiled prefill computes
 * only the last row's) and expects the same ids.
 * Prints the max abs logit error per prompt; exit 0 pass, 1 fail, 77 when CASE_DIR is absent. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static cJSON *load_json(const char *path) {
    char *text = test_read_file(path, NULL);
    if (!text) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

static int ids_of(cJSON *arr, int *out, int max) {
    int n = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, arr) if (n < max) out[n++] = e->valueint;
    return n;
}

/* Compares ref router ids [layer][pos] (pos_off.. in got) for n positions. */
static void cmp_router(const char *what, cJSON *ref, cJSON *got, int pos_off, int n, const char *pname) {
    int L = cJSON_GetArraySize(ref);
    EXPECT_EQ(cJSON_GetArraySize(got), L);
    for (int l = 0; l < L && l < cJSON_GetArraySize(got); l++) {
        cJSON *rl = cJSON_GetArrayItem(ref, l), *gl = cJSON_GetArrayItem(got, l);
        for (int p = 0; p < n; p++) {
            cJSON *rp = cJSON_GetArrayItem(rl, p), *gp = cJSON_GetArrayItem(gl, pos_off + p);
            char a[256] = "null", b[256] = "null";
            if (!cJSON_IsNull(rp)) {
                char *s = cJSON_PrintUnformatted(rp);
                snprintf(a, sizeof a, "%s", s);
                free(s);
            }
            if (gp && !cJSON_IsNull(gp)) {
                char *s = cJSON_PrintUnformatted(gp);
                snprintf(b, sizeof b, "%s", s);
                free(s);
            } else if (!gp) {
                snprintf(b, sizeof b, "(absent)");
            }
            if (strcmp(a, b) != 0) {
                fprintf(stderr, "%s: %s layer %d position %d: expected %s, got %s\n", pname, what, l, pos_off + p, a, b);
                test_check(false, __FILE__, __LINE__, "router top-k", a, b);
            } else {
                test_checks++;
            }
        }
    }
}

/* The comma-separated ids a run printed on stdout (file path), at most max; their count. */
static int read_ids(const char *path, int *got, int max) {
    char *out = test_read_file(path, NULL);
    int n = 0;
    for (char *p = out; p && *p && n < max;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) { p++; continue; }
        got[n++] = (int)v;
        p = end;
    }
    free(out);
    return n;
}

/* Runs cmd (stdout to opath, stderr to epath); false (and a failed check) when it fails. */
static bool run_ok(const char *cmd, const char *opath, const char *epath, const char *pname) {
    int rc = test_run(cmd, opath, epath);
    if (rc == 0) return true;
    char *err = test_read_file(epath, NULL);
    fprintf(stderr, "%s: command failed (%d): %s\n%s\n", pname, rc, cmd, err ? err : "");
    free(err);
    test_check(false, __FILE__, __LINE__, "command exit status", "0", "nonzero");
    return false;
}

/* Expects the n_got ids got to be the reference's N ids gen_ref. */
static void expect_ids(const int *got, int n_got, const int *gen_ref, int N, const char *pname, const char *run) {
    EXPECT_EQ(n_got, N);
    for (int s = 0; s < N && s < n_got; s++)
        if (got[s] != gen_ref[s]) {
            fprintf(stderr, "%s (%s): generated token %d: expected %d, got %d\n", pname, run, s, gen_ref[s], got[s]);
            EXPECT_EQ(got[s], gen_ref[s]);
            break;
        }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: golden_check CASE_DIR [--tol X] -- CMD ARGS...\n");
        return 2;
    }
    const char *case_dir = argv[1];
    double tol = 1e-4;
    int i = 2;
    if (!strcmp(argv[i], "--tol")) {
        tol = atof(argv[i + 1]);
        i += 2;
    }
    if (strcmp(argv[i], "--")) return 2;
    i++;
    struct stat st;
    if (stat(case_dir, &st) != 0) test_skip("golden case folder absent (../shared not beside the checkout)");
    char path[4096], cmd[65536];
    snprintf(path, sizeof path, "%s/case.json", case_dir);
    cJSON *cs = load_json(path);
    if (!cs) {
        fprintf(stderr, "%s: cannot read\n", path);
        return 1;
    }
    size_t nlog;
    snprintf(path, sizeof path, "%s/logits.f32", case_dir);
    float *ref = (float *)test_read_file(path, &nlog);
    if (!ref) return 1;
    cJSON *blocks = cJSON_GetObjectItem(cJSON_GetObjectItem(cs, "logits"), "blocks");
    int max_new = cJSON_GetObjectItem(cJSON_GetObjectItem(cs, "generation"), "max_new_tokens")->valueint;
    const char *tmp = test_tmpdir("golden");
    char tmpdir[4096];
    snprintf(tmpdir, sizeof tmpdir, "%s", tmp);
    cJSON *prompts = cJSON_GetObjectItem(cs, "prompts");
    int pi = 0;
    double worst = 0;
    cJSON *pr;
    cJSON_ArrayForEach(pr, prompts) {
        char pname[64];
        snprintf(pname, sizeof pname, "prompt %d", pi);
        int ids[4096], gen_ref[4096];
        int T = ids_of(cJSON_GetObjectItem(pr, "ids"), ids, 4096);
        int N = ids_of(cJSON_GetObjectItem(pr, "generated_ids"), gen_ref, 4096);
        EXPECT_EQ(N, max_new);
        /* command line */
        size_t at = 0;
        for (int k = i; k < argc; k++) {
            const char *arg = argv[k];
            char buf[4096];
            if (!strcmp(arg, "{model}")) {
                snprintf(buf, sizeof buf, "%s/model", case_dir);
                arg = buf;
            }
            at += (size_t)snprintf(cmd + at, sizeof cmd - at, "'%s' ", arg);
        }
        at += (size_t)snprintf(cmd + at, sizeof cmd - at, "--tokens ");
        for (int k = 0; k < T; k++) at += (size_t)snprintf(cmd + at, sizeof cmd - at, "%s%d", k ? "," : "", ids[k]);
        char lpath[4200], tpath[4200], opath[4200], epath[4200];
        snprintf(lpath, sizeof lpath, "%s/logits%d.f32", tmpdir, pi);
        snprintf(tpath, sizeof tpath, "%s/trace%d.json", tmpdir, pi);
        snprintf(opath, sizeof opath, "%s/out%d.txt", tmpdir, pi);
        snprintf(epath, sizeof epath, "%s/err%d.txt", tmpdir, pi);
        /* without output files first: the generated ids alone */
        int got[4096], n_got;
        snprintf(cmd + at, sizeof cmd - at, " -n %d", N);
        if (run_ok(cmd, opath, epath, pname)) {
            n_got = read_ids(opath, got, 4096);
            expect_ids(got, n_got, gen_ref, N, pname, "ids only");
        }
        snprintf(cmd + at, sizeof cmd - at, " -n %d --logits-out '%s' --trace '%s'", N, lpath, tpath);
        if (!run_ok(cmd, opath, epath, pname)) {
            pi++;
            continue;
        }
        /* generated ids on stdout */
        n_got = read_ids(opath, got, 4096);
        expect_ids(got, n_got, gen_ref, N, pname, "with --logits-out and --trace");
        /* trace */
        cJSON *tr = load_json(tpath);
        EXPECT_TRUE(tr != NULL);
        if (tr) {
            cJSON *gt = cJSON_GetObjectItem(tr, "router_topk");
            cmp_router("router_topk", cJSON_GetObjectItem(pr, "router_topk"), gt, 0, T, pname);
            cmp_router("router_topk_fed_generated", cJSON_GetObjectItem(pr, "router_topk_fed_generated"), gt, T, N - 1,
                       pname);
            int gi[4096];
            int ng = ids_of(cJSON_GetObjectItem(tr, "generated_ids"), gi, 4096);
            EXPECT_EQ(ng, N);
            int np = ids_of(cJSON_GetObjectItem(tr, "prompt_ids"), gi, 4096);
            EXPECT_EQ(np, T);
            cJSON_Delete(tr);
        }
        /* logits: prompt block then generated block of this prompt */
        size_t nl;
        float *lg = (float *)test_read_file(lpath, &nl);
        double maxerr = 0;
        cJSON *b;
        cJSON_ArrayForEach(b, blocks) {
            if (cJSON_GetObjectItem(b, "prompt")->valueint != pi) continue;
            bool gen_block = !strcmp(cJSON_GetObjectItem(b, "kind")->valuestring, "generated");
            int rows = cJSON_GetObjectItem(b, "rows")->valueint, cols = cJSON_GetObjectItem(b, "cols")->valueint;
            size_t off = (size_t)cJSON_GetObjectItem(b, "offset_bytes")->valuedouble / 4;
            size_t goff = gen_block ? (size_t)T * (size_t)cols : 0;
            if (!lg || nl != (size_t)(T + N) * (size_t)cols * 4) {
                test_check(false, __FILE__, __LINE__, "logits file size", "(T+N)*V*4", "other");
                break;
            }
            for (size_t e = 0; e < (size_t)rows * (size_t)cols; e++) {
                double dlt = fabs((double)lg[goff + e] - (double)ref[off + e]);
                if (!(dlt <= maxerr)) maxerr = dlt; /* NaN counts as worst */
            }
        }
        free(lg);
        printf("%s: %d prompt tokens, %d generated, max |logit - golden| = %.3g\n", pname, T, N, maxerr);
        EXPECT_NEAR(maxerr, 0.0, tol);
        if (maxerr > worst) worst = maxerr;
        pi++;
    }
    printf("case %s: worst max abs error %.3g (tolerance %.0e)\n", case_dir, worst, tol);
    free(ref);
    cJSON_Delete(cs);
    return test_done();
}
