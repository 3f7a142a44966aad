#include "outfile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool moe_out_open(MoeOutFile *o, const char *path) {
    memset(o, 0, sizeof *o);
    size_t n = strlen(path) + 32;
    o->path = strdup(path);
    o->tmp = malloc(n);
    if (!o->path || !o->tmp) {
        free(o->path);
        free(o->tmp);
        return false;
    }
    snprintf(o->tmp, n, "%s.tmp.%d", path, (int)getpid());
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        free(o->path);
        free(o->tmp);
        o->path = o->tmp = NULL;
        return false;
    }
    return true;
}

void moe_out_write(MoeOutFile *o, const void *p, size_t n) {
    if (!o->failed && n && fwrite(p, 1, n, o->f) != n) o->failed = true;
}

static void release(MoeOutFile *o) {
    free(o->path);
    free(o->tmp);
    o->path = o->tmp = NULL;
    o->f = NULL;
}

bool moe_out_commit(MoeOutFile *o) {
    bool ok = !o->failed && fflush(o->f) == 0;
    ok = (fclose(o->f) == 0) && ok;
    if (ok) ok = rename(o->tmp, o->path) == 0;
    if (!ok) unlink(o->tmp);
    release(o);
    return ok;
}

void moe_out_abort(MoeOutFile *o) {
    if (!o->f) return;
    fclose(o->f);
    unlink(o->tmp);
    release(o);
}

double moe_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void moe_print_timing(FILE *f, double load_s, int64_t n_prefill, double prefill_s, int64_t n_decode, double decode_s) {
    fprintf(f, "timing: load %.4f s | prefill %lld tok in %.4f s = %.1f tok/s | decode %lld tok in %.4f s = %.1f tok/s\n",
            load_s, (long long)n_prefill, prefill_s, prefill_s > 0 ? (double)n_prefill / prefill_s : 0.0,
            (long long)n_decode, decode_s, decode_s > 0 && n_decode > 0 ? (double)n_decode / decode_s : 0.0);
}

bool moe_parse_timing(const char *line, MoeTiming *t) {
    long long np, nd;
    if (sscanf(line, "timing: load %lf s | prefill %lld tok in %lf s = %lf tok/s | decode %lld tok in %lf s = %lf",
               &t->load_s, &np, &t->prefill_s, &t->prefill_tps, &nd, &t->decode_s, &t->decode_tps) != 7)
        return false;
    t->n_prefill = np;
    t->n_decode = nd;
    return true;
}
