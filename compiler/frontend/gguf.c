/* gguf: reading and writing llama.cpp's GGUF container (layout in gguf.h).
 *
 * Reading parses one part at a time from its bytes (an mmap'd file, or a caller's buffer for
 * the fuzzer) with a cursor that checks every read against the bytes left. Counts are bounded
 * before anything is allocated from them: by fixed limits and by the smallest encoding of what
 * they count (a hostile header can claim 2^60 tensors). Then the tensor infos are checked: a
 * supported ggml type, rows of whole blocks, element and byte counts without overflow, offsets
 * aligned, byte ranges inside the data section and disjoint. The first part of a split opens
 * the others; names and keys are checked for duplicates across the whole set. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    HEADER_BYTES = 24,          /* magic, version, tensor count, kv count */
    MIN_KV_BYTES = 13,          /* key length, an empty key, value type, a 1-byte value */
    MIN_TENSOR_BYTES = 24,      /* name length, empty name, n_dims 0, type, offset */
    MAX_KV = 1 << 20,
    MAX_TENSORS = 1 << 20,
    MAX_NAME = 1024,            /* keys and tensor names (ggml itself allows 63 bytes) */
    MAX_PARTS = 9999,
    DEFAULT_ALIGNMENT = 32,
};

/* ---------------------------------------------------------------- type tables */

static const char *const VALUE_TYPE_NAMES[GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};

/* Bytes of one scalar (0 for string and array). */
static const uint8_t VALUE_SIZE[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_type_name(GgufType t) { return (unsigned)t < GGUF_TYPE_COUNT ? VALUE_TYPE_NAMES[t] : "?"; }

static bool type_is_uint(GgufType t) { return t == GGUF_U8 || t == GGUF_U16 || t == GGUF_U32 || t == GGUF_U64; }
static bool type_is_sint(GgufType t) { return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64; }
static bool type_is_float(GgufType t) { return t == GGUF_F32 || t == GGUF_F64; }

/* ggml's tensor type ids; the gaps are ids ggml has retired. */
static const char *const GGML_NAMES[] = {
    [0] = "F32",      [1] = "F16",     [2] = "Q4_0",     [3] = "Q4_1",    [6] = "Q5_0",    [7] = "Q5_1",
    [8] = "Q8_0",     [9] = "Q8_1",    [10] = "Q2_K",    [11] = "Q3_K",   [12] = "Q4_K",   [13] = "Q5_K",
    [14] = "Q6_K",    [15] = "Q8_K",   [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S",
    [20] = "IQ4_NL",  [21] = "IQ3_S",  [22] = "IQ2_S",   [23] = "IQ4_XS", [24] = "I8",     [25] = "I16",
    [26] = "I32",     [27] = "I64",    [28] = "F64",     [29] = "IQ1_M",  [30] = "BF16",   [34] = "TQ1_0",
    [35] = "TQ2_0",   [39] = "MXFP4",
};

static const struct { uint32_t ggml; DType dt; } SUPPORTED[] = {
    {0, DT_F32},   {1, DT_F16},   {30, DT_BF16}, {2, DT_Q4_0},  {3, DT_Q4_1},  {6, DT_Q5_0},
    {7, DT_Q5_1},  {8, DT_Q8_0},  {12, DT_Q4_K}, {13, DT_Q5_K}, {14, DT_Q6_K},
};
enum { N_SUPPORTED = sizeof SUPPORTED / sizeof SUPPORTED[0] };
static const char SUPPORTED_LIST[] = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K";

const char *gguf_ggml_type_name(uint32_t t) {
    return t < sizeof GGML_NAMES / sizeof GGML_NAMES[0] && GGML_NAMES[t] ? GGML_NAMES[t] : "?";
}

bool gguf_dtype_of_ggml(uint32_t t, DType *out) {
    for (int i = 0; i < N_SUPPORTED; i++)
        if (SUPPORTED[i].ggml == t) return *out = SUPPORTED[i].dt, true;
    return false;
}

uint32_t gguf_ggml_of_dtype(DType t) {
    for (int i = 0; i < N_SUPPORTED; i++)
        if (SUPPORTED[i].dt == t) return SUPPORTED[i].ggml;
    MOE_UNREACHABLE();
}

/* ---------------------------------------------------------------- small helpers */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static uint64_t load_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp((*(const GgufKv *const *)a)->key, (*(const GgufKv *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const GgufTensor *const *)a)->ti.name, (*(const GgufTensor *const *)b)->ti.name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const GgufTensor *x = *(const GgufTensor *const *)a, *y = *(const GgufTensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->ti.nbytes > y->ti.nbytes) - (x->ti.nbytes < y->ti.nbytes);
}

/* ---------------------------------------------------------------- the cursor */

typedef struct Rd {
    const uint8_t *p;
    uint64_t size, at;
    Diag *d;
    const char *file;
} Rd;

static uint64_t bytes_left(const Rd *r) { return r->size - r->at; }

/* False after diag_error when fewer than n bytes are left. subj names the key or tensor. */
static bool need(Rd *r, uint64_t n, const char *subj, const char *what) {
    if (n <= bytes_left(r)) return true;
    diag_error(r->d, "%s: %s: %s runs past the end of the file (truncated?); expected %" PRIu64 " bytes at offset %" PRIu64
                     ", got %" PRIu64, r->file, subj, what, n, r->at, bytes_left(r));
    return false;
}

static bool rd_u32(Rd *r, const char *subj, const char *what, uint32_t *out) {
    if (!need(r, 4, subj, what)) return false;
    *out = (uint32_t)load_le(r->p + r->at, 4);
    r->at += 4;
    return true;
}

static bool rd_u64(Rd *r, const char *subj, const char *what, uint64_t *out) {
    if (!need(r, 8, subj, what)) return false;
    *out = load_le(r->p + r->at, 8);
    r->at += 8;
    return true;
}

/* A length-prefixed string of at most max bytes; *s points into the image (no NUL). */
static bool rd_str(Rd *r, const char *subj, const char *what, uint64_t max, const char **s, uint64_t *len) {
    uint64_t n;
    char lw[96];
    snprintf(lw, sizeof lw, "length of the %s", what);
    if (!rd_u64(r, subj, lw, &n)) return false;
    if (n > max) {
        diag_error(r->d, "%s: %s: %s too long; expected at most %" PRIu64 " bytes, got %" PRIu64, r->file, subj, what,
                   max, n);
        return false;
    }
    if (n > bytes_left(r)) {
        diag_error(r->d, "%s: %s: %s runs past the end of the file (truncated?); expected at most %" PRIu64
                         " bytes (the bytes left), got a length of %" PRIu64, r->file, subj, what, bytes_left(r), n);
        return false;
    }
    *s = (const char *)r->p + r->at;
    *len = n;
    r->at += n;
    return true;
}

/* A key or tensor name: bounded, without NUL bytes, copied into the arena. */
static const char *rd_name(Rd *r, Arena *a, const char *subj, const char *what) {
    const char *s;
    uint64_t n;
    if (!rd_str(r, subj, what, MAX_NAME, &s, &n)) return NULL;
    if (memchr(s, 0, (size_t)n)) {
        diag_error(r->d, "%s: %s: %s contains a NUL byte; expected text, got \"%.*s\\0...\"", r->file, subj, what,
                   (int)strlen(s), s);
        return NULL;
    }
    return arena_strndup(a, s, (size_t)n);
}

static bool value_type_ok(Rd *r, const char *subj, const char *what, uint32_t t) {
    if (t < GGUF_TYPE_COUNT) return true;
    diag_error(r->d, "%s: %s: unknown %s; expected 0..%d (uint8..float64), got %" PRIu32, r->file, subj, what,
               GGUF_TYPE_COUNT - 1, t);
    return false;
}

/* A fixed-size scalar of type t at p, widened into *kv. */
static void load_scalar(GgufType t, const uint8_t *p, GgufKv *kv) {
    uint64_t u = load_le(p, VALUE_SIZE[t]);
    switch (t) {
    case GGUF_I8: kv->v.i = (int8_t)u; break;
    case GGUF_I16: kv->v.i = (int16_t)u; break;
    case GGUF_I32: kv->v.i = (int32_t)u; break;
    case GGUF_I64: kv->v.i = (int64_t)u; break;
    case GGUF_F32: {
        uint32_t w = (uint32_t)u;
        float f;
        memcpy(&f, &w, 4);
        kv->v.f = f;
        break;
    }
    case GGUF_F64: memcpy(&kv->v.f, &u, 8); break;
    default: kv->v.u = u; break;
    }
}

static bool bool_ok(Rd *r, const char *subj, const char *what, uint8_t b) {
    if (b <= 1) return true;
    diag_error(r->d, "%s: %s: %s is not a bool; expected 0 or 1, got %u", r->file, subj, what, b);
    return false;
}

/* The value of one key/value (type, then value) into kv. */
static bool rd_value(Rd *r, Arena *a, const char *subj, GgufKv *kv) {
    uint32_t t;
    if (!rd_u32(r, subj, "value type", &t) || !value_type_ok(r, subj, "value type", t)) return false;
    kv->type = (GgufType)t;
    if (t == GGUF_STR) {
        const char *s;
        uint64_t n;
        if (!rd_str(r, subj, "string value", UINT64_MAX, &s, &n)) return false;
        kv->v.s = (GgufStr){arena_strndup(a, s, (size_t)n), n};
        return true;
    }
    if (t != GGUF_ARR) {
        if (!need(r, VALUE_SIZE[t], subj, "value")) return false;
        load_scalar(kv->type, r->p + r->at, kv);
        if (t == GGUF_BOOL && !bool_ok(r, subj, "value", r->p[r->at])) return false;
        r->at += VALUE_SIZE[t];
        return true;
    }
    uint32_t e;
    uint64_t n;
    if (!rd_u32(r, subj, "array element type", &e) || !value_type_ok(r, subj, "array element type", e)) return false;
    if (e == GGUF_ARR) {
        diag_error(r->d, "%s: %s: arrays of arrays are not supported; expected an array of numbers, bools or strings, "
                         "got an array of arrays", r->file, subj);
        return false;
    }
    if (!rd_u64(r, subj, "array length", &n)) return false;
    uint64_t min = e == GGUF_STR ? 8 : VALUE_SIZE[e];
    if (n > bytes_left(r) / min) {
        diag_error(r->d, "%s: %s: array length too large for the bytes left (truncated?); expected at most %" PRIu64
                         " elements of %s, got %" PRIu64, r->file, subj, bytes_left(r) / min, VALUE_TYPE_NAMES[e], n);
        return false;
    }
    kv->elem = (GgufType)e;
    kv->n = n;
    if (e != GGUF_STR) {
        const uint8_t *p = r->p + r->at;
        if (e == GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++) {
                char what[48];
                snprintf(what, sizeof what, "element %" PRIu64, i);
                if (!bool_ok(r, subj, what, p[i])) return false;
            }
        kv->arr = p;
        r->at += n * min;
        return true;
    }
    GgufStr *ss = arena_alloc(a, (size_t)n * sizeof *ss);
    for (uint64_t i = 0; i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "string element %" PRIu64, i);
        const char *s;
        uint64_t len;
        if (!rd_str(r, subj, what, UINT64_MAX, &s, &len)) return false;
        ss[i] = (GgufStr){arena_strndup(a, s, (size_t)len), len};
    }
    kv->arr = ss;
    return true;
}

/* ---------------------------------------------------------------- integer values */

/* kv's value as an integer in [lo, hi] (two's complement in *out); NULL, or the problem. */
static const char *int_of(const GgufKv *kv, int64_t lo, uint64_t hi, uint64_t *out) {
    if (type_is_uint(kv->type)) {
        if (kv->v.u > hi) return "value out of range";
        *out = kv->v.u;
        return NULL;
    }
    if (type_is_sint(kv->type)) {
        if (kv->v.i < lo || (kv->v.i > 0 && (uint64_t)kv->v.i > hi)) return "value out of range";
        *out = (uint64_t)kv->v.i;
        return NULL;
    }
    return "wrong type";
}

static void value_str(const GgufKv *kv, char *buf, size_t n) {
    if (type_is_uint(kv->type)) snprintf(buf, n, "%" PRIu64, kv->v.u);
    else if (type_is_sint(kv->type)) snprintf(buf, n, "%" PRId64, kv->v.i);
    else if (kv->type == GGUF_ARR) snprintf(buf, n, "an array of %s", gguf_type_name(kv->elem));
    else snprintf(buf, n, "a %s", gguf_type_name(kv->type));
}

/* One integer key of a part's metadata (linear search: used for the few keys the reader
 * needs itself). *found false when absent; false after diag_error when unusable. */
static bool part_int(Diag *d, const char *file, const GgufKv *kv, int n_kv, const char *key, int64_t lo, uint64_t hi,
                     const char *want, uint64_t *out, bool *found) {
    *found = false;
    for (int i = 0; i < n_kv; i++) {
        if (strcmp(kv[i].key, key)) continue;
        *found = true;
        const char *problem = int_of(&kv[i], lo, hi, out);
        if (!problem) return true;
        char got[64];
        value_str(&kv[i], got, sizeof got);
        diag_error(d, "%s: key '%s': %s; expected %s, got %s", file, key, problem, want, got);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- one part */

typedef struct Parsed {
    GgufKv *kv;
    int n_kv;
    const GgufKv **kv_sorted;
    GgufTensor *t;
    int n_t;
} Parsed;

static void describe_magic(const uint8_t *p, size_t size, char *buf, size_t n) {
    size_t at = 0;
    if (size == 0) {
        snprintf(buf, n, "an empty file");
        return;
    }
    at += (size_t)snprintf(buf, n, "the bytes");
    for (size_t i = 0; i < size && i < 4 && at < n; i++) at += (size_t)snprintf(buf + at, n - at, " %02x", p[i]);
}

/* Header, metadata and tensor infos of one part, checked against its bytes. */
static bool parse_part(Arena *a, Diag *d, GgufPart *pt, int part_no, Parsed *out) {
    const char *file = base_name(pt->path);
    const uint8_t *p = pt->map;
    Rd r = {p, pt->size, 0, d, file};
    memset(out, 0, sizeof *out);
    if (pt->size < 4 || memcmp(p, "GGUF", 4) != 0) {
        char got[64];
        describe_magic(p, pt->size, got, sizeof got);
        diag_error(d, "%s: magic: not a GGUF file; expected the bytes 47 47 55 46 (\"GGUF\"), got %s", file, got);
        return false;
    }
    r.at = 4;
    uint32_t version;
    uint64_t n_t, n_kv;
    if (!rd_u32(&r, "header", "version", &version)) return false;
    if (version != 2 && version != 3) {
        if (version == 1)
            diag_error(d, "%s: version: GGUF version 1 (32-bit counts) is not supported; expected 2 or 3, got 1", file);
        else if (version == 0x02000000u || version == 0x03000000u)
            diag_error(d, "%s: version: big-endian GGUF files are not supported; expected a little-endian version 2 or 3, "
                          "got version bytes of big-endian %u", file, __builtin_bswap32(version));
        else
            diag_error(d, "%s: version: not supported; expected 2 or 3, got %" PRIu32, file, version);
        return false;
    }
    pt->version = version;
    if (!rd_u64(&r, "header", "tensor count", &n_t) || !rd_u64(&r, "header", "key/value count", &n_kv)) return false;
    uint64_t max_kv = bytes_left(&r) / MIN_KV_BYTES < MAX_KV ? bytes_left(&r) / MIN_KV_BYTES : MAX_KV;
    if (n_kv > max_kv) {
        diag_error(d, "%s: header: key/value count too large; expected at most %" PRIu64 " (%s), got %" PRIu64, file, max_kv,
                   max_kv < MAX_KV ? "what the bytes left can hold" : "the reader's limit", n_kv);
        return false;
    }
    uint64_t max_t = bytes_left(&r) / MIN_TENSOR_BYTES < MAX_TENSORS ? bytes_left(&r) / MIN_TENSOR_BYTES : MAX_TENSORS;
    if (n_t > max_t) {
        diag_error(d, "%s: header: tensor count too large; expected at most %" PRIu64 " (%s), got %" PRIu64, file, max_t,
                   max_t < MAX_TENSORS ? "what the bytes left can hold" : "the reader's limit", n_t);
        return false;
    }

    /* metadata */
    char subj[MAX_NAME + 32];
    GgufKv *kv = arena_alloc(a, (size_t)n_kv * sizeof *kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        snprintf(subj, sizeof subj, "key #%" PRIu64, i);
        if (!(kv[i].key = rd_name(&r, a, subj, "key name"))) return false;
        snprintf(subj, sizeof subj, "key '%s'", kv[i].key);
        if (!rd_value(&r, a, subj, &kv[i])) return false;
    }
    const GgufKv **sorted = arena_alloc(a, (size_t)n_kv * sizeof *sorted);
    for (uint64_t i = 0; i < n_kv; i++) sorted[i] = &kv[i];
    if (n_kv) qsort(sorted, (size_t)n_kv, sizeof *sorted, cmp_kv_key);
    for (uint64_t i = 1; i < n_kv; i++)
        if (!strcmp(sorted[i]->key, sorted[i - 1]->key)) {
            diag_error(d, "%s: key '%s': defined twice; expected each key once, got 2", file, sorted[i]->key);
            return false;
        }
    out->kv = kv;
    out->n_kv = (int)n_kv;
    out->kv_sorted = sorted;

    uint64_t alignment = DEFAULT_ALIGNMENT;
    bool found;
    if (!part_int(d, file, kv, (int)n_kv, "general.alignment", 0, UINT32_MAX, "a uint32 power of two", &alignment, &found))
        return false;
    if (alignment == 0 || (alignment & (alignment - 1))) {
        diag_error(d, "%s: key 'general.alignment': not a power of two; expected 1, 2, 4, ..., got %" PRIu64, file,
                   alignment);
        return false;
    }
    pt->alignment = (uint32_t)alignment;

    /* tensor infos: structure first (a failure stops), then meaning (every tensor reported) */
    GgufTensor *t = arena_alloc(a, (size_t)n_t * sizeof *t);
    bool ok = true;
    for (uint64_t i = 0; i < n_t; i++) {
        GgufTensor *x = &t[i];
        snprintf(subj, sizeof subj, "tensor #%" PRIu64, i);
        if (!(x->ti.name = rd_name(&r, a, subj, "tensor name"))) return false;
        snprintf(subj, sizeof subj, "tensor '%s'", x->ti.name);
        uint32_t n_dims, type;
        if (!rd_u32(&r, subj, "n_dims", &n_dims)) return false;
        if (n_dims > MOE_MAX_DIMS) {
            diag_error(d, "%s: %s: too many dimensions; expected n_dims <= %d, got %" PRIu32, file, subj, MOE_MAX_DIMS,
                       n_dims);
            return false;
        }
        for (int k = 0; k < MOE_MAX_DIMS; k++) x->ne[k] = 1;
        for (uint32_t k = 0; k < n_dims; k++) {
            char what[32];
            snprintf(what, sizeof what, "ne[%" PRIu32 "]", k);
            uint64_t v;
            if (!rd_u64(&r, subj, what, &v)) return false;
            x->ne[k] = (int64_t)v;
        }
        if (!rd_u32(&r, subj, "type", &type) || !rd_u64(&r, subj, "offset", &x->offset)) return false;
        x->ggml_type = type;
        x->part = part_no;
        x->ti.file = file;
        x->ti.rank = (int)n_dims;
        for (uint32_t k = 0; k < n_dims; k++) x->ti.shape[k] = x->ne[n_dims - 1 - k];
    }
    uint64_t infos_end = r.at;
    uint64_t data_start = (infos_end + alignment - 1) & ~(alignment - 1);
    uint64_t base = data_start <= pt->size ? data_start : pt->size;
    uint64_t data_size = pt->size - base;
    pt->data_start = data_start;
    pt->n_tensors = (int)n_t;

    int past_end = 0;
    for (uint64_t i = 0; i < n_t; i++) {
        GgufTensor *x = &t[i];
        snprintf(subj, sizeof subj, "tensor '%s'", x->ti.name);
        char ne_s[128];
        size_t at = (size_t)snprintf(ne_s, sizeof ne_s, "ne [");
        for (int k = 0; k < x->ti.rank; k++)
            at += (size_t)snprintf(ne_s + at, sizeof ne_s - at, "%s%" PRId64, k ? ", " : "", x->ne[k]);
        snprintf(ne_s + at, sizeof ne_s - at, "]");
        bool dims_ok = true;
        for (int k = 0; k < x->ti.rank; k++)
            if (x->ne[k] < 0) {
                diag_error(d, "%s: %s: dimension ne[%d] is negative; expected >= 0, got %" PRId64 " (%s)", file, subj, k,
                           x->ne[k], ne_s);
                dims_ok = false;
                break;
            }
        if (!dims_ok) {
            ok = false;
            continue;
        }
        if (!gguf_dtype_of_ggml(x->ggml_type, &x->ti.dtype)) {
            if (strcmp(gguf_ggml_type_name(x->ggml_type), "?"))
                diag_error(d, "%s: %s: type %s is not supported; expected %s, got %s", file, subj,
                           gguf_ggml_type_name(x->ggml_type), SUPPORTED_LIST, gguf_ggml_type_name(x->ggml_type));
            else
                diag_error(d, "%s: %s: unknown ggml type %" PRIu32 "; expected %s, got type id %" PRIu32, file, subj,
                           x->ggml_type, SUPPORTED_LIST, x->ggml_type);
            ok = false;
            continue;
        }
        int64_t blk = dtype_block_elems(x->ti.dtype);
        if (x->ne[0] % blk) {
            diag_error(d, "%s: %s: row length ne[0] is not a whole number of %s blocks; expected a multiple of %" PRId64
                          ", got %" PRId64 " (%s)", file, subj, gguf_ggml_type_name(x->ggml_type), blk, x->ne[0], ne_s);
            ok = false;
            continue;
        }
        int64_t elems = 1;
        uint64_t nbytes;
        bool overflow =
            __builtin_mul_overflow((uint64_t)(x->ne[0] / blk), (uint64_t)dtype_block_bytes(x->ti.dtype), &nbytes);
        for (int k = 0; k < MOE_MAX_DIMS; k++) overflow |= __builtin_mul_overflow(elems, x->ne[k], &elems);
        for (int k = 1; k < MOE_MAX_DIMS; k++) overflow |= __builtin_mul_overflow(nbytes, (uint64_t)x->ne[k], &nbytes);
        if (overflow) {
            diag_error(d, "%s: %s: element or byte count overflows 64 bits; expected a product of dimensions below 2^63, "
                          "got %s",
                       file, subj, ne_s);
            ok = false;
            continue;
        }
        x->ti.nbytes = (size_t)nbytes;
        if (x->offset % alignment) {
            diag_error(d, "%s: %s: data offset is not aligned; expected a multiple of %" PRIu64 ", got %" PRIu64, file,
                       subj, alignment, x->offset);
            ok = false;
            continue;
        }
        if (x->offset > data_size || nbytes > data_size - x->offset) {
            ok = false;
            if (past_end++) continue; /* a truncated file: its first tensor past the end says it */
            char end[48];
            if (x->offset > UINT64_MAX - nbytes) snprintf(end, sizeof end, "more than 2^64");
            else snprintf(end, sizeof end, "%" PRIu64, x->offset + nbytes);
            diag_error(d, "%s: %s: bytes from offset %" PRIu64 " (%" PRIu64 " bytes, %s %s) run past the end of the data "
                          "section (truncated file?); expected an end <= %" PRIu64 ", got %s", file, subj, x->offset,
                       nbytes, gguf_ggml_type_name(x->ggml_type), ne_s, data_size, end);
            ok = false;
            continue;
        }
        x->ti.data = p + base + x->offset;
    }
    if (!ok) return false;

    /* byte ranges of non-empty tensors are disjoint */
    const GgufTensor **by_off = arena_alloc(a, (size_t)n_t * sizeof *by_off);
    int m = 0;
    for (uint64_t i = 0; i < n_t; i++)
        if (t[i].ti.nbytes) by_off[m++] = &t[i];
    if (m) qsort(by_off, (size_t)m, sizeof *by_off, cmp_tensor_offset);
    const GgufTensor *last = NULL; /* the range reaching furthest so far */
    for (int i = 0; i < m; i++) {
        const GgufTensor *x = by_off[i];
        uint64_t x_end = x->offset + x->ti.nbytes;
        if (last && x->offset < last->offset + last->ti.nbytes) {
            uint64_t last_end = last->offset + last->ti.nbytes;
            diag_error(d, "%s: tensor '%s': bytes [%" PRIu64 ", %" PRIu64 ") overlap tensor '%s' [%" PRIu64 ", %" PRIu64
                          "); expected disjoint byte ranges, got %" PRIu64 " shared bytes", file, x->ti.name, x->offset,
                       x_end, last->ti.name, last->offset, last_end, (x_end < last_end ? x_end : last_end) - x->offset);
            return false;
        }
        if (!last || x_end > last->offset + last->ti.nbytes) last = x;
    }
    out->t = t;
    out->n_t = (int)n_t;
    return true;
}

/* ---------------------------------------------------------------- opening */

/* Maps path read-only into *pt; false after diag_error. subj names what is being opened. */
static bool map_part(Diag *d, const char *subj, const char *path, GgufPart *pt) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        diag_error(d, "%s: %scannot open: %s; expected a readable .gguf file", path, subj, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        diag_error(d, "%s: %snot a regular file; expected a .gguf file", path, subj);
        close(fd);
        return false;
    }
    static const uint8_t empty[1];
    void *map = (void *)empty;
    if (st.st_size > 0) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            diag_error(d, "%s: %scannot map %jd bytes: %s", path, subj, (intmax_t)st.st_size, strerror(errno));
            close(fd);
            return false;
        }
    }
    close(fd);
    pt->map = map;
    pt->size = (size_t)st.st_size;
    pt->mapped = st.st_size > 0;
    return true;
}

/* Sorted views, and tensor names unique across every part. */
static bool finish(GgufFile *g, Arena *a, Diag *d) {
    g->t_sorted = arena_alloc(a, (size_t)g->n_tensors * sizeof *g->t_sorted);
    for (int i = 0; i < g->n_tensors; i++) g->t_sorted[i] = &g->t[i];
    if (g->n_tensors) qsort(g->t_sorted, (size_t)g->n_tensors, sizeof *g->t_sorted, cmp_tensor_name);
    bool ok = true;
    for (int i = 1; i < g->n_tensors; i++) {
        const GgufTensor *x = g->t_sorted[i], *y = g->t_sorted[i - 1];
        if (strcmp(x->ti.name, y->ti.name)) continue;
        const GgufTensor *later = x->part > y->part || (x->part == y->part && x > y) ? x : y;
        const GgufTensor *earlier = later == x ? y : x;
        diag_error(d, "%s: tensor '%s': defined twice (also in %s); expected each tensor once, got 2", later->ti.file,
                   later->ti.name, earlier->ti.file);
        ok = false;
    }
    return ok;
}

static void take_first(GgufFile *g, const Parsed *pr) {
    g->version = g->parts[0].version;
    g->alignment = g->parts[0].alignment;
    g->kv = pr->kv;
    g->n_kv = pr->n_kv;
    g->kv_sorted = pr->kv_sorted;
    g->t = pr->t;
    g->n_tensors = pr->n_t;
}

bool gguf_open_buffer(GgufFile *g, Arena *a, Diag *d, const char *name, const void *data, size_t size) {
    memset(g, 0, sizeof *g);
    g->parts = arena_alloc(a, sizeof *g->parts);
    g->n_parts = 1;
    g->parts[0] = (GgufPart){.path = arena_strdup(a, name), .map = data, .size = size};
    g->path = g->parts[0].path;
    Parsed pr;
    if (!parse_part(a, d, &g->parts[0], 0, &pr)) return false;
    take_first(g, &pr);
    const char *file = base_name(name);
    uint64_t count = 1;
    bool found;
    if (!part_int(d, file, g->kv, g->n_kv, "split.count", 1, MAX_PARTS, "a part count in 1..9999", &count, &found))
        return false;
    if (count > 1) {
        diag_error(d, "%s: key 'split.count': a split GGUF cannot be read from memory; expected 1 part, got %" PRIu64
                      " (open the files with gguf_open)", file, count);
        return false;
    }
    return finish(g, a, d);
}

/* The length of the name before "-%05d-of-%05d.gguf" (no + 1, count), or 0 if it does not end so. */
static size_t split_prefix(const char *path, uint64_t no, uint64_t count) {
    char suffix[64];
    int n = snprintf(suffix, sizeof suffix, "-%05" PRIu64 "-of-%05" PRIu64 ".gguf", no + 1, count);
    size_t len = strlen(path);
    if ((size_t)n >= len || strcmp(path + len - (size_t)n, suffix)) return 0;
    return len - (size_t)n;
}

bool gguf_open(GgufFile *g, Arena *a, Diag *d, const char *path) {
    memset(g, 0, sizeof *g);
    GgufPart first = {.path = arena_strdup(a, path)};
    if (!map_part(d, "", path, &first)) return false;
    g->parts = arena_alloc(a, sizeof *g->parts);
    g->parts[0] = first;
    g->n_parts = 1;
    g->path = first.path;
    Parsed pr;
    if (!parse_part(a, d, &g->parts[0], 0, &pr)) return false;
    take_first(g, &pr);

    const char *file = base_name(path);
    uint64_t no = 0, count = 1, total = 0;
    bool has_no, has_count, has_total;
    if (!part_int(d, file, g->kv, g->n_kv, "split.count", 1, MAX_PARTS, "a part count in 1..9999", &count, &has_count) ||
        !part_int(d, file, g->kv, g->n_kv, "split.no", 0, MAX_PARTS - 1, "a part number in 0..9998", &no, &has_no) ||
        !part_int(d, file, g->kv, g->n_kv, "split.tensors.count", 0, INT32_MAX, "a tensor count", &total, &has_total))
        return false;
    if (no != 0) {
        size_t pre = split_prefix(path, no, count);
        if (pre)
            diag_error(d, "%s: key 'split.no': this is part %" PRIu64 " of %" PRIu64 "; expected the first part, got part %"
                          PRIu64 "; open %.*s-00001-of-%05" PRIu64 ".gguf instead", file, no + 1, count, no + 1,
                       (int)pre, path, count);
        else
            diag_error(d, "%s: key 'split.no': this is part %" PRIu64 " of %" PRIu64 "; expected the first part (split.no "
                          "0), got part %" PRIu64 "; open the file named ...-00001-of-%05" PRIu64 ".gguf instead", file,
                       no + 1, count, no + 1, count);
        return false;
    }
    if (count == 1) {
        if (has_total && total != (uint64_t)g->n_tensors) {
            diag_error(d, "%s: key 'split.tensors.count': wrong tensor count; expected %d (the tensors in the file), got %"
                          PRIu64, file, g->n_tensors, total);
            return false;
        }
        return finish(g, a, d);
    }
    size_t pre = split_prefix(path, 0, count);
    if (!pre) {
        diag_error(d, "%s: key 'split.count': the first of %" PRIu64 " parts must be named NAME-00001-of-%05" PRIu64
                      ".gguf to find the others; expected a name ending in -00001-of-%05" PRIu64 ".gguf, got %s", file,
                   count, count, count, file);
        return false;
    }

    /* every part mapped and parsed; the tensor table concatenated in part order */
    GgufPart *parts = arena_alloc(a, (size_t)count * sizeof *parts);
    parts[0] = g->parts[0];
    g->parts = parts;
    Parsed *prs = arena_alloc(a, (size_t)count * sizeof *prs);
    prs[0] = pr;
    int64_t n_all = pr.n_t;
    for (uint64_t k = 1; k < count; k++) {
        GgufPart *pt = &parts[k];
        pt->path = arena_printf(a, "%.*s-%05" PRIu64 "-of-%05" PRIu64 ".gguf", (int)pre, path, k + 1, count);
        char subj[96];
        snprintf(subj, sizeof subj, "split part %" PRIu64 " of %" PRIu64 ": ", k + 1, count);
        if (!map_part(d, subj, pt->path, pt)) return false;
        g->n_parts++;
        if (!parse_part(a, d, pt, (int)k, &prs[k])) return false;
        const char *pfile = base_name(pt->path);
        uint64_t pno = 0, pcount = 0;
        bool f1, f2;
        if (!part_int(d, pfile, prs[k].kv, prs[k].n_kv, "split.no", 0, MAX_PARTS - 1, "a part number", &pno, &f1) ||
            !part_int(d, pfile, prs[k].kv, prs[k].n_kv, "split.count", 1, MAX_PARTS, "a part count", &pcount, &f2))
            return false;
        if (!f1 || pno != k) {
            diag_error(d, "%s: key 'split.no': wrong part number; expected %" PRIu64 " (part %" PRIu64 " of %" PRIu64
                          "), got %s%" PRIu64, pfile, k, k + 1, count, f1 ? "" : "no key, i.e. ", pno);
            return false;
        }
        if (pcount != count) {
            diag_error(d, "%s: key 'split.count': disagrees with the first part; expected %" PRIu64 ", got %s%" PRIu64,
                       pfile, count, f2 ? "" : "no key, i.e. ", pcount);
            return false;
        }
        n_all += prs[k].n_t;
    }
    if (n_all > MAX_TENSORS) {
        diag_error(d, "%s: tensors: too many across the %" PRIu64 " parts; expected at most %d, got %" PRId64, file, count,
                   MAX_TENSORS, n_all);
        return false;
    }
    if (has_total && total != (uint64_t)n_all) {
        diag_error(d, "%s: key 'split.tensors.count': wrong tensor count; expected %" PRId64 " (the tensors in the %" PRIu64
                      " parts), got %" PRIu64, file, n_all, count, total);
        return false;
    }
    GgufTensor *all = arena_alloc(a, (size_t)n_all * sizeof *all);
    int at = 0;
    for (uint64_t k = 0; k < count; k++) {
        if (prs[k].n_t) memcpy(all + at, prs[k].t, (size_t)prs[k].n_t * sizeof *all);
        at += prs[k].n_t;
    }
    g->t = all;
    g->n_tensors = (int)n_all;
    return finish(g, a, d);
}

void gguf_close(GgufFile *g) {
    for (int i = 0; i < g->n_parts; i++)
        if (g->parts[i].mapped) munmap((void *)g->parts[i].map, g->parts[i].size);
    g->n_parts = 0;
    g->n_tensors = 0;
    g->n_kv = 0;
}

/* ---------------------------------------------------------------- lookups */

const GgufTensor *gguf_find(const GgufFile *g, const char *name) {
    int lo = 0, hi = g->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(g->t_sorted[mid]->ti.name, name);
        if (c == 0) return g->t_sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const GgufKv *gguf_kv_find(const GgufFile *g, const char *key) {
    int lo = 0, hi = g->n_kv - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(g->kv_sorted[mid]->key, key);
        if (c == 0) return g->kv_sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static const char *first_file(const GgufFile *g) { return g->path ? base_name(g->path) : "gguf"; }

/* The key, or NULL after diag_error saying it is missing. */
static const GgufKv *must_find(const GgufFile *g, Diag *d, const char *key, const char *want) {
    const GgufKv *kv = gguf_kv_find(g, key);
    if (!kv) diag_error(d, "%s: key '%s': missing; expected %s, got no such key", first_file(g), key, want);
    return kv;
}

static bool get_int(const GgufFile *g, Diag *d, const char *key, int64_t lo, uint64_t hi, const char *want,
                    uint64_t *out) {
    const GgufKv *kv = must_find(g, d, key, want);
    if (!kv) return false;
    const char *problem = int_of(kv, lo, hi, out);
    if (!problem) return true;
    char got[64];
    value_str(kv, got, sizeof got);
    diag_error(d, "%s: key '%s': %s; expected %s, got %s", first_file(g), key, problem, want, got);
    return false;
}

bool gguf_get_u32(const GgufFile *g, Diag *d, const char *key, uint32_t *out) {
    uint64_t v;
    if (!get_int(g, d, key, 0, UINT32_MAX, "a uint32", &v)) return false;
    *out = (uint32_t)v;
    return true;
}

bool gguf_get_i32(const GgufFile *g, Diag *d, const char *key, int32_t *out) {
    uint64_t v;
    if (!get_int(g, d, key, INT32_MIN, INT32_MAX, "an int32", &v)) return false;
    *out = (int32_t)(int64_t)v;
    return true;
}

bool gguf_get_u64(const GgufFile *g, Diag *d, const char *key, uint64_t *out) {
    return get_int(g, d, key, 0, UINT64_MAX, "a uint64", out);
}

static bool wrong_type(const GgufFile *g, Diag *d, const GgufKv *kv, const char *want) {
    char got[64];
    value_str(kv, got, sizeof got);
    diag_error(d, "%s: key '%s': wrong type; expected %s, got %s", first_file(g), kv->key, want, got);
    return false;
}

bool gguf_get_f32(const GgufFile *g, Diag *d, const char *key, float *out) {
    const GgufKv *kv = must_find(g, d, key, "a float32");
    if (!kv) return false;
    if (!type_is_float(kv->type)) return wrong_type(g, d, kv, "a float32");
    *out = (float)kv->v.f;
    return true;
}

bool gguf_get_bool(const GgufFile *g, Diag *d, const char *key, bool *out) {
    const GgufKv *kv = must_find(g, d, key, "a bool");
    if (!kv) return false;
    if (kv->type != GGUF_BOOL) return wrong_type(g, d, kv, "a bool");
    *out = kv->v.u != 0;
    return true;
}

bool gguf_get_str(const GgufFile *g, Diag *d, const char *key, const char **out) {
    const GgufKv *kv = must_find(g, d, key, "a string");
    if (!kv) return false;
    if (kv->type != GGUF_STR) return wrong_type(g, d, kv, "a string");
    *out = kv->v.s.s;
    return true;
}

const GgufKv *gguf_get_str_arr(const GgufFile *g, Diag *d, const char *key) {
    const GgufKv *kv = must_find(g, d, key, "an array of strings");
    if (!kv) return NULL;
    if (kv->type != GGUF_ARR || kv->elem != GGUF_STR) return wrong_type(g, d, kv, "an array of strings"), NULL;
    return kv;
}

const GgufKv *gguf_get_num_arr(const GgufFile *g, Diag *d, const char *key) {
    const GgufKv *kv = must_find(g, d, key, "an array of numbers");
    if (!kv) return NULL;
    if (kv->type != GGUF_ARR || kv->elem == GGUF_STR) return wrong_type(g, d, kv, "an array of numbers"), NULL;
    return kv;
}

GgufStr gguf_arr_str(const GgufKv *kv, uint64_t i) {
    MOE_ASSERT(kv->type == GGUF_ARR && kv->elem == GGUF_STR && i < kv->n);
    return ((const GgufStr *)kv->arr)[i];
}

/* Element i of a numeric array, widened into a scalar GgufKv. */
static GgufKv arr_elem(const GgufKv *kv, uint64_t i) {
    MOE_ASSERT(kv->type == GGUF_ARR && kv->elem != GGUF_STR && kv->elem != GGUF_ARR && i < kv->n);
    GgufKv e = {.type = kv->elem};
    load_scalar(kv->elem, (const uint8_t *)kv->arr + i * VALUE_SIZE[kv->elem], &e);
    return e;
}

int64_t gguf_arr_i64(const GgufKv *kv, uint64_t i) {
    GgufKv e = arr_elem(kv, i);
    if (type_is_float(e.type)) return e.v.f >= -9.2e18 && e.v.f <= 9.2e18 ? (int64_t)e.v.f : 0;
    return type_is_sint(e.type) ? e.v.i : (int64_t)e.v.u;
}

double gguf_arr_f64(const GgufKv *kv, uint64_t i) {
    GgufKv e = arr_elem(kv, i);
    if (type_is_float(e.type)) return e.v.f;
    return type_is_sint(e.type) ? (double)e.v.i : (double)e.v.u;
}

/* ---------------------------------------------------------------- formatting */

typedef struct Out {
    char *p;
    size_t n, at;
} Out;

static void out_printf(Out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(Out *o, const char *fmt, ...) {
    if (o->at >= o->n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->at, o->n - o->at, fmt, ap);
    va_end(ap);
    o->at = k < 0 ? o->n : o->at + (size_t)k;
}

/* A quoted string, escaped, at most max bytes of it. */
static void out_str(Out *o, GgufStr s, uint64_t max) {
    out_printf(o, "\"");
    for (uint64_t i = 0; i < s.len && i < max; i++) {
        unsigned char c = (unsigned char)s.s[i];
        if (c == '"' || c == '\\') out_printf(o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) out_printf(o, "\\x%02x", c);
        else out_printf(o, "%c", c);
    }
    out_printf(o, s.len > max ? "\"..." : "\"");
}

static void out_scalar(Out *o, const GgufKv *kv) {
    if (type_is_uint(kv->type)) out_printf(o, "%" PRIu64, kv->v.u);
    else if (type_is_sint(kv->type)) out_printf(o, "%" PRId64, kv->v.i);
    else if (type_is_float(kv->type)) out_printf(o, "%.9g", kv->v.f);
    else if (kv->type == GGUF_BOOL) out_printf(o, "%s", kv->v.u ? "true" : "false");
}

void gguf_kv_format(const GgufKv *kv, char *buf, size_t n) {
    if (!n) return;
    Out o = {buf, n, 0};
    buf[0] = 0;
    if (kv->type == GGUF_STR) {
        out_printf(&o, "string ");
        out_str(&o, kv->v.s, 80);
    } else if (kv->type != GGUF_ARR) {
        out_printf(&o, "%s ", gguf_type_name(kv->type));
        out_scalar(&o, kv);
    } else {
        out_printf(&o, "array[%s; %" PRIu64 "]", gguf_type_name(kv->elem), kv->n);
        for (uint64_t i = 0; i < kv->n && i < 8; i++) {
            out_printf(&o, i ? ", " : " ");
            if (kv->elem == GGUF_STR) {
                out_str(&o, gguf_arr_str(kv, i), 24);
            } else {
                GgufKv e = arr_elem(kv, i);
                out_scalar(&o, &e);
            }
        }
        if (kv->n > 8) out_printf(&o, ", ...");
    }
    if (o.at >= n && n >= 4) memcpy(buf + n - 4, "...", 4); /* cut: say so */
}

/* ---------------------------------------------------------------- writing */

GgufKv gguf_kv_u32(const char *key, uint32_t v) { return (GgufKv){.key = key, .type = GGUF_U32, .v.u = v}; }
GgufKv gguf_kv_i32(const char *key, int32_t v) { return (GgufKv){.key = key, .type = GGUF_I32, .v.i = v}; }
GgufKv gguf_kv_f32(const char *key, float v) { return (GgufKv){.key = key, .type = GGUF_F32, .v.f = v}; }
GgufKv gguf_kv_bool(const char *key, bool v) { return (GgufKv){.key = key, .type = GGUF_BOOL, .v.u = v}; }
GgufKv gguf_kv_str(const char *key, const char *s) {
    return (GgufKv){.key = key, .type = GGUF_STR, .v.s = {s, strlen(s)}};
}
GgufKv gguf_kv_arr(const char *key, GgufType elem, uint64_t n, const void *elems) {
    return (GgufKv){.key = key, .type = GGUF_ARR, .elem = elem, .n = n, .arr = elems};
}

static void put_le(FILE *f, uint64_t v, int n) {
    uint8_t b[8];
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    fwrite(b, 1, (size_t)n, f);
}

static void put_str(FILE *f, const char *s, uint64_t len) {
    put_le(f, len, 8);
    fwrite(s, 1, (size_t)len, f);
}

static void put_scalar(FILE *f, const GgufKv *kv) {
    GgufType t = kv->type;
    if (t == GGUF_F32) {
        float x = (float)kv->v.f;
        uint32_t w;
        memcpy(&w, &x, 4);
        put_le(f, w, 4);
    } else if (t == GGUF_F64) {
        uint64_t w;
        memcpy(&w, &kv->v.f, 8);
        put_le(f, w, 8);
    } else if (type_is_sint(t)) {
        put_le(f, (uint64_t)kv->v.i, VALUE_SIZE[t]);
    } else {
        put_le(f, kv->v.u, VALUE_SIZE[t]);
    }
}

static void put_kv(FILE *f, const GgufKv *kv) {
    MOE_ASSERT((unsigned)kv->type < GGUF_TYPE_COUNT);
    put_str(f, kv->key, strlen(kv->key));
    put_le(f, kv->type, 4);
    if (kv->type == GGUF_STR) {
        put_str(f, kv->v.s.s, kv->v.s.len);
    } else if (kv->type != GGUF_ARR) {
        put_scalar(f, kv);
    } else {
        MOE_ASSERT((unsigned)kv->elem < GGUF_TYPE_COUNT && kv->elem != GGUF_ARR);
        put_le(f, kv->elem, 4);
        put_le(f, kv->n, 8);
        if (kv->elem == GGUF_STR)
            for (uint64_t i = 0; i < kv->n; i++) put_str(f, ((const GgufStr *)kv->arr)[i].s, ((const GgufStr *)kv->arr)[i].len);
        else if (kv->n)
            fwrite(kv->arr, VALUE_SIZE[kv->elem], (size_t)kv->n, f); /* packed little-endian, as on this host */
    }
}

/* Bytes of a tensor to write: rows of whole blocks. */
static uint64_t write_nbytes(const StWriteTensor *t) {
    MOE_ASSERT(t->rank >= 0 && t->rank <= MOE_MAX_DIMS);
    int64_t row = t->rank ? t->shape[t->rank - 1] : 1;
    int64_t blk = dtype_block_elems(t->dtype);
    MOE_ASSERT(row >= 0 && row % blk == 0);
    uint64_t n = (uint64_t)(row / blk) * dtype_block_bytes(t->dtype);
    for (int k = 0; k + 1 < t->rank; k++) n *= (uint64_t)t->shape[k];
    return n;
}

static void put_zeros(FILE *f, uint64_t n) {
    static const uint8_t zeros[64];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        fwrite(zeros, 1, k, f);
        n -= k;
    }
}

bool gguf_write_file(Diag *d, const char *path, const GgufKv *kvs, int n_kv, const StWriteTensor *ts, int n_t,
                     uint32_t alignment) {
    MOE_ASSERT(alignment && !(alignment & (alignment - 1)));
    bool add_alignment = alignment != DEFAULT_ALIGNMENT;
    for (int i = 0; i < n_kv; i++)
        if (!strcmp(kvs[i].key, "general.alignment")) add_alignment = false;
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 32);
    snprintf(tmp, plen + 32, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        diag_error(d, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return false;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    fwrite("GGUF", 1, 4, f);
    put_le(f, 3, 4);
    put_le(f, (uint64_t)n_t, 8);
    put_le(f, (uint64_t)n_kv + add_alignment, 8);
    if (add_alignment) {
        GgufKv al = gguf_kv_u32("general.alignment", alignment);
        put_kv(f, &al);
    }
    for (int i = 0; i < n_kv; i++) put_kv(f, &kvs[i]);
    uint64_t offset = 0;
    for (int i = 0; i < n_t; i++) {
        const StWriteTensor *t = &ts[i];
        put_str(f, t->name, strlen(t->name));
        put_le(f, (uint64_t)t->rank, 4);
        for (int k = t->rank - 1; k >= 0; k--) put_le(f, (uint64_t)t->shape[k], 8);
        put_le(f, gguf_ggml_of_dtype(t->dtype), 4);
        put_le(f, offset, 8);
        offset += (write_nbytes(t) + alignment - 1) & ~(uint64_t)(alignment - 1);
    }
    long pos = ftell(f);
    uint64_t at = pos < 0 ? 0 : (uint64_t)pos;
    if (n_t) put_zeros(f, ((at + alignment - 1) & ~(uint64_t)(alignment - 1)) - at);
    for (int i = 0; i < n_t; i++) {
        uint64_t nb = write_nbytes(&ts[i]);
        if (nb) fwrite(ts[i].data, 1, (size_t)nb, f);
        put_zeros(f, ((nb + alignment - 1) & ~(uint64_t)(alignment - 1)) - nb);
    }
    bool ok = pos >= 0 && !ferror(f);
    if (fclose(f) != 0) ok = false;
    if (!ok) {
        diag_error(d, "%s: write failed: %s", tmp, strerror(errno));
    } else if (rename(tmp, path) != 0) {
        diag_error(d, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        ok = false;
    }
    if (!ok) unlink(tmp);
    free(tmp);
    return ok;
}
