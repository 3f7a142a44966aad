/* test_expert_cache: the LRU policy of runtime/expert_cache.c, its sizes, and the cache reading
 * experts from a file into the table a step reads (moert_experts_ready, one thread). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expert_cache.h"
#include "test.h"

/* The maps agree, and every slot is on exactly one list: its layer's, or the empty slots'. */
static bool policy_ok(const XcPolicy *p) {
    for (int32_t s = 0; s < p->n_slots; s++)
        if (p->slot_key[s] >= 0 && p->key_slot[p->slot_key[s]] != s) return false;
    for (int32_t k = 0; k < p->n_layers * p->per_layer; k++)
        if (p->key_slot[k] >= 0 && p->slot_key[p->key_slot[k]] != k) return false;
    int32_t n = 0;
    for (int32_t l = 0; l <= p->n_layers; l++) {
        int32_t len = 0;
        for (int32_t s = p->head[l], prev = -1; s >= 0; prev = s, s = p->next[s], len++) {
            if (p->prev[s] != prev) return false;
            if (l < p->n_layers ? p->slot_key[s] / p->per_layer != l : p->slot_key[s] != -1) return false;
        }
        if (len != p->len[l]) return false;
        n += len;
    }
    return n == p->n_slots;
}

#define KEY(l, e) ((l) * 4 + (e))

static void t_policy(void) {
    XcPolicy p;
    int32_t ev;
    EXPECT_TRUE(xc_policy_init(&p, 3, 4, 4)); /* 3 slots, 4 layers of 4 experts */
    EXPECT_EQ(xc_policy_touch(&p, KEY(0, 0)), -1);
    int32_t s0 = xc_policy_insert(&p, KEY(0, 0), 0, &ev);
    EXPECT_EQ(ev, -1);
    xc_policy_insert(&p, KEY(0, 1), 1, &ev);
    EXPECT_EQ(ev, -1);
    xc_policy_insert(&p, KEY(0, 2), 2, &ev);
    EXPECT_EQ(ev, -1); /* empty slots first */
    EXPECT_TRUE(policy_ok(&p));
    /* layer 1 needs expert 0: layer 0 ran last, its least recent goes (0 was touched since) */
    EXPECT_EQ(xc_policy_touch(&p, KEY(0, 0)), s0);
    xc_policy_insert(&p, KEY(1, 0), 0, &ev);
    EXPECT_EQ(ev, KEY(0, 1));
    /* layer 2 needs expert 3: layer 1 ran last (layer 0 runs again before it) */
    xc_policy_insert(&p, KEY(2, 3), 0, &ev);
    EXPECT_EQ(ev, KEY(1, 0));
    /* layer 3 again: layer 2's expert goes; layer 0's two survive for the next step */
    xc_policy_insert(&p, KEY(3, 1), 0, &ev);
    EXPECT_EQ(ev, KEY(2, 3));
    EXPECT_TRUE(xc_policy_touch(&p, KEY(0, 0)) >= 0);
    EXPECT_TRUE(xc_policy_touch(&p, KEY(0, 2)) >= 0);
    /* layer 0 needs 0, 2 (hits, pinned) and 3: not its own (all pinned), so layer 3's */
    xc_policy_insert(&p, KEY(0, 3), 2, &ev);
    EXPECT_EQ(ev, KEY(3, 1));
    /* layer 0, next step, needs only expert 1: its own least recent unneeded one goes first (0) */
    xc_policy_insert(&p, KEY(0, 1), 0, &ev);
    EXPECT_EQ(ev, KEY(0, 0));
    /* every slot pinned: no slot */
    EXPECT_EQ(xc_policy_insert(&p, KEY(0, 0), 3, &ev), -1);
    EXPECT_EQ(ev, -1);
    EXPECT_TRUE(policy_ok(&p));
    xc_policy_free(&p);
}

/* The order the cache uses within one layer: touch the layer's resident experts, then insert the
 * missing ones with the count of the layer's experts needed so far pinned; with at least as many
 * slots as a layer needs, a slot is always found and no needed expert is evicted. */
static void t_policy_layers(void) {
    XcPolicy p;
    EXPECT_TRUE(xc_policy_init(&p, 4, 8, 8));
    unsigned seed = 7;
    int bad = 0;
    for (int step = 0; step < 2000; step++) {
        int32_t need[4], n = 1 + (int32_t)(rand_r(&seed) % 4), layer = step % 8, pinned = 0;
        for (int32_t i = 0; i < n; i++) need[i] = layer * 8 + (int32_t)(rand_r(&seed) % 8);
        for (int32_t i = 0; i < n; i++)
            for (int32_t j = 0; j < i; j++)
                if (need[i] == need[j]) need[i] = -1; /* distinct experts */
        for (int32_t i = 0; i < n; i++)
            if (need[i] >= 0 && xc_policy_touch(&p, need[i]) >= 0) pinned++;
        for (int32_t i = 0; i < n; i++) {
            int32_t ev;
            if (need[i] < 0 || p.key_slot[need[i]] >= 0) continue;
            bad += xc_policy_insert(&p, need[i], pinned++, &ev) < 0;
            for (int32_t j = 0; j < n; j++) bad += ev >= 0 && ev == need[j];
        }
        for (int32_t i = 0; i < n; i++) bad += need[i] >= 0 && p.key_slot[need[i]] < 0;
    }
    EXPECT_EQ(bad, 0);
    EXPECT_TRUE(policy_ok(&p));
    xc_policy_free(&p);
}

enum { NL = 3, E = 4, GU = 5000, DN = 3000 };

static MoeManifest manifest(int64_t P, int64_t B, int64_t k) {
    MoeManifest mf;
    memset(&mf, 0, sizeof mf);
    mf.n_layers = NL, mf.n_exp = E, mf.top_k = k, mf.prefill_chunk = P, mf.batch = B;
    for (int l = 0; l < MOE_MAX_LAYERS; l++) mf.routes_prefill[l] = mf.routes_decode[l] = -1;
    /* layers 0 and 2 MoE, 1 dense; the experts at odd offsets (not 4096-aligned) */
    mf.routes_prefill[0] = mf.routes_prefill[2] = 0;
    mf.experts[0] = (MoeExpertLoc){100, GU, 100 + E * GU, DN};
    mf.experts[2] = (MoeExpertLoc){50000, GU, 50000 + E * GU + 12, DN};
    mf.weights_bytes = 50000 + E * (GU + DN) + 12 + 777;
    return mf;
}

static void t_sizes(void) {
    MoeManifest mf = manifest(3, 1, 1);
    EXPECT_EQ(xc_min_slots(&mf), 3); /* P k = 3 < E */
    mf = manifest(16, 1, 2);
    EXPECT_EQ(xc_min_slots(&mf), E);
    mf = manifest(1, 2, 1);
    EXPECT_EQ(xc_min_slots(&mf), 2); /* decode of B = 2 rows */
    EXPECT_EQ(xc_total_experts(&mf), 2 * E);
    EXPECT_EQ(xc_expert_bytes(&mf), 2 * E * (GU + DN));
    EXPECT_EQ(xc_slot_bytes(&mf), (8192 + 4096) + (4096 + 4096)); /* each rounded up, plus alignment slack */
}

/* The cache against a file: the table points at exactly the file's bytes of each expert. */
static void t_cache(void) {
    const char *dir = test_tmpdir("expert_cache");
    char path[4200];
    snprintf(path, sizeof path, "%s/w.bin", dir);
    MoeManifest mf = manifest(1, 1, 2);
    const uint64_t woff = 8192 + 36; /* the weights section's offset in the file: not aligned either */
    size_t len = (size_t)woff + (size_t)mf.weights_bytes;
    unsigned char *file = malloc(len);
    for (size_t i = 0; i < len; i++) file[i] = (unsigned char)(i * 2654435761u >> 13);
    FILE *f = fopen(path, "wb");
    EXPECT_TRUE(f && fwrite(file, 1, len, f) == len);
    if (f) fclose(f);
    const void *table[NL * 2 * E] = {0};
    char err[256];
    ExpertCache *c = xc_new(&mf, path, "w.bin", woff, 2, table, err, sizeof err);
    EXPECT_TRUE(c != NULL);
    if (!c) return;
    MoeStepArgs a = {.experts = table, .xcache = c};
    /* (layer, experts with tokens): 2 slots, so most steps evict */
    const int32_t steps[][1 + E] = {{0, 1, 0, 1, 0}, {2, 0, 1, 0, 1}, {0, 1, 0, 0, 1}, {0, 0, 0, 1, 1},
                                    {2, 0, 1, 1, 0}, {2, 0, 1, 1, 0}, {0, 1, 0, 1, 0}};
    int ok = 1;
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        int32_t layer = steps[s][0];
        xc_step_begin(c);
        moert_experts_ready(&a, layer, &steps[s][1], 0);
        const MoeExpertLoc *x = &mf.experts[layer];
        for (int e = 0; e < E; e++) {
            if (!steps[s][1 + e]) continue;
            const void *gu = table[layer * 2 * E + e], *dn = table[layer * 2 * E + E + e];
            ok &= gu && !memcmp(gu, file + woff + x->gate_up + e * GU, GU);
            ok &= dn && !memcmp(dn, file + woff + x->down + e * DN, DN);
            ok &= gu && (uintptr_t)gu % 4096 == (woff + (uint64_t)(x->gate_up + e * GU)) % 4096;
        }
    }
    EXPECT_TRUE(ok);
    const char *what;
    EXPECT_EQ(xc_take_error(c, &what), 0);
    MoeCacheStats st, s0, s2;
    EXPECT_TRUE(xc_stats(c, -1, &st));
    EXPECT_TRUE(xc_stats(c, 0, &s0));
    EXPECT_TRUE(xc_stats(c, 2, &s2));
    EXPECT_EQ(st.hits + st.misses, 14); /* two experts a step */
    EXPECT_EQ(s0.hits, 1);              /* step 3's expert 3 (step 2 comes after layer 2 took both slots) */
    EXPECT_EQ(s0.hits + s2.hits, st.hits);
    EXPECT_EQ(s2.hits, 2);              /* step 5 repeats step 4 */
    EXPECT_EQ(st.evictions, st.misses - 2);
    EXPECT_TRUE(st.bytes_read >= st.misses * (GU + DN));
    EXPECT_TRUE(!xc_stats(c, NL, &st));
    xc_free(c);
    free(file);
}

int main(void) {
    t_policy();
    t_policy_layers();
    t_sizes();
    t_cache();
    return test_done();
}
