/* tokjson.c: tokenizer.json -> runtime tokenizer blob, and the synthetic tokenizer writer.
 * Supported (exactly the components the runtime implements, see runtime/tokenizer.h):
 *   model          BPE (vocab + merges in "a b" or ["a", "b"] form; byte_fallback, fuse_unk,
 *                  ignore_merges, unk_token; no dropout, no subword prefix/suffix)
 *   normalizer     null, NFC, Prepend, Replace (String pattern), Sequence of those
 *   pre_tokenizer  null, Split (the Qwen2 or Llama-3 regex, Isolated), ByteLevel
 *                  (use_regex=false, add_prefix_space=false), Sequence [Split, ByteLevel]
 *   post_processor null, ByteLevel, TemplateProcessing (single), Sequence of those
 *   decoder        ByteLevel, or Sequence [Replace*, ByteFallback?, Fuse?, Strip(stop=0)?]
 *   added_tokens   normalized=false, lstrip=rstrip=single_word=false */
#include "tokjson.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "outfile.h"
#include "textio.h"
#include "tokenizer.h"

/* ===================================================================== small helpers */

typedef struct Buf {
    uint8_t *p;
    size_t n, cap;
} Buf;

static void buf_put(Buf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 4096;
        while (c < b->n + n) c *= 2;
        b->p = xrealloc(b->p, c);
        b->cap = c;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void put_u32(Buf *b, uint32_t v) {
    uint8_t q[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    buf_put(b, q, 4);
}

static void put_i32(Buf *b, int32_t v) { put_u32(b, (uint32_t)v); }

static void put_str(Buf *b, const char *s, size_t n) {
    put_u32(b, (uint32_t)n);
    buf_put(b, s, n);
}

static bool utf8_ok(const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return false;
        }
        if (n - i <= k) return false;
        for (size_t j = 1; j <= k; j++) {
            if (p[i + j] < lo || p[i + j] > hi) return false;
            lo = 0x80, hi = 0xBF;
        }
        i += k + 1;
    }
    return true;
}

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001B3ull;
    return h ^ (h >> 29);
}

/* A string -> id map with open addressing; strings are borrowed. */
typedef struct StrMap {
    const char **keys;
    size_t *lens;
    int32_t *vals;
    size_t mask, n;
} StrMap;

static void map_init(StrMap *m, size_t expect) {
    size_t cap = 64;
    while (cap < expect * 2) cap *= 2;
    m->keys = xcalloc(cap, sizeof *m->keys);
    m->lens = xcalloc(cap, sizeof *m->lens);
    m->vals = xcalloc(cap, sizeof *m->vals);
    m->mask = cap - 1;
    m->n = 0;
}

static void map_free(StrMap *m) {
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int32_t map_get(const StrMap *m, const char *s, size_t n) {
    for (size_t h = str_hash(s, n) & m->mask;; h = (h + 1) & m->mask) {
        if (!m->keys[h]) return -1;
        if (m->lens[h] == n && memcmp(m->keys[h], s, n) == 0) return m->vals[h];
    }
}

/* Inserts (s -> v); returns the existing value instead when s is already there. */
static int32_t map_put(StrMap *m, const char *s, size_t n, int32_t v) {
    if ((m->n + 1) * 2 > m->mask + 1) {
        StrMap big;
        map_init(&big, m->n + 1);
        for (size_t i = 0; i <= m->mask; i++)
            if (m->keys[i]) map_put(&big, m->keys[i], m->lens[i], m->vals[i]);
        map_free(m);
        *m = big;
    }
    size_t h = str_hash(s, n) & m->mask;
    for (; m->keys[h]; h = (h + 1) & m->mask)
        if (m->lens[h] == n && memcmp(m->keys[h], s, n) == 0) return m->vals[h];
    m->keys[h] = s;
    m->lens[h] = n;
    m->vals[h] = v;
    m->n++;
    return v;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ===================================================================== the loader */

typedef struct Tok {
    const char *s; /* borrowed from the cJSON tree; NULL = hole */
    size_t n;
    uint8_t flags; /* MOE_TOK_F_* */
} Tok;

typedef struct NormOut {
    uint32_t kind;
    const char *a, *b;
} NormOut;

typedef struct Loader {
    Diag *d;
    const char *file; /* tokenizer.json path, for messages */
    /* model */
    int32_t n_vocab;
    Tok *toks;
    StrMap vocab; /* model vocab */
    StrMap added; /* added token content -> id */
    uint32_t model_flags;
    int32_t unk_id;
    /* pipeline */
    NormOut norm[16];
    uint32_t n_norm;
    uint32_t pretok, max_digits, byte_level;
    int32_t prefix[16], suffix[16];
    uint32_t n_prefix, n_suffix;
    bool have_template;
    uint32_t dec_kind;
    const char *dec_replace[16][2];
    uint32_t n_dec_replace, dec_byte_fallback, strip_start;
    const char *strip_content;
    int32_t bos_id, eos_id;
} Loader;

const char tokjson_qwen2_split[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char tokjson_llama3_split[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *type_of(Loader *L, const cJSON *n, const char *what) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (!cJSON_IsString(t)) {
        diag_error(L->d, "%s: %s: missing 'type'; expected a string", L->file, what);
        return NULL;
    }
    return t->valuestring;
}

/* A boolean member: its value, dflt when absent or null; false + error when another type. */
static bool get_bool(Loader *L, const cJSON *n, const char *key, bool dflt, const char *what) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(n, key);
    if (!v || cJSON_IsNull(v)) return dflt;
    if (!cJSON_IsBool(v)) {
        diag_error(L->d, "%s: %s: '%s' must be true or false", L->file, what, key);
        return dflt;
    }
    return cJSON_IsTrue(v);
}

/* A string member or NULL (absent/null); error when another type. */
static const char *get_str(Loader *L, const cJSON *n, const char *key, const char *what) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(n, key);
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsString(v)) {
        diag_error(L->d, "%s: %s: '%s' must be a string", L->file, what, key);
        return NULL;
    }
    return v->valuestring;
}

/* pattern: {"String": s} -> s; a Regex pattern is an error naming the owner. */
static const char *string_pattern(Loader *L, const cJSON *n, const char *what) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(n, "pattern");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "String");
    if (cJSON_IsString(s) && s->valuestring[0]) return s->valuestring;
    if (cJSON_GetObjectItemCaseSensitive(p, "Regex"))
        diag_error(L->d, "%s: %s with a Regex pattern: not supported; supported: String patterns", L->file, what);
    else
        diag_error(L->d, "%s: %s: 'pattern' must be {\"String\": non-empty string}", L->file, what);
    return NULL;
}

static void parse_normalizer(Loader *L, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return;
    const char *type = type_of(L, n, "normalizer");
    if (!type) return;
    if (!strcmp(type, "Sequence")) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *it;
        if (!cJSON_IsArray(items)) {
            diag_error(L->d, "%s: normalizer 'Sequence': 'normalizers' must be an array", L->file);
            return;
        }
        cJSON_ArrayForEach(it, items) parse_normalizer(L, it);
        return;
    }
    if (L->n_norm == 16) {
        diag_error(L->d, "%s: normalizer: more than 16 steps; not supported", L->file);
        return;
    }
    NormOut *o = &L->norm[L->n_norm];
    if (!strcmp(type, "NFC")) {
        o->kind = MOE_TOK_NORM_NFC;
    } else if (!strcmp(type, "Prepend")) {
        o->kind = MOE_TOK_NORM_PREPEND;
        o->a = get_str(L, n, "prepend", "normalizer 'Prepend'");
        if (!o->a) {
            diag_error(L->d, "%s: normalizer 'Prepend': missing 'prepend'", L->file);
            return;
        }
    } else if (!strcmp(type, "Replace")) {
        o->kind = MOE_TOK_NORM_REPLACE;
        o->a = string_pattern(L, n, "normalizer 'Replace'");
        o->b = get_str(L, n, "content", "normalizer 'Replace'");
        if (!o->a) return;
        if (!o->b) {
            diag_error(L->d, "%s: normalizer 'Replace': missing 'content'", L->file);
            return;
        }
    } else {
        diag_error(L->d,
                   "%s: normalizer '%s': not supported; supported: NFC, Prepend, Replace (String pattern), Sequence",
                   L->file, type);
        return;
    }
    L->n_norm++;
}

static void parse_pretok_one(Loader *L, const cJSON *n, int index, int count) {
    const char *type = type_of(L, n, "pre_tokenizer");
    if (!type) return;
    if (!strcmp(type, "Split")) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(p, "Regex");
        const char *behavior = get_str(L, n, "behavior", "pre_tokenizer 'Split'");
        if (!cJSON_IsString(re)) {
            diag_error(L->d,
                       "%s: pre_tokenizer 'Split' with a String pattern: not supported; supported: the Qwen2 and "
                       "Llama-3 regexes",
                       L->file);
        } else if (strcmp(re->valuestring, tokjson_qwen2_split) && strcmp(re->valuestring, tokjson_llama3_split)) {
            diag_error(
                L->d,
                "%s: pre_tokenizer 'Split': regex '%.120s': not supported; supported: the Qwen2 and Llama-3 regexes",
                L->file, re->valuestring);
        } else if (!behavior || strcmp(behavior, "Isolated")) {
            diag_error(L->d, "%s: pre_tokenizer 'Split': behavior '%s': not supported; supported: Isolated", L->file,
                       behavior ? behavior : "(missing)");
        } else if (get_bool(L, n, "invert", false, "pre_tokenizer 'Split'")) {
            diag_error(L->d, "%s: pre_tokenizer 'Split': invert=true: not supported", L->file);
        } else if (index != 0 || L->pretok) {
            diag_error(L->d, "%s: pre_tokenizer 'Split': only supported first in the Sequence", L->file);
        } else {
            L->pretok = MOE_TOK_PRE_SPLIT_QWEN;
            L->max_digits = strcmp(re->valuestring, tokjson_qwen2_split) ? 3 : 1;
        }
    } else if (!strcmp(type, "ByteLevel")) {
        if (get_bool(L, n, "use_regex", true, "pre_tokenizer 'ByteLevel'"))
            diag_error(L->d,
                       "%s: pre_tokenizer 'ByteLevel' with use_regex=true (the GPT-2 split): not supported; supported: "
                       "use_regex=false after a Split",
                       L->file);
        else if (get_bool(L, n, "add_prefix_space", true, "pre_tokenizer 'ByteLevel'"))
            diag_error(L->d, "%s: pre_tokenizer 'ByteLevel' with add_prefix_space=true: not supported", L->file);
        else if (index != count - 1 || L->byte_level)
            diag_error(L->d, "%s: pre_tokenizer 'ByteLevel': only supported last in the Sequence", L->file);
        else
            L->byte_level = 1;
    } else {
        diag_error(L->d,
                   "%s: pre_tokenizer '%s': not supported; supported: Split (the Qwen2/Llama-3 regex), ByteLevel "
                   "(use_regex=false), Sequence of those",
                   L->file, type);
    }
}

static void parse_pretok(Loader *L, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return;
    const char *type = type_of(L, n, "pre_tokenizer");
    if (!type) return;
    if (strcmp(type, "Sequence")) {
        parse_pretok_one(L, n, 0, 1);
        return;
    }
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(n, "pretokenizers"), *it;
    if (!cJSON_IsArray(items)) {
        diag_error(L->d, "%s: pre_tokenizer 'Sequence': 'pretokenizers' must be an array", L->file);
        return;
    }
    int count = cJSON_GetArraySize(items), i = 0;
    cJSON_ArrayForEach(it, items) parse_pretok_one(L, it, i++, count);
}

/* The ids of special token `name` in a TemplateProcessing's special_tokens map. */
static void template_ids(Loader *L, const cJSON *specials, const char *name, bool before) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(e, "ids"), *it;
    if (!cJSON_IsArray(ids)) {
        diag_error(L->d, "%s: post_processor 'TemplateProcessing': special token '%s' missing from special_tokens",
                   L->file, name);
        return;
    }
    cJSON_ArrayForEach(it, ids) {
        uint32_t *n = before ? &L->n_prefix : &L->n_suffix;
        int32_t *list = before ? L->prefix : L->suffix;
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= L->n_vocab ||
            it->valuedouble != (double)it->valueint) {
            diag_error(L->d,
                       "%s: post_processor 'TemplateProcessing': special token '%s': bad id; expected an id in [0, %d)",
                       L->file, name, L->n_vocab);
            return;
        }
        if (*n == 16) {
            diag_error(L->d, "%s: post_processor 'TemplateProcessing': more than 16 special ids; not supported",
                       L->file);
            return;
        }
        list[(*n)++] = it->valueint;
    }
}

static void parse_template(Loader *L, const cJSON *n) {
    if (L->have_template) {
        diag_error(L->d, "%s: post_processor: more than one TemplateProcessing; not supported", L->file);
        return;
    }
    L->have_template = true;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(n, "single"), *it;
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(n, "special_tokens");
    if (!cJSON_IsArray(single)) {
        diag_error(L->d, "%s: post_processor 'TemplateProcessing': 'single' must be an array of pieces", L->file);
        return;
    }
    bool seen_a = false;
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
        const char *id = get_str(L, sp ? sp : sq, "id", "post_processor 'TemplateProcessing'");
        if (sp && id) {
            template_ids(L, specials, id, !seen_a);
        } else if (sq && id && !strcmp(id, "A") && !seen_a) {
            seen_a = true;
        } else {
            diag_error(L->d,
                       "%s: post_processor 'TemplateProcessing': single template piece not supported; expected "
                       "SpecialToken or one Sequence 'A'",
                       L->file);
            return;
        }
    }
    if (!seen_a) diag_error(L->d, "%s: post_processor 'TemplateProcessing': single template has no $A", L->file);
}

static void parse_postproc(Loader *L, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return;
    const char *type = type_of(L, n, "post_processor");
    if (!type) return;
    if (!strcmp(type, "ByteLevel")) return; /* offsets only: adds no ids */
    if (!strcmp(type, "TemplateProcessing")) {
        parse_template(L, n);
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(n, "processors"), *it;
        if (!cJSON_IsArray(items)) {
            diag_error(L->d, "%s: post_processor 'Sequence': 'processors' must be an array", L->file);
            return;
        }
        cJSON_ArrayForEach(it, items) parse_postproc(L, it);
    } else {
        diag_error(L->d, "%s: post_processor '%s': not supported; supported: TemplateProcessing, ByteLevel, Sequence",
                   L->file, type);
    }
}

static void parse_decoder(Loader *L, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) {
        diag_error(
            L->d,
            "%s: decoder: null: not supported; supported: ByteLevel, Sequence [Replace, ByteFallback, Fuse, Strip]",
            L->file);
        return;
    }
    const char *type = type_of(L, n, "decoder");
    if (!type) return;
    if (!strcmp(type, "ByteLevel")) {
        L->dec_kind = MOE_TOK_DEC_BYTE_LEVEL;
        return;
    }
    L->dec_kind = MOE_TOK_DEC_PIECES;
    const cJSON *items = n, *it;
    bool seq = !strcmp(type, "Sequence");
    if (seq) {
        items = cJSON_GetObjectItemCaseSensitive(n, "decoders");
        if (!cJSON_IsArray(items)) {
            diag_error(L->d, "%s: decoder 'Sequence': 'decoders' must be an array", L->file);
            return;
        }
    }
    int phase = 0; /* 0 Replace*, 1 after ByteFallback, 2 after Fuse, 3 after Strip */
    for (it = seq ? items->child : items; it; it = seq ? it->next : NULL) {
        const char *t = type_of(L, it, "decoder");
        if (!t) return;
        if (!strcmp(t, "Replace") && phase == 0) {
            const char *pat = string_pattern(L, it, "decoder 'Replace'");
            const char *content = get_str(L, it, "content", "decoder 'Replace'");
            if (!pat || !content) return;
            if (L->n_dec_replace == 16) {
                diag_error(L->d, "%s: decoder: more than 16 Replace steps; not supported", L->file);
                return;
            }
            L->dec_replace[L->n_dec_replace][0] = pat;
            L->dec_replace[L->n_dec_replace++][1] = content;
        } else if (!strcmp(t, "ByteFallback") && phase == 0) {
            L->dec_byte_fallback = 1;
            phase = 1;
        } else if (!strcmp(t, "Fuse") && phase <= 1) {
            phase = 2;
        } else if (!strcmp(t, "Strip") && phase == 2) {
            const char *content = get_str(L, it, "content", "decoder 'Strip'");
            const cJSON *start = cJSON_GetObjectItemCaseSensitive(it, "start");
            const cJSON *stop = cJSON_GetObjectItemCaseSensitive(it, "stop");
            if (!content || !cJSON_IsNumber(start) || start->valueint < 0 || start->valueint > 1000 ||
                !cJSON_IsNumber(stop)) {
                diag_error(L->d, "%s: decoder 'Strip': expected 'content' (one character), 'start' and 'stop'",
                           L->file);
                return;
            }
            if (stop->valueint != 0) {
                diag_error(L->d, "%s: decoder 'Strip' with stop=%d: not supported; supported: stop=0", L->file,
                           stop->valueint);
                return;
            }
            L->strip_content = content;
            L->strip_start = (uint32_t)start->valueint;
            phase = 3;
        } else if (!strcmp(t, "Replace") || !strcmp(t, "ByteFallback") || !strcmp(t, "Fuse") || !strcmp(t, "Strip")) {
            diag_error(L->d,
                       "%s: decoder '%s' at this place in the Sequence: not supported; supported order: Replace*, "
                       "ByteFallback, Fuse, Strip",
                       L->file, t);
            return;
        } else {
            diag_error(
                L->d,
                "%s: decoder '%s': not supported; supported: ByteLevel, Sequence [Replace, ByteFallback, Fuse, Strip]",
                L->file, t);
            return;
        }
    }
}

/* Reads model.vocab into L->toks (sized by max id over vocab and added tokens). */
static bool parse_model(Loader *L, const cJSON *model, const cJSON *added) {
    const char *type = get_str(L, model, "type", "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!type && cJSON_IsArray(merges)) type = "BPE"; /* HF guesses BPE from the fields */
    if (!type || strcmp(type, "BPE")) {
        diag_error(L->d, "%s: model '%s': not supported; supported: BPE", L->file, type ? type : "(no type)");
        return false;
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        diag_error(L->d, "%s: model 'BPE': dropout: not supported; expected null", L->file);
    const char *pfx = get_str(L, model, "continuing_subword_prefix", "model 'BPE'");
    const char *sfx = get_str(L, model, "end_of_word_suffix", "model 'BPE'");
    if (pfx && *pfx)
        diag_error(L->d, "%s: model 'BPE': continuing_subword_prefix '%s': not supported; expected null or \"\"",
                   L->file, pfx);
    if (sfx && *sfx)
        diag_error(L->d, "%s: model 'BPE': end_of_word_suffix '%s': not supported; expected null or \"\"", L->file,
                   sfx);
    if (get_bool(L, model, "byte_fallback", false, "model 'BPE'")) L->model_flags |= MOE_TOK_MODEL_BYTE_FALLBACK;
    if (get_bool(L, model, "fuse_unk", false, "model 'BPE'")) L->model_flags |= MOE_TOK_MODEL_FUSE_UNK;
    if (get_bool(L, model, "ignore_merges", false, "model 'BPE'")) L->model_flags |= MOE_TOK_MODEL_IGNORE_MERGES;
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        diag_error(L->d, "%s: model 'BPE': expected 'vocab' (object) and 'merges' (array)", L->file);
        return false;
    }
    if (diag_failed(L->d)) return false;

    const cJSON *it;
    int64_t max_id = -1, n_added = 0;
    size_t count = 0;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 28) ||
            it->valuedouble != (double)it->valueint) {
            diag_error(L->d, "%s: model.vocab: token '%s': id must be an integer in [0, 2^28)", L->file, it->string);
            return false;
        }
        if (it->valueint > max_id) max_id = it->valueint;
        count++;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 28) ||
            id->valuedouble != (double)id->valueint) {
            diag_error(L->d, "%s: added_tokens: 'id' must be an integer in [0, 2^28)", L->file);
            return false;
        }
        if (id->valueint > max_id) max_id = id->valueint;
        n_added++;
    }
    /* ids index a table: a few gaps are fine, but not ids far beyond the tokens there are (an id
     * of 2^28 in a small file would size a 4 GB table) */
    int64_t id_limit = 2 * ((int64_t)count + n_added) + 1024;
    if (max_id >= id_limit) {
        diag_error(L->d, "%s: model.vocab: largest id %" PRId64 " for %zu tokens and %" PRId64 " added tokens; expected "
                   "ids below %" PRId64 " (about one id per token)", L->file, max_id, count, n_added, id_limit);
        return false;
    }
    if (max_id < 0) {
        diag_error(L->d, "%s: model.vocab: empty", L->file);
        return false;
    }
    L->n_vocab = (int32_t)max_id + 1;
    L->toks = xcalloc((size_t)L->n_vocab, sizeof *L->toks);
    map_init(&L->vocab, count);
    cJSON_ArrayForEach(it, vocab) {
        Tok *t = &L->toks[it->valueint];
        size_t n = strlen(it->string);
        if (t->s) {
            diag_error(L->d, "%s: model.vocab: id %d used by both '%s' and '%s'", L->file, it->valueint, t->s,
                       it->string);
            return false;
        }
        if (!utf8_ok(it->string, n)) {
            diag_error(L->d, "%s: model.vocab: token with id %d is not valid UTF-8", L->file, it->valueint);
            return false;
        }
        t->s = it->string;
        t->n = n;
        t->flags = MOE_TOK_F_PRESENT | MOE_TOK_F_MODEL;
        map_put(&L->vocab, it->string, n, it->valueint);
    }
    const char *unk = get_str(L, model, "unk_token", "model 'BPE'");
    L->unk_id = -1;
    if (unk && (L->unk_id = map_get(&L->vocab, unk, strlen(unk))) < 0)
        diag_error(L->d, "%s: model 'BPE': unk_token '%s': not in the vocab", L->file, unk);
    return !diag_failed(L->d);
}

static bool parse_added(Loader *L, const cJSON *added) {
    const cJSON *it;
    map_init(&L->added, 64);
    if (!added || cJSON_IsNull(added)) return true;
    if (!cJSON_IsArray(added)) {
        diag_error(L->d, "%s: added_tokens: expected an array", L->file);
        return false;
    }
    cJSON_ArrayForEach(it, added) {
        int32_t id = cJSON_GetObjectItemCaseSensitive(it, "id")->valueint; /* checked in parse_model */
        const char *content = get_str(L, it, "content", "added_tokens");
        if (!content || !content[0]) {
            diag_error(L->d, "%s: added_tokens: id %d: 'content' must be a non-empty string", L->file, id);
            return false;
        }
        size_t n = strlen(content);
        if (!utf8_ok(content, n)) {
            diag_error(L->d, "%s: added_tokens: id %d: content is not valid UTF-8", L->file, id);
            return false;
        }
        static const char *const flags[] = {"normalized", "lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 4; k++)
            if (get_bool(L, it, flags[k], false, "added_tokens")) {
                diag_error(L->d, "%s: added token '%s' (id %d): %s=true: not supported; supported: %s=false", L->file,
                           content, id, flags[k], flags[k]);
                return false;
            }
        Tok *t = &L->toks[id];
        if (t->s && (t->n != n || memcmp(t->s, content, n))) {
            diag_error(L->d, "%s: added token '%s' (id %d): id %d is '%s' in model.vocab", L->file, content, id, id,
                       t->s);
            return false;
        }
        int32_t vid = map_get(&L->vocab, content, n);
        if (vid >= 0 && vid != id) {
            diag_error(L->d, "%s: added token '%s' (id %d): model.vocab has it as id %d", L->file, content, id, vid);
            return false;
        }
        if (map_put(&L->added, content, n, id) != id) {
            diag_error(L->d, "%s: added token '%s': listed twice with different ids", L->file, content);
            return false;
        }
        t->s = content;
        t->n = n;
        t->flags |= MOE_TOK_F_PRESENT | MOE_TOK_F_ADDED;
        if (get_bool(L, it, "special", false, "added_tokens")) t->flags |= MOE_TOK_F_SPECIAL;
    }
    return !diag_failed(L->d);
}

/* Writes the merges section (validating each merge) into b. */
static bool put_merges(Loader *L, Buf *b, const cJSON *merges) {
    put_u32(b, (uint32_t)cJSON_GetArraySize(merges));
    const cJSON *it;
    size_t idx = 0, cap = 256;
    char *cat = xmalloc(cap);
    bool ok = true;
    cJSON_ArrayForEach(it, merges) {
        const char *parts[2];
        size_t lens[2];
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                diag_error(L->d, "%s: model.merges[%zu] '%s': expected two tokens separated by one space", L->file, idx,
                           it->valuestring);
                ok = false;
                break;
            }
            parts[0] = it->valuestring, lens[0] = (size_t)(sp - it->valuestring);
            parts[1] = sp + 1, lens[1] = strlen(sp + 1);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            parts[0] = it->child->valuestring, lens[0] = strlen(parts[0]);
            parts[1] = it->child->next->valuestring, lens[1] = strlen(parts[1]);
        } else {
            diag_error(L->d, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", L->file, idx);
            ok = false;
            break;
        }
        int32_t ids[3];
        for (int k = 0; k < 2 && ok; k++) {
            ids[k] = map_get(&L->vocab, parts[k], lens[k]);
            if (ids[k] < 0) {
                diag_error(L->d, "%s: model.merges[%zu]: token '%.*s' is not in the vocab", L->file, idx, (int)lens[k],
                           parts[k]);
                ok = false;
            }
        }
        if (!ok) break;
        if (lens[0] + lens[1] > cap) cat = xrealloc(cat, cap = (lens[0] + lens[1]) * 2);
        memcpy(cat, parts[0], lens[0]);
        memcpy(cat + lens[0], parts[1], lens[1]);
        ids[2] = map_get(&L->vocab, cat, lens[0] + lens[1]);
        if (ids[2] < 0) {
            diag_error(L->d, "%s: model.merges[%zu]: the merged token '%.*s' is not in the vocab", L->file, idx,
                       (int)(lens[0] + lens[1]), cat);
            ok = false;
            break;
        }
        for (int k = 0; k < 3; k++) put_i32(b, ids[k]);
        idx++;
    }
    free(cat);
    return ok;
}

/* bos/eos from tokenizer_config.json: a string, {"content": ...} or null. Returns true when the
 * key was present (id set, -1 for null). */
static bool config_token(Loader *L, const char *cfg_path, const cJSON *cfg, const char *key, int32_t *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v) return false;
    *id = -1;
    if (cJSON_IsNull(v)) return true;
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) {
        diag_error(L->d, "%s: %s: expected a string, {\"content\": string} or null", cfg_path, key);
        return true;
    }
    size_t n = strlen(v->valuestring);
    *id = map_get(&L->added, v->valuestring, n);
    if (*id < 0) *id = map_get(&L->vocab, v->valuestring, n);
    if (*id < 0) diag_error(L->d, "%s: %s '%s': not in the tokenizer's vocabulary", cfg_path, key, v->valuestring);
    return true;
}

static int32_t first_added(Loader *L, const char *const *names) {
    for (; *names; names++) {
        int32_t id = map_get(&L->added, *names, strlen(*names));
        if (id >= 0) return id;
    }
    return -1;
}

/* bos/eos: config's bos_token/eos_token when it has them, otherwise the post-processor's first
 * prefix / suffix id, otherwise the first added token with a usual name. */
static void find_bos_eos(Loader *L, const char *cfg_name, const cJSON *cfg) {
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>", NULL};
    static const char *const eos_names[] = {"</s>",  "<|im_end|>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>",
                                            "<eos>", NULL};
    bool have_bos = false, have_eos = false;
    if (cfg) {
        have_bos = config_token(L, cfg_name, cfg, "bos_token", &L->bos_id);
        have_eos = config_token(L, cfg_name, cfg, "eos_token", &L->eos_id);
    }
    if (!have_bos) L->bos_id = L->n_prefix ? L->prefix[0] : first_added(L, bos_names);
    if (!have_eos) L->eos_id = L->n_suffix ? L->suffix[0] : first_added(L, eos_names);
}

static void put_blob(Loader *L, Buf *b) {
    buf_put(b, MOE_TOK_MAGIC, 8);
    put_u32(b, MOE_TOK_VERSION);
    put_u32(b, (uint32_t)L->n_vocab);
    put_u32(b, L->model_flags);
    put_i32(b, L->unk_id);
    put_i32(b, L->bos_id);
    put_i32(b, L->eos_id);
    put_u32(b, L->n_norm);
    for (uint32_t i = 0; i < L->n_norm; i++) {
        put_u32(b, L->norm[i].kind);
        if (L->norm[i].kind == MOE_TOK_NORM_PREPEND) put_str(b, L->norm[i].a, strlen(L->norm[i].a));
        if (L->norm[i].kind == MOE_TOK_NORM_REPLACE) {
            put_str(b, L->norm[i].a, strlen(L->norm[i].a));
            put_str(b, L->norm[i].b, strlen(L->norm[i].b));
        }
    }
    put_u32(b, L->pretok);
    put_u32(b, L->pretok ? L->max_digits : 0);
    put_u32(b, L->byte_level);
    put_u32(b, L->n_prefix);
    for (uint32_t i = 0; i < L->n_prefix; i++) put_i32(b, L->prefix[i]);
    put_u32(b, L->n_suffix);
    for (uint32_t i = 0; i < L->n_suffix; i++) put_i32(b, L->suffix[i]);
    put_u32(b, L->dec_kind);
    if (L->dec_kind == MOE_TOK_DEC_PIECES) {
        put_u32(b, L->n_dec_replace);
        for (uint32_t i = 0; i < L->n_dec_replace; i++) {
            put_str(b, L->dec_replace[i][0], strlen(L->dec_replace[i][0]));
            put_str(b, L->dec_replace[i][1], strlen(L->dec_replace[i][1]));
        }
        put_u32(b, L->dec_byte_fallback);
        put_u32(b, L->strip_start);
        const char *sc = L->strip_content ? L->strip_content : "";
        put_str(b, sc, strlen(sc));
    }
    for (int32_t id = 0; id < L->n_vocab; id++) {
        const Tok *t = &L->toks[id];
        uint8_t f = t->flags;
        buf_put(b, &f, 1);
        put_str(b, t->s ? t->s : "", t->s ? t->n : 0);
    }
}

bool tokjson_load_json(Arena *a, Diag *d, const char *name, const cJSON *root, const char *config_name,
                       const cJSON *config, void **blob, size_t *blob_len) {
    const char *file = name;
    if (!cJSON_IsObject(root)) {
        diag_error(d, "%s: not a valid JSON object", file);
        return false;
    }
    Loader L = {.d = d, .file = file, .unk_id = -1, .bos_id = -1, .eos_id = -1};
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const char *keys[] = {"truncation", "padding"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        if (v && !cJSON_IsNull(v)) diag_error(d, "%s: %s: not supported; expected null", file, keys[k]);
    }
    if (!cJSON_IsObject(model))
        diag_error(d, "%s: model: missing; expected an object", file);
    else if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        diag_error(d, "%s: added_tokens: expected an array", file);
    Buf b = {0};
    bool ok = !diag_failed(d) && parse_model(&L, model, added) && parse_added(&L, added);
    if (ok) {
        parse_normalizer(&L, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
        parse_pretok(&L, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
        parse_postproc(&L, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
        parse_decoder(&L, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
        ok = !diag_failed(d);
    }
    if (ok) {
        find_bos_eos(&L, config_name ? config_name : file, config);
        ok = !diag_failed(d);
    }
    if (ok) {
        put_blob(&L, &b);
        ok = put_merges(&L, &b, cJSON_GetObjectItemCaseSensitive(model, "merges"));
    }
    if (ok) {
        *blob = arena_alloc(a, b.n);
        memcpy(*blob, b.p, b.n);
        *blob_len = b.n;
    }
    free(b.p);
    free(L.toks);
    map_free(&L.vocab);
    map_free(&L.added);
    return ok;
}

bool tokjson_load(Arena *a, Diag *d, const char *path, void **blob, size_t *blob_len) {
    const char *file = is_dir(path) ? arena_printf(a, "%s/tokenizer.json", path) : path;
    size_t len;
    char *text = moe_read_text(file, &len);
    if (!text) {
        diag_error(d, "%s: cannot read: %s", file, strerror(errno));
        return false;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        diag_error(d, "%s: not a valid JSON object", file);
        cJSON_Delete(root);
        return false;
    }
    /* bos/eos come from tokenizer_config.json beside it, when there is one */
    const char *slash = strrchr(file, '/');
    char *cfg_path = slash ? arena_printf(a, "%.*s/tokenizer_config.json", (int)(slash - file), file)
                           : arena_strdup(a, "tokenizer_config.json");
    cJSON *cfg = NULL;
    bool ok = true;
    if ((text = moe_read_text(cfg_path, &len))) {
        cfg = cJSON_ParseWithLength(text, len);
        free(text);
        if (!cJSON_IsObject(cfg)) {
            diag_error(d, "%s: not a valid JSON object", cfg_path);
            ok = false;
        }
    }
    ok = ok && tokjson_load_json(a, d, file, root, cfg_path, cfg, blob, blob_len);
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    return ok;
}

/* ===================================================================== synthetic tokenizer */

static const char SAMPLE_TEXT[] =
    "The harbor town woke slowly on the morning the new ferry arrived. Fishermen were already back from the "
    "night's work, sorting their catch on the wet stones of the quay, and the smell of salt and diesel hung "
    "over everything. Children ran along the sea wall to see the ship come in, shouting to each other over "
    "the noise of the gulls. The ferry was larger than the old one, painted white and blue, with a bright "
    "red funnel that could be seen from the hills above the town. Its captain, a quiet woman who had sailed "
    "these waters for twenty years, brought it alongside the pier with such care that the ropes barely "
    "needed to be pulled.\n\n"
    "For the people who lived there, the ferry was more than a boat. It carried bread and letters, doctors "
    "and teachers, tourists in the summer and students in the autumn. When storms closed the crossing, the "
    "whole island seemed to hold its breath. Shops ran low on fresh fruit, the school postponed its exams, "
    "and old men sat by the window of the cafe, watching the grey water and predicting, each with great "
    "confidence, exactly when the weather would turn. They were usually wrong, but nobody minded, because "
    "the arguments passed the time and gave everyone something to talk about.\n\n"
    "A computer works in a similar way to that harbor, if you look at it from far enough away. Data arrives "
    "in small packets, is sorted and stored, and is sent out again to the places where it is needed. A "
    "compiler is the planner of this traffic: it reads a program written by a person and turns it into a "
    "schedule of simple steps that a machine can follow without thinking. Good planning makes the difference "
    "between a program that finishes in a second and one that runs all afternoon. The best compilers look "
    "for work that can be shared, values that can be kept close at hand, and loops that can be arranged so "
    "that the processor never waits for memory.\n\n"
    "Language models are an unusual kind of program. Instead of rules written by hand, they contain billions "
    "of numbers learned from text, and running them means multiplying large tables of those numbers again "
    "and again. A mixture of experts is one way to make such a model bigger without making every step "
    "slower. The model is split into many smaller networks, called experts, and a small router decides, for "
    "each word, which two or three experts should look at it. The other experts rest. In this way the model "
    "can store a great deal of knowledge while only using a small part of it at any moment, much as a large "
    "library has thousands of books but a reader only opens a few of them on a given day.\n\n"
    "Before any of this can happen, the text has to be cut into pieces that the model understands. This is "
    "the job of the tokenizer. It takes a sentence such as \"The ferry arrived early this morning\" and "
    "breaks it into a short list of tokens, each of which is a common word or a fragment of a word. Frequent "
    "words usually become a single token, while rare names and long technical terms are spelled out from "
    "several smaller parts. Numbers, punctuation and spaces all need careful handling, because a tokenizer "
    "that treats them differently from the one used during training will confuse the model in subtle ways "
    "that are hard to notice and even harder to debug.\n\n"
    "Writing a tokenizer is therefore a matter of patience rather than cleverness. Every rule has to be "
    "followed exactly: which characters count as letters, where a number begins and ends, what happens to a "
    "space in front of a word, and how unknown symbols fall back to raw bytes. The reward for this care is "
    "that the rest of the system can trust the numbers it receives. When the tokens are right, the model "
    "speaks clearly; when they are wrong, even a very large model will stumble over simple questions, "
    "repeat itself, or answer in a language nobody asked for.\n\n"
    "Back in the harbor, the ferry was ready to leave again by noon. Trucks rolled off and new ones rolled "
    "on, a dog barked at a crate of chickens, and a group of hikers argued about whether they had time for "
    "coffee. The captain checked the sky, which was clear except for a thin line of cloud in the west, and "
    "gave the signal. The engines grew louder, the water behind the ship turned to white foam, and slowly, "
    "steadily, the boat pulled away from the pier. On the sea wall the children waved until it was only a "
    "small bright shape on the horizon, and then they went home for lunch, already planning to come back and "
    "watch it return in the evening.\n\n"
    "Small towns and large machines have this in common: both depend on many ordinary tasks being done "
    "well, day after day, by people or programs that rarely get noticed. A timetable that is kept, a value "
    "that is computed correctly, a message that arrives when it should. None of it is remarkable on its "
    "own, and yet together these small reliable things are what let everything else work. The ferry will "
    "come again tomorrow, the compiler will run again tonight, and with luck nobody will have to think about "
    "either of them at all.\n";

const char *tokjson_sample_text(void) { return SAMPLE_TEXT; }

typedef struct Synth {
    Arena *a;
    StrMap map;
    const char **tok; /* [vocab_size] */
    int32_t n, cap;
    int32_t (*merges)[2];
    int32_t n_merges, cap_merges;
} Synth;

/* Adds token s (arena copy) unless present; returns its id (-1 when the vocabulary is full). */
static int32_t synth_add(Synth *s, const char *str) {
    int32_t id = map_get(&s->map, str, strlen(str));
    if (id >= 0) return id;
    if (s->n == s->cap) return -1;
    const char *c = arena_strdup(s->a, str);
    s->tok[s->n] = c;
    map_put(&s->map, c, strlen(c), s->n);
    return s->n++;
}

/* Adds the merge (l, r) and its result token; false when the vocabulary is full. */
static bool synth_merge(Synth *s, int32_t l, int32_t r, int32_t *result) {
    char *cat = arena_printf(s->a, "%s%s", s->tok[l], s->tok[r]);
    bool is_new = map_get(&s->map, cat, strlen(cat)) < 0;
    if (is_new && s->n == s->cap) return false;
    *result = synth_add(s, cat);
    if (s->n_merges == s->cap_merges) {
        s->cap_merges = s->cap_merges ? s->cap_merges * 2 : 1024;
        s->merges = xrealloc(s->merges, (size_t)s->cap_merges * sizeof *s->merges);
    }
    s->merges[s->n_merges][0] = l;
    s->merges[s->n_merges++][1] = r;
    return true;
}

/* Byte-pair training on the sample text's words ("▁word"), most frequent pair first. */
static void synth_train(Synth *s) {
    const char *text = SAMPLE_TEXT;
    size_t n = strlen(text);
    int32_t *sym = xmalloc((n * 2 + 2) * sizeof *sym); /* words as id runs, separated by -1 */
    size_t m = 0;
    int32_t space = map_get(&s->map, "\xE2\x96\x81", 3);
    for (size_t i = 0; i < n;) {
        while (i < n && (text[i] == ' ' || text[i] == '\n')) i++;
        if (i == n) break;
        sym[m++] = -1;
        sym[m++] = space;
        for (; i < n && text[i] != ' ' && text[i] != '\n'; i++) sym[m++] = map_get(&s->map, text + i, 1);
    }
    sym[m++] = -1;
    size_t cap = 64;
    while (cap < m * 2) cap *= 2;
    uint64_t *keys = xmalloc(cap * sizeof *keys);
    uint32_t *counts = xmalloc(cap * sizeof *counts);
    while (s->n < s->cap) {
        memset(keys, 0xFF, cap * sizeof *keys);
        uint64_t best = UINT64_MAX;
        uint32_t best_count = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            if (sym[i] < 0 || sym[i + 1] < 0) continue;
            uint64_t key = (uint64_t)sym[i] << 32 | (uint32_t)sym[i + 1];
            size_t h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
            while (keys[h] != UINT64_MAX && keys[h] != key) h = (h + 1) & (cap - 1);
            if (keys[h] == UINT64_MAX) keys[h] = key, counts[h] = 0;
            uint32_t c = ++counts[h];
            if (c > best_count || (c == best_count && key < best)) best = key, best_count = c;
        }
        if (best_count < 2) break;
        int32_t l = (int32_t)(best >> 32), r = (int32_t)(uint32_t)best, res;
        if (!synth_merge(s, l, r, &res)) break;
        size_t w = 0;
        for (size_t i = 0; i < m; i++) {
            if (i + 1 < m && sym[i] == l && sym[i + 1] == r)
                sym[w++] = res, i++;
            else
                sym[w++] = sym[i];
        }
        m = w;
    }
    free(keys);
    free(counts);
    free(sym);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void synth_write(Synth *s, FILE *f) {
    static const char *const specials[3] = {"<unk>", "<s>", "</s>"};
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n", f);
    for (int i = 0; i < 3; i++)
        fprintf(f,
                "    {\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                "\"normalized\": false, \"special\": true}%s\n",
                i, specials[i], i < 2 ? "," : "");
    fputs("  ],\n"
          "  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
          "\"\xE2\x96\x81\"}, "
          "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xE2\x96\x81\"}]},\n"
          "  \"pre_tokenizer\": null,\n"
          "  \"post_processor\": {\"type\": \"TemplateProcessing\", "
          "\"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", "
          "\"type_id\": 0}}], "
          "\"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", "
          "\"type_id\": 0}}, "
          "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "
          "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},\n"
          "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": "
          "\"\xE2\x96\x81\"}, "
          "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, "
          "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},\n"
          "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": \"<unk>\",\n"
          "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": true,\n"
          "    \"byte_fallback\": true,\n    \"vocab\": {\n",
          f);
    for (int32_t i = 0; i < s->n; i++) {
        fputs("      ", f);
        json_str(f, s->tok[i]);
        fprintf(f, ": %d%s\n", i, i + 1 < s->n ? "," : "");
    }
    fputs("    },\n    \"merges\": [\n", f);
    for (int32_t i = 0; i < s->n_merges; i++) {
        char *m = arena_printf(s->a, "%s %s", s->tok[s->merges[i][0]], s->tok[s->merges[i][1]]);
        fputs("      ", f);
        json_str(f, m);
        fputs(i + 1 < s->n_merges ? ",\n" : "\n", f);
    }
    fputs("    ]\n  }\n}\n", f);
}

bool tokjson_write_synthetic(Diag *d, const char *path, int vocab_size) {
    if (vocab_size < TOKJSON_SYNTH_MIN_VOCAB || vocab_size > (1 << 22)) {
        diag_error(d, "%s: synthetic tokenizer: vocab_size must be in [%d, %d]; got %d", path, TOKJSON_SYNTH_MIN_VOCAB,
                   1 << 22, vocab_size);
        return false;
    }
    Synth s = {.a = arena_new(), .cap = vocab_size};
    s.tok = xcalloc((size_t)vocab_size, sizeof *s.tok);
    map_init(&s.map, (size_t)vocab_size);
    synth_add(&s, "<unk>");
    synth_add(&s, "<s>");
    synth_add(&s, "</s>");
    for (int b = 0; b < 256; b++) synth_add(&s, arena_printf(s.a, "<0x%02X>", b));
    /* base characters: every one a merge can start from */
    static const char base[] = "etaoinshrdlcumwfgypbvkjxqzETAOINSHRDLCUMWFGYPBVKJXQZ0123456789.,;:!?'\"()-";
    synth_add(&s, "\xE2\x96\x81");
    for (const char *c = base; *c; c++) synth_add(&s, (char[2]){*c, 0});
    synth_train(&s);
    /* fill the rest with existing tokens followed by a common letter */
    for (int32_t i = 259; i < s.n && s.n < s.cap; i++) {
        for (const char *c = base; *c >= 'a' && *c <= 'z' && s.n < s.cap; c++) {
            int32_t cid = map_get(&s.map, (char[2]){*c, 0}, 1), res;
            char *cat = arena_printf(s.a, "%s%c", s.tok[i], *c);
            if (cid >= 0 && map_get(&s.map, cat, strlen(cat)) < 0) synth_merge(&s, i, cid, &res);
        }
    }
    bool ok = s.n == vocab_size;
    if (!ok) diag_error(d, "%s: synthetic tokenizer: could only make %d of %d tokens", path, s.n, vocab_size);
    MoeOutFile o;
    if (ok && !moe_out_open(&o, path)) {
        diag_error(d, "%s: cannot write: %s", path, strerror(errno));
        ok = false;
    } else if (ok) {
        synth_write(&s, o.f);
        if (ferror(o.f)) o.failed = true;
        if (!moe_out_commit(&o)) {
            diag_error(d, "%s: cannot write: %s", path, strerror(errno));
            ok = false;
        }
    }
    free(s.tok);
    free(s.merges);
    map_free(&s.map);
    arena_destroy(s.a);
    return ok;
}
