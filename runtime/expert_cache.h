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
 * Policy (xc_policy_*): one pool for all layers; a miss takes an empty slot, else evicts the least
 * recently used expert of the layer that will run again last: the missing expert's own layer (its
 * experts not needed in this step), else the layer before it in the step's fixed layer order (the
 * one that ran last), then the one before that, and so on. The order in which layers run is the one
 * thing known about the future: evicting what is needed farthest ahead is Belady's rule at the
 * granularity of layers; within a layer the future routes are unknown, and LRU keeps the experts
 * consecutive tokens share. Plain LRU over all slots would evict the experts of the layer about to
 * run next, since the layers are scanned cyclically: with a pool of one layer's experts it never
 * hits (simulated, 8 layers, top-2 of 8, uniform routing, a pool of 8 / 16 / 32
 * slots: LRU hits 0% / 25% / 44%, this policy 11% / 25% / 50%; with skewed routing 0% / 36% / 59%
 * against 15% / 36% / 62%; skewed: expert e picked with weight 1 / (e + 1)). A layer's hits are
 * touched before its misses take slots and are pinned, so a layer never evicts an expert it needs
 * in the same step; the pool must hold the most experts one layer of one step can need,
 * min(E, max(P, B) k) (load refuses a smaller budget). A step never reads an expert twice: each layer's experts are distinct keys, read at most
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

/* ---- the policy: n_slots slots over keys layer per_layer + expert, layers 0 .. n_layers-1 ---- */
typedef struct XcPolicy {
    int32_t n_slots, n_layers, per_layer;
    int32_t *slot_key;       /* [n_slots] the key a slot holds, -1 empty */
    int32_t *key_slot;       /* [n_layers per_layer] the slot holding a key, -1 not resident */
    int32_t *prev, *next;    /* [n_slots] links of the list a slot is on */
    int32_t *head, *tail;    /* [n_layers + 1] each layer's slots from least to most recently used;
                              * [n_layers]: the empty slots */
    int32_t *len;            /* [n_layers + 1] the lists' lengths */
} XcPolicy;

bool xc_policy_init(XcPolicy *p, int32_t n_slots, int32_t n_layers, int32_t per_layer);
void xc_policy_free(XcPolicy *p);
/* The slot holding key, made its layer's most recent; -1 (nothing changes) when not resident. */
int32_t xc_policy_touch(XcPolicy *p, int32_t key);
/* Puts key (not resident; its layer is running) into a slot: an empty one, else the least recent
 * expert of the layer that runs again last (header comment), where the pinned most recent experts
 * of key's own layer (those this layer needs now, touched or inserted before) are not candidates;
 * *evicted gets the key that slot held, or -1. Returns the slot, or -1 when every slot is pinned
 * (a pool too small). */
int32_t xc_policy_insert(XcPolicy *p, int32_t key, int32_t pinned, int32_t *evicted);

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
