/* tokenizer.c: load a tokenizer blob; encode (added tokens, normalizer, split, BPE) and decode.
 * See tokenizer.h for the blob format and the pipeline. The rules follow HF tokenizers 0.23
 * exactly, including its quirks (noted where they appear). Sections, in data-flow order:
 *   utilities (growable buffers, UTF-8) - blob reader - load - normalizers (NFC, Prepend,
 *   Replace) - the split regex - BPE - encode - decode (shared by moe_tok_decode and streams). */
#include "tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode_tables.h"

/* ===================================================================== utilities */

/* Grows *p (elements of size elem, capacity *cap) to hold at least need; false on OOM. */
static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return false;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

typedef struct Bytes {
    char *p;
    size_t n, cap;
} Bytes;

static bool bytes_put(Bytes *b, const void *s, size_t n) {
    if (!grow((void **)&b->p, &b->cap, b->n + n + 1, 1)) return false;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

enum { UTF8_BAD = -1, UTF8_SHORT = -2 };

/* Decodes one UTF-8 sequence at p[0..n), n >= 1. Returns the code point and sets *adv to its
 * length; or UTF8_BAD with *adv = the length of the invalid maximal subpart (one U+FFFD); or
 * UTF8_SHORT when p[0..n) is a valid but incomplete start of a character (*adv = n). */
static int32_t utf8_step(const uint8_t *p, size_t n, size_t *adv) {
    uint8_t b0 = p[0], lo = 0x80, hi = 0xBF;
    size_t need;
    uint32_t cp;
    if (b0 < 0x80) {
        *adv = 1;
        return b0;
    } else if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1, cp = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2, cp = b0 & 0x0Fu;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3, cp = b0 & 0x07u;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        *adv = 1;
        return UTF8_BAD;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) {
            *adv = n;
            return UTF8_SHORT;
        }
        if (p[k] < lo || p[k] > hi) {
            *adv = k;
            return UTF8_BAD;
        }
        lo = 0x80, hi = 0xBF;
        cp = cp << 6 | (p[k] & 0x3Fu);
    }
    *adv = need + 1;
    return (int32_t)cp;
}

static bool utf8_valid(const uint8_t *p, size_t n) {
    size_t i = 0, adv;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if (utf8_step(p + i, n - i, &adv) < 0) return false;
        i += adv;
    }
    return true;
}

/* Decodes the character at p[i] of valid UTF-8; sets *len. */
static inline uint32_t cp_at(const uint8_t *p, size_t i, size_t *len) {
    uint8_t b = p[i];
    if (b < 0x80) return *len = 1, b;
    if (b < 0xE0) return *len = 2, (uint32_t)(b & 0x1F) << 6 | (p[i + 1] & 0x3F);
    if (b < 0xF0) return *len = 3, (uint32_t)(b & 0x0F) << 12 | (uint32_t)(p[i + 1] & 0x3F) << 6 | (p[i + 2] & 0x3F);
    return *len = 4, (uint32_t)(b & 0x07) << 18 | (uint32_t)(p[i + 1] & 0x3F) << 12 | (uint32_t)(p[i + 2] & 0x3F) << 6 |
                         (p[i + 3] & 0x3F);
}

static size_t utf8_put(uint8_t *out, uint32_t cp) {
    if (cp < 0x80) return out[0] = (uint8_t)cp, 1;
    if (cp < 0x800) return out[0] = (uint8_t)(0xC0 | cp >> 6), out[1] = (uint8_t)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12), out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18), out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)), out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static uint64_t hash_bytes(const uint8_t *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 29);
}

static inline uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 31);
}

/* ===================================================================== the tokenizer */

typedef struct Str {
    const char *p;
    uint32_t n;
} Str;

typedef struct NormStep {
    uint32_t kind;
    Str a, b; /* Prepend: a; Replace: a -> b */
} NormStep;

typedef struct MergeSlot {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    uint32_t rank;
    int32_t result;
} MergeSlot;

struct MoeTokenizer {
    uint8_t *blob; /* a private copy of the blob: token strings point into it */
    int32_t n_vocab;
    uint32_t model_flags;
    int32_t unk_id, bos_id, eos_id;
    uint32_t n_norm;
    NormStep norm[16];
    uint32_t pretok, max_digits;
    bool byte_level;
    uint32_t n_prefix, n_suffix;
    int32_t prefix[16], suffix[16];
    /* decoder */
    uint32_t dec_kind, n_dec_replace, strip_start;
    Str dec_replace[16][2];
    bool dec_byte_fallback;
    Str strip_content;
    /* tokens: id -> string (into blob), flags */
    uint32_t *tok_off, *tok_len;
    uint8_t *tok_flags;
    /* decoded form of each token: bytes in dpool, or a single byte (dbyte >= 0) */
    char *dpool;
    uint32_t *d_off, *d_len;
    int16_t *d_byte;
    /* model vocab: open addressing, ids (-1 empty) */
    int32_t *vslots;
    uint64_t vmask;
    /* merges: (left, right) -> (rank, result) */
    MergeSlot *mslots;
    uint64_t mmask;
    uint32_t n_merges;
    int32_t *rank_result; /* [n_merges] merge rank -> result id */
    /* SentencePiece-style chunking (see ws_chunks): the word-start character, or n = 0 */
    Str ws;
    /* added tokens: ids sorted by (first byte, length descending); bucket [first[b], first[b+1]) */
    int32_t *added;
    uint32_t added_first[257];
    /* per byte: byte-level symbol id (the mapped character's id) and byte-fallback id <0xNN> */
    int32_t bl_id[256], bf_id[256];
    uint8_t bl_utf8[256][2], bl_ulen[256]; /* GPT-2's byte -> printable character, as UTF-8 */
    int32_t ascii_id[128];                 /* model-vocab id of each one-byte string, or -1 */
};

static inline const char *tok_str(const MoeTokenizer *t, int32_t id) { return (const char *)t->blob + t->tok_off[id]; }

static int32_t vocab_find(const MoeTokenizer *t, const void *s, size_t n) {
    uint64_t h = hash_bytes(s, n) & t->vmask;
    for (;; h = (h + 1) & t->vmask) {
        int32_t id = t->vslots[h];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && memcmp(tok_str(t, id), s, n) == 0) return id;
    }
}

static inline const MergeSlot *merge_find(const MoeTokenizer *t, int32_t l, int32_t r) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint64_t h = hash_pair(key) & t->mmask;; h = (h + 1) & t->mmask) {
        const MergeSlot *m = &t->mslots[h];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
    }
}

/* ===================================================================== blob reader */

typedef struct Reader {
    const uint8_t *p;
    size_t n, off;
    char *err;
    size_t errlen;
    bool ok;
} Reader;

static void rd_fail(Reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rd_fail(Reader *r, const char *fmt, ...) {
    if (!r->ok) return;
    r->ok = false;
    if (!r->err || !r->errlen) return;
    int k = snprintf(r->err, r->errlen, "tokenizer blob: ");
    if (k < 0 || (size_t)k >= r->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + k, r->errlen - (size_t)k, fmt, ap);
    va_end(ap);
}

static bool rd_need(Reader *r, size_t k, const char *what) {
    if (!r->ok) return false;
    if (r->n - r->off < k) {
        rd_fail(r, "truncated at byte %zu reading %s", r->off, what);
        return false;
    }
    return true;
}

static uint32_t rd_u32(Reader *r, const char *what) {
    if (!rd_need(r, 4, what)) return 0;
    const uint8_t *q = r->p + r->off;
    r->off += 4;
    return (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
}

static uint8_t rd_u8(Reader *r, const char *what) {
    if (!rd_need(r, 1, what)) return 0;
    return r->p[r->off++];
}

/* An id that must be -1 (when allow_none) or in [0, n_vocab). */
static int32_t rd_id(Reader *r, int32_t n_vocab, bool allow_none, const char *what) {
    uint32_t u = rd_u32(r, what);
    int32_t v = (int32_t)u;
    if (!r->ok) return -1;
    if (v == -1 && allow_none) return -1;
    if (v < 0 || v >= n_vocab) {
        rd_fail(r, "%s: id %d out of range [0, %d)", what, v, n_vocab);
        return -1;
    }
    return v;
}

/* A string; valid UTF-8 is required. Returns its offset in the blob. */
static Str rd_str(Reader *r, const char *what) {
    Str s = {"", 0};
    uint32_t n = rd_u32(r, what);
    if (!rd_need(r, n, what)) return s;
    s.p = (const char *)r->p + r->off;
    s.n = n;
    if (!utf8_valid(r->p + r->off, n)) rd_fail(r, "%s at byte %zu: not valid UTF-8", what, r->off);
    r->off += n;
    return s;
}

/* ===================================================================== load */

static bool fail_oom(Reader *r) {
    rd_fail(r, "out of memory");
    return false;
}

static void read_header(Reader *r, MoeTokenizer *t) {
    if (!rd_need(r, 8, "magic")) return;
    if (memcmp(r->p, MOE_TOK_MAGIC, 8) != 0) {
        rd_fail(r, "bad magic; expected \"%s\"", MOE_TOK_MAGIC);
        return;
    }
    r->off = 8;
    uint32_t version = rd_u32(r, "version");
    if (r->ok && version != MOE_TOK_VERSION) rd_fail(r, "version %u; expected %d", version, MOE_TOK_VERSION);
    uint32_t nv = rd_u32(r, "n_vocab");
    if (r->ok && (nv == 0 || nv > (r->n - r->off) / 5 || nv > (1u << 28)))
        rd_fail(r, "n_vocab %u impossible for a blob of %zu bytes", nv, r->n);
    t->n_vocab = (int32_t)nv;
    t->model_flags = rd_u32(r, "model flags");
    if (r->ok && t->model_flags > 7) rd_fail(r, "unknown model flags 0x%x", t->model_flags);
    t->unk_id = rd_id(r, t->n_vocab, true, "unk_id");
    t->bos_id = rd_id(r, t->n_vocab, true, "bos_id");
    t->eos_id = rd_id(r, t->n_vocab, true, "eos_id");

    t->n_norm = rd_u32(r, "n_norm");
    if (r->ok && t->n_norm > 16) rd_fail(r, "%u normalizer steps; at most 16", t->n_norm);
    for (uint32_t i = 0; i < t->n_norm && r->ok; i++) {
        NormStep *st = &t->norm[i];
        st->kind = rd_u32(r, "normalizer kind");
        if (st->kind == MOE_TOK_NORM_PREPEND) {
            st->a = rd_str(r, "prepend");
        } else if (st->kind == MOE_TOK_NORM_REPLACE) {
            st->a = rd_str(r, "replace pattern");
            st->b = rd_str(r, "replace content");
            if (r->ok && st->a.n == 0) rd_fail(r, "empty replace pattern");
        } else if (st->kind != MOE_TOK_NORM_NFC && r->ok) {
            rd_fail(r, "unknown normalizer kind %u", st->kind);
        }
    }
    t->pretok = rd_u32(r, "pre-tokenizer");
    t->max_digits = rd_u32(r, "max digits");
    t->byte_level = rd_u32(r, "byte_level") != 0;
    if (r->ok && t->pretok > MOE_TOK_PRE_SPLIT_QWEN) rd_fail(r, "unknown pre-tokenizer kind %u", t->pretok);
    if (r->ok && t->pretok == MOE_TOK_PRE_SPLIT_QWEN && (t->max_digits < 1 || t->max_digits > 16))
        rd_fail(r, "max digits %u; expected 1..16", t->max_digits);

    uint32_t *counts[2] = {&t->n_prefix, &t->n_suffix};
    int32_t *lists[2] = {t->prefix, t->suffix};
    for (int k = 0; k < 2; k++) {
        *counts[k] = rd_u32(r, "post-processor count");
        if (r->ok && *counts[k] > 16) rd_fail(r, "%u post-processor ids; at most 16", *counts[k]);
        for (uint32_t i = 0; i < *counts[k] && r->ok; i++)
            lists[k][i] = rd_id(r, t->n_vocab, false, "post-processor id");
    }

    t->dec_kind = rd_u32(r, "decoder kind");
    if (r->ok && t->dec_kind == MOE_TOK_DEC_PIECES) {
        t->n_dec_replace = rd_u32(r, "decoder replace count");
        if (r->ok && t->n_dec_replace > 16) rd_fail(r, "%u decoder replace steps; at most 16", t->n_dec_replace);
        for (uint32_t i = 0; i < t->n_dec_replace && r->ok; i++) {
            t->dec_replace[i][0] = rd_str(r, "decoder replace pattern");
            t->dec_replace[i][1] = rd_str(r, "decoder replace content");
            if (r->ok && t->dec_replace[i][0].n == 0) rd_fail(r, "empty decoder replace pattern");
        }
        t->dec_byte_fallback = rd_u32(r, "decoder byte_fallback") != 0;
        t->strip_start = rd_u32(r, "strip start");
        t->strip_content = rd_str(r, "strip content");
        size_t adv = 0;
        if (r->ok && t->strip_content.n &&
            (utf8_step((const uint8_t *)t->strip_content.p, t->strip_content.n, &adv) < 0 || adv != t->strip_content.n))
            rd_fail(r, "strip content must be one character");
        if (r->ok && !t->strip_content.n) t->strip_start = 0;
    } else if (r->ok && t->dec_kind != MOE_TOK_DEC_BYTE_LEVEL) {
        rd_fail(r, "unknown decoder kind %u", t->dec_kind);
    }
}

static bool read_tokens(Reader *r, MoeTokenizer *t) {
    size_t nv = (size_t)t->n_vocab;
    t->tok_off = malloc(nv * sizeof *t->tok_off);
    t->tok_len = malloc(nv * sizeof *t->tok_len);
    t->tok_flags = malloc(nv);
    if (!t->tok_off || !t->tok_len || !t->tok_flags) return fail_oom(r);
    for (size_t id = 0; id < nv && r->ok; id++) {
        uint8_t f = rd_u8(r, "token flags");
        Str s = rd_str(r, "token string");
        if (!r->ok) break;
        if (f > 15 || (!(f & MOE_TOK_F_PRESENT) && f)) rd_fail(r, "token %zu: bad flags 0x%x", id, f);
        if ((f & MOE_TOK_F_SPECIAL) && !(f & MOE_TOK_F_ADDED)) rd_fail(r, "token %zu: special but not added", id);
        if ((f & MOE_TOK_F_ADDED) && s.n == 0) rd_fail(r, "token %zu: empty added token", id);
        t->tok_off[id] = (uint32_t)((const uint8_t *)s.p - t->blob);
        t->tok_len[id] = s.n;
        t->tok_flags[id] = f;
    }
    return r->ok;
}

static bool build_vocab(Reader *r, MoeTokenizer *t) {
    size_t cap = 64;
    while (cap < (size_t)t->n_vocab * 2) cap *= 2;
    t->vslots = malloc(cap * sizeof *t->vslots);
    if (!t->vslots) return fail_oom(r);
    memset(t->vslots, 0xFF, cap * sizeof *t->vslots);
    t->vmask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!(t->tok_flags[id] & MOE_TOK_F_MODEL)) continue;
        const char *s = tok_str(t, id);
        uint32_t n = t->tok_len[id];
        if (vocab_find(t, s, n) >= 0) {
            rd_fail(r, "token %d: duplicate model vocab string", id);
            return false;
        }
        uint64_t h = hash_bytes((const uint8_t *)s, n) & t->vmask;
        while (t->vslots[h] >= 0) h = (h + 1) & t->vmask;
        t->vslots[h] = id;
    }
    return true;
}

static bool read_merges(Reader *r, MoeTokenizer *t) {
    uint32_t nm = rd_u32(r, "n_merges");
    if (!r->ok) return false;
    if (nm > (r->n - r->off) / 12) {
        rd_fail(r, "%u merges do not fit in the blob", nm);
        return false;
    }
    size_t cap = 64;
    while (cap < (size_t)nm * 2) cap *= 2;
    t->mslots = malloc(cap * sizeof *t->mslots);
    if (!t->mslots) return fail_oom(r);
    memset(t->mslots, 0xFF, cap * sizeof *t->mslots);
    t->mmask = cap - 1;
    t->n_merges = nm;
    t->rank_result = malloc((nm ? nm : 1) * sizeof *t->rank_result);
    if (!t->rank_result) return fail_oom(r);
    for (uint32_t rank = 0; rank < nm && r->ok; rank++) {
        int32_t ids[3];
        for (int k = 0; k < 3; k++) ids[k] = rd_id(r, t->n_vocab, false, "merge id");
        if (!r->ok) break;
        for (int k = 0; k < 3; k++)
            if (!(t->tok_flags[ids[k]] & MOE_TOK_F_MODEL))
                rd_fail(r, "merge %u: id %d not in the model vocab", rank, ids[k]);
        uint32_t ln = t->tok_len[ids[0]], rn = t->tok_len[ids[1]];
        if (r->ok && (t->tok_len[ids[2]] != ln + rn || memcmp(tok_str(t, ids[2]), tok_str(t, ids[0]), ln) != 0 ||
                      memcmp(tok_str(t, ids[2]) + ln, tok_str(t, ids[1]), rn) != 0))
            rd_fail(r, "merge %u: result %d is not left %d + right %d", rank, ids[2], ids[0], ids[1]);
        if (!r->ok) break;
        uint64_t key = (uint64_t)(uint32_t)ids[0] << 32 | (uint32_t)ids[1];
        uint64_t h = hash_pair(key) & t->mmask;
        while (t->mslots[h].key != UINT64_MAX && t->mslots[h].key != key) h = (h + 1) & t->mmask;
        /* HF collects merges into a map: a repeated pair keeps the last rank. */
        t->mslots[h] = (MergeSlot){key, rank, ids[2]};
        t->rank_result[rank] = ids[2];
    }
    return r->ok;
}

static int added_cmp(const void *pa, const void *pb, const MoeTokenizer *t) {
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    uint8_t fa = (uint8_t)tok_str(t, a)[0], fb = (uint8_t)tok_str(t, b)[0];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (t->tok_len[a] != t->tok_len[b]) return t->tok_len[a] > t->tok_len[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

static bool build_added(Reader *r, MoeTokenizer *t) {
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) n += (t->tok_flags[id] & MOE_TOK_F_ADDED) != 0;
    t->added = malloc((n ? n : 1) * sizeof *t->added);
    if (!t->added) return fail_oom(r);
    n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok_flags[id] & MOE_TOK_F_ADDED) t->added[n++] = id;
    /* insertion sort: added tokens are few */
    for (size_t i = 1; i < n; i++) {
        int32_t v = t->added[i];
        size_t j = i;
        while (j > 0 && added_cmp(&t->added[j - 1], &v, t) > 0) {
            t->added[j] = t->added[j - 1];
            j--;
        }
        t->added[j] = v;
    }
    size_t k = 0;
    for (int b = 0; b < 256; b++) {
        t->added_first[b] = (uint32_t)k;
        while (k < n && (uint8_t)tok_str(t, t->added[k])[0] == b) k++;
    }
    t->added_first[256] = (uint32_t)k;
    return true;
}

/* GPT-2's table: printable bytes map to themselves, the other 68 to U+0100.. in byte order. */
static void build_byte_tables(MoeTokenizer *t) {
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        uint32_t cp = keep ? (uint32_t)b : next++;
        t->bl_ulen[b] = (uint8_t)utf8_put(t->bl_utf8[b], cp);
        t->bl_id[b] = vocab_find(t, t->bl_utf8[b], t->bl_ulen[b]);
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->bf_id[b] = vocab_find(t, name, 6);
    }
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        t->ascii_id[c] = vocab_find(t, &ch, 1);
    }
}

/* Replaces every a in s[0..n) with b into out (appending). */
static bool replace_all(Bytes *out, const char *s, size_t n, Str a, Str b) {
    size_t i = 0, start = 0;
    while (i + a.n <= n) {
        if (s[i] == a.p[0] && memcmp(s + i, a.p, a.n) == 0) {
            if (!bytes_put(out, s + start, i - start) || !bytes_put(out, b.p, b.n)) return false;
            i += a.n;
            start = i;
        } else {
            i++;
        }
    }
    return bytes_put(out, s + start, n - start);
}

/* Byte value of a ByteFallback token "<0xNN>" as Rust's u8::from_str_radix(.., 16) reads NN
 * (either case; a leading '+' is accepted), or -1. */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0, digits = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) {
            if (i == 3 && c == '+') continue;
            return -1;
        }
        v = v * 16 + d;
        digits++;
    }
    return digits ? v : -1;
}

/* SentencePiece vocabularies never merge across a word start: no token has the word-start
 * character (the Prepend string, e.g. U+2581) after a different character. When that holds,
 * and the word-start character is itself a token, a BPE piece can be cut before every word
 * start that follows another character without changing the result: no merge can span the
 * cut, so the merges on each side run independently in the same (rank, position) order.
 * This turns one 5000-symbol BPE over a paragraph into ~1000 small ones. */
static void find_word_start(MoeTokenizer *t) {
    t->ws = (Str){"", 0};
    if (t->pretok != MOE_TOK_PRE_NONE || t->byte_level || (t->model_flags & MOE_TOK_MODEL_IGNORE_MERGES)) return;
    Str ws = {"", 0};
    for (uint32_t k = 0; k < t->n_norm; k++)
        if (t->norm[k].kind == MOE_TOK_NORM_PREPEND) ws = t->norm[k].a;
    size_t adv;
    if (!ws.n || utf8_step((const uint8_t *)ws.p, ws.n, &adv) < 0 || adv != ws.n || vocab_find(t, ws.p, ws.n) < 0)
        return;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!(t->tok_flags[id] & MOE_TOK_F_MODEL)) continue;
        const char *s = tok_str(t, id);
        size_t n = t->tok_len[id];
        for (size_t i = 1; i + ws.n <= n; i++)
            if (memcmp(s + i, ws.p, ws.n) == 0 && !(i >= ws.n && memcmp(s + i - ws.n, ws.p, ws.n) == 0)) return;
    }
    t->ws = ws;
}

/* Each token's decoded form, computed once: see the decoder section. */
static bool build_decode(Reader *r, MoeTokenizer *t) {
    size_t nv = (size_t)t->n_vocab;
    Bytes pool = {0};
    Bytes tmp[2] = {{0}, {0}};
    t->d_off = malloc(nv * sizeof *t->d_off);
    t->d_len = malloc(nv * sizeof *t->d_len);
    t->d_byte = malloc(nv * sizeof *t->d_byte);
    bool ok = t->d_off && t->d_len && t->d_byte;
    int16_t rev[0x144]; /* byte-level character -> byte */
    memset(rev, 0xFF, sizeof rev);
    for (int b = 0; b < 256; b++) {
        size_t len;
        rev[cp_at(t->bl_utf8[b], 0, &len)] = (int16_t)b;
    }
    for (size_t id = 0; id < nv && ok; id++) {
        const char *s = tok_str(t, (int32_t)id);
        size_t n = t->tok_len[id];
        t->d_byte[id] = -1;
        t->d_off[id] = (uint32_t)pool.n;
        if (t->dec_kind == MOE_TOK_DEC_BYTE_LEVEL) {
            /* HF: a token whose characters all come from the table becomes those bytes;
             * any other token keeps its own UTF-8 bytes. */
            size_t start = pool.n, i = 0, len;
            while (i < n && ok) {
                uint32_t cp = cp_at((const uint8_t *)s, i, &len);
                if (cp >= 0x144 || rev[cp] < 0) break;
                char byte = (char)rev[cp];
                ok = bytes_put(&pool, &byte, 1);
                i += len;
            }
            if (i < n) {
                pool.n = start;
                ok = ok && bytes_put(&pool, s, n);
            }
        } else {
            const char *cur = s;
            size_t cur_n = n;
            for (uint32_t k = 0; k < t->n_dec_replace && ok; k++) {
                Bytes *dst = &tmp[k & 1];
                dst->n = 0;
                ok = replace_all(dst, cur, cur_n, t->dec_replace[k][0], t->dec_replace[k][1]);
                cur = dst->p ? dst->p : "";
                cur_n = dst->n;
            }
            int v = t->dec_byte_fallback ? byte_token_value(cur, cur_n) : -1;
            if (v >= 0)
                t->d_byte[id] = (int16_t)v;
            else
                ok = ok && bytes_put(&pool, cur, cur_n);
        }
        if (pool.n > UINT32_MAX) ok = false;
        t->d_len[id] = (uint32_t)(pool.n - t->d_off[id]);
    }
    free(tmp[0].p);
    free(tmp[1].p);
    t->dpool = pool.p;
    if (!ok) return fail_oom(r);
    return true;
}

MoeTokenizer *moe_tok_load(const void *blob, size_t len, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    MoeTokenizer *t = calloc(1, sizeof *t);
    Reader r = {.p = NULL, .n = len, .err = err, .errlen = errlen, .ok = true};
    if (!t) {
        fail_oom(&r);
        return NULL;
    }
    if (!blob || len >= UINT32_MAX) {
        if (blob)
            rd_fail(&r, "%zu bytes: larger than 4 GiB", len);
        else
            rd_fail(&r, "NULL blob");
        free(t);
        return NULL;
    }
    t->blob = malloc(len ? len : 1);
    if (!t->blob) {
        fail_oom(&r);
        free(t);
        return NULL;
    }
    memcpy(t->blob, blob, len);
    r.p = t->blob;
    read_header(&r, t);
    if (r.ok && read_tokens(&r, t) && build_vocab(&r, t) && read_merges(&r, t)) {
        if (r.off != r.n) rd_fail(&r, "%zu unexpected bytes after the merges", r.n - r.off);
        if (r.ok && build_added(&r, t)) {
            build_byte_tables(t);
            find_word_start(t);
            build_decode(&r, t);
        }
    }
    if (!r.ok) {
        moe_tok_free(t);
        return NULL;
    }
    return t;
}

void moe_tok_free(MoeTokenizer *t) {
    if (!t) return;
    free(t->blob);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_flags);
    free(t->dpool);
    free(t->d_off);
    free(t->d_len);
    free(t->d_byte);
    free(t->vslots);
    free(t->mslots);
    free(t->rank_result);
    free(t->added);
    free(t);
}

int32_t moe_tok_vocab_size(const MoeTokenizer *t) { return t ? t->n_vocab : 0; }
int32_t moe_tok_bos(const MoeTokenizer *t) { return t ? t->bos_id : -1; }
int32_t moe_tok_eos(const MoeTokenizer *t) { return t ? t->eos_id : -1; }

const char *moe_tok_token(const MoeTokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab || !(t->tok_flags[id] & MOE_TOK_F_PRESENT)) return NULL;
    if (len) *len = t->tok_len[id];
    return tok_str(t, id);
}

bool moe_tok_is_special(const MoeTokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && (t->tok_flags[id] & MOE_TOK_F_SPECIAL);
}

/* ===================================================================== encode: scratch state */

typedef struct Sym {
    int32_t id;         /* -1: merged into its left neighbour */
    int32_t prev, next; /* -1 at the ends */
} Sym;

/* A heap entry is rank << 32 | position: the min-heap order HF uses. The merge's result is
 * rank_result[rank]. */
typedef uint64_t HeapEnt;

typedef struct Enc {
    const MoeTokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    Bytes norm[2]; /* normalizer ping-pong buffers */
    Bytes piece;   /* ignore_merges: the mapped piece */
    uint32_t *cps; /* NFC scratch */
    size_t cap_cps;
    Sym *syms;
    size_t cap_syms, n_syms;
    HeapEnt *heap;
    size_t cap_heap, n_heap;
    bool oom;
} Enc;

static void push_id(Enc *e, int32_t id) {
    if (e->oom) return;
    if (!grow((void **)&e->ids, &e->cap_ids, e->n_ids + 1, sizeof *e->ids)) {
        e->oom = true;
        return;
    }
    e->ids[e->n_ids++] = id;
}

/* ===================================================================== normalizers */

enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7 };
enum { HANGUL_LCOUNT = 19, HANGUL_VCOUNT = 21, HANGUL_TCOUNT = 28, HANGUL_NCOUNT = 588, HANGUL_SCOUNT = 11172 };

static uint32_t nfc_compose(uint32_t a, uint32_t b) {
    if (a - HANGUL_L < HANGUL_LCOUNT && b - HANGUL_V < HANGUL_VCOUNT)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_VCOUNT + (b - HANGUL_V)) * HANGUL_TCOUNT;
    if (a - HANGUL_S < HANGUL_SCOUNT && (a - HANGUL_S) % HANGUL_TCOUNT == 0 && b - HANGUL_T - 1 < HANGUL_TCOUNT - 1)
        return a + (b - HANGUL_T);
    return moe_uc_compose(a, b);
}

static inline unsigned ccc_of(uint32_t cp) { return (moe_uc_props(cp) & MOE_UC_NONSTARTER) ? moe_uc_ccc(cp) : 0; }

/* True when s is already in NFC by the quick check (no NFC_QC No/Maybe, ordered marks). */
static bool nfc_quick_yes(const uint8_t *s, size_t n) {
    unsigned last = 0;
    size_t i = 0, len;
    while (i < n) {
        if (s[i] < 0x80) {
            i++, last = 0;
            continue;
        }
        uint32_t cp = cp_at(s, i, &len);
        i += len;
        unsigned p = moe_uc_props(cp);
        if (p & (MOE_UC_NFC_NO | MOE_UC_NFC_MAYBE)) return false;
        unsigned c = (p & MOE_UC_NONSTARTER) ? moe_uc_ccc(cp) : 0;
        if (c && c < last) return false;
        last = c;
    }
    return true;
}

/* NFC of valid UTF-8 s into out: decompose, order marks canonically, compose. */
static bool nfc_full(Enc *e, const uint8_t *s, size_t n, Bytes *out) {
    if (n > SIZE_MAX / 4 / sizeof(uint32_t) || !grow((void **)&e->cps, &e->cap_cps, n * 4 + 1, sizeof(uint32_t)))
        return false;
    uint32_t *c = e->cps;
    size_t m = 0, i = 0, len;
    while (i < n) {
        uint32_t cp = cp_at(s, i, &len);
        i += len;
        const uint32_t *seq;
        int k;
        if (cp - HANGUL_S < HANGUL_SCOUNT) {
            uint32_t si = cp - HANGUL_S;
            c[m++] = HANGUL_L + si / HANGUL_NCOUNT;
            c[m++] = HANGUL_V + si % HANGUL_NCOUNT / HANGUL_TCOUNT;
            if (si % HANGUL_TCOUNT) c[m++] = HANGUL_T + si % HANGUL_TCOUNT;
        } else if ((k = moe_uc_decompose(cp, &seq)) > 0) {
            for (int j = 0; j < k; j++) c[m++] = seq[j];
        } else {
            c[m++] = cp;
        }
    }
    /* canonical ordering: a stable insertion sort of each run of non-starters by class */
    for (size_t j = 1; j < m; j++) {
        unsigned cj = ccc_of(c[j]);
        if (!cj) continue;
        uint32_t v = c[j];
        size_t k = j;
        while (k > 0) {
            unsigned ck = ccc_of(c[k - 1]);
            if (ck <= cj) break;
            c[k] = c[k - 1];
            k--;
        }
        c[k] = v;
    }
    /* canonical composition (UAX #15): a mark composes with the last starter unless blocked */
    if (m > 0) {
        size_t starter = 0, w = 1;
        unsigned last = ccc_of(c[0]) ? 256 : 0;
        for (size_t j = 1; j < m; j++) {
            uint32_t ch = c[j];
            unsigned cc = ccc_of(ch);
            uint32_t comp = nfc_compose(c[starter], ch);
            if (comp && (last < cc || last == 0)) {
                c[starter] = comp;
            } else {
                if (cc == 0) starter = w;
                last = cc;
                c[w++] = ch;
            }
        }
        m = w;
    }
    out->n = 0;
    if (!grow((void **)&out->p, &out->cap, m * 4 + 1, 1)) return false;
    for (size_t j = 0; j < m; j++) out->n += utf8_put((uint8_t *)out->p + out->n, c[j]);
    out->p[out->n] = 0;
    return true;
}

static bool contains(const char *s, size_t n, Str a) {
    for (size_t i = 0; i + a.n <= n; i++)
        if (s[i] == a.p[0] && memcmp(s + i, a.p, a.n) == 0) return true;
    return false;
}

/* Runs the normalizer steps on one segment; *res and *res_n point at the result (s itself or one of
 * e->norm's buffers). */
static void normalize(Enc *e, const char *s, size_t n, const char **res, size_t *res_n) {
    const MoeTokenizer *t = e->t;
    int which = 0;
    for (uint32_t k = 0; k < t->n_norm && !e->oom; k++) {
        const NormStep *st = &t->norm[k];
        Bytes *dst = &e->norm[which];
        dst->n = 0;
        bool ok = true;
        if (st->kind == MOE_TOK_NORM_NFC) {
            if (nfc_quick_yes((const uint8_t *)s, n)) continue;
            ok = nfc_full(e, (const uint8_t *)s, n, dst);
        } else if (st->kind == MOE_TOK_NORM_PREPEND) {
            if (n == 0) continue; /* HF prepends only to a non-empty string */
            ok = bytes_put(dst, st->a.p, st->a.n) && bytes_put(dst, s, n);
        } else {
            if (!contains(s, n, st->a)) continue;
            ok = replace_all(dst, s, n, st->a, st->b);
        }
        if (!ok) {
            e->oom = true;
            break;
        }
        s = dst->p ? dst->p : "";
        n = dst->n;
        which ^= 1;
    }
    *res = s;
    *res_n = n;
}

/* ===================================================================== the split regex
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+
 * with D = 1 (Qwen2/3) or 3 (Llama-3), as Oniguruma runs it: at each position the first
 * alternative that matches wins, and every character is matched by some alternative. */

static inline unsigned props_at(const uint8_t *s, size_t i, size_t *len, uint32_t *cp) {
    *cp = cp_at(s, i, len);
    return moe_uc_props(*cp);
}

/* Case-insensitive letter for the contractions: ASCII, plus U+017F (long s) folding to 's'. */
static int fold_ascii(uint32_t cp) {
    if (cp >= 'A' && cp <= 'Z') return (int)cp + 32;
    if (cp == 0x17F) return 's';
    return cp < 0x80 ? (int)cp : 0;
}

static size_t run_of(const uint8_t *s, size_t n, size_t i, unsigned want, unsigned reject) {
    size_t len;
    uint32_t cp;
    while (i < n) {
        unsigned p = props_at(s, i, &len, &cp);
        if (!(p & want) || (p & reject)) break;
        i += len;
    }
    return i;
}

static inline bool is_other(unsigned p) { return !(p & (MOE_UC_L | MOE_UC_N | MOE_UC_WS)); }

static size_t run_of_other(const uint8_t *s, size_t n, size_t i) {
    size_t len;
    uint32_t cp;
    while (i < n && is_other(props_at(s, i, &len, &cp))) i += len;
    return i;
}

/* End of the piece that starts at s[i]. */
static size_t split_match(const uint8_t *s, size_t n, size_t i, uint32_t max_digits) {
    size_t l0, l1, l2;
    uint32_t c0, c1, c2;
    unsigned p0 = props_at(s, i, &l0, &c0);
    /* 1: contractions */
    if (c0 == '\'' && i + l0 < n) {
        props_at(s, i + l0, &l1, &c1);
        int f1 = fold_ascii(c1);
        if (f1 == 's' || f1 == 't' || f1 == 'm' || f1 == 'd') return i + l0 + l1;
        if ((f1 == 'r' || f1 == 'v' || f1 == 'l') && i + l0 + l1 < n) {
            props_at(s, i + l0 + l1, &l2, &c2);
            int f2 = fold_ascii(c2);
            if ((f1 != 'l' && f2 == 'e') || (f1 == 'l' && f2 == 'l')) return i + l0 + l1 + l2;
        }
    }
    /* 2: [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (p0 & MOE_UC_L) return run_of(s, n, i, MOE_UC_L, 0);
    if (c0 != '\r' && c0 != '\n' && !(p0 & MOE_UC_N) && i + l0 < n) {
        unsigned p1 = props_at(s, i + l0, &l1, &c1);
        if (p1 & MOE_UC_L) return run_of(s, n, i + l0, MOE_UC_L, 0);
    }
    /* 3: \p{N}{1,D} */
    if (p0 & MOE_UC_N) {
        size_t j = i + l0;
        for (uint32_t k = 1; k < max_digits && j < n; k++) {
            unsigned p = props_at(s, j, &l1, &c1);
            if (!(p & MOE_UC_N)) break;
            j += l1;
        }
        return j;
    }
    /* 4: ' '?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = 0;
    if (is_other(p0))
        j = run_of_other(s, n, i);
    else if (c0 == ' ' && i + 1 < n && is_other(props_at(s, i + 1, &l1, &c1)))
        j = run_of_other(s, n, i + 1);
    if (j) {
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    /* c0 is whitespace here. The run of whitespace starting at i: */
    size_t end = i, last_nl = 0, count = 0, last_start = i;
    bool has_nl = false;
    while (end < n) {
        unsigned p = props_at(s, end, &l1, &c1);
        if (!(p & MOE_UC_WS)) break;
        if (c1 == '\r' || c1 == '\n') has_nl = true, last_nl = end;
        last_start = end;
        end += l1;
        count++;
    }
    /* 5: \s*[\r\n]+ : up to and including the run's last CR/LF */
    if (has_nl) return last_nl + 1;
    /* 6: \s+(?!\S) : all of it at the end of the text, else all but the last character */
    if (end == n) return end;
    if (count >= 2) return last_start;
    /* 7: \s+ */
    return end > i ? end : i + l0;
}

/* ===================================================================== BPE */

static void heap_push(Enc *e, uint32_t rank, uint32_t pos) {
    HeapEnt v = (uint64_t)rank << 32 | pos;
    size_t i = e->n_heap++;
    HeapEnt *h = e->heap;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static HeapEnt heap_pop(Enc *e) {
    HeapEnt *h = e->heap, top = h[0], v = h[--e->n_heap];
    size_t n = e->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = v;
    return top;
}

static inline void sym_add(Enc *e, int32_t id) {
    Sym *s = &e->syms[e->n_syms];
    s->id = id;
    s->prev = (int32_t)e->n_syms - 1;
    s->next = (int32_t)e->n_syms + 1;
    e->n_syms++;
}

/* Adds one character of the BPE input (chr, clen bytes; id -1 when not in the vocab), with
 * HF's byte fallback and unk rules. Quirk kept: byte-fallback tokens do not flush a pending
 * (fused) unk; only a known character or the end of the piece does. */
static void add_char(Enc *e, bool *unk_pending, const uint8_t *chr, size_t clen, int32_t id) {
    const MoeTokenizer *t = e->t;
    if (id >= 0) {
        if (*unk_pending) sym_add(e, t->unk_id), *unk_pending = false;
        sym_add(e, id);
        return;
    }
    if (t->model_flags & MOE_TOK_MODEL_BYTE_FALLBACK) {
        bool all = true;
        for (size_t k = 0; k < clen; k++) all = all && t->bf_id[chr[k]] >= 0;
        if (all) {
            for (size_t k = 0; k < clen; k++) sym_add(e, t->bf_id[chr[k]]);
            return;
        }
    }
    if (t->unk_id < 0) return; /* no unk token: the character is dropped */
    if (*unk_pending && !(t->model_flags & MOE_TOK_MODEL_FUSE_UNK)) sym_add(e, t->unk_id);
    *unk_pending = true;
}

/* Runs BPE on one piece and appends its ids. */
static void bpe_piece(Enc *e, const uint8_t *s, size_t n) {
    const MoeTokenizer *t = e->t;
    if (n == 0 || e->oom) return;
    if (t->model_flags & MOE_TOK_MODEL_IGNORE_MERGES) {
        const void *key = s;
        size_t klen = n;
        if (t->byte_level) {
            e->piece.n = 0;
            for (size_t i = 0; i < n && !e->oom; i++)
                if (!bytes_put(&e->piece, t->bl_utf8[s[i]], t->bl_ulen[s[i]])) e->oom = true;
            if (e->oom) return;
            key = e->piece.p;
            klen = e->piece.n;
        }
        int32_t id = vocab_find(t, key, klen);
        if (id >= 0) {
            push_id(e, id);
            return;
        }
    }
    /* at most two symbols per input byte (byte fallback of a 2-byte byte-level character), plus
     * a trailing unk; each merge pushes at most two heap entries */
    if (!grow((void **)&e->syms, &e->cap_syms, 2 * n + 1, sizeof(Sym)) ||
        !grow((void **)&e->heap, &e->cap_heap, 3 * (2 * n + 1), sizeof(HeapEnt))) {
        e->oom = true;
        return;
    }
    e->n_syms = 0;
    bool unk = false;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++) add_char(e, &unk, t->bl_utf8[s[i]], t->bl_ulen[s[i]], t->bl_id[s[i]]);
    } else {
        size_t i = 0, len;
        while (i < n) {
            int32_t id;
            if (s[i] < 0x80) {
                len = 1;
                id = t->ascii_id[s[i]];
            } else {
                cp_at(s, i, &len);
                id = vocab_find(t, s + i, len);
            }
            add_char(e, &unk, s + i, len, id);
            i += len;
        }
    }
    if (unk) sym_add(e, t->unk_id);
    size_t ns = e->n_syms;
    if (ns == 0) return;
    Sym *sy = e->syms;
    sy[ns - 1].next = -1;
    e->n_heap = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const MergeSlot *m = merge_find(t, sy[i].id, sy[i + 1].id);
        if (m) heap_push(e, m->rank, (uint32_t)i);
    }
    while (e->n_heap) {
        HeapEnt top = heap_pop(e);
        uint32_t pos = (uint32_t)top;
        int32_t new_id = t->rank_result[top >> 32];
        Sym *a = &sy[pos];
        if (a->id < 0 || a->next < 0) continue;
        Sym *b = &sy[a->next];
        /* stale entry: HF compares the current pair's merge result with the entry's */
        const MergeSlot *m = merge_find(t, a->id, b->id);
        if (!m || m->result != new_id) continue;
        a->id = new_id;
        a->next = b->next;
        b->id = -1;
        if (a->next >= 0) sy[a->next].prev = (int32_t)pos;
        if (a->prev >= 0 && (m = merge_find(t, sy[a->prev].id, a->id))) heap_push(e, m->rank, (uint32_t)a->prev);
        if (a->next >= 0 && (m = merge_find(t, a->id, sy[a->next].id))) heap_push(e, m->rank, pos);
    }
    if (!grow((void **)&e->ids, &e->cap_ids, e->n_ids + ns, sizeof *e->ids)) {
        e->oom = true;
        return;
    }
    for (int32_t i = 0; i >= 0; i = sy[i].next) e->ids[e->n_ids++] = sy[i].id;
}

/* ===================================================================== encode */

/* Normalizes, splits and BPEs one segment (the text between two added tokens). */
static void encode_segment(Enc *e, const char *seg, size_t n) {
    if (n == 0) return;
    const char *s;
    size_t sn;
    normalize(e, seg, n, &s, &sn);
    if (e->oom) return;
    const uint8_t *u = (const uint8_t *)s;
    if (e->t->pretok == MOE_TOK_PRE_NONE) {
        const Str ws = e->t->ws;
        if (!ws.n) {
            bpe_piece(e, u, sn);
            return;
        }
        /* chunks end before each word-start character that follows another character */
        size_t start = 0;
        for (size_t i = 1; i + ws.n <= sn && !e->oom; i++) {
            if (u[i] == (uint8_t)ws.p[0] && memcmp(u + i, ws.p, ws.n) == 0 &&
                !(i >= ws.n && memcmp(u + i - ws.n, ws.p, ws.n) == 0)) {
                bpe_piece(e, u + start, i - start);
                start = i;
            }
        }
        bpe_piece(e, u + start, sn - start);
        return;
    }
    for (size_t i = 0; i < sn && !e->oom;) {
        size_t j = split_match(u, sn, i, e->t->max_digits);
        bpe_piece(e, u + i, j - i);
        i = j;
    }
}

/* Copy of text with each invalid UTF-8 subpart replaced by U+FFFD. */
static bool sanitize(const uint8_t *p, size_t n, Bytes *out) {
    size_t i = 0, adv;
    while (i < n) {
        int32_t r = p[i] < 0x80 ? 0 : utf8_step(p + i, n - i, &adv);
        if (p[i] < 0x80) adv = 1;
        if (!(r >= 0 ? bytes_put(out, p + i, adv) : bytes_put(out, REPLACEMENT, 3))) return false;
        i += adv;
    }
    return bytes_put(out, "", 0);
}

int moe_tok_encode(const MoeTokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                   size_t *n_ids) {
    if (!t || !ids || !n_ids || (!text && len)) return MOE_TOK_EINVAL;
    if (len >= (size_t)INT32_MAX / 4) return MOE_TOK_EINVAL;
    Enc e = {.t = t};
    Bytes clean = {0};
    if (!text) text = "";
    if (!utf8_valid((const uint8_t *)text, len)) {
        if (!sanitize((const uint8_t *)text, len, &clean)) e.oom = true;
        text = clean.p ? clean.p : "";
        len = clean.n;
    }
    if (add_special)
        for (uint32_t i = 0; i < t->n_prefix; i++) push_id(&e, t->prefix[i]);
    /* added tokens on the raw text: leftmost match, longest first at a position */
    const uint8_t *s = (const uint8_t *)text;
    size_t seg = 0, i = 0;
    while (i < len && !e.oom) {
        uint32_t k = t->added_first[s[i]], end = t->added_first[s[i] + 1];
        int32_t hit = -1;
        for (; k < end; k++) {
            int32_t id = t->added[k];
            if (t->tok_len[id] <= len - i && memcmp(s + i, tok_str(t, id), t->tok_len[id]) == 0) {
                hit = id;
                break;
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        encode_segment(&e, text + seg, i - seg);
        push_id(&e, hit);
        i += t->tok_len[hit];
        seg = i;
    }
    encode_segment(&e, text + seg, len - seg);
    if (add_special)
        for (uint32_t k = 0; k < t->n_suffix; k++) push_id(&e, t->suffix[k]);
    if (!e.oom && !e.ids && !grow((void **)&e.ids, &e.cap_ids, 1, sizeof *e.ids)) e.oom = true;
    free(clean.p);
    free(e.norm[0].p);
    free(e.norm[1].p);
    free(e.piece.p);
    free(e.cps);
    free(e.syms);
    free(e.heap);
    if (e.oom) {
        free(e.ids);
        return MOE_TOK_ENOMEM;
    }
    *ids = e.ids;
    *n_ids = e.n_ids;
    return MOE_TOK_OK;
}

/* ===================================================================== decode
 * ByteLevel: every token's bytes are concatenated and read as UTF-8, each invalid maximal
 * subpart becoming one U+FFFD. An incomplete character at the end of what is known so far is
 * held back (at the very end it is one U+FFFD).
 * Pieces (Replace* -> ByteFallback -> Fuse -> Strip): a run of consecutive byte tokens becomes
 * its text if the run is valid UTF-8, else one U+FFFD per byte token (HF's rule, not the usual
 * one); the run is held back until a non-byte token or the end. Strip removes up to strip_start
 * leading copies of strip_content from the start of the whole output. */

typedef struct DecCore {
    const MoeTokenizer *t;
    bool skip_special, oom;
    Bytes out;  /* final bytes not yet handed out */
    Bytes pend; /* held back bytes */
    size_t run; /* pieces: byte tokens in pend */
    uint32_t strip_left;
} DecCore;

static void dec_init(DecCore *c, const MoeTokenizer *t, bool skip_special) {
    memset(c, 0, sizeof *c);
    c->t = t;
    c->skip_special = skip_special;
    c->strip_left = t->strip_start;
}

static void dec_emit(DecCore *c, const char *s, size_t n) {
    const Str sc = c->t->strip_content;
    while (c->strip_left && n >= sc.n && memcmp(s, sc.p, sc.n) == 0) {
        s += sc.n, n -= sc.n;
        c->strip_left--;
    }
    if (n == 0) return;
    c->strip_left = 0;
    if (!bytes_put(&c->out, s, n)) c->oom = true;
}

/* ByteLevel: moves what is final from pend to out. */
static void dec_drain(DecCore *c, bool final) {
    const uint8_t *p = (const uint8_t *)c->pend.p;
    size_t n = c->pend.n, i = 0, adv;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] < 0x80) j++;
        if (j > i) {
            dec_emit(c, (const char *)p + i, j - i);
            i = j;
            continue;
        }
        int32_t r = utf8_step(p + i, n - i, &adv);
        if (r == UTF8_SHORT && !final) break;
        if (r >= 0)
            dec_emit(c, (const char *)p + i, adv);
        else
            dec_emit(c, REPLACEMENT, 3);
        i += adv;
    }
    if (i > 0) memmove(c->pend.p, p + i, n - i);
    c->pend.n = n - i;
}

/* Pieces: ends the current run of byte tokens. */
static void dec_end_run(DecCore *c) {
    if (!c->run) return;
    if (utf8_valid((const uint8_t *)c->pend.p, c->pend.n)) {
        dec_emit(c, c->pend.p, c->pend.n);
    } else {
        for (size_t k = 0; k < c->run; k++) dec_emit(c, REPLACEMENT, 3);
    }
    c->pend.n = 0;
    c->run = 0;
}

static void dec_feed(DecCore *c, int32_t id) {
    const MoeTokenizer *t = c->t;
    if (id < 0 || id >= t->n_vocab || !(t->tok_flags[id] & MOE_TOK_F_PRESENT)) return;
    if (c->skip_special && (t->tok_flags[id] & MOE_TOK_F_SPECIAL)) return;
    const char *d = t->dpool + t->d_off[id];
    if (t->dec_kind == MOE_TOK_DEC_BYTE_LEVEL) {
        if (!bytes_put(&c->pend, d, t->d_len[id])) c->oom = true;
        dec_drain(c, false);
    } else if (t->d_byte[id] >= 0) {
        char b = (char)t->d_byte[id];
        if (!bytes_put(&c->pend, &b, 1)) c->oom = true;
        c->run++;
    } else {
        dec_end_run(c);
        dec_emit(c, d, t->d_len[id]);
    }
}

static void dec_finish(DecCore *c) {
    if (c->t->dec_kind == MOE_TOK_DEC_BYTE_LEVEL)
        dec_drain(c, true);
    else
        dec_end_run(c);
    c->strip_left = c->t->strip_start;
}

int moe_tok_decode(const MoeTokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **out,
                   size_t *out_len) {
    if (!t || !out || (!ids && n)) return MOE_TOK_EINVAL;
    DecCore c;
    dec_init(&c, t, skip_special);
    for (size_t i = 0; i < n && !c.oom; i++) dec_feed(&c, ids[i]);
    dec_finish(&c);
    if (!c.oom && !bytes_put(&c.out, "", 0)) c.oom = true;
    free(c.pend.p);
    if (c.oom) {
        free(c.out.p);
        return MOE_TOK_ENOMEM;
    }
    *out = c.out.p;
    if (out_len) *out_len = c.out.n;
    return MOE_TOK_OK;
}

struct MoeTokStream {
    DecCore c;
};

MoeTokStream *moe_tok_stream_new(const MoeTokenizer *t, bool skip_special) {
    if (!t) return NULL;
    MoeTokStream *s = malloc(sizeof *s);
    if (s) dec_init(&s->c, t, skip_special);
    return s;
}

static int stream_result(MoeTokStream *s, const char **out, size_t *out_len) {
    if (s->c.oom) {
        s->c.oom = false;
        s->c.out.n = 0;
        return MOE_TOK_ENOMEM;
    }
    *out = s->c.out.p ? s->c.out.p : "";
    *out_len = s->c.out.n;
    return MOE_TOK_OK;
}

int moe_tok_stream_feed(MoeTokStream *s, int32_t id, const char **out, size_t *out_len) {
    if (!s || !out || !out_len) return MOE_TOK_EINVAL;
    s->c.out.n = 0;
    dec_feed(&s->c, id);
    return stream_result(s, out, out_len);
}

int moe_tok_stream_flush(MoeTokStream *s, const char **out, size_t *out_len) {
    if (!s || !out || !out_len) return MOE_TOK_EINVAL;
    s->c.out.n = 0;
    dec_finish(&s->c);
    return stream_result(s, out, out_len);
}

void moe_tok_stream_free(MoeTokStream *s) {
    if (!s) return;
    free(s->c.out.p);
    free(s->c.pend.p);
    free(s);
}
