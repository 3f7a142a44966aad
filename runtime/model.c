/* model: load a compiled program's weights and run its steps (the public API of include/moe.h).
 *
 * Load: the weights (a .moew file, or the bytes appended to the executable and found through the
 * MoeTrailer at its end) are checked against the program's manifest, then mmap'd read-only; the
 * arena, KV cache, stats and step ids are allocated, zeroed and 64-byte aligned. Nothing else in
 * this file allocates.
 *
 * Steps: the prompt runs in prefill steps laid out for P = prefill_chunk tokens; the last one may
 * hold fewer (args.last_row + 1 real rows): its kernels read and write only the real rows, so the
 * padding costs nothing, is never routed and never reaches the KV cache or the stats, so a chunk
 * may start anywhere its real rows fit the context.
 *
 * Logits: a prefill step computes the lm_head for every row only when the caller wants every
 * prompt row's logits (moe_prefill with an on_rows callback); otherwise it runs the program's
 * prefill_last, which computes them for the step's last real row only, into row 0 of the logits
 * buffer (the lm_head of the other rows is about 10% of a prefill step on the bench preset).
 *
 * Stats: the kernels add to args.stats, [batch][n_layers][n_exp + 1], the tokens each expert
 * processed (kept within capacity) and the assignments dropped, over the real rows of each step,
 * each row into its slot's stats.
 *
 * Slots: a program compiled for batch B has B sequence slots, each with its own KV cache region,
 * position and stats. A prefill step runs one slot's tokens; a decode step runs one row per live
 * slot given, in ascending slot order (the order expert capacity counts in). The single-sequence
 * calls (moe_prefill, moe_decode, moe_model_reset, moe_model_pos, moe_model_stats) are slot 0. */
#define _GNU_SOURCE /* sync_file_range */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "exec.h"
#include "expert_cache.h"
#include "hash.h"
#include "tokenizer.h"

enum { STEP_NONE, STEP_PREFILL, STEP_DECODE };
enum { ERR_BYTES = 512, BIG_BYTES = 4 << 20 };

struct MoeModel {
    const MoeProgram *prog;
    const MoeManifest *man;
    int n_threads;
    void *map;               /* the mmap'd weights file region, map_len bytes */
    size_t map_len;
    const char *weights;     /* MOE_SECTION_WEIGHTS, manifest.weights_bytes, inside map */
    uint64_t weights_file_off; /* the weights section's offset in the file */
    int wfd;                 /* the weights file, open for the prefault thread; -1 once closed */
    const void **xtable;     /* [n_layers][2][n_exp] the steps' expert table (MoeStepArgs.experts) */
    int64_t budget;          /* memory budget in bytes, 0: none */
    int64_t resident;        /* with a budget: the bytes kept resident besides the expert pool */
    ExpertCache *xc;         /* the expert pool of a budget, or NULL */
    const char *tokenizer;   /* MOE_SECTION_TOKENIZER or NULL, tokenizer_bytes */
    uint64_t tokenizer_bytes;
    const char *chat_template; /* MOE_SECTION_CHAT_TEMPLATE or NULL: the text, chat_template_bytes, and a NUL */
    uint64_t chat_template_bytes;
    const char *weights_name; /* the weights file as shown in messages */
    MoeTokenizer *tok;       /* built from the tokenizer section by the first moe_tokenize/detokenize */
    pthread_t prefault;      /* maps the weights' pages in the background (prefault_main) */
    bool prefaulting;
    atomic_bool stop_prefault;
    char *arena;             /* [arena_bytes] activations, laid out by the plan pass */
    char *kv;                /* [kv_bytes] KV cache */
    int64_t *stats;          /* [batch][n_layers][n_exp + 1] */
    int64_t stats_per_slot;  /* n_layers (n_exp + 1) */
    int32_t *ids;            /* [max(prefill_chunk, batch)] the step's token ids */
    int64_t *row_pos;        /* [max(prefill_chunk, batch)] the step's row positions */
    int32_t *row_slot;       /* [max(prefill_chunk, batch)] the step's row slots */
    int64_t *pos;            /* [batch] tokens in each slot's KV cache */
    bool *live;              /* [batch] the slot holds a sequence (started, not freed) */
    int step_kind;           /* STEP_*: which arena offsets hold the last step's outputs */
    int64_t step_rows;       /* valid rows of the last step */
    const float *step_last;  /* [V] the logits of the last step's last valid row, in the arena */
    char err[ERR_BYTES];
};

static MoeStatus fail(MoeModel *m, MoeStatus st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    return st;
}

/* 64-byte aligned and zeroed; big buffers 2 MiB aligned and advised to use huge pages. */
static void *alloc_zeroed(size_t n) {
    size_t align = n >= BIG_BYTES ? MOE_HUGE_ALIGN : 64, len = n ? n : 1;
    void *p = NULL;
    if (posix_memalign(&p, align, len)) return NULL;
#ifdef MADV_HUGEPAGE
    if (n >= BIG_BYTES) madvise(p, len / MOE_HUGE_ALIGN * MOE_HUGE_ALIGN, MADV_HUGEPAGE);
#endif
    memset(p, 0, len);
    return p;
}

/* The arena and the KV cache: n bytes of an anonymous mapping, 2 MiB aligned, which the kernel
 * zeroes on first touch: a page is paid for when a step first writes it, and only if one does.
 * Clearing them at load instead cost a fresh process 0.2 s before its first prefill on a VM whose
 * free memory the host had reclaimed (Qwen3-MoE bench preset: 147 MB). huge: advised to use 2 MiB
 * pages (the arena, whose every region a step reuses). The KV cache is not: each layer, slot and
 * kv head has its own run of S positions (compiler/kernels/kernels.h), 1 MiB at 4096 positions of
 * 64 dims, so a 128-token prompt writes into every 2 MiB page of it, and with huge pages a fresh
 * process cleared the whole cache inside its first prefill (64 MiB, 30% of that prefill's samples on
 * the Qwen3-MoE bench preset); with 4 KiB pages it clears the 1/32 it writes. Free with
 * free_lazy(p, n). */
static size_t lazy_len(size_t n) { return (n + MOE_HUGE_ALIGN - 1) / MOE_HUGE_ALIGN * MOE_HUGE_ALIGN; }
static void *alloc_lazy(size_t n, bool huge) {
    size_t len = lazy_len(n ? n : 1);
    char *raw = mmap(NULL, len + MOE_HUGE_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *a = raw + (MOE_HUGE_ALIGN - (uintptr_t)raw % MOE_HUGE_ALIGN) % MOE_HUGE_ALIGN;
    if (a > raw) munmap(raw, (size_t)(a - raw));        /* keep [a, a + len) */
    munmap(a + len, (size_t)(raw + MOE_HUGE_ALIGN - a)); /* raw is page-aligned: at least a page left */
#ifdef MADV_HUGEPAGE
    madvise(a, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE); /* NOHUGEPAGE: also where THP is "always" */
#else
    (void)huge;
#endif
    return a;
}
static void free_lazy(void *p, size_t n) {
    if (p) munmap(p, lazy_len(n ? n : 1));
}

/* ---- the program ------------------------------------------------------------------------- */

/* An arena region [off, off + bytes) must lie in the arena and be 4-byte aligned. */
static bool arena_region_ok(int64_t off, int64_t bytes, int64_t arena) {
    return off >= 0 && off % 4 == 0 && off <= arena && bytes <= arena - off;
}

/* The manifest's own consistency: a malformed program is refused, never run. */
static MoeStatus check_program(MoeModel *m, const MoeProgram *prog) {
    const MoeManifest *mf = prog->manifest;
    if (!mf || !prog->prefill || !prog->decode)
        return fail(m, MOE_ERR_FORMAT, "program: no manifest or step functions (not emitted by moec compile?)");
    if (mf->format_version != MOE_FORMAT_VERSION)
        return fail(m, MOE_ERR_FORMAT, "program: format version %u; expected %u (compiled by another moec version)",
                    mf->format_version, MOE_FORMAT_VERSION);
    if (!prog->prefill_last) /* read only once the version says the field exists */
        return fail(m, MOE_ERR_FORMAT, "program: no prefill_last step function (not emitted by moec compile?)");
    if (mf->n_layers < 1 || mf->n_layers > MOE_MAX_LAYERS)
        return fail(m, MOE_ERR_FORMAT, "program: n_layers %u; expected 1 to %d", mf->n_layers, MOE_MAX_LAYERS);
    if (mf->vocab_size < 1 || mf->vocab_size > INT32_MAX || mf->context < 1 || mf->prefill_chunk < 1 ||
        mf->prefill_chunk > (1 << 24) || mf->n_exp < 0 || mf->n_exp > (1 << 20) || mf->top_k < 0 ||
        mf->top_k > mf->n_exp)
        return fail(m, MOE_ERR_FORMAT,
                    "program: bad shapes: vocab_size %" PRId64 ", context %" PRId64 ", prefill_chunk %" PRId64
                    ", n_exp %" PRId64 ", top_k %" PRId64,
                    mf->vocab_size, mf->context, mf->prefill_chunk, mf->n_exp, mf->top_k);
    if (mf->batch < 1 || mf->batch > MOE_MAX_BATCH)
        return fail(m, MOE_ERR_FORMAT, "program: batch %" PRId64 "; expected 1 to %d", mf->batch, MOE_MAX_BATCH);
    if (mf->arena_bytes < 0 || mf->kv_bytes < 0 || mf->weights_bytes < 0)
        return fail(m, MOE_ERR_FORMAT, "program: negative arena, KV or weights size");
    const int64_t P = mf->prefill_chunk, V = mf->vocab_size, k = mf->top_k;
    if (!arena_region_ok(mf->logits_prefill, P * V * 4, mf->arena_bytes) ||
        !arena_region_ok(mf->logits_decode, mf->batch * V * 4, mf->arena_bytes))
        return fail(m, MOE_ERR_FORMAT,
                    "program: logits offsets %" PRId64 ", %" PRId64 " outside the arena (%" PRId64 " bytes)",
                    mf->logits_prefill, mf->logits_decode, mf->arena_bytes);
    if (mf->needs & ~(uint32_t)MOE_NEED_AMX)
        return fail(m, MOE_ERR_FORMAT, "program: needs 0x%x; this runtime knows 0x%x", mf->needs, MOE_NEED_AMX);
    for (uint32_t l = 0; l < mf->n_layers; l++) {
        const MoeExpertLoc *x = &mf->experts[l];
        if (mf->routes_prefill[l] >= 0 &&
            (x->gate_up < 0 || x->down < 0 || x->gate_up_bytes < 0 || x->down_bytes < 0 ||
             x->gate_up_bytes > (mf->weights_bytes - x->gate_up) / (mf->n_exp ? mf->n_exp : 1) ||
             x->down_bytes > (mf->weights_bytes - x->down) / (mf->n_exp ? mf->n_exp : 1)))
            return fail(m, MOE_ERR_FORMAT,
                        "program: layer %u: experts at %" PRId64 " (+%" PRId64 " each), %" PRId64 " (+%" PRId64
                        " each) outside the %" PRId64 " bytes of weights",
                        l, x->gate_up, x->gate_up_bytes, x->down, x->down_bytes, mf->weights_bytes);
    }
    for (uint32_t l = 0; l < mf->n_layers; l++) {
        int64_t rp = mf->routes_prefill[l], rd = mf->routes_decode[l];
        if ((rp < 0) != (rd < 0) || (rp >= 0 && (k < 1 || !arena_region_ok(rp, P * k * 8, mf->arena_bytes) ||
                                                 !arena_region_ok(rd, mf->batch * k * 8, mf->arena_bytes))))
            return fail(m, MOE_ERR_FORMAT,
                        "program: layer %u: routes offsets %" PRId64 ", %" PRId64 " invalid for an arena of %" PRId64
                        " bytes",
                        l, rp, rd, mf->arena_bytes);
    }
    return MOE_OK;
}

/* ---- the weights ------------------------------------------------------------------------- */

static const char *section_name(uint32_t kind) {
    return kind == MOE_SECTION_WEIGHTS ? "weights" : kind == MOE_SECTION_TOKENIZER ? "tokenizer"
         : kind == MOE_SECTION_CHAT_TEMPLATE ? "chat template" : "unknown";
}

/* Reads exactly n bytes at off; false on a short read. */
static bool read_at(int fd, void *buf, size_t n, uint64_t off) {
    char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return true;
}

/* With a budget: starts reading in the weights except the routed experts (page-aligned inward),
 * without huge pages, whose 2 MiB folios would pull expert bytes in with their neighbours. */
static void advise_resident(MoeModel *m, long page) {
    const MoeManifest *mf = m->man;
    int64_t lo = 0; /* the weights between the expert ranges, in offset order */
    for (;;) {
        int64_t next = mf->weights_bytes, end = mf->weights_bytes;
        for (uint32_t l = 0; l < mf->n_layers; l++) {
            if (mf->routes_prefill[l] < 0) continue;
            const MoeExpertLoc *x = &mf->experts[l];
            int64_t r[2][2] = {{x->gate_up, x->gate_up + mf->n_exp * x->gate_up_bytes},
                               {x->down, x->down + mf->n_exp * x->down_bytes}};
            for (int i = 0; i < 2; i++)
                if (r[i][0] >= lo && r[i][0] < next) next = r[i][0], end = r[i][1];
        }
        uintptr_t a = ((uintptr_t)m->weights + (uintptr_t)lo + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
        uintptr_t b = ((uintptr_t)m->weights + (uintptr_t)next) / (uintptr_t)page * (uintptr_t)page;
        if (b > a) madvise((void *)a, b - a, MADV_WILLNEED);
        if (next >= mf->weights_bytes) break;
        lo = end;
    }
}

/* Checks the header at hdr_off (avail bytes of the file from there belong to the weights), maps
 * it and finds the sections. name is the file as shown in messages. */
static MoeStatus map_weights(MoeModel *m, int fd, const char *name, uint64_t hdr_off, uint64_t avail) {
    const MoeManifest *mf = m->man;
    MoeWeightsHeader h;
    if (avail < MOE_HEADER_BYTES)
        return fail(m, MOE_ERR_FORMAT, "%s: truncated: %" PRIu64 " bytes; expected at least a %d-byte weights header",
                    name, avail, MOE_HEADER_BYTES);
    if (!read_at(fd, &h, sizeof h, hdr_off))
        return fail(m, MOE_ERR_IO, "%s: cannot read the weights header: %s", name, strerror(errno ? errno : EIO));
    if (memcmp(h.magic, MOE_WEIGHTS_MAGIC, 8)) {
        char got[9];
        for (int i = 0; i < 8; i++) got[i] = h.magic[i] >= 32 && h.magic[i] < 127 ? h.magic[i] : '?';
        got[8] = 0;
        return fail(m, MOE_ERR_FORMAT, "%s: not a moec weights file: magic '%s'; expected '%s'", name, got,
                    MOE_WEIGHTS_MAGIC);
    }
    if (h.format_version != MOE_FORMAT_VERSION)
        return fail(m, MOE_ERR_FORMAT, "%s: format version %u; expected %u (written by another moec version)", name,
                    h.format_version, MOE_FORMAT_VERSION);
    if (h.model_hash != mf->model_hash)
        return fail(m, MOE_ERR_MISMATCH,
                    "%s: model hash 0x%016" PRIx64 " does not match the program's 0x%016" PRIx64
                    " (weights of another model or compile)",
                    name, h.model_hash, mf->model_hash);
    if (h.total_size < MOE_HEADER_BYTES || h.n_sections > MOE_MAX_SECTIONS)
        return fail(m, MOE_ERR_FORMAT, "%s: corrupt header: total size %" PRIu64 ", %u sections (at most %d)", name,
                    h.total_size, h.n_sections, MOE_MAX_SECTIONS);
    if (h.total_size > avail)
        return fail(m, MOE_ERR_FORMAT,
                    "%s: truncated: the header gives %" PRIu64 " bytes of weights; the file holds %" PRIu64, name,
                    h.total_size, avail);
    const MoeSection *wsec = NULL, *tsec = NULL, *csec = NULL;
    for (uint32_t i = 0; i < h.n_sections; i++) {
        const MoeSection *s = &h.sections[i];
        if (s->offset % MOE_ALIGN || s->offset < MOE_HEADER_BYTES || s->offset > h.total_size ||
            s->size > h.total_size - s->offset)
            return fail(m, MOE_ERR_FORMAT,
                        "%s: %s section [%" PRIu64 ", +%" PRIu64 ") outside the %" PRIu64
                        " bytes of weights or not %d-aligned",
                        name, section_name(s->kind), s->offset, s->size, h.total_size, MOE_ALIGN);
        const MoeSection **slot;
        if (s->kind == MOE_SECTION_WEIGHTS) slot = &wsec;
        else if (s->kind == MOE_SECTION_TOKENIZER) slot = &tsec;
        else if (s->kind == MOE_SECTION_CHAT_TEMPLATE) slot = &csec;
        else continue; /* unknown kinds: written by a newer moec, not needed here */
        if (*slot) return fail(m, MOE_ERR_FORMAT, "%s: two %s sections", name, section_name(s->kind));
        *slot = s;
    }
    if (!wsec) return fail(m, MOE_ERR_FORMAT, "%s: no weights section", name);
    if (wsec->size != (uint64_t)mf->weights_bytes)
        return fail(m, MOE_ERR_MISMATCH,
                    "%s: weights section of %" PRIu64 " bytes; the program expects %" PRId64
                    " (weights of another compile)",
                    name, wsec->size, mf->weights_bytes);

    /* mmap wants a page-aligned file offset; the header is MOE_ALIGN-aligned, pages may be larger.
     * Mapping from a 2 MiB-aligned offset lets the kernel give the mapping a 2 MiB-aligned address
     * congruent to the file offset, so the page cache's 2 MiB folios map as huge pages (fewer TLB
     * misses while the weights stream). With the weights 2 MiB-aligned in the file too (format.h),
     * 1550 of the bench preset's 1590 MB map so (half of them before), and decode gains 8%. */
    long page = sysconf(_SC_PAGESIZE);
    uint64_t align = (uint64_t)page > MOE_HUGE_ALIGN ? (uint64_t)page : MOE_HUGE_ALIGN;
    uint64_t base = hdr_off / align * align, delta = hdr_off - base;
    m->map_len = (size_t)(delta + h.total_size);
    m->map = mmap(NULL, m->map_len, PROT_READ, MAP_PRIVATE, fd, (off_t)base);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        return fail(m, MOE_ERR_IO, "%s: cannot map %" PRIu64 " bytes: %s", name, h.total_size, strerror(errno));
    }
    const char *hdr = (const char *)m->map + delta;
    m->weights_name = name;
    m->weights = hdr + wsec->offset;
    m->weights_file_off = hdr_off + wsec->offset;
    if (tsec) {
        m->tokenizer = hdr + tsec->offset;
        m->tokenizer_bytes = tsec->size;
    }
    if (csec) {
        m->chat_template = hdr + csec->offset;
        m->chat_template_bytes = csec->size;
        if (!csec->size || m->chat_template[csec->size - 1])
            return fail(m, MOE_ERR_FORMAT, "%s: the chat template section does not end with a NUL byte", name);
    }
    /* start reading the weights in; huge pages where the file system offers them */
    uintptr_t a = ((uintptr_t)m->weights) / (uintptr_t)page * (uintptr_t)page;
    size_t len = (size_t)((uintptr_t)m->weights + wsec->size - a);
    if (m->budget > 0) { /* the routed experts are read into the pool: never fault them in here */
        advise_resident(m, page);
        len = 0;
    }
    if (len) {
#ifdef MADV_HUGEPAGE
        madvise((void *)a, len, MADV_HUGEPAGE);
#endif
        madvise((void *)a, len, MADV_WILLNEED);
    }
    return MOE_OK;
}

/* ---- prefault ---------------------------------------------------------------------------- */

/* Cold start: the first steps of a fresh process would otherwise take a page fault per 4 KiB (or
 * 2 MiB) of weights they read, inside the step (measured: a first 128-token prefill 2.5-5x a
 * warm one on the bench preset). From load on, this thread maps the weights section's pages in
 * ahead of the kernels, in order, 32 MiB at a time (MADV_POPULATE_READ, Linux 5.14; else one read
 * per page), overlapped with tokenizing and the first steps; it stops early when the model is freed.
 *
 * Huge pages: how the file got into the page cache decides its folio sizes, and decode streams the
 * weights through the TLB (Mixtral bench, Zen 5, ext4 on 6.18: freshly written ~100 tok/s, evicted
 * and read back 80-84, copied with cp 70-72; all in 2 MiB folios, 96-103). Written in large writes
 * (moec does) or read in through this mapping (MADV_HUGEPAGE, set by map_weights), a file system with
 * large folios (ext4 since 6.16) holds them in 2 MiB folios; cp and small writes leave 4 KiB ones.
 * Two remedies, each kept only if it works here:
 * - MADV_COLLAPSE (Linux 6.1) on each chunk's 2 MiB ranges, where files may be collapsed
 *   (CONFIG_READ_ONLY_THP_FOR_FS);
 * - else, when the first or the last chunk sits in small folios: in order, write each such chunk
 *   back if dirty, drop it from the page cache and read it again through a mapping advised
 *   MADV_HUGEPAGE, which reads 2 MiB folios (tried on the first chunk first; stopped at a chunk
 *   that stays small). That costs one read of the weights from disk, once: later processes find
 *   them in 2 MiB folios; a process that stops half-way leaves the last chunk small, and the next
 *   one goes on. Pages another process has mapped stay as they are (the page cache skips them); no
 *   mapping ever sees other bytes, whichever page holds them. */
enum { PREFAULT_CHUNK = 32 << 20 };
#ifdef MADV_COLLAPSE
#define MOEC_MADV_COLLAPSE MADV_COLLAPSE
#else
#define MOEC_MADV_COLLAPSE 25 /* Linux 6.1 */
#endif

/* KiB of the mapping holding p that are mapped as 2 MiB file pages (/proc/self/smaps), or -1. */
static long pmd_kib(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    long kib = -1;
    bool in = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            if (in) break; /* past the mapping without the field */
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        } else if (in && sscanf(line, "FilePmdMapped: %ld", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib;
}

/* The file offset of the mapping's first byte. */
static uint64_t map_file_off(const MoeModel *m) {
    return m->weights_file_off - (uint64_t)(m->weights - (const char *)m->map);
}

/* The file's 2 MiB-aligned ranges within [a, a + len) of the mapping, as file offsets [*o0, *o1). */
static void huge_span(const MoeModel *m, uintptr_t a, size_t len, off_t *o0, off_t *o1) {
    uint64_t f0 = map_file_off(m) + (a - (uintptr_t)m->map), f1 = f0 + len;
    uint64_t h0 = (f0 + MOE_HUGE_ALIGN - 1) / MOE_HUGE_ALIGN * MOE_HUGE_ALIGN, h1 = f1 / MOE_HUGE_ALIGN * MOE_HUGE_ALIGN;
    *o0 = (off_t)h0;
    *o1 = (off_t)(h1 > h0 ? h1 : h0);
}

/* Whether the page cache holds the 2 MiB ranges of [a, a + len) in 2 MiB folios (most of them),
 * read in through a mapping of their own advised MADV_HUGEPAGE. -1: cannot tell. */
static int chunk_huge(const MoeModel *m, uintptr_t a, size_t len) {
    off_t o0, o1;
    huge_span(m, a, len, &o0, &o1);
    size_t n = (size_t)(o1 - o0);
    if (!n) return -1;
    /* a 2 MiB-aligned address for the 2 MiB-aligned offset o0 */
    char *raw = mmap(NULL, n + MOE_HUGE_ALIGN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return -1;
    char *at = raw + (MOE_HUGE_ALIGN - (uintptr_t)raw % MOE_HUGE_ALIGN) % MOE_HUGE_ALIGN;
    int got = -1;
    if (mmap(at, n, PROT_READ, MAP_PRIVATE | MAP_FIXED, m->wfd, o0) != MAP_FAILED) {
#ifdef MADV_HUGEPAGE
        madvise(at, n, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_READ
        if (madvise(at, n, MADV_POPULATE_READ) == 0) {
            long kib = pmd_kib(at);
            got = kib < 0 ? -1 : kib >= (long)(n / 2048);
        }
#endif
    }
    munmap(raw, n + MOE_HUGE_ALIGN);
    return got;
}

/* Drops the 2 MiB ranges of [a, a + len) from this mapping and from the page cache, written back first. */
static void evict_chunk(MoeModel *m, uintptr_t a, size_t len) {
    off_t o0, o1;
    huge_span(m, a, len, &o0, &o1);
    if (o1 == o0) return;
    madvise((char *)m->map + (o0 - (off_t)map_file_off(m)), (size_t)(o1 - o0), MADV_DONTNEED); /* read-only: unmapped */
#ifdef SYNC_FILE_RANGE_WRITE
    sync_file_range(m->wfd, o0, o1 - o0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
#endif
    posix_fadvise(m->wfd, o0, o1 - o0, POSIX_FADV_DONTNEED);
}

/* Whether to re-read the chunks in small folios: when the first chunk is small, it is re-read, and
 * the answer is whether that gave 2 MiB folios; when only the last one is, a process stopped
 * half-way through the re-read (prefault_main re-reads in order): yes. */
static bool reread_wanted(MoeModel *m, uintptr_t a, uintptr_t end) {
    size_t len = end - a < PREFAULT_CHUNK ? end - a : PREFAULT_CHUNK;
    if (chunk_huge(m, a, len) == 0) {
        evict_chunk(m, a, len);
        return chunk_huge(m, a, len) == 1;
    }
    uintptr_t last = a + (end - 1 - a) / PREFAULT_CHUNK * PREFAULT_CHUNK;
    return last > a && chunk_huge(m, last, end - last) == 0;
}

static void *prefault_main(void *arg) {
    MoeModel *m = arg;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)m->weights / (uintptr_t)page * (uintptr_t)page;
    uintptr_t end = (uintptr_t)m->weights + (uintptr_t)m->man->weights_bytes;
    const uintptr_t first = a;
    bool populate = true, collapse = true, reread = false;
    for (; a < end && !atomic_load_explicit(&m->stop_prefault, memory_order_relaxed); a += PREFAULT_CHUNK) {
        size_t len = end - a < PREFAULT_CHUNK ? end - a : PREFAULT_CHUNK;
        uintptr_t h0 = (a + MOE_HUGE_ALIGN - 1) / MOE_HUGE_ALIGN * MOE_HUGE_ALIGN;
        uintptr_t h1 = (a + len) / MOE_HUGE_ALIGN * MOE_HUGE_ALIGN;
        if (collapse && h1 > h0 && madvise((void *)h0, h1 - h0, MOEC_MADV_COLLAPSE) != 0 &&
            (errno == EINVAL || errno == EPERM))
            collapse = false; /* not offered here (older kernel, or files not collapsible) */
        if (a == first) /* decided once collapse is known; reread_wanted has seen to the first chunk */
            reread = !collapse && m->wfd >= 0 && reread_wanted(m, a, end);
        else if (reread && chunk_huge(m, a, len) == 0) {
            evict_chunk(m, a, len);
            reread = chunk_huge(m, a, len) == 1; /* read in again; stop if that gave small folios */
        }
#ifdef MADV_POPULATE_READ
        if (populate && madvise((void *)a, len, MADV_POPULATE_READ) == 0) continue;
#endif
        populate = false;
        volatile const char *p = (const char *)a;
        char sink = 0;
        for (size_t i = 0; i < len; i += (size_t)page) sink ^= p[i];
        (void)sink;
    }
    return NULL;
}

static void prefault_start(MoeModel *m) {
    atomic_init(&m->stop_prefault, false);
    m->prefaulting = m->man->weights_bytes > 0 && pthread_create(&m->prefault, NULL, prefault_main, m) == 0;
}

static void prefault_stop(MoeModel *m) {
    if (!m->prefaulting) return;
    atomic_store(&m->stop_prefault, true);
    pthread_join(m->prefault, NULL);
    m->prefaulting = false;
}

/* Where the weights header of the open file fd sits: at 0 for a .moew file, or, when embedded,
 * where the MoeTrailer at the end of the executable says; *avail gets the bytes from there that
 * belong to the weights. */
static MoeStatus locate_header(MoeModel *m, int fd, const char *name, bool embedded, uint64_t *hdr_off,
                               uint64_t *avail) {
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) return fail(m, MOE_ERR_IO, "%s: not a regular file", name);
    uint64_t size = (uint64_t)st.st_size;
    *hdr_off = 0;
    *avail = size;
    if (!embedded) return MOE_OK;
    MoeTrailer t;
    if (size < sizeof t || !read_at(fd, &t, sizeof t, size - sizeof t) || memcmp(t.magic, MOE_TRAILER_MAGIC, 8))
        return fail(m, MOE_ERR_FORMAT,
                    "%s: no weights embedded in this executable (no %s trailer); give a .moew weights file", name,
                    MOE_TRAILER_MAGIC);
    if (t.header_offset % MOE_ALIGN || t.header_offset > size - sizeof t)
        return fail(m, MOE_ERR_FORMAT,
                    "%s: embedded weights header at offset %" PRIu64 "; expected a multiple of %d below %" PRIu64, name,
                    t.header_offset, MOE_ALIGN, size - sizeof t);
    *hdr_off = t.header_offset;
    *avail = size - sizeof t - t.header_offset;
    return MOE_OK;
}

/* Opens path (name in messages) and maps its weights: the whole file, or when embedded the part
 * located by the MoeTrailer at its end. */
static MoeStatus open_weights(MoeModel *m, const char *path, const char *name, bool embedded) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(m, MOE_ERR_IO, "%s: cannot open: %s", name, strerror(errno));
    uint64_t hdr_off, avail;
    MoeStatus rc = locate_header(m, fd, name, embedded, &hdr_off, &avail);
    if (rc == MOE_OK) rc = map_weights(m, fd, name, hdr_off, avail);
    if (rc == MOE_OK) m->wfd = fd; /* for the prefault thread; closed by moe_model_free */
    else close(fd);
    return rc;
}

/* ---- verify ------------------------------------------------------------------------------ */

/* The model hash over the mapped sections, as artifact_write_weights computed it while writing. */
static uint64_t mapped_hash(const MoeModel *m) {
    MoeHash h;
    moe_hash_init(&h, moe_hash_seed(m->man->family));
    if (m->budget > 0) { /* a memory budget: 8 MiB at a time, unmapped again after hashing */
        const size_t chunk = 8 << 20, n = (size_t)m->man->weights_bytes;
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        for (size_t off = 0; off < n; off += chunk) {
            size_t len = n - off < chunk ? n - off : chunk;
            moe_hash_update(&h, m->weights + off, len);
            uintptr_t a = ((uintptr_t)m->weights + off + page - 1) / page * page;
            uintptr_t b = ((uintptr_t)m->weights + off + len) / page * page;
            if (b > a) madvise((void *)a, b - a, MADV_DONTNEED); /* read-only file pages: just unmapped */
        }
    } else {
        moe_hash_update(&h, m->weights, (size_t)m->man->weights_bytes);
    }
    if (m->tokenizer) moe_hash_update(&h, m->tokenizer, (size_t)m->tokenizer_bytes);
    if (m->chat_template) moe_hash_update(&h, m->chat_template, (size_t)m->chat_template_bytes);
    return moe_hash_final(&h);
}

MoeStatus moe_model_verify(MoeModel *m) {
    if (!m) return MOE_ERR_ARG;
    uint64_t h = mapped_hash(m);
    if (h != m->man->model_hash)
        return fail(m, MOE_ERR_MISMATCH,
                    "%s: the weights are corrupt: their hash is 0x%016" PRIx64 ", compiled as 0x%016" PRIx64
                    " (bytes changed after compile)",
                    m->weights_name ? m->weights_name : "weights", h, m->man->model_hash);
    return MOE_OK;
}

MoeStatus moe_weights_verify(const char *path, uint64_t *hash, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!path) return MOE_ERR_ARG;
    MoeModel m = {0};
    MoeManifest man = {0};
    m.man = &man;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    MoeStatus rc = fd < 0 ? fail(&m, MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno)) : MOE_OK;
    /* an executable ends with the trailer; anything else is taken as a .moew file */
    MoeTrailer t;
    struct stat st;
    bool embedded = rc == MOE_OK && !fstat(fd, &st) && (uint64_t)st.st_size >= sizeof t &&
                    read_at(fd, &t, sizeof t, (uint64_t)st.st_size - sizeof t) && !memcmp(t.magic, MOE_TRAILER_MAGIC, 8);
    uint64_t hdr_off = 0, avail = 0;
    MoeWeightsHeader h;
    if (rc == MOE_OK) rc = locate_header(&m, fd, path, embedded, &hdr_off, &avail);
    memset(&h, 0, sizeof h);
    if (rc == MOE_OK && (avail < 8 || !read_at(fd, h.magic, 8, hdr_off) || memcmp(h.magic, MOE_WEIGHTS_MAGIC, 8)))
        rc = fail(&m, MOE_ERR_FORMAT, "%s: not a moec weights file (no '%s' magic); expected a .moew file or an "
                  "executable made by moec compile", path, MOE_WEIGHTS_MAGIC);
    if (rc == MOE_OK && (avail < MOE_HEADER_BYTES || !read_at(fd, &h, sizeof h, hdr_off)))
        rc = fail(&m, MOE_ERR_FORMAT, "%s: truncated: no %d-byte weights header", path, MOE_HEADER_BYTES);
    if (rc == MOE_OK) {
        /* the file's own header stands in for the program's manifest */
        man.format_version = MOE_FORMAT_VERSION;
        man.model_hash = h.model_hash;
        memcpy(man.family, h.family, sizeof man.family);
        man.family[sizeof man.family - 1] = 0;
        for (uint32_t i = 0; i < h.n_sections && i < MOE_MAX_SECTIONS; i++)
            if (h.sections[i].kind == MOE_SECTION_WEIGHTS) man.weights_bytes = (int64_t)h.sections[i].size;
        if (!man.family[0])
            rc = fail(&m, MOE_ERR_FORMAT, "%s: the header names no model family (written before moec could verify); "
                      "recompile to verify it", path);
    }
    if (rc == MOE_OK) rc = map_weights(&m, fd, path, hdr_off, avail);
    if (rc == MOE_OK) rc = moe_model_verify(&m);
    if (rc == MOE_OK && hash) *hash = man.model_hash;
    if (fd >= 0) close(fd);
    if (m.map) munmap(m.map, m.map_len);
    if (rc != MOE_OK && err && errlen) snprintf(err, errlen, "%s", m.err);
    return rc;
}

/* ---- load / free ------------------------------------------------------------------------- */

/* The expert table pointing into the mapped weights, or with a budget the pool (empty at first). */
static MoeStatus setup_experts(MoeModel *m, const char *path, const char *name) {
    const MoeManifest *mf = m->man;
    const int64_t E = mf->n_exp;
    m->xtable = calloc((size_t)(mf->n_layers * 2 * (E ? E : 1)), sizeof *m->xtable);
    if (!m->xtable) return fail(m, MOE_ERR_NOMEM, "%s: cannot allocate the expert table", name);
    if (m->budget <= 0) {
        for (uint32_t l = 0; l < mf->n_layers; l++) {
            if (mf->routes_prefill[l] < 0) continue;
            const MoeExpertLoc *x = &mf->experts[l];
            for (int64_t e = 0; e < E; e++) {
                m->xtable[(l * 2) * E + e] = m->weights + x->gate_up + e * x->gate_up_bytes;
                m->xtable[(l * 2 + 1) * E + e] = m->weights + x->down + e * x->down_bytes;
            }
        }
        return MOE_OK;
    }
    /* resident: everything but the routed experts; the pool: what the budget leaves */
    const int64_t xbytes = xc_expert_bytes(mf), slot = xc_slot_bytes(mf), need = xc_min_slots(mf);
    const int64_t stats = (int64_t)sizeof(int64_t) * mf->batch * mf->n_layers * (E + 1);
    m->resident = mf->weights_bytes - xbytes + (int64_t)m->tokenizer_bytes + mf->arena_bytes + mf->kv_bytes + stats +
                  (int64_t)(sizeof(void *) * (size_t)(mf->n_layers * 2 * E));
    if (slot <= 0 || need <= 0)
        return fail(m, MOE_ERR_ARG, "memory budget: the model has no routed experts to keep out of memory");
    int64_t slots = (m->budget - m->resident) / slot, total = xc_total_experts(mf);
    if (m->budget < m->resident || slots < need) {
        int64_t least = m->resident + need * slot;
        return fail(m, MOE_ERR_NOMEM,
                    "memory budget %.3f MB: too small; the resident part needs %.3f MB (weights other than the routed "
                    "experts %.3f, arena %.3f, KV cache %.3f) and one layer of a step up to %" PRId64
                    " experts of %.3f MB; give at least %.3f MB",
                    (double)m->budget / 1e6, (double)m->resident / 1e6, (double)(mf->weights_bytes - xbytes) / 1e6,
                    (double)mf->arena_bytes / 1e6, (double)mf->kv_bytes / 1e6, need, (double)slot / 1e6,
                    (double)((least + 999) / 1000) / 1e3);
    }
    if (slots > total) slots = total;
    char err[ERR_BYTES];
    if (!(m->xc = xc_new(mf, path, name, m->weights_file_off, slots, m->xtable, err, sizeof err)))
        return fail(m, MOE_ERR_NOMEM, "%s", err);
    return MOE_OK;
}

static MoeStatus load(MoeModel **out, const MoeProgram *prog, const char *path, const char *name, bool embedded,
                      int n_threads, int64_t memory_bytes, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!out || !prog || !path) {
        if (err && errlen) snprintf(err, errlen, "moe_model_load: NULL argument");
        if (out) *out = NULL;
        return MOE_ERR_ARG;
    }
    *out = NULL;
    MoeModel *m = calloc(1, sizeof *m);
    if (!m) {
        if (err && errlen) snprintf(err, errlen, "moe_model_load: out of memory");
        return MOE_ERR_NOMEM;
    }
    m->wfd = -1;
    m->prog = prog;
    m->man = prog->manifest;
    m->n_threads = n_threads > 0 ? n_threads : moert_default_threads();
    m->budget = memory_bytes > 0 ? memory_bytes : 0;
    MoeStatus rc = check_program(m, prog);
    char why[160];
    if (rc == MOE_OK && (m->man->needs & MOE_NEED_AMX) && !moert_enable_amx(why, sizeof why))
        rc = fail(m, MOE_ERR_MISMATCH, "program: compiled for AMX tiles (cpu %s), but %s; recompile with --features -amx-bf16",
                  m->man->cpu, why);
    /* per-thread partials and scratch were sized by the compiler for at most max_threads */
    if (rc == MOE_OK && m->man->max_threads > 0 && m->n_threads > m->man->max_threads)
        m->n_threads = (int)m->man->max_threads;
    if (rc == MOE_OK) rc = open_weights(m, path, name, embedded);
    if (rc == MOE_OK) rc = setup_experts(m, path, name);
    if (rc == MOE_OK) {
        const MoeManifest *mf = m->man;
        int64_t n_ids = mf->prefill_chunk > mf->batch ? mf->prefill_chunk : mf->batch;
        m->stats_per_slot = (int64_t)mf->n_layers * (mf->n_exp + 1);
        m->arena = alloc_lazy((size_t)mf->arena_bytes, true);
        m->kv = alloc_lazy((size_t)mf->kv_bytes, false);
        m->stats = alloc_zeroed(sizeof(int64_t) * (size_t)(mf->batch * m->stats_per_slot));
        m->ids = alloc_zeroed(sizeof(int32_t) * (size_t)n_ids);
        m->row_pos = alloc_zeroed(sizeof(int64_t) * (size_t)n_ids);
        m->row_slot = alloc_zeroed(sizeof(int32_t) * (size_t)n_ids);
        m->pos = alloc_zeroed(sizeof(int64_t) * (size_t)mf->batch);
        m->live = alloc_zeroed(sizeof(bool) * (size_t)mf->batch);
        if (!m->arena || !m->kv || !m->stats || !m->ids || !m->row_pos || !m->row_slot || !m->pos || !m->live)
            rc = fail(m, MOE_ERR_NOMEM,
                      "%s: cannot allocate the arena (%" PRId64 " bytes) and KV cache (%" PRId64 " bytes)", name,
                      mf->arena_bytes, mf->kv_bytes);
    }
    /* with a budget the routed experts must not be mapped in (map_weights advised the rest) */
    if (rc == MOE_OK && !m->budget && !getenv("MOE_NO_PREFAULT")) prefault_start(m);
    if (rc != MOE_OK) {
        if (err && errlen) snprintf(err, errlen, "%s", m->err);
        moe_model_free(m);
        return rc;
    }
    *out = m;
    return MOE_OK;
}

MoeStatus moe_model_load(MoeModel **out, const MoeProgram *prog, const char *weights_path, int n_threads, char *err,
                         size_t errlen) {
    return moe_model_load_opts(out, prog, &(MoeLoadOptions){weights_path, n_threads, 0}, err, errlen);
}

MoeStatus moe_model_load_opts(MoeModel **out, const MoeProgram *prog, const MoeLoadOptions *opts, char *err,
                              size_t errlen) {
    MoeLoadOptions o = opts ? *opts : (MoeLoadOptions){0};
    if (o.memory_bytes < 0) {
        if (err && errlen) snprintf(err, errlen, "moe_model_load: memory budget %" PRId64 " bytes; expected >= 0",
                                    o.memory_bytes);
        if (out) *out = NULL;
        return MOE_ERR_ARG;
    }
    if (o.weights_path)
        return load(out, prog, o.weights_path, o.weights_path, false, o.n_threads, o.memory_bytes, err, errlen);
    return moert_model_load_embedded_opts(out, prog, "/proc/self/exe", o.n_threads, o.memory_bytes, err, errlen);
}

MoeStatus moert_model_load_embedded(MoeModel **out, const MoeProgram *prog, const char *exe_path, int n_threads,
                                    char *err, size_t errlen) {
    return moert_model_load_embedded_opts(out, prog, exe_path, n_threads, 0, err, errlen);
}

MoeStatus moert_model_load_embedded_opts(MoeModel **out, const MoeProgram *prog, const char *exe_path, int n_threads,
                                         int64_t memory_bytes, char *err, size_t errlen) {
    char name[4096];
    ssize_t n = exe_path && !strcmp(exe_path, "/proc/self/exe") ? readlink(exe_path, name, sizeof name - 1) : -1;
    if (n > 0) name[n] = 0; /* show the executable's real path */
    else snprintf(name, sizeof name, "%s", exe_path ? exe_path : "(null)");
    return load(out, prog, exe_path, name, true, n_threads, memory_bytes, err, errlen);
}

void moe_model_free(MoeModel *m) {
    if (!m) return;
    prefault_stop(m);
    if (m->wfd >= 0) close(m->wfd);
    if (m->map) munmap(m->map, m->map_len);
    xc_free(m->xc);
    free(m->xtable);
    moe_tok_free(m->tok);
    if (m->man) { /* the buffers exist only once it was checked */
        free_lazy(m->arena, (size_t)m->man->arena_bytes);
        free_lazy(m->kv, (size_t)m->man->kv_bytes);
    }
    free(m->stats);
    free(m->ids);
    free(m->row_pos);
    free(m->row_slot);
    free(m->pos);
    free(m->live);
    free(m);
}

const char *moe_model_error(const MoeModel *m) { return m ? m->err : "no model (NULL handle)"; }
const MoeManifest *moe_model_manifest(const MoeModel *m) { return m ? m->man : NULL; }
int64_t moe_model_vocab(const MoeModel *m) { return m ? m->man->vocab_size : 0; }
int64_t moe_model_context(const MoeModel *m) { return m ? m->man->context : 0; }
int moert_model_threads(const MoeModel *m) { return m->n_threads; }

MoeStatus moe_model_cache_info(const MoeModel *m, MoeCacheInfo *info) {
    if (!m || !info || !m->xc) return MOE_ERR_ARG;
    memset(info, 0, sizeof *info);
    info->budget = m->budget;
    info->resident = m->resident;
    xc_info(m->xc, info);
    return MOE_OK;
}

MoeStatus moe_model_cache_stats(const MoeModel *m, int layer, MoeCacheStats *stats) {
    if (!m || !stats || !m->xc) return MOE_ERR_ARG;
    return xc_stats(m->xc, layer, stats) ? MOE_OK : MOE_ERR_ARG;
}

const void *moert_model_tokenizer(const MoeModel *m, uint64_t *bytes) {
    *bytes = m->tokenizer_bytes;
    return m->tokenizer;
}

const char *moert_model_chat_template(const MoeModel *m, uint64_t *bytes) {
    *bytes = m->chat_template ? m->chat_template_bytes - 1 : 0;
    return m->chat_template;
}

/* ---- slots ------------------------------------------------------------------------------- */

int moe_model_slots(const MoeModel *m) { return m ? (int)m->man->batch : 0; }
static bool slot_ok(const MoeModel *m, int slot) { return m && slot >= 0 && slot < m->man->batch; }
int64_t moe_slot_pos(const MoeModel *m, int slot) { return slot_ok(m, slot) ? m->pos[slot] : 0; }
const int64_t *moe_slot_stats(const MoeModel *m, int slot) {
    return slot_ok(m, slot) ? m->stats + slot * m->stats_per_slot : NULL;
}
int64_t moe_model_pos(const MoeModel *m) { return moe_slot_pos(m, 0); }
const int64_t *moe_model_stats(const MoeModel *m) { return moe_slot_stats(m, 0); }

/* Slot s holds a new, empty sequence: position 0, stats cleared. */
static void slot_clear(MoeModel *m, int s) {
    m->pos[s] = 0;
    m->live[s] = true;
    memset(m->stats + s * m->stats_per_slot, 0, sizeof(int64_t) * (size_t)m->stats_per_slot);
}

MoeStatus moe_slot_start(MoeModel *m, int *slot) {
    if (!m || !slot) return MOE_ERR_ARG;
    for (int s = 0; s < m->man->batch; s++)
        if (!m->live[s]) {
            slot_clear(m, s);
            *slot = s;
            return MOE_OK;
        }
    *slot = -1;
    return fail(m, MOE_ERR_BUSY, "slot start: all %" PRId64 " slots hold a sequence", m->man->batch);
}

void moe_slot_free(MoeModel *m, int slot) {
    if (slot_ok(m, slot)) m->live[slot] = false;
}

void moe_model_reset(MoeModel *m) {
    if (!m) return;
    slot_clear(m, 0);
    m->step_kind = STEP_NONE;
    m->step_rows = 0;
    m->step_last = NULL;
}

/* ---- steps ------------------------------------------------------------------------------- */

static const float *step_logits(const MoeModel *m) {
    return (const float *)(m->arena + (m->step_kind == STEP_PREFILL ? m->man->logits_prefill : m->man->logits_decode));
}

/* Runs one step on m->ids, m->row_pos and m->row_slot, of which n_valid rows are real tokens. A
 * prefill step computes the logits of every row (all_rows) or, through prefill_last, of row
 * n_valid - 1 only, into row 0; a decode step those of each of its rows. */
static MoeStatus run_step(MoeModel *m, int kind, int64_t n_valid, bool all_rows) {
    MoeStepArgs a = {m->arena, m->weights, m->kv, m->ids, m->row_pos, m->row_slot, m->stats, n_valid - 1,
                     m->xtable, m->xc};
    MoeStepFn fn = kind == STEP_DECODE ? m->prog->decode : all_rows ? m->prog->prefill : m->prog->prefill_last;
    if (m->xc) xc_step_begin(m->xc);
    moert_exec(fn, &a, m->n_threads);
    for (int64_t r = 0; r < n_valid; r++) m->pos[m->row_slot[r]]++;
    m->step_kind = kind;
    m->step_rows = n_valid;
    m->step_last = step_logits(m) + (kind == STEP_PREFILL && all_rows ? n_valid - 1 : 0) * m->man->vocab_size;
    const char *what;
    int e = m->xc ? xc_take_error(m->xc, &what) : 0;
    if (e) return fail(m, MOE_ERR_IO, "%s: cannot read experts: %s", what, strerror(e));
    return MOE_OK;
}

static MoeStatus check_id(MoeModel *m, const char *what, int32_t id, int64_t i) {
    if (id >= 0 && id < m->man->vocab_size) return MOE_OK;
    return fail(m, MOE_ERR_ARG, "%s: token id %d at position %" PRId64 ": must be in [0, %" PRId64 ")", what, id, i,
                m->man->vocab_size);
}

static MoeStatus check_slot(MoeModel *m, const char *what, int slot) {
    if (!slot_ok(m, slot))
        return fail(m, MOE_ERR_ARG, "%s: slot %d: must be in [0, %" PRId64 ")", what, slot, m->man->batch);
    if (!m->live[slot]) return fail(m, MOE_ERR_ARG, "%s: slot %d holds no sequence (start it first)", what, slot);
    return MOE_OK;
}

MoeStatus moe_slot_prefill(MoeModel *m, int slot, const int32_t *ids, int64_t n, MoeRowsFn on_rows, void *user,
                           const float **logits) {
    if (!m) return MOE_ERR_ARG;
    const MoeManifest *mf = m->man;
    if (check_slot(m, "prefill", slot)) return MOE_ERR_ARG;
    if (!ids || n < 1)
        return fail(m, MOE_ERR_ARG, "prefill: expected at least one token id; got %" PRId64, ids ? n : 0);
    for (int64_t i = 0; i < n; i++)
        if (check_id(m, "prefill", ids[i], i)) return MOE_ERR_ARG;
    int64_t pos = m->pos[slot];
    if (n > mf->context - pos)
        return fail(m, MOE_ERR_CONTEXT,
                    "prefill: %" PRId64 " tokens at position %" PRId64 " need %" PRId64
                    " positions; the program was compiled for a context of %" PRId64,
                    n, pos, pos + n, mf->context);
    const int64_t P = mf->prefill_chunk;
    for (int64_t done = 0; done < n;) {
        int64_t rows = n - done < P ? n - done : P;
        memcpy(m->ids, ids + done, sizeof(int32_t) * (size_t)rows);
        for (int64_t r = 0; r < rows; r++) {
            m->row_pos[r] = m->pos[slot] + r;
            m->row_slot[r] = slot;
        }
        if (run_step(m, STEP_PREFILL, rows, on_rows != NULL)) return MOE_ERR_IO; /* every row's logits only when asked */
        if (on_rows) on_rows(user, step_logits(m), done, rows);
        done += rows;
    }
    if (logits) *logits = m->step_last;
    return MOE_OK;
}

MoeStatus moe_prefill(MoeModel *m, const int32_t *ids, int64_t n, MoeRowsFn on_rows, void *user, const float **logits) {
    if (!m) return MOE_ERR_ARG;
    if (!m->live[0]) slot_clear(m, 0);
    return moe_slot_prefill(m, 0, ids, n, on_rows, user, logits);
}

MoeStatus moe_slots_decode(MoeModel *m, int n, const int *slots, const int32_t *ids, const float **logits) {
    if (!m) return MOE_ERR_ARG;
    const MoeManifest *mf = m->man;
    if (!slots || !ids || n < 1 || n > mf->batch)
        return fail(m, MOE_ERR_ARG, "decode: expected 1 to %" PRId64 " slots; got %d", mf->batch, slots && ids ? n : 0);
    /* rows in ascending slot order: row_slot[] sorted, then each input's row found again */
    int64_t rows = 0;
    for (int s = 0; s < mf->batch; s++) {
        int i = 0;
        while (i < n && slots[i] != s) i++;
        if (i == n) continue;
        if (check_slot(m, "decode", s) || check_id(m, "decode", ids[i], m->pos[s])) return MOE_ERR_ARG;
        if (m->pos[s] >= mf->context)
            return fail(m, MOE_ERR_CONTEXT,
                        "decode: slot %d: position %" PRId64 " is past the compiled context of %" PRId64 " tokens",
                        s, m->pos[s], mf->context);
        m->ids[rows] = ids[i];
        m->row_pos[rows] = m->pos[s];
        m->row_slot[rows++] = s;
    }
    if (rows != n) { /* a slot outside [0, B) or given twice */
        for (int i = 0; i < n; i++) {
            if (check_slot(m, "decode", slots[i])) return MOE_ERR_ARG;
            for (int j = 0; j < i; j++)
                if (slots[j] == slots[i]) return fail(m, MOE_ERR_ARG, "decode: slot %d given twice", slots[i]);
        }
    }
    if (run_step(m, STEP_DECODE, rows, true)) return MOE_ERR_IO;
    if (logits)
        for (int i = 0; i < n; i++) {
            int64_t r = 0;
            while (m->row_slot[r] != slots[i]) r++;
            logits[i] = step_logits(m) + r * mf->vocab_size;
        }
    return MOE_OK;
}

MoeStatus moe_decode(MoeModel *m, int32_t id, const float **logits) {
    if (!m) return MOE_ERR_ARG;
    if (!m->live[0]) slot_clear(m, 0);
    return moe_slots_decode(m, 1, (const int[]){0}, &id, logits);
}

const MoeRoute *moe_model_routes(const MoeModel *m, int layer, int64_t *n_rows) {
    if (n_rows) *n_rows = 0;
    if (!m || !n_rows || m->step_kind == STEP_NONE || layer < 0 || (uint32_t)layer >= m->man->n_layers) return NULL;
    int64_t off = m->step_kind == STEP_PREFILL ? m->man->routes_prefill[layer] : m->man->routes_decode[layer];
    if (off < 0) return NULL;
    *n_rows = m->step_rows;
    return (const MoeRoute *)(m->arena + off);
}

/* ---- text -------------------------------------------------------------------------------- */

int32_t moe_model_eos(const MoeModel *m) {
    if (!m) return -1;
    int32_t e = m->tok ? moe_tok_eos(m->tok) : -1;
    return e >= 0 ? e : (int32_t)m->man->eos_token_id;
}

static bool have_tok(MoeModel *m, const char *what) {
    if (m->tok) return true;
    if (!m->tokenizer) {
        fail(m, MOE_ERR_ARG, "%s: no tokenizer embedded (the model folder had none when it was compiled)", what);
        return false;
    }
    char why[200];
    if (!(m->tok = moe_tok_load(m->tokenizer, (size_t)m->tokenizer_bytes, why, sizeof why))) {
        fail(m, MOE_ERR_FORMAT, "%s: %s: embedded tokenizer: %s", what, m->weights_name, why);
        return false;
    }
    return true;
}

int64_t moe_tokenize(MoeModel *m, const char *text, bool add_special, int32_t *ids, int64_t cap) {
    if (!m || !text || (cap > 0 && !ids)) return -1;
    if (!have_tok(m, "tokenize")) return -1;
    int32_t *v;
    size_t n;
    if (moe_tok_encode(m->tok, text, strlen(text), add_special, &v, &n) != MOE_TOK_OK) {
        fail(m, MOE_ERR_NOMEM, "tokenize: out of memory");
        return -1;
    }
    if (cap > 0) memcpy(ids, v, sizeof(int32_t) * (size_t)((int64_t)n < cap ? (int64_t)n : cap));
    free(v);
    return (int64_t)n;
}

int64_t moe_detokenize(MoeModel *m, const int32_t *ids, int64_t n, char *buf, int64_t cap) {
    if (!m || (n > 0 && !ids) || (cap > 0 && !buf) || n < 0) return -1;
    if (!have_tok(m, "detokenize")) return -1;
    char *t;
    size_t len;
    if (moe_tok_decode(m->tok, ids, (size_t)n, true, &t, &len) != MOE_TOK_OK) {
        fail(m, MOE_ERR_NOMEM, "detokenize: out of memory");
        return -1;
    }
    if (cap > 0) {
        size_t k = (int64_t)len < cap ? len : (size_t)cap - 1;
        if (k) memcpy(buf, t, k);
        buf[k] = 0;
    }
    free(t);
    return (int64_t)len;
}
