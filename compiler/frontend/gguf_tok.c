/* gguf_tok.c: tokenizer.ggml.* metadata -> the family's tokenizer.json (a cJSON tree) -> tokjson.
 * See gguf_tok.h for what is read and what it becomes. */
#include "gguf_tok.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_model.h"
#include "textio.h"
#include "tokjson.h"

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

#define SPM_SPACE "\xE2\x96\x81" /* U+2581, SentencePiece's space */

typedef struct Vocab {
    const GgufFile *g;
    Diag *d;
    const char *file;
    int32_t n;              /* tokens */
    const char **s;         /* [n] token strings (NUL-terminated, in the GgufFile's arena) */
    uint32_t *len;          /* [n] */
    int32_t *type;          /* [n] TT_* */
    float *score;           /* [n] (0 when the file has no scores) */
    /* string -> id, open addressing over the tokens in the model vocab */
    int32_t *slot;
    size_t mask;
} Vocab;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001B3ull;
    return h ^ (h >> 29);
}

static int32_t vocab_find(const Vocab *v, const char *s, size_t n) {
    for (size_t h = hash_bytes(s, n) & v->mask;; h = (h + 1) & v->mask) {
        int32_t id = v->slot[h];
        if (id < 0) return -1;
        if (v->len[id] == n && memcmp(v->s[id], s, n) == 0) return id;
    }
}

/* Adds id to the map; false after diag_error when its string is already there. */
static bool vocab_add(Vocab *v, int32_t id) {
    size_t h = hash_bytes(v->s[id], v->len[id]) & v->mask;
    for (; v->slot[h] >= 0; h = (h + 1) & v->mask) {
        int32_t o = v->slot[h];
        if (v->len[o] == v->len[id] && memcmp(v->s[o], v->s[id], v->len[id]) == 0) {
            diag_error(v->d, "%s: key 'tokenizer.ggml.tokens': token '%s' twice; expected each token once, got ids %d and %d",
                       v->file, v->s[id], o, id);
            return false;
        }
    }
    v->slot[h] = id;
    return true;
}

/* An optional token-id key: *id set (-1 when absent); false after diag_error when it is not an
 * id of a token in the vocabulary. */
static bool token_id_key(const Vocab *v, const char *key, bool holes_unused, int32_t *id) {
    *id = -1;
    if (!gguf_kv_find(v->g, key)) return true;
    uint32_t u;
    if (!gguf_get_u32(v->g, v->d, key, &u)) return false;
    if (u >= (uint32_t)v->n || (holes_unused && v->type[u] == TT_UNUSED)) {
        diag_error(v->d, "%s: key '%s': not a token of the vocabulary; expected an id in [0, %d) of a used token, got %u",
                   v->file, key, v->n, u);
        return false;
    }
    *id = (int32_t)u;
    return true;
}

/* An optional boolean key, dflt when absent. */
static bool bool_key(const Vocab *v, const char *key, bool dflt, bool *out) {
    *out = dflt;
    return !gguf_kv_find(v->g, key) || gguf_get_bool(v->g, v->d, key, out);
}

/* Reads tokens, types and scores into v; false after diag_error. */
static bool read_vocab(Vocab *v, Arena *a) {
    const GgufKv *toks = gguf_get_str_arr(v->g, v->d, "tokenizer.ggml.tokens");
    if (!toks) return false;
    if (toks->n == 0 || toks->n > (1u << 28)) {
        diag_error(v->d, "%s: key 'tokenizer.ggml.tokens': wrong length; expected 1 to 2^28 tokens, got %llu", v->file,
                   (unsigned long long)toks->n);
        return false;
    }
    v->n = (int32_t)toks->n;
    v->s = arena_alloc(a, (size_t)v->n * sizeof *v->s);
    v->len = arena_alloc(a, (size_t)v->n * sizeof *v->len);
    v->type = arena_alloc(a, (size_t)v->n * sizeof *v->type);
    v->score = arena_alloc(a, (size_t)v->n * sizeof *v->score);
    const GgufKv *types = NULL, *scores = NULL;
    if (gguf_kv_find(v->g, "tokenizer.ggml.token_type") &&
        !(types = gguf_get_num_arr(v->g, v->d, "tokenizer.ggml.token_type")))
        return false;
    if (gguf_kv_find(v->g, "tokenizer.ggml.scores") && !(scores = gguf_get_num_arr(v->g, v->d, "tokenizer.ggml.scores")))
        return false;
    const GgufKv *arrs[2] = {types, scores};
    for (int k = 0; k < 2; k++)
        if (arrs[k] && arrs[k]->n != toks->n) {
            diag_error(v->d, "%s: key '%s': wrong length; expected %d (one per token), got %llu", v->file, arrs[k]->key,
                       v->n, (unsigned long long)arrs[k]->n);
            return false;
        }
    for (int32_t id = 0; id < v->n; id++) {
        GgufStr s = gguf_arr_str(toks, (uint64_t)id);
        if (s.len == 0 || s.len > (1u << 20) || strlen(s.s) != s.len) {
            diag_error(v->d, "%s: key 'tokenizer.ggml.tokens': token %d: %s; expected a non-empty string without NUL",
                       v->file, id, s.len ? "contains NUL or is too long" : "empty");
            return false;
        }
        v->s[id] = s.s;
        v->len[id] = (uint32_t)s.len;
        v->type[id] = types ? (int32_t)gguf_arr_i64(types, (uint64_t)id) : TT_NORMAL;
        v->score[id] = scores ? (float)gguf_arr_f64(scores, (uint64_t)id) : 0.0f;
        if (v->type[id] < TT_NORMAL || v->type[id] > TT_BYTE) {
            diag_error(v->d,
                       "%s: key 'tokenizer.ggml.token_type': token %d ('%s'): unknown type; expected 1 (normal) to 6 "
                       "(byte), got %d",
                       v->file, id, v->s[id], v->type[id]);
            return false;
        }
    }
    size_t cap = 64;
    while (cap < (size_t)v->n * 2) cap *= 2;
    v->slot = arena_alloc(a, cap * sizeof *v->slot);
    memset(v->slot, 0xFF, cap * sizeof *v->slot);
    v->mask = cap - 1;
    return true;
}

/* ----------------------------------------------------------------- the tokenizer.json tree */

static cJSON *obj_type(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *string_pattern(const char *s) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "String", s);
    return p;
}

static cJSON *replace_step(const char *from, const char *to) {
    cJSON *r = obj_type("Replace");
    cJSON_AddItemToObject(r, "pattern", string_pattern(from));
    cJSON_AddStringToObject(r, "content", to);
    return r;
}

/* Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)], as HF's byte-level families. */
static cJSON *split_byte_level(const char *regex) {
    cJSON *split = obj_type("Split"), *re = cJSON_CreateObject();
    cJSON_AddStringToObject(re, "Regex", regex);
    cJSON_AddItemToObject(split, "pattern", re);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", false);
    cJSON *bl = obj_type("ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", false);
    cJSON_AddBoolToObject(bl, "trim_offsets", false);
    cJSON_AddBoolToObject(bl, "use_regex", false);
    cJSON *seq = obj_type("Sequence"), *list = cJSON_AddArrayToObject(seq, "pretokenizers");
    cJSON_AddItemToArray(list, split);
    cJSON_AddItemToArray(list, bl);
    return seq;
}

/* TemplateProcessing single = [bos] $A [eos] (bos/eos -1: left out). */
static cJSON *template_post(const Vocab *v, int32_t bos, int32_t eos) {
    cJSON *t = obj_type("TemplateProcessing"), *single = cJSON_AddArrayToObject(t, "single");
    cJSON *specials = cJSON_AddObjectToObject(t, "special_tokens");
    int32_t ids[3] = {bos, -2, eos};
    for (int k = 0; k < 3; k++) {
        if (ids[k] == -1) continue;
        cJSON *piece = cJSON_CreateObject(), *inner = cJSON_CreateObject();
        cJSON_AddStringToObject(inner, "id", ids[k] == -2 ? "A" : v->s[ids[k]]);
        cJSON_AddNumberToObject(inner, "type_id", 0);
        cJSON_AddItemToObject(piece, ids[k] == -2 ? "Sequence" : "SpecialToken", inner);
        cJSON_AddItemToArray(single, piece);
        if (ids[k] >= 0 && !cJSON_GetObjectItemCaseSensitive(specials, v->s[ids[k]])) {
            cJSON *e = cJSON_AddObjectToObject(specials, v->s[ids[k]]);
            cJSON_AddStringToObject(e, "id", v->s[ids[k]]);
            cJSON_AddItemToObject(e, "ids", cJSON_CreateIntArray(&ids[k], 1));
            cJSON_AddItemToObject(e, "tokens", cJSON_CreateStringArray(&v->s[ids[k]], 1));
        }
    }
    return t;
}

/* ----------------------------------------------------------------- llama: merges from scores */

typedef struct Merge {
    int32_t l, r, res;
    float score;
} Merge;

/* HF's SentencePiece converter order: higher score first; one token's merges by left id, right id. */
static int merge_cmp(const void *pa, const void *pb) {
    const Merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->res != b->res) return a->res < b->res ? -1 : 1;
    if (a->l != b->l) return a->l < b->l ? -1 : 1;
    return (a->r > b->r) - (a->r < b->r);
}

static size_t utf8_len(uint8_t c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

/* Every split of a token into two tokens, as ["left", "right"] pairs in rank order; NULL after
 * diag_error when the ranking would not reproduce llama.cpp's merge order. */
static cJSON *spm_merges(const Vocab *v) {
    size_t n = 0, cap = 1024;
    Merge *m = xmalloc(cap * sizeof *m);
    cJSON *out = NULL;
    for (int32_t id = 0; id < v->n; id++) {
        const char *s = v->s[id];
        size_t len = v->len[id];
        for (size_t i = utf8_len((uint8_t)s[0]); i < len; i += utf8_len((uint8_t)s[i])) {
            int32_t l = vocab_find(v, s, i), r = vocab_find(v, s + i, len - i);
            /* llama.cpp also merges a character that is not a token; a BPE cannot */
            bool l_char = i == utf8_len((uint8_t)s[0]), r_char = i + utf8_len((uint8_t)s[i]) == len;
            if ((l < 0 && l_char && r >= 0) || (r < 0 && r_char && l >= 0)) {
                diag_error(v->d,
                           "%s: key 'tokenizer.ggml.tokens': token '%s' (id %d) joins '%.*s', which is not a token; "
                           "expected every character of a mergeable token to be a token (llama.cpp merges it, a BPE "
                           "cannot)",
                           v->file, s, id, l < 0 ? (int)i : (int)(len - i), l < 0 ? s : s + i);
                goto out;
            }
            if (l < 0 || r < 0) continue;
            if (n == cap) m = xrealloc(m, (cap *= 2) * sizeof *m);
            m[n++] = (Merge){l, r, id, v->score[id]};
        }
    }
    qsort(m, n, sizeof *m, merge_cmp);
    for (size_t i = 1; i < n; i++)
        if (m[i].score == m[i - 1].score && m[i].res != m[i - 1].res) {
            diag_error(v->d,
                       "%s: key 'tokenizer.ggml.scores': tokens '%s' (id %d) and '%s' (id %d) both score %g; expected "
                       "distinct scores for tokens made by merges (llama.cpp merges equal scores leftmost first, which "
                       "no merge ranking reproduces)",
                       v->file, v->s[m[i - 1].res], m[i - 1].res, v->s[m[i].res], m[i].res, (double)m[i].score);
            goto out;
        }
    out = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateStringReference(v->s[m[i].l]));
        cJSON_AddItemToArray(pair, cJSON_CreateStringReference(v->s[m[i].r]));
        cJSON_AddItemToArray(out, pair);
    }
out:
    free(m);
    return out;
}

/* ----------------------------------------------------------------- the two families */

/* The model, normaliser, pre-tokenizer and decoder of tokenizer.ggml.model / .pre into root;
 * *add_bos_dflt is llama.cpp's default for add_bos_token. False after diag_error. */
static bool family(const Vocab *v, cJSON *root, cJSON *model, bool *is_spm, bool *add_bos_dflt) {
    const char *kind, *pre = NULL;
    if (!gguf_get_str(v->g, v->d, "tokenizer.ggml.model", &kind)) return false;
    if (gguf_kv_find(v->g, "tokenizer.ggml.pre") && !gguf_get_str(v->g, v->d, "tokenizer.ggml.pre", &pre)) return false;
    static const char *const refused[] = {"tokenizer.ggml.precompiled_charsmap", "tokenizer.ggml.remove_extra_whitespaces",
                                          NULL};
    for (const char *const *k = refused; *k; k++) {
        const GgufKv *kv = gguf_kv_find(v->g, *k);
        if (kv && !(kv->type == GGUF_BOOL && !kv->v.u)) {
            diag_error(v->d, "%s: key '%s': not supported; expected no such key (or false)", v->file, *k);
            return false;
        }
    }
    *is_spm = !strcmp(kind, "llama");
    if (*is_spm) {
        bool prefix;
        if (!bool_key(v, "tokenizer.ggml.add_space_prefix", true, &prefix)) return false;
        cJSON *norm = obj_type("Sequence"), *steps = cJSON_AddArrayToObject(norm, "normalizers");
        if (prefix) {
            cJSON *p = obj_type("Prepend");
            cJSON_AddStringToObject(p, "prepend", SPM_SPACE);
            cJSON_AddItemToArray(steps, p);
        }
        cJSON_AddItemToArray(steps, replace_step(" ", SPM_SPACE));
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON_AddNullToObject(root, "pre_tokenizer");
        cJSON *dec = obj_type("Sequence"), *ds = cJSON_AddArrayToObject(dec, "decoders");
        cJSON_AddItemToArray(ds, replace_step(SPM_SPACE, " "));
        cJSON_AddItemToArray(ds, obj_type("ByteFallback"));
        cJSON_AddItemToArray(ds, obj_type("Fuse"));
        if (prefix) {
            cJSON *strip = obj_type("Strip");
            cJSON_AddStringToObject(strip, "content", " ");
            cJSON_AddNumberToObject(strip, "start", 1);
            cJSON_AddNumberToObject(strip, "stop", 0);
            cJSON_AddItemToArray(ds, strip);
        }
        cJSON_AddItemToObject(root, "decoder", dec);
        cJSON_AddBoolToObject(model, "byte_fallback", true);
        cJSON_AddBoolToObject(model, "fuse_unk", true);
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            if (vocab_find(v, name, 6) < 0) {
                diag_error(v->d,
                           "%s: key 'tokenizer.ggml.tokens': no byte token '%s'; expected all 256 byte tokens "
                           "<0x00>..<0xFF> (byte fallback)",
                           v->file, name);
                return false;
            }
        }
        cJSON *merges = spm_merges(v);
        if (!merges) return false;
        cJSON_AddItemToObject(model, "merges", merges);
        *add_bos_dflt = true;
        return true;
    }
    if (strcmp(kind, "gpt2")) {
        diag_error(v->d, "%s: key 'tokenizer.ggml.model': tokenizer not supported; expected llama or gpt2, got '%s'",
                   v->file, kind);
        return false;
    }
    if (!pre) {
        diag_error(v->d, "%s: key 'tokenizer.ggml.pre': missing; expected the pre-tokenizer's name (qwen2, llama-bpe)",
                   v->file);
        return false;
    }
    *add_bos_dflt = false;
    if (!strcmp(pre, "qwen2")) {
        cJSON_AddItemToObject(root, "normalizer", obj_type("NFC"));
        cJSON_AddItemToObject(root, "pre_tokenizer", split_byte_level(tokjson_qwen2_split));
    } else if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3") || !strcmp(pre, "llama-v3")) {
        cJSON_AddNullToObject(root, "normalizer");
        cJSON_AddItemToObject(root, "pre_tokenizer", split_byte_level(tokjson_llama3_split));
        cJSON_AddBoolToObject(model, "ignore_merges", true);
        *add_bos_dflt = true;
    } else {
        diag_error(v->d,
                   "%s: key 'tokenizer.ggml.pre': pre-tokenizer not supported; expected qwen2, llama-bpe, llama3 or "
                   "llama-v3, got '%s'",
                   v->file, pre);
        return false;
    }
    cJSON_AddItemToObject(root, "decoder", obj_type("ByteLevel"));
    cJSON_AddBoolToObject(model, "byte_fallback", false);
    const GgufKv *mk = gguf_get_str_arr(v->g, v->d, "tokenizer.ggml.merges");
    if (!mk) return false;
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (uint64_t i = 0; i < mk->n; i++) cJSON_AddItemToArray(merges, cJSON_CreateStringReference(gguf_arr_str(mk, i).s));
    return true;
}

bool gguf_tokenizer_blob(const GgufFile *g, Arena *a, Diag *d, void **blob, size_t *len) {
    Vocab v = {.g = g, .d = d, .file = g->path};
    if (!read_vocab(&v, a)) return false;
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab"), *added = cJSON_CreateArray();
    bool ok = true, is_spm = false, add_bos_dflt = false;
    /* the tokens first: the merges of a llama tokenizer are derived from their map */
    int32_t ids[3];
    for (int32_t id = 0; id < v.n && ok; id++) {
        int t = v.type[id];
        ok = vocab_add(&v, id);
        if (t == TT_CONTROL || t == TT_UNKNOWN || t == TT_USER_DEFINED) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "id", id);
            cJSON_AddItemToObject(e, "content", cJSON_CreateStringReference(v.s[id]));
            cJSON_AddBoolToObject(e, "normalized", false);
            cJSON_AddBoolToObject(e, "special", t != TT_USER_DEFINED);
            cJSON_AddItemToArray(added, e);
        }
    }
    ok = ok && family(&v, root, model, &is_spm, &add_bos_dflt);
    /* gpt2: UNUSED tokens ([PAD151669], ...) are in no tokenizer.json: holes that decode to nothing */
    for (int32_t id = 0; id < v.n && ok; id++)
        if (is_spm || v.type[id] != TT_UNUSED) cJSON_AddItemToObjectCS(vocab, v.s[id], cJSON_CreateNumber(id));
    static const char *const id_keys[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                           "tokenizer.ggml.unknown_token_id", NULL};
    ids[2] = -1; /* unknown_token_id: only a llama tokenizer uses it */
    for (int k = 0; k < (is_spm ? 3 : 2) && ok; k++) ok = token_id_key(&v, id_keys[k], !is_spm, &ids[k]);
    bool add_bos = false, add_eos = false;
    ok = ok && bool_key(&v, "tokenizer.ggml.add_bos_token", add_bos_dflt, &add_bos) &&
         bool_key(&v, "tokenizer.ggml.add_eos_token", false, &add_eos);
    for (int k = 0; k < 2 && ok; k++)
        if ((k ? add_eos : add_bos) && ids[k] < 0) {
            diag_error(d, "%s: key '%s': missing; expected the id %s adds (%s is true)", v.file, id_keys[k],
                       k ? "add_eos_token" : "add_bos_token",
                       k ? "tokenizer.ggml.add_eos_token" : "tokenizer.ggml.add_bos_token");
            ok = false;
        }
    if (ok) {
        /* llama.cpp's BPE ignores unknown_token_id (it drops what it cannot encode), as HF's
         * byte-level tokenizers do (unk_token null) */
        if (is_spm && ids[2] >= 0)
            cJSON_AddItemToObject(model, "unk_token", cJSON_CreateStringReference(v.s[ids[2]]));
        else
            cJSON_AddNullToObject(model, "unk_token");
        cJSON_AddItemToObject(root, "added_tokens", added);
        added = NULL;
        cJSON_AddItemToObject(root, "model", model);
        model = NULL;
        if (add_bos || add_eos)
            cJSON_AddItemToObject(root, "post_processor", template_post(&v, add_bos ? ids[0] : -1, add_eos ? ids[1] : -1));
        else if (!is_spm)
            cJSON_AddItemToObject(root, "post_processor", obj_type("ByteLevel"));
        for (int k = 0; k < 2; k++) {
            const char *key = k ? "eos_token" : "bos_token";
            if (ids[k] >= 0)
                cJSON_AddItemToObject(cfg, key, cJSON_CreateStringReference(v.s[ids[k]]));
            else
                cJSON_AddNullToObject(cfg, key);
        }
        ok = tokjson_load_json(a, d, v.file, root, v.file, cfg, blob, len);
    }
    cJSON_Delete(added);
    cJSON_Delete(model);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    return ok;
}

bool gguf_tokenizer_load(Arena *a, Diag *d, const char *path, bool *is_gguf, void **blob, size_t *len) {
    int errors = d->n_errors;
    const char *file = gguf_model_path(a, d, path);
    *is_gguf = file != NULL;
    if (!file) return d->n_errors == errors;
    GgufFile g = {0};
    bool ok = gguf_open(&g, a, d, file) && gguf_tokenizer_blob(&g, a, d, blob, len);
    gguf_close(&g);
    return ok;
}
