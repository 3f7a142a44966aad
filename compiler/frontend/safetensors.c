/* safetensors: reading and writing the Hugging Face tensor container.
 *
 * Layout of one file:
 *   u64 LE  N                  header length
 *   N bytes JSON header        {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]},
 *                               ..., "__metadata__": {...}}   (padded with spaces)
 *   data section               tensor bytes; offsets are relative to its start
 *
 * Reading maps the whole file read-only and validates every header entry against the mapping
 * before a TensorInfo points into it. Each file's tensors are appended to the table, which is
 * then re-sorted by name (st_find is a binary search) and checked for duplicate names. */
#include "safetensors.h"

#include <cjson/cJSON.h>
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
    MAX_HEADER = 100 << 20,     /* the safetensors library refuses bigger headers too */
    MAX_INDEX = 64 << 20,       /* model.safetensors.index.json */
};

static const char INDEX_NAME[] = "model.safetensors.index.json";

/* ---------------------------------------------------------------- small helpers */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

const char *st_dtype_name(DType t) {
    switch (t) {
    case DT_F32: return "F32";
    case DT_F16: return "F16";
    case DT_BF16: return "BF16";
    default: return "?";
    }
}

static bool dtype_parse(const char *s, DType *t) {
    static const struct { const char *name; DType t; } known[] = {{"F32", DT_F32}, {"F16", DT_F16}, {"BF16", DT_BF16}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(s, known[i].name)) return *t = known[i].t, true;
    return false;
}

static const char *json_type_name(const cJSON *v) {
    if (!v) return "nothing";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "a list";
    if (cJSON_IsObject(v)) return "an object";
    return "?";
}

/* An integral JSON number exactly representable in a double (|v| <= 2^53). */
static bool json_int(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double x = v->valuedouble;
    if (!(x >= -9007199254740992.0 && x <= 9007199254740992.0) || x != (double)(int64_t)x) return false;
    *out = (int64_t)x;
    return true;
}

static void shape_str(char *buf, size_t n, int rank, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && at < n; i++) at += (size_t)snprintf(buf + at, n - at, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const TensorInfo *)a)->name, ((const TensorInfo *)b)->name);
}

/* Reads a small whole file into a malloc'd NUL-terminated buffer; NULL after diag_error. */
static char *read_small_file(Diag *d, const char *path, size_t max, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_error(d, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > max) {
        diag_error(d, "%s: size: too large; expected at most %zu bytes, got %jd", base_name(path), max,
                   (intmax_t)st.st_size);
        fclose(f);
        return NULL;
    }
    char *text = xmalloc((size_t)st.st_size + 1);
    size_t got = fread(text, 1, (size_t)st.st_size, f);
    fclose(f);
    text[got] = 0;
    *len = got;
    return text;
}

/* ---------------------------------------------------------------- one file */

/* One header entry, validated against the data section. */
typedef struct Entry {
    const char *name;               /* points into the cJSON tree */
    DType dtype;
    int rank;
    int64_t shape[MOE_MAX_DIMS];
    uint64_t begin, end;            /* relative to the data section */
} Entry;

/* Checks one "name": {...} entry; fills e. False after diag_error. */
static bool parse_entry(Diag *d, const char *file, const cJSON *item, uint64_t data_size, Entry *e) {
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item)) {
        diag_error(d, "%s: tensor '%s': entry has the wrong type; expected an object with dtype, shape and "
                      "data_offsets, got %s", file, name, json_type_name(item));
        return false;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    bool ok = true;
    if (!cJSON_IsString(dt)) {
        diag_error(d, "%s: tensor '%s': key 'dtype' %s; expected a string such as \"BF16\", got %s", file, name,
                   dt ? "has the wrong type" : "is missing", json_type_name(dt));
        ok = false;
    } else if (!dtype_parse(dt->valuestring, &e->dtype)) {
        diag_error(d, "%s: tensor '%s': dtype not supported; expected BF16, F16 or F32, got %s", file, name,
                   dt->valuestring);
        ok = false;
    }
    if (!cJSON_IsArray(sh)) {
        diag_error(d, "%s: tensor '%s': key 'shape' %s; expected a list of integers, got %s", file, name,
                   sh ? "has the wrong type" : "is missing", json_type_name(sh));
        ok = false;
    } else {
        int rank = cJSON_GetArraySize(sh);
        if (rank > MOE_MAX_DIMS) {
            diag_error(d, "%s: tensor '%s': rank too high; expected at most %d dims, got %d", file, name, MOE_MAX_DIMS,
                       rank);
            ok = false;
        } else {
            e->rank = rank;
            int i = 0;
            for (const cJSON *v = sh->child; v; v = v->next, i++) {
                if (!json_int(v, &e->shape[i])) {
                    diag_error(d, "%s: tensor '%s': shape dim %d has the wrong type; expected an integer, got %s", file,
                               name, i, cJSON_IsNumber(v) ? "a non-integral number" : json_type_name(v));
                    ok = false;
                } else if (e->shape[i] < 0) {
                    diag_error(d, "%s: tensor '%s': shape dim %d is negative; expected >= 0, got %" PRId64, file, name,
                               i, e->shape[i]);
                    ok = false;
                }
            }
        }
    }
    int64_t b = 0, en = 0;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_int(off->child, &b) ||
        !json_int(off->child->next, &en)) {
        diag_error(d, "%s: tensor '%s': key 'data_offsets' %s; expected a list of 2 integers [begin, end], got %s",
                   file, name, !off ? "is missing" : cJSON_IsArray(off) ? "is malformed" : "has the wrong type",
                   cJSON_IsArray(off) && cJSON_GetArraySize(off) != 2 ? "a list of another length" : json_type_name(off));
        return false;
    }
    if (b < 0 || en < 0) {
        diag_error(d, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] negative; expected offsets >= 0, got %" PRId64,
                   file, name, b, en, b < 0 ? b : en);
        return false;
    }
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->begin > e->end) {
        diag_error(d, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] begin after end; expected begin <= end, "
                      "got begin %" PRIu64 " > end %" PRIu64, file, name, e->begin, e->end, e->begin, e->end);
        return false;
    }
    if (e->end > data_size) {
        diag_error(d, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run past the end of the data section "
                      "(truncated file?); expected end <= %" PRIu64 ", got %" PRIu64, file, name, e->begin, e->end,
                   data_size, e->end);
        return false;
    }
    if (!ok) return false;
    /* shape product x dtype size, overflow-checked in 64 bits */
    uint64_t want = dtype_size(e->dtype);
    bool overflow = false;
    for (int i = 0; i < e->rank; i++) overflow |= __builtin_mul_overflow(want, (uint64_t)e->shape[i], &want);
    char sbuf[128];
    shape_str(sbuf, sizeof sbuf, e->rank, e->shape);
    if (overflow) {
        diag_error(d, "%s: tensor '%s': byte size of shape %s x %s overflows 64 bits; expected %" PRIu64
                      " bytes (data_offsets), got more than 2^64", file, name, sbuf, st_dtype_name(e->dtype),
                   e->end - e->begin);
        return false;
    }
    if (want != e->end - e->begin) {
        diag_error(d, "%s: tensor '%s': byte size does not match shape %s x %s; expected %" PRIu64 " bytes, got %" PRIu64
                      " (data_offsets [%" PRIu64 ", %" PRIu64 "])", file, name, sbuf, st_dtype_name(e->dtype), want,
                   e->end - e->begin, e->begin, e->end);
        return false;
    }
    return true;
}

static int cmp_entry_begin(const void *a, const void *b) {
    const Entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Byte ranges of non-empty tensors must not overlap. Sorts es by begin. */
static bool check_overlaps(Diag *d, const char *file, Entry *es, int n) {
    qsort(es, (size_t)n, sizeof *es, cmp_entry_begin);
    const Entry *last = NULL; /* the non-empty range reaching furthest so far */
    bool ok = true;
    for (int i = 0; i < n; i++) {
        if (es[i].begin == es[i].end) continue;
        if (last && es[i].begin < last->end) {
            diag_error(d, "%s: tensor '%s': bytes [%" PRIu64 ", %" PRIu64 ") overlap tensor '%s' [%" PRIu64 ", %" PRIu64
                          "); expected disjoint byte ranges, got %" PRIu64 " shared bytes", file, es[i].name, es[i].begin,
                       es[i].end, last->name, last->begin, last->end,
                       (es[i].end < last->end ? es[i].end : last->end) - es[i].begin);
            ok = false;
        }
        if (!last || es[i].end > last->end) last = &es[i];
    }
    return ok;
}

/* Maps path read-only; false after diag_error. A size below 8 is reported here too. */
static bool map_file(Diag *d, const char *path, void **map, size_t *size) {
    const char *file = base_name(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        diag_error(d, "%s: cannot open: %s; expected a readable .safetensors file", path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        diag_error(d, "%s: not a regular file; expected a .safetensors file", path);
        close(fd);
        return false;
    }
    if (st.st_size < 8) {
        diag_error(d, "%s: file size: too small to hold a header length; expected at least 8 bytes, got %jd", file,
                   (intmax_t)st.st_size);
        close(fd);
        return false;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        diag_error(d, "%s: cannot map %jd bytes: %s", path, (intmax_t)st.st_size, strerror(errno));
        return false;
    }
    *map = p;
    *size = (size_t)st.st_size;
    return true;
}

/* Parses and validates the header of a mapped file; on success *out / *n_out hold the entries
 * (malloc'd; names point into *root, which the caller deletes). */
static bool parse_header(Diag *d, const char *file, const unsigned char *map, size_t size, cJSON **root, Entry **out,
                         int *n_out, size_t *data_start) {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | map[i];
    if (hlen > size - 8) {
        diag_error(d, "%s: header length: runs past the end of the file; expected at most %zu bytes (file size %zu - 8), "
                      "got %" PRIu64, file, size - 8, size, hlen);
        return false;
    }
    if (hlen > MAX_HEADER) {
        diag_error(d, "%s: header length: too large; expected at most %d bytes, got %" PRIu64, file, MAX_HEADER, hlen);
        return false;
    }
    const char *text = (const char *)map + 8, *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, false);
    if (!j) {
        diag_error(d, "%s: header: not valid JSON; expected a JSON object, got a syntax error near byte %td of %" PRIu64,
                   file, end ? end - text : 0, hlen);
        return false;
    }
    for (const char *p = end; p && p < text + hlen; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            diag_error(d, "%s: header: junk after the JSON object; expected spaces up to byte %" PRIu64 ", got byte 0x%02x at %td",
                       file, hlen, (unsigned char)*p, p - text);
            cJSON_Delete(j);
            return false;
        }
    if (!cJSON_IsObject(j)) {
        diag_error(d, "%s: header: wrong JSON type; expected an object of tensors, got %s", file, json_type_name(j));
        cJSON_Delete(j);
        return false;
    }
    uint64_t data_size = size - 8 - hlen;
    int n = 0;
    for (const cJSON *it = j->child; it; it = it->next) n++;
    Entry *es = xcalloc((size_t)n + 1, sizeof *es);
    int m = 0;
    bool ok = true;
    for (const cJSON *it = j->child; it; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) continue;
        if (parse_entry(d, file, it, data_size, &es[m])) m++;
        else ok = false;
    }
    if (ok) ok = check_overlaps(d, file, es, m);
    if (!ok) {
        free(es);
        cJSON_Delete(j);
        return false;
    }
    *root = j;
    *out = es;
    *n_out = m;
    *data_start = 8 + (size_t)hlen;
    return true;
}

/* Sorts the table by name; reports duplicate names (they may come from two shards). */
static bool sort_and_check(TensorTable *tt, Diag *d) {
    qsort(tt->t, (size_t)tt->n, sizeof *tt->t, cmp_by_name);
    bool ok = true;
    for (int i = 1; i < tt->n; i++)
        if (!strcmp(tt->t[i].name, tt->t[i - 1].name)) {
            diag_error(d, "%s: tensor '%s': defined twice (also in %s); expected each tensor in exactly one place, got 2",
                       tt->t[i].file, tt->t[i].name, tt->t[i - 1].file);
            ok = false;
        }
    return ok;
}

bool st_open_file(TensorTable *tt, Arena *a, Diag *d, const char *path) {
    const char *file = base_name(path);
    void *map;
    size_t size;
    if (!map_file(d, path, &map, &size)) return false;
    cJSON *root;
    Entry *es;
    int n;
    size_t data_start;
    if (!parse_header(d, file, map, size, &root, &es, &n, &data_start)) {
        munmap(map, size);
        return false;
    }
    /* Append the shard and its tensors (arena arrays, regrown by copy: files are few). */
    StShard *shards = arena_alloc(a, sizeof *shards * (size_t)(tt->n_shards + 1));
    if (tt->n_shards) memcpy(shards, tt->shards, sizeof *shards * (size_t)tt->n_shards);
    shards[tt->n_shards] = (StShard){.path = arena_strdup(a, path), .map = map, .size = size};
    tt->shards = shards;
    tt->n_shards++;

    TensorInfo *t = arena_alloc(a, sizeof *t * (size_t)(tt->n + n + 1));
    if (tt->n) memcpy(t, tt->t, sizeof *t * (size_t)tt->n);
    const char *fname = arena_strdup(a, file);
    for (int i = 0; i < n; i++) {
        TensorInfo *ti = &t[tt->n + i];
        ti->name = arena_strdup(a, es[i].name);
        ti->file = fname;
        ti->dtype = es[i].dtype;
        ti->rank = es[i].rank;
        memcpy(ti->shape, es[i].shape, sizeof ti->shape);
        ti->data = (const unsigned char *)map + data_start + es[i].begin;
        ti->nbytes = (size_t)(es[i].end - es[i].begin);
    }
    tt->t = t;
    tt->n += n;
    free(es);
    cJSON_Delete(root);
    return sort_and_check(tt, d);
}

/* ---------------------------------------------------------------- a folder */

/* Opens the shards of model.safetensors.index.json and checks the weight_map against them. */
static bool open_index(TensorTable *tt, Arena *a, Diag *d, const char *dir, const char *index_path) {
    size_t len;
    char *text = read_small_file(d, index_path, MAX_INDEX, &len);
    if (!text) return false;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!j) {
        diag_error(d, "%s: not valid JSON; expected a JSON object, got a syntax error near byte %td", INDEX_NAME,
                   end ? end - text : 0);
        free(text);
        return false;
    }
    free(text);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(map)) {
        diag_error(d, "%s: key 'weight_map': %s; expected an object mapping tensor names to shard files, got %s",
                   INDEX_NAME, map ? "wrong type" : "missing", json_type_name(cJSON_IsObject(j) ? map : j));
        cJSON_Delete(j);
        return false;
    }
    /* The distinct shard names, in order of first mention, each with the first tensor naming it. */
    int n_map = cJSON_GetArraySize(map), n_files = 0;
    const cJSON **first = xcalloc((size_t)n_map + 1, sizeof *first);
    bool ok = true;
    for (const cJSON *it = map->child; it; it = it->next) {
        if (!cJSON_IsString(it) || !it->valuestring[0] || strchr(it->valuestring, '/')) {
            diag_error(d, "%s: tensor '%s': shard name is not a file name; expected a file in %s, got %s", INDEX_NAME,
                       it->string, dir, cJSON_IsString(it) ? (it->valuestring[0] ? it->valuestring : "\"\"") : json_type_name(it));
            ok = false;
            continue;
        }
        int k = 0;
        while (k < n_files && strcmp(first[k]->valuestring, it->valuestring)) k++;
        if (k == n_files) first[n_files++] = it;
    }
    for (int k = 0; ok && k < n_files; k++) {
        const char *path = arena_printf(a, "%s/%s", dir, first[k]->valuestring);
        struct stat st;
        if (stat(path, &st) != 0) {
            diag_error(d, "%s: shard '%s' (for tensor '%s'): no such file; expected it in %s", INDEX_NAME,
                       first[k]->valuestring, first[k]->string, dir);
            ok = false;
        }
    }
    for (int k = 0; ok && k < n_files; k++)
        if (!st_open_file(tt, a, d, arena_printf(a, "%s/%s", dir, first[k]->valuestring))) ok = false;
    for (const cJSON *it = map->child; ok && it; it = it->next) {
        const TensorInfo *t = st_find(tt, it->string);
        if (!t || strcmp(t->file, it->valuestring)) {
            diag_error(d, "%s: tensor '%s': not in its shard; expected it in %s, got %s%s", INDEX_NAME, it->string,
                       it->valuestring, t ? "it in " : "it in no shard", t ? t->file : "");
            ok = false;
        }
    }
    free(first);
    cJSON_Delete(j);
    return ok;
}

bool st_open_dir(TensorTable *tt, Arena *a, Diag *d, const char *dir) {
    memset(tt, 0, sizeof *tt);
    tt->dir = arena_strdup(a, dir);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        diag_error(d, "%s: not a folder; expected a Hugging Face model folder", dir);
        return false;
    }
    const char *index = arena_printf(a, "%s/%s", dir, INDEX_NAME);
    const char *single = arena_printf(a, "%s/model.safetensors", dir);
    bool ok;
    if (stat(index, &st) == 0) {
        ok = open_index(tt, a, d, dir, index);
    } else if (stat(single, &st) == 0) {
        ok = st_open_file(tt, a, d, single);
    } else {
        diag_error(d, "%s: no weights; expected model.safetensors or %s in the folder, got neither", dir, INDEX_NAME);
        ok = false;
    }
    if (!ok) st_close(tt);
    return ok;
}

const TensorInfo *st_find(const TensorTable *tt, const char *name) {
    int lo = 0, hi = tt->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(tt->t[mid].name, name);
        if (c == 0) return &tt->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void st_close(TensorTable *tt) {
    for (int i = 0; i < tt->n_shards; i++)
        if (tt->shards[i].map) munmap(tt->shards[i].map, tt->shards[i].size);
    tt->n_shards = 0;
    tt->n = 0;
}

size_t st_bytes_of(const TensorTable *tt, DType t) {
    size_t sum = 0;
    for (int i = 0; i < tt->n; i++)
        if (tt->t[i].dtype == t) sum += tt->t[i].nbytes;
    return sum;
}

/* ---------------------------------------------------------------- writing */

typedef struct Buf {
    char *p;
    size_t len, cap;
} Buf;

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (b->p && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
}

/* A JSON string literal (tensor names are ASCII in practice; escape anyway). */
static void buf_json_str(Buf *b, const char *s) {
    buf_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') buf_printf(b, "\\%c", c);
        else if (c < 0x20) buf_printf(b, "\\u%04x", c);
        else buf_printf(b, "%c", c);
    }
    buf_printf(b, "\"");
}

static uint64_t tensor_bytes(const StWriteTensor *t) {
    uint64_t n = dtype_size(t->dtype);
    for (int i = 0; i < t->rank; i++) n *= (uint64_t)t->shape[i];
    return n;
}

bool st_writer_begin(StWriter *w, Diag *d, const char *path, const StWriteTensor *ts, int n) {
    memset(w, 0, sizeof *w);
    w->d = d;
    Buf h = {0};
    buf_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const StWriteTensor *t = &ts[i];
        MOE_ASSERT(t->dtype == DT_F32 || t->dtype == DT_F16 || t->dtype == DT_BF16);
        MOE_ASSERT(t->rank >= 0 && t->rank <= MOE_MAX_DIMS);
        buf_printf(&h, ",");
        buf_json_str(&h, t->name);
        buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
        for (int k = 0; k < t->rank; k++) {
            MOE_ASSERT(t->shape[k] >= 0);
            buf_printf(&h, "%s%" PRId64, k ? "," : "", t->shape[k]);
        }
        uint64_t nb = tensor_bytes(t);
        buf_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", at, at + nb);
        at += nb;
    }
    buf_printf(&h, "}");
    while (h.len % 8) buf_printf(&h, " ");
    w->expected = at;

    size_t plen = strlen(path);
    w->path = xmalloc(plen + 1);
    memcpy(w->path, path, plen + 1);
    w->tmp = xmalloc(plen + 32);
    snprintf(w->tmp, plen + 32, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(w->tmp, "wb");
    if (!f) {
        diag_error(d, "%s: cannot create: %s", w->tmp, strerror(errno));
        free(h.p);
        st_writer_abort(w);
        return false;
    }
    w->f = f;
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.p, 1, h.len, f) == h.len;
    free(h.p);
    if (!ok) {
        diag_error(d, "%s: write failed: %s", w->tmp, strerror(errno));
        st_writer_abort(w);
        return false;
    }
    return true;
}

bool st_writer_append(StWriter *w, const void *bytes, size_t n) {
    MOE_ASSERT(w->f && n <= w->expected - w->written);
    if (n && fwrite(bytes, 1, n, w->f) != n) {
        diag_error(w->d, "%s: write failed: %s", w->tmp, strerror(errno));
        return false;
    }
    w->written += n;
    return true;
}

bool st_writer_finish(StWriter *w) {
    MOE_ASSERT(w->f && w->written == w->expected);
    FILE *f = w->f;
    w->f = NULL;
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false;
    if (!ok) {
        diag_error(w->d, "%s: write failed: %s", w->tmp, strerror(errno));
    } else if (rename(w->tmp, w->path) != 0) {
        diag_error(w->d, "%s: cannot rename to %s: %s", w->tmp, w->path, strerror(errno));
        ok = false;
    }
    if (!ok) unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    w->path = w->tmp = NULL;
    return ok;
}

void st_writer_abort(StWriter *w) {
    if (w->f) fclose(w->f);
    if (w->tmp) unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    w->f = NULL;
    w->path = w->tmp = NULL;
}

bool st_write_file(Diag *d, const char *path, const StWriteTensor *ts, int n) {
    StWriter w;
    if (!st_writer_begin(&w, d, path, ts, n)) return false;
    for (int i = 0; i < n; i++)
        if (!st_writer_append(&w, ts[i].data, (size_t)tensor_bytes(&ts[i]))) {
            st_writer_abort(&w);
            return false;
        }
    return st_writer_finish(&w);
}
