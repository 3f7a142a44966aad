/* expert_cache: the routed experts of a model run under a memory budget (moe_model_load_opts with
 * memory_bytes, `OUT --memory MB`).
 *
 * Contract. Everything but the routed experts stays resident as without a budget (the weights
 * mmap'd, the arena, KV cache); the routed experts live in a pool (allocated and mapped in at load)
 * of fixed slots, each big enough
 * for the largest expert of any layer (its packed gate_up and down matrices, each with the 4096-byte
 * alignment slack a direct read needs). The step program calls moert_experts_ready (format.h) after
 * each MoE layer's router; it makes every expert the router gave tokens resident, reading the
 * missing ones from the weights file with O_DIRECT (or, where the file system refuses it, buffered
 * reads followed by posix_fadvise(DONTNEED), so the page cache does not keep them either), and
 * points the layer's entries of the step's expert table (MoeStepArgs.experts) at their slots.
 * An expert's bytes land at the same offset modulo 4096 as in the file, so the kernels read the very
 * bytes, equally aligned, they read from the mapping: results are bit-identical to an unbounded run.
 *
 * Policy: one global LRU over the slots (xc_lru_*): a hit moves the expert to the most recent end,
 * a miss takes the least recent slot. The current layer's experts are touched first and its misses
 * take slots from the other end, so the experts a layer needs are never evicted by that layer; the
 * pool must hold the most experts one layer of one step can need, min(E, max(P, B) k) (load refuses
 * a smaller budget). Why LRU: the routers of consecutive tokens (and of one prompt's rows) pick
 * largely the same experts, which LRU keeps with no warm-up and no stale counts; it is O(1) per
 * lookup; and one global pool lets hot layers take slots from cold ones, which per-layer pools
 * cannot. A step never reads an expert twice: each layer's experts are distinct keys, read at most
 * once per layer per step.
 *
 * Reads are issued by all the step's threads at once (each takes every nth of the layer's missing
 * matrices) once thread 0 has published the plan; the step's barrier after the router waits for
 * them, so a layer whose experts are all in the pool adds no barrier. Reads are not started before
 * the router of their layer (no prefetch of layer l+1 yet). */
#ifndef MOERT_EXPERT_CACHE_H
#define MOERT_EXPERT_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "moe.h"

/* ---- the policy: LRU over n_slots slots holding keys 0 .. n_keys-1 (key = layer n_exp + expert) ---- */
typedef struct XcLru {
    int32_t n_slots, n_keys;
    int32_t *slot_key;       /* [n_slots] the key a slot holds, -1 empty */
    int32_t *key_slot;       /* [n_keys] the slot holding a key, -1 not resident */
    int32_t *prev, *next;    /* [n_slots] the recency list, head = least recent, tail = most recent */
    int32_t head, tail;
} XcLru;

bool xc_lru_init(XcLru *l, int32_t n_slots, int32_t n_keys);
void xc_lru_free(XcLru *l);
/* The slot holding key, made the most recent; -1 (nothing changes) when key is not resident. */
int32_t xc_lru_touch(XcLru *l, int32_t key);
/* Puts key (not resident) into the least recent slot, which becomes the most recent; *evicted
 * gets the key that slot held, or -1 when it was empty. Returns the slot. */
int32_t xc_lru_insert(XcLru *l, int32_t key, int32_t *evicted);

/* ---- the cache ---- */
typedef struct ExpertCache ExpertCache;

/* Bytes of one pool slot for mf's experts; 0 when mf has no routed experts. */
int64_t xc_slot_bytes(const MoeManifest *mf);
/* Bytes of all routed experts in the weights section. */
int64_t xc_expert_bytes(const MoeManifest *mf);
/* Slots the pool needs at least: the most experts one layer of one step can use. */
int64_t xc_min_slots(const MoeManifest *mf);
/* Experts of the whole model (a pool of that many slots never evicts). */
int64_t xc_total_experts(const MoeManifest *mf);

/* A cache of n_slots slots for mf's experts, read from path (name in messages) whose weights
 * section starts at file offset weights_off; table: the [n_layers][2][n_exp] expert table of the
 * steps, which it fills. NULL with a one-line message in err on failure. */
ExpertCache *xc_new(const MoeManifest *mf, const char *path, const char *name, uint64_t weights_off,
                    int64_t n_slots, const void **table, char *err, size_t errlen);
void xc_free(ExpertCache *c);
/* Before each step (before its threads start): moert_experts_ready tells the calls apart by it. */
void xc_step_begin(ExpertCache *c);
/* After a step: 0, or the errno of a read that failed during it (cleared; *what names the file). */
int xc_take_error(ExpertCache *c, const char **what);
/* Per-layer counters (layer -1: the sum over layers); false for a bad layer. */
bool xc_stats(const ExpertCache *c, int layer, MoeCacheStats *out);
void xc_info(const ExpertCache *c, MoeCacheInfo *info);

#endif
