/* expert_cache: the expert pool of a memory budget; the contract is atop expert_cache.h.
 *
 *   moert_experts_ready(args, layer, count, ith):      (every thread, after layer's router)
 *     thread 0: for e with count[e] > 0: touch (layer, e); hit: table -> its slot
 *               for the misses: take a slot (xc_policy_insert: evicting an expert, whose table
 *               entries become NULL), table -> the slot, plan a read of gate_up and one of down;
 *               then publish the plan (plan_gen = this call's number)
 *     the others: wait until the plan of their call is published (spin, then yield)
 *     every thread: the planned reads i = ith, ith + nth, ...  (pread, O_DIRECT)
 *   The barrier the step puts after the router (and so after this call) is the only one: a step
 *   whose experts are all in the pool costs one lookup per layer on thread 0, no extra barrier.
 *
 * A read covers the matrix's bytes widened to 4096-byte boundaries (file offset, length and
 * buffer address: O_DIRECT's rules); the slot's buffer sits at the same offset modulo 4096 as the
 * matrix in the file, so the kernels see it exactly aligned as in the mapping. */
#define _GNU_SOURCE /* O_DIRECT */
#include "expert_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { XC_ALIGN = 4096 };

/* ---- the policy ---- */

enum { NIL = -1 };

static void list_unlink(XcPolicy *p, int32_t list, int32_t s) {
    p->len[list]--;
    if (p->prev[s] != NIL) p->next[p->prev[s]] = p->next[s];
    else p->head[list] = p->next[s];
    if (p->next[s] != NIL) p->prev[p->next[s]] = p->prev[s];
    else p->tail[list] = p->prev[s];
}

static void list_push_tail(XcPolicy *p, int32_t list, int32_t s) {
    p->len[list]++;
    p->prev[s] = p->tail[list];
    p->next[s] = NIL;
    if (p->tail[list] != NIL) p->next[p->tail[list]] = s;
    else p->head[list] = s;
    p->tail[list] = s;
}

/* The list slot s is on: its expert's layer, or n_layers (empty slots). */
static int32_t list_of(const XcPolicy *p, int32_t s) {
    return p->slot_key[s] < 0 ? p->n_layers : p->slot_key[s] / p->per_layer;
}

bool xc_policy_init(XcPolicy *p, int32_t n_slots, int32_t n_layers, int32_t per_layer) {
    memset(p, 0, sizeof *p);
    if (n_slots < 1 || n_layers < 1 || per_layer < 1) return false;
    p->n_slots = n_slots, p->n_layers = n_layers, p->per_layer = per_layer;
    const size_t nk = (size_t)n_layers * (size_t)per_layer;
    p->slot_key = malloc(sizeof(int32_t) * (size_t)n_slots);
    p->prev = malloc(sizeof(int32_t) * (size_t)n_slots);
    p->next = malloc(sizeof(int32_t) * (size_t)n_slots);
    p->key_slot = malloc(sizeof(int32_t) * nk);
    p->head = malloc(sizeof(int32_t) * (size_t)(n_layers + 1));
    p->tail = malloc(sizeof(int32_t) * (size_t)(n_layers + 1));
    p->len = calloc((size_t)(n_layers + 1), sizeof(int32_t));
    if (!p->slot_key || !p->prev || !p->next || !p->key_slot || !p->head || !p->tail || !p->len) {
        xc_policy_free(p);
        return false;
    }
    for (int32_t l = 0; l <= n_layers; l++) p->head[l] = p->tail[l] = NIL;
    for (size_t k = 0; k < nk; k++) p->key_slot[k] = NIL;
    for (int32_t s = 0; s < n_slots; s++) {
        p->slot_key[s] = NIL;
        list_push_tail(p, n_layers, s);
    }
    return true;
}

void xc_policy_free(XcPolicy *p) {
    free(p->slot_key);
    free(p->key_slot);
    free(p->prev);
    free(p->next);
    free(p->head);
    free(p->tail);
    free(p->len);
    memset(p, 0, sizeof *p);
}

int32_t xc_policy_touch(XcPolicy *p, int32_t key) {
    int32_t s = p->key_slot[key];
    if (s < 0) return NIL;
    int32_t l = list_of(p, s);
    list_unlink(p, l, s);
    list_push_tail(p, l, s);
    return s;
}

int32_t xc_policy_insert(XcPolicy *p, int32_t key, int32_t pinned, int32_t *evicted) {
    const int32_t c = key / p->per_layer;
    int32_t s = p->head[p->n_layers]; /* an empty slot first */
    if (s == NIL && p->len[c] > pinned) s = p->head[c]; /* key's layer runs again last of all */
    for (int32_t d = p->n_layers - 1; s == NIL && d >= 1; d--) /* then the one that ran before it, ... */
        s = p->head[(c + d) % p->n_layers];
    *evicted = NIL;
    if (s == NIL) return NIL; /* every slot is pinned: the pool is too small */
    list_unlink(p, list_of(p, s), s);
    *evicted = p->slot_key[s];
    if (*evicted >= 0) p->key_slot[*evicted] = NIL;
    p->slot_key[s] = key;
    p->key_slot[key] = s;
    list_push_tail(p, c, s);
    return s;
}

/* ---- sizes ---- */

static bool is_moe(const MoeManifest *mf, uint32_t l) { return mf->n_exp > 0 && mf->routes_prefill[l] >= 0; }

/* Bytes a direct read of n bytes at any file offset may span: n widened to XC_ALIGN both ways. */
static int64_t span_bytes(int64_t n) { return (n + XC_ALIGN - 1) / XC_ALIGN * XC_ALIGN + XC_ALIGN; }

static void slot_areas(const MoeManifest *mf, int64_t *gu, int64_t *dn) {
    *gu = *dn = 0;
    for (uint32_t l = 0; l < mf->n_layers; l++) {
        if (!is_moe(mf, l)) continue;
        int64_t a = span_bytes(mf->experts[l].gate_up_bytes), b = span_bytes(mf->experts[l].down_bytes);
        *gu = a > *gu ? a : *gu;
        *dn = b > *dn ? b : *dn;
    }
}

int64_t xc_slot_bytes(const MoeManifest *mf) {
    int64_t gu, dn;
    slot_areas(mf, &gu, &dn);
    return gu + dn;
}

int64_t xc_expert_bytes(const MoeManifest *mf) {
    int64_t t = 0;
    for (uint32_t l = 0; l < mf->n_layers; l++)
        if (is_moe(mf, l)) t += mf->n_exp * (mf->experts[l].gate_up_bytes + mf->experts[l].down_bytes);
    return t;
}

int64_t xc_min_slots(const MoeManifest *mf) {
    int64_t rows = mf->prefill_chunk > mf->batch ? mf->prefill_chunk : mf->batch, need = rows * mf->top_k;
    return need < mf->n_exp ? need : mf->n_exp;
}

int64_t xc_total_experts(const MoeManifest *mf) {
    int64_t n = 0;
    for (uint32_t l = 0; l < mf->n_layers; l++) n += is_moe(mf, l) ? mf->n_exp : 0;
    return n;
}

/* ---- the cache ---- */

typedef struct XcRead {
    char *dst;               /* XC_ALIGN-aligned */
    uint64_t off;            /* file offset, XC_ALIGN-aligned */
    size_t len;              /* a multiple of XC_ALIGN */
    size_t need;             /* bytes from off that must arrive (the matrix's end) */
} XcRead;

struct ExpertCache {
    const MoeManifest *man;
    int fd;
    int direct;              /* fd has O_DIRECT */
    int fd_buf;              /* without O_DIRECT: for a read O_DIRECT refuses (EINVAL) */
    const char *name;
    uint64_t woff;           /* file offset of the weights section */
    char *pool;              /* [n_slots][slot_bytes]: gate_up area, then down area */
    int64_t slot_bytes, gu_area;
    XcPolicy pol;
    const void **table;      /* [n_layers][2][n_exp] */
    XcRead *reads;           /* [2 n_exp] this layer's planned reads */
    int32_t n_reads;
    double t0;               /* thread 0's start of the current lookup */
    int layer;               /* the layer being made ready */
    MoeCacheStats *stats;    /* [n_layers] */
    uint64_t step;           /* steps begun (xc_step_begin, before the step's threads start) */
    _Atomic uint64_t plan_gen; /* the (step, layer) whose plan thread 0 has published: plan_key() */
    int err;                 /* errno of the first failed read since the last xc_take_error */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ExpertCache *xc_new(const MoeManifest *mf, const char *path, const char *name, uint64_t weights_off,
                    int64_t n_slots, const void **table, char *err, size_t errlen) {
    ExpertCache *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "expert cache: out of memory");
        return NULL;
    }
    c->man = mf;
    c->name = name;
    c->woff = weights_off;
    c->table = table;
    c->fd = c->fd_buf = -1;
    int64_t dn;
    slot_areas(mf, &c->gu_area, &dn);
    c->slot_bytes = c->gu_area + dn;
    c->stats = calloc(mf->n_layers, sizeof *c->stats);
    c->reads = calloc((size_t)(2 * mf->n_exp), sizeof *c->reads);
    atomic_init(&c->plan_gen, 0);
    size_t pool_len = (size_t)(n_slots * c->slot_bytes);
    void *p = NULL;
    if (!c->stats || !c->reads || !xc_policy_init(&c->pol, (int32_t)n_slots, (int32_t)mf->n_layers, (int32_t)mf->n_exp) ||
        posix_memalign(&p, MOE_HUGE_ALIGN, pool_len)) {
        snprintf(err, errlen, "expert cache: cannot allocate a pool of %" PRId64 " slots of %" PRId64 " bytes", n_slots,
                 c->slot_bytes);
        xc_free(c);
        return NULL;
    }
    c->pool = p;
#ifdef MADV_HUGEPAGE
    madvise(p, pool_len / MOE_HUGE_ALIGN * MOE_HUGE_ALIGN, MADV_HUGEPAGE);
#endif
    /* the pool is the budget: map it in now, so that the kernel's work of finding (huge) pages
     * happens at load and not in the steps that first read into each slot (measured on the bench
     * preset with a budget for every expert: a first prefill of 0.6 to 3.5 s instead of 0.6) */
    bool populated = false;
#ifdef MADV_POPULATE_WRITE
    populated = madvise(p, pool_len, MADV_POPULATE_WRITE) == 0;
#endif
    if (!populated) memset(p, 0, pool_len);
#ifdef O_DIRECT
    c->fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    c->direct = c->fd >= 0;
#endif
    c->fd_buf = open(path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0) c->fd = c->fd_buf; /* e.g. tmpfs refuses O_DIRECT */
    if (c->fd < 0) {
        snprintf(err, errlen, "%s: cannot open for reading experts: %s", name, strerror(errno));
        xc_free(c);
        return NULL;
    }
    return c;
}

void xc_free(ExpertCache *c) {
    if (!c) return;
    if (c->fd >= 0 && c->fd != c->fd_buf) close(c->fd);
    if (c->fd_buf >= 0) close(c->fd_buf);
    free(c->pool);
    free(c->reads);
    free(c->stats);
    xc_policy_free(&c->pol);
    free(c);
}

void xc_step_begin(ExpertCache *c) { c->step++; }

int xc_take_error(ExpertCache *c, const char **what) {
    int e = c->err;
    c->err = 0;
    *what = c->name;
    return e;
}

bool xc_stats(const ExpertCache *c, int layer, MoeCacheStats *out) {
    memset(out, 0, sizeof *out);
    if (layer < -1 || layer >= (int)c->man->n_layers) return false;
    for (int l = layer < 0 ? 0 : layer; l < (layer < 0 ? (int)c->man->n_layers : layer + 1); l++) {
        const MoeCacheStats *s = &c->stats[l];
        out->hits += s->hits, out->misses += s->misses, out->evictions += s->evictions;
        out->bytes_read += s->bytes_read, out->wait_s += s->wait_s;
    }
    return true;
}

void xc_info(const ExpertCache *c, MoeCacheInfo *info) {
    info->slots = c->pol.n_slots;
    info->slot_bytes = c->slot_bytes;
    info->experts = xc_total_experts(c->man);
    info->expert_bytes = xc_expert_bytes(c->man);
    info->direct = c->direct;
}

/* Plans the direct read of the n bytes at weights offset woff into area (XC_ALIGN-aligned);
 * returns where the matrix starts in area. */
static const char *plan_read(ExpertCache *c, char *area, int64_t off, int64_t n) {
    uint64_t file = c->woff + (uint64_t)off, start = file / XC_ALIGN * XC_ALIGN;
    uint64_t end = (file + (uint64_t)n + XC_ALIGN - 1) / XC_ALIGN * XC_ALIGN;
    c->reads[c->n_reads++] = (XcRead){area, start, (size_t)(end - start), (size_t)(file + (uint64_t)n - start)};
    c->stats[c->layer].bytes_read += (int64_t)(end - start);
    return area + (file - start);
}

/* Thread 0: the lookups of layer's experts and the plan of the reads of the missing ones. */
static void plan(ExpertCache *c, int layer, const int32_t *count) {
    const MoeManifest *mf = c->man;
    const int64_t E = mf->n_exp;
    const MoeExpertLoc *xl = &mf->experts[layer];
    const void **tab = c->table + (int64_t)layer * 2 * E;
    MoeCacheStats *st = &c->stats[layer];
    c->layer = layer;
    c->n_reads = 0;
    int32_t pinned = 0; /* the layer's experts needed now: the most recent of its list */
    for (int64_t e = 0; e < E; e++) /* hits first: they become the most recent, safe from this layer's misses */
        if (count[e] > 0 && xc_policy_touch(&c->pol, (int32_t)(layer * E + e)) >= 0) st->hits++, pinned++;
    for (int64_t e = 0; e < E; e++) {
        int32_t key = (int32_t)(layer * E + e), evicted;
        if (count[e] <= 0 || c->pol.key_slot[key] >= 0) continue;
        int32_t s = xc_policy_insert(&c->pol, key, pinned++, &evicted);
        if (s < 0) { /* cannot happen: load refuses a pool smaller than one layer's experts */
            c->err = ENOMEM;
            continue;
        }
        if (evicted >= 0) { /* its table entries would point at another expert's bytes */
            c->table[(evicted / E) * 2 * E + evicted % E] = NULL;
            c->table[(evicted / E) * 2 * E + E + evicted % E] = NULL;
            st->evictions++;
        }
        st->misses++;
        char *slot = c->pool + s * c->slot_bytes;
        tab[e] = plan_read(c, slot, xl->gate_up + e * xl->gate_up_bytes, xl->gate_up_bytes);
        tab[E + e] = plan_read(c, slot + c->gu_area, xl->down + e * xl->down_bytes, xl->down_bytes);
    }
    for (int64_t e = 0; e < E; e++) /* hits: their slot (a miss's entry was set above) */
        if (count[e] > 0) {
            int32_t s = c->pol.key_slot[layer * E + e];
            if (s < 0) continue;
            const char *slot = c->pool + s * c->slot_bytes;
            uint64_t gu = c->woff + (uint64_t)(xl->gate_up + e * xl->gate_up_bytes);
            uint64_t dn = c->woff + (uint64_t)(xl->down + e * xl->down_bytes);
            tab[e] = slot + gu % XC_ALIGN;
            tab[E + e] = slot + c->gu_area + dn % XC_ALIGN;
        }
}

/* One planned read; a failure is kept in c->err (the step finishes, the runtime reports it). */
static void do_read(ExpertCache *c, const XcRead *r) {
    size_t got = 0;
    int fd = c->fd;
    while (got < r->need) {
        ssize_t n = pread(fd, r->dst + got, r->len - got, (off_t)(r->off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EINVAL && fd != c->fd_buf) { /* O_DIRECT refused this read: buffered */
            fd = c->fd_buf;
            continue;
        }
        if (n <= 0) { /* 0: the file ended before the matrix did */
            __atomic_store_n(&c->err, n < 0 ? errno : EIO, __ATOMIC_RELAXED);
            return;
        }
        got += (size_t)n;
    }
#ifdef POSIX_FADV_DONTNEED
    if (fd == c->fd_buf) posix_fadvise(fd, (off_t)r->off, (off_t)r->len, POSIX_FADV_DONTNEED);
#endif
}

__attribute__((visibility("default"))) void moert_experts_ready(const MoeStepArgs *a, int32_t layer,
                                                                 const int32_t *count, int32_t ith) {
    ExpertCache *c = a->xcache;
    if (!c) return; /* no budget: the table points into the mapped weights */
    const uint64_t key = c->step * MOE_MAX_LAYERS + (uint64_t)layer + 1; /* this call, in every thread */
    const int32_t nth = (int32_t)omp_get_num_threads();
    if (ith == 0) {
        c->t0 = now_s();
        plan(c, layer, count);
        atomic_store_explicit(&c->plan_gen, key, memory_order_release);
    } else {
        for (int spin = 0; atomic_load_explicit(&c->plan_gen, memory_order_acquire) != key; spin++)
            if (spin > 1000) sched_yield();
    }
    const int32_t n = c->n_reads;
    for (int32_t i = ith; i < n; i += nth) do_read(c, &c->reads[i]);
    if (ith == 0) c->stats[layer].wait_s += now_s() - c->t0;
}
