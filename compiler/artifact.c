#include "artifact.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
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
                            size_t tok_len, const char *chat_template, size_t chat_len, uint64_t *hash, bool progress) {
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
    if (ok && chat_template) {
        ok = pad_to(f, MOE_ALIGN);
        h.sections[h.n_sections++] = (MoeSection){MOE_SECTION_CHAT_TEMPLATE, 0, (uint64_t)ftell(f), chat_len + 1};
        ok = ok && sink_write(&s, chat_template, chat_len) && sink_write(&s, "", 1); /* and its NUL */
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
#ifndef MOEC_AARCH64_CC
#define MOEC_AARCH64_CC "aarch64-linux-gnu-gcc" /* cmake/cross_runtime.cmake bakes in the one it used */
#endif
#define CROSS_PACKAGES_AARCH64 "gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgomp1-arm64-cross"

/* How an executable for one target is linked: runtime archives from dir, by the driver cc. */
typedef struct LinkTarget {
    char dir[4096]; /* holds libmoert.a and libmoert_main.a */
    char cc[4096];  /* C compiler driver */
    bool cross;
} LinkTarget;

static bool readable(const char *dir, const char *file) {
    char probe[8300];
    snprintf(probe, sizeof probe, "%s/%s", dir, file);
    return access(probe, R_OK) == 0;
}

/* Where the runtime archives for sub ("runtime" for this machine, "aarch64/runtime" for AArch64)
 * are: env (if set), else beside the moec executable (build tree: <build>/<sub>), else
 * <moec>/../lib/moec[/aarch64] (installed), else the build directory moec was configured in.
 * Never fails: the caller checks the archives are there. */
static void runtime_dir(char *buf, size_t n, const char *env_name, const char *sub, const char *installed_sub) {
    const char *env = getenv(env_name);
    if (env && *env) {
        snprintf(buf, n, "%s", env);
        return;
    }
    char self[3900];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, n, "%s/%s", self, sub);
            if (readable(buf, "libmoert.a")) return;
            snprintf(buf, n, "%s/../lib/moec%s", self, installed_sub);
            if (readable(buf, "libmoert.a")) return;
        }
    }
    snprintf(buf, n, "%s/%s", MOEC_BINARY_DIR, sub);
}

/* cmd is an absolute/relative path that can be executed, or a name found in $PATH. */
static bool runnable(const char *cmd) {
    if (strchr(cmd, '/')) return access(cmd, X_OK) == 0;
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        size_t len = strcspn(p, ":");
        char full[8300];
        snprintf(full, sizeof full, "%.*s/%s", (int)len, len ? p : ".", cmd);
        if (access(full, X_OK) == 0) return true;
        p += len + (p[len] == ':');
    }
    return false;
}

/* The arch part of triple ("aarch64" of "aarch64-unknown-linux-gnu") equals this machine's. */
static bool host_arch(const char *triple) {
    struct utsname u;
    if (uname(&u) != 0) return true;
    size_t n = strcspn(triple, "-");
    return strlen(u.machine) == n && strncmp(triple, u.machine, n) == 0;
}

/* Fills lt for triple: this machine's arch links as it always has (the native runtime, $CC or
 * cc); AArch64 Linux (GNU) from another machine links the AArch64 runtime built beside moec
 * (cmake/cross_runtime.cmake) with the cross driver ($MOEC_CROSS_CC, else the one moec was built
 * with, else aarch64-linux-gnu-gcc). Anything else, a missing runtime or a missing driver is one
 * error naming what to install. */
static bool link_target(Diag *d, const char *triple, LinkTarget *lt) {
    memset(lt, 0, sizeof *lt);
    if (!triple || host_arch(triple)) {
        runtime_dir(lt->dir, sizeof lt->dir, "MOEC_RUNTIME_DIR", "runtime", "");
        const char *cc = getenv("CC");
        snprintf(lt->cc, sizeof lt->cc, "%s", cc && *cc ? cc : "cc");
        return true;
    }
    size_t n = strlen(triple);
    bool aarch64_gnu = strncmp(triple, "aarch64-", 8) == 0 && n >= 10 && strcmp(triple + n - 10, "-linux-gnu") == 0;
    if (!aarch64_gnu) {
        diag_error(d, "target %s: moec links executables for this machine and for aarch64-linux-gnu only; "
                      "use --emit obj and link it with libmoert built for the target", triple);
        return false;
    }
    lt->cross = true;
    runtime_dir(lt->dir, sizeof lt->dir, "MOEC_AARCH64_RUNTIME_DIR", "aarch64/runtime", "/aarch64");
    const char *cc = getenv("MOEC_CROSS_CC");
    if (cc && *cc) snprintf(lt->cc, sizeof lt->cc, "%s", cc);
    else if (runnable(MOEC_AARCH64_CC)) snprintf(lt->cc, sizeof lt->cc, "%s", MOEC_AARCH64_CC);
    else snprintf(lt->cc, sizeof lt->cc, "aarch64-linux-gnu-gcc");
    if (!readable(lt->dir, "libmoert.a") || !readable(lt->dir, "libmoert_main.a")) {
        diag_error(d, "target %s: no AArch64 runtime (libmoert.a) in %s; install %s and rebuild moec, "
                      "or use --emit obj", triple, lt->dir, CROSS_PACKAGES_AARCH64);
        return false;
    }
    if (!runnable(lt->cc)) {
        diag_error(d, "target %s: no AArch64 linker driver '%s'; install %s (or set MOEC_CROSS_CC)", triple, lt->cc,
                   CROSS_PACKAGES_AARCH64);
        return false;
    }
    return true;
}

bool artifact_can_link(Diag *d, const char *triple) {
    LinkTarget lt;
    return link_target(d, triple, &lt);
}

bool artifact_link(Diag *d, const char *obj_path, const char *exe_path, const char *triple) {
    LinkTarget lt;
    if (!link_target(d, triple, &lt)) return false;
    /* the sanitizer runtimes go with the sanitized native libmoert only */
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s -o '%s' '%s' '%s/libmoert_main.a' '%s/libmoert.a' -fopenmp -lm %s 2>&1", lt.cc,
             exe_path, obj_path, lt.dir, lt.dir, lt.cross ? "" : MOEC_RUNTIME_LDFLAGS);
    FILE *p = popen(cmd, "r");
    if (!p) {
        diag_error(d, "link: cannot run the C compiler driver '%s': %s", lt.cc, strerror(errno));
        return false;
    }
    char out[1024] = "";
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int st = pclose(p);
    if (st != 0) {
        char *nl = strchr(out, '\n');
        if (nl) *nl = 0;
        diag_error(d, "link: '%s' failed (runtime from %s): %s%s%s", lt.cc, lt.dir, out[0] ? out : "no output",
                   lt.cross ? "; the AArch64 link needs " : "", lt.cross ? CROSS_PACKAGES_AARCH64 : "");
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
