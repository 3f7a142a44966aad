/* hash: the model hash that ties a compiled program to its weights (format.h), as a stream.
 * The bytes are taken as little-endian 64-bit words, each mixed in by a multiply-xor (a few GB/s);
 * the last n % 8 bytes one at a time. Streaming keeps a partial word across calls, so the result
 * depends only on the bytes, never on how they were split into calls: the compiler hashes the
 * weights as it writes them in chunks, and the runtime (--verify) over the mapped file in one call.
 * Not cryptographic: it detects corruption (flipped bytes, truncation, another model), not tampering.
 * Header-only: the compiler and the runtime both include it. */
#ifndef MOE_HASH_H
#define MOE_HASH_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MOE_HASH_BASIS 0xcbf29ce484222325ull
#define MOE_HASH_PRIME 0x100000001b3ull

typedef struct MoeHash {
    uint64_t h;
    uint8_t part[8];  /* a word not yet complete */
    size_t n_part;
} MoeHash;

static inline void moe_hash_init(MoeHash *s, uint64_t seed) {
    s->h = seed;
    s->n_part = 0;
}

static inline uint64_t moe_hash_word(uint64_t h, const uint8_t *b) {
    uint64_t w;
    memcpy(&w, b, 8);
    h = (h ^ w) * MOE_HASH_PRIME;
    return h ^ (h >> 29);
}

static inline void moe_hash_update(MoeHash *s, const void *p, size_t n) {
    const uint8_t *b = p;
    if (s->n_part) { /* complete the partial word first */
        size_t take = 8 - s->n_part < n ? 8 - s->n_part : n;
        memcpy(s->part + s->n_part, b, take);
        s->n_part += take;
        b += take;
        n -= take;
        if (s->n_part < 8) return;
        s->h = moe_hash_word(s->h, s->part);
        s->n_part = 0;
    }
    uint64_t h = s->h;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) h = moe_hash_word(h, b + i);
    s->h = h;
    memcpy(s->part, b + i, n - i);
    s->n_part = n - i;
}

static inline uint64_t moe_hash_final(const MoeHash *s) {
    uint64_t h = s->h;
    for (size_t i = 0; i < s->n_part; i++) h = (h ^ s->part[i]) * MOE_HASH_PRIME;
    return h;
}

/* The seed of a model's hash: the family name ("mixtral"), so equal weights of two families differ. */
static inline uint64_t moe_hash_seed(const char *family) {
    MoeHash s;
    moe_hash_init(&s, MOE_HASH_BASIS);
    moe_hash_update(&s, family, strlen(family));
    return moe_hash_final(&s);
}

#endif
