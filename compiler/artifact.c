#include "artifact.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "format.h"
#include "hash.h"

typedef struct Sink {
    FILE *f;        /* NULL: hash only */
    MoeHash hash;
    bool progress;
    double last;
} Sink;

static bool sink_write(void *user, const void *p, size_t n) {
    Sink *s = user;
    moe_hash_update(&s->hash, p, n);
    return !s->f || fwrite(p, 1, n, s->f) == n;
}

static void sink_progress(void *user, int64_t done, int64_t total) {
    Sink *s = user;
    if (!s->progress) return;
    double mb = (double)done / 1048576.0;
    if (done < total && mb - s->last < 64) return;
    s->last = mb;
    fprintf(stderr, "\rmoec: packing weights %.0f / %.0f MB", mb, (double)total / 1048576.0);
    if (done >= total) fputc('\n', stderr);
}

bool artifact_hash_weights(const PackTable *pt, const char *family, uint64_t *hash, bool progress) {
    Sink s = {.progress = progress};
    moe_hash_init(&s.hash, moe_hash_seed(family));
    if (!pack_write(pt, sink_write, sink_progress, &s)) return false;
    *hash = moe_hash_final(&s.hash);
    return true;
}

static bool pad_to(FILE *f, long align) {
    static const char zero[4096];
    long at = ftell(f);
    while (at >= 0 && at % align) {
        size_t n = (size_t)(align - at % align) < sizeof zero ? (size_t)(align - at % align) : sizeof zero;
        if (fwrite(zero, 1, n, f) != n) return false;
        at += (long)n;
    }
    return at >= 0;
}

bool artifact_write_weights(Diag *d, const char *path, const PackTable *pt, const char *family, const void *tok_blob,
                            size_t tok_len, uint64_t *hash, bool progress) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        diag_error(d, "%s: cannot create: %s", path, strerror(errno));
        return false;
    }
    /* 4 MiB writes from offset 0, so the page cache can hold the weights in 2 MiB folios, which the
     * runtime maps as huge pages (format.h) */
    static char buf[4 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    MoeWeightsHeader h;
    memset(&h, 0, sizeof h);
    static const char zero[MOE_HEADER_BYTES];
    bool ok = fwrite(zero, 1, MOE_HEADER_BYTES, f) == MOE_HEADER_BYTES && pad_to(f, MOE_WEIGHTS_OFFSET);
    Sink s = {.f = f, .progress = progress};
    moe_hash_init(&s.hash, moe_hash_seed(family));
    ok = ok && pack_write(pt, sink_write, sink_progress, &s);
    h.sections[0] = (MoeSection){MOE_SECTION_WEIGHTS, 0, MOE_WEIGHTS_OFFSET, (uint64_t)pt->total};
    h.n_sections = 1;
    if (ok && tok_blob) {
        ok = pad_to(f, MOE_ALIGN);
        h.sections[1] = (MoeSection){MOE_SECTION_TOKENIZER, 0, (uint64_t)ftell(f), tok_len};
        h.n_sections = 2;
        ok = ok && sink_write(&s, tok_blob, tok_len);
    }
    ok = ok && pad_to(f, MOE_ALIGN);
    memcpy(h.magic, MOE_WEIGHTS_MAGIC, 8);
    h.format_version = MOE_FORMAT_VERSION;
    h.model_hash = moe_hash_final(&s.hash);
    snprintf(h.family, sizeof h.family, "%s", family);
    h.total_size = (uint64_t)ftell(f);
    ok = ok && fseek(f, 0, SEEK_SET) == 0 && fwrite(&h, sizeof h, 1, f) == 1;
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        diag_error(d, "%s: cannot write: %s", path, strerror(errno));
        unlink(path);
        return false;
    }
    *hash = h.model_hash;
    return true;
}

#ifndef MOEC_BINARY_DIR
#define MOEC_BINARY_DIR "."
#endif
#ifndef MOEC_RUNTIME_LDFLAGS
#define MOEC_RUNTIME_LDFLAGS ""
#endif

/* Where libmoert.a and libmoert_main.a are: $MOEC_RUNTIME_DIR, else next to the moec executable
 * (build tree: <build>/runtime), else the build directory moec was configured in. */
static const char *runtime_dir(char *buf, size_t n) {
    const char *env = getenv("MOEC_RUNTIME_DIR");
    if (env && *env) return env;
    char self[3900];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, n, "%s/runtime", self);
            char probe[4200];
            snprintf(probe, sizeof probe, "%s/libmoert.a", buf);
            if (access(probe, R_OK) == 0) return buf;
            snprintf(buf, n, "%s/../lib/moec", self);
            snprintf(probe, sizeof probe, "%s/libmoert.a", buf);
            if (access(probe, R_OK) == 0) return buf;
        }
    }
    snprintf(buf, n, "%s/runtime", MOEC_BINARY_DIR);
    return buf;
}

bool artifact_link(Diag *d, const char *obj_path, const char *exe_path) {
    char dir[4096];
    runtime_dir(dir, sizeof dir);
    const char *cc = getenv("CC");
    if (!cc || !*cc) cc = "cc";
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s -o '%s' '%s' '%s/libmoert_main.a' '%s/libmoert.a' -fopenmp -lm %s 2>&1", cc, exe_path,
             obj_path, dir, dir, MOEC_RUNTIME_LDFLAGS);
    FILE *p = popen(cmd, "r");
    if (!p) {
        diag_error(d, "link: cannot run the C compiler driver '%s': %s", cc, strerror(errno));
        return false;
    }
    char out[1024] = "";
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int st = pclose(p);
    if (st != 0) {
        char *nl = strchr(out, '\n');
        if (nl) *nl = 0;
        diag_error(d, "link: '%s' failed (runtime from %s): %s", cc, dir, out[0] ? out : "no output");
        unlink(exe_path);
        return false;
    }
    return true;
}

bool artifact_embed(Diag *d, const char *exe_path, const char *weights_path) {
    int in = open(weights_path, O_RDONLY);
    int out = open(exe_path, O_WRONLY | O_APPEND);
    bool ok = in >= 0 && out >= 0;
    struct stat st;
    ok = ok && fstat(out, &st) == 0;
    uint64_t header_off = ((uint64_t)st.st_size + MOE_HUGE_ALIGN - 1) / MOE_HUGE_ALIGN * MOE_HUGE_ALIGN;
    static const char zero[1 << 16];
    for (uint64_t at = (uint64_t)st.st_size; ok && at < header_off;) {
        size_t n = header_off - at < sizeof zero ? (size_t)(header_off - at) : sizeof zero;
        ok = write(out, zero, n) == (ssize_t)n;
        at += n;
    }
    char *buf = malloc(1 << 22);
    ok = ok && buf;
    while (ok) {
        ssize_t n = read(in, buf, 1 << 22);
        if (n < 0) ok = false;
        if (n <= 0) break;
        ok = write(out, buf, (size_t)n) == n;
    }
    free(buf);
    MoeTrailer tr;
    memcpy(tr.magic, MOE_TRAILER_MAGIC, 8);
    tr.header_offset = header_off;
    ok = ok && write(out, &tr, sizeof tr) == (ssize_t)sizeof tr;
    if (in >= 0) close(in);
    if (out >= 0) ok = (close(out) == 0) && ok;
    if (!ok) diag_error(d, "%s: cannot embed the weights: %s", exe_path, strerror(errno));
    return ok;
}
