/* test_expert_cache: the LRU policy of runtime/expert_cache.c, its sizes, and the cache reading
 * experts from a file into the table a step reads (moert_experts_ready, one thread). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expert_cache.h"
#include "test.h"

/* Key k is resident in slot s, and the two maps agree. */
static bool lru_ok(const XcLru *l) {
    for (int32_t s = 0; s < l->n_slots; s++)
        if (l->slot_key[s] >= 0 && l->key_slot[l->slot_key[s]] != s) return false;
    for (int32_t k = 0; k < l->n_keys; k++)
        if (l->key_slot[k] >= 0 && l->slot_key[l->key_slot[k]] != k) return false;
    int32_t n = 0; /* the recency list holds every slot once */
    for (int32_t s = l->head, prev = -1; s >= 0; prev = s, s = l->next[s], n++)
        if (l->prev[s] != prev) return false;
    return n == l->n_slots;
}

static void t_lru(void) {
    XcLru l;
    int32_t ev;
    EXPECT_TRUE(xc_lru_init(&l, 3, 10));
    EXPECT_EQ(xc_lru_touch(&l, 0), -1);
    int32_t s0 = xc_lru_insert(&l, 0, &ev);
    EXPECT_EQ(ev, -1);
    xc_lru_insert(&l, 1, &ev);
    EXPECT_EQ(ev, -1);
    xc_lru_insert(&l, 2, &ev);
    EXPECT_EQ(ev, -1); /* empty slots go first */
    EXPECT_EQ(xc_lru_touch(&l, 0), s0); /* 0 becomes the most recent: 1 is the least */
    int32_t s3 = xc_lru_insert(&l, 3, &ev);
    EXPECT_EQ(ev, 1);
    EXPECT_EQ(xc_lru_touch(&l, 1), -1);
    EXPECT_EQ(l.key_slot[3], s3);
    xc_lru_insert(&l, 4, &ev);
    EXPECT_EQ(ev, 2);
    xc_lru_insert(&l, 5, &ev);
    EXPECT_EQ(ev, 0); /* touched once, then older than 3 and 4 */
    EXPECT_TRUE(lru_ok(&l));
    xc_lru_free(&l);
}

/* The order the cache uses within one layer: touch the layer's resident experts, then insert the
 * missing ones; with at least as many slots as the layer needs, no needed expert is evicted. */
static void t_lru_layer(void) {
    XcLru l;
    EXPECT_TRUE(xc_lru_init(&l, 4, 64));
    unsigned seed = 7;
    int bad = 0;
    for (int step = 0; step < 500; step++) {
        int32_t need[4], n = 1 + (int32_t)(rand_r(&seed) % 4), layer = step % 8;
        for (int32_t i = 0; i < n; i++) need[i] = layer * 8 + ((step * 3 + i * 5) % 8);
        for (int32_t i = 0; i < n; i++)
            for (int32_t j = 0; j < i; j++)
                if (need[i] == need[j]) need[i] = -1; /* distinct experts */
        for (int32_t i = 0; i < n; i++)
            if (need[i] >= 0) xc_lru_touch(&l, need[i]);
        for (int32_t i = 0; i < n; i++) {
            int32_t ev;
            if (need[i] < 0 || l.key_slot[need[i]] >= 0) continue;
            xc_lru_insert(&l, need[i], &ev);
            for (int32_t j = 0; j < n; j++) bad += ev >= 0 && ev == need[j];
        }
        for (int32_t i = 0; i < n; i++) bad += need[i] >= 0 && l.key_slot[need[i]] < 0;
    }
    EXPECT_EQ(bad, 0);
    EXPECT_TRUE(lru_ok(&l));
    xc_lru_free(&l);
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
    t_lru();
    t_lru_layer();
    t_sizes();
    t_cache();
    return test_done();
}
