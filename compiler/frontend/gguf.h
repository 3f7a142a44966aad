/* gguf: read llama.cpp's GGUF files (versions 2 and 3, little-endian, one file or split parts)
 * into typed metadata and a tensor table, and write small GGUF files (synth, tests).
 * Files are mmap'd read-only and never copied: GgufTensor.ti.data points into the mapping, valid
 * until gguf_close. Keys, tensor names and string values are copied into the caller's Arena
 * (NUL-terminated); numeric arrays point into the mapping. Every count, length, shape, type and
 * byte range is checked against the file before it is trusted; every problem is one diag_error
 * naming the file and the key or tensor, and the open returns false.
 *
 * Layout of one file (all integers little-endian):
 *   "GGUF"  u32 version  u64 n_tensors  u64 n_kv
 *   n_kv x   { str key, u32 value type, value }     str = u64 length + bytes (no NUL)
 *            value of an array = u32 element type, u64 count, count elements
 *   n_tensors x { str name, u32 n_dims, i64 ne[n_dims] (innermost first), u32 ggml type,
 *                 u64 offset (relative to the data section, a multiple of the alignment) }
 *   padding to general.alignment (u32, default 32), then the data section.
 * Split files NAME-0000k-of-0000n.gguf carry split.no / split.count / split.tensors.count; the
 * first part holds the metadata and each part's offsets are relative to its own data section. */
#ifndef MOEC_GGUF_H
#define MOEC_GGUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "diag.h"
#include "dtype.h"
#include "safetensors.h" /* TensorInfo, StWriteTensor, MOE_MAX_DIMS */

/* Metadata value types, numbered as in the file. */
typedef enum GgufType {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STR = 8,
    GGUF_ARR = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_TYPE_COUNT
} GgufType;

typedef struct GgufStr {
    const char *s;                  /* NUL-terminated (may also hold NULs: len counts them) */
    uint64_t len;
} GgufStr;

/* One metadata key/value. Scalars are widened: unsigned types and BOOL in v.u, signed in v.i,
 * F32/F64 in v.f, STR in v.s. An array has type GGUF_ARR, its element type in elem, n elements:
 * strings as GgufStr[n] in arr, numbers packed little-endian (unaligned) in arr. */
typedef struct GgufKv {
    const char *key;
    GgufType type;
    GgufType elem;                  /* arrays only */
    uint64_t n;                     /* arrays only: element count */
    union {
        uint64_t u;
        int64_t i;
        double f;
        GgufStr s;
    } v;
    const void *arr;                /* arrays only */
} GgufKv;

typedef struct GgufTensor {
    TensorInfo ti;                  /* name, file, dtype, rank, shape (outermost first), data, nbytes */
    int64_t ne[MOE_MAX_DIMS];       /* ggml order, innermost first (ne[0] = row length); 1 past rank */
    uint32_t ggml_type;             /* as in the file */
    int part;                       /* index into GgufFile.parts */
    uint64_t offset;                /* relative to its part's data section */
} GgufTensor;

typedef struct GgufPart {
    const char *path;
    const void *map;                /* the whole file (or the caller's buffer) */
    size_t size;
    bool mapped;                    /* munmap at close (false for gguf_open_buffer) */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start;            /* offset of the data section in the file */
    int n_tensors;
} GgufPart;

typedef struct GgufFile {
    const char *path;               /* the first part */
    uint32_t version;               /* of the first part */
    uint32_t alignment;             /* of the first part */
    int n_kv;
    GgufKv *kv;                     /* [n_kv], the first part's metadata in file order */
    int n_tensors;
    GgufTensor *t;                  /* [n_tensors], every part's tensors in file order */
    int n_parts;
    GgufPart *parts;                /* [n_parts] */
    const GgufKv **kv_sorted;       /* [n_kv] by key, for lookups */
    const GgufTensor **t_sorted;    /* [n_tensors] by name */
} GgufFile;

/* Opens a GGUF file; for the first part of a split (NAME-00001-of-0000n.gguf with split.count n)
 * also every other part, from the same folder. A later part is refused with the name of the
 * file to pass instead. False after diag_error; then g must still be released with gguf_close. */
bool gguf_open(GgufFile *g, Arena *a, Diag *d, const char *path);
/* Parses one standalone GGUF image held in memory (name is used in messages). The buffer must
 * outlive g. Split parts are refused (they need their files). Used by gguf_open and the fuzzer. */
bool gguf_open_buffer(GgufFile *g, Arena *a, Diag *d, const char *name, const void *data, size_t size);
/* Unmaps every part. Safe on a zeroed or half-opened GgufFile. */
void gguf_close(GgufFile *g);

/* The tensor of that name, or NULL. Binary search. */
const GgufTensor *gguf_find(const GgufFile *g, const char *name);
/* The key/value of that key, or NULL (no error: for optional keys). Binary search. */
const GgufKv *gguf_kv_find(const GgufFile *g, const char *key);

/* Typed getters: true with *out set, or false after diag_error naming the key when it is
 * missing, has another type, or its value does not fit. Integer getters take any integer type
 * whose value fits; gguf_get_f32 takes F32 or F64. */
bool gguf_get_u32(const GgufFile *g, Diag *d, const char *key, uint32_t *out);
bool gguf_get_i32(const GgufFile *g, Diag *d, const char *key, int32_t *out);
bool gguf_get_u64(const GgufFile *g, Diag *d, const char *key, uint64_t *out);
bool gguf_get_f32(const GgufFile *g, Diag *d, const char *key, float *out);
bool gguf_get_bool(const GgufFile *g, Diag *d, const char *key, bool *out);
bool gguf_get_str(const GgufFile *g, Diag *d, const char *key, const char **out);
/* An array of strings / of numbers (any numeric or bool element type): the kv (its n is the
 * length), or NULL after diag_error naming the key. */
const GgufKv *gguf_get_str_arr(const GgufFile *g, Diag *d, const char *key);
const GgufKv *gguf_get_num_arr(const GgufFile *g, Diag *d, const char *key);
/* Element i (< kv->n) of an array from the getters above. */
GgufStr gguf_arr_str(const GgufKv *kv, uint64_t i);
int64_t gguf_arr_i64(const GgufKv *kv, uint64_t i);   /* integer and bool elements; floats truncated */
double gguf_arr_f64(const GgufKv *kv, uint64_t i);    /* any numeric element, widened */

/* "u32", "str", "arr", ...: the short name of a value type. */
const char *gguf_type_name(GgufType t);
/* A one-line rendering of kv's value into buf, e.g. "u32 8", "str \"llama\"",
 * "arr[str; 32000] \"<unk>\", \"<s>\", ..." (long values cut with "..."), for inspect dumps. */
void gguf_kv_format(const GgufKv *kv, char *buf, size_t n);

/* ggml tensor types: the name of a ggml type id ("Q4_K"; "?" if unknown), and the moec DType of
 * the supported ones (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K). */
const char *gguf_ggml_type_name(uint32_t ggml_type);
bool gguf_dtype_of_ggml(uint32_t ggml_type, DType *out);
uint32_t gguf_ggml_of_dtype(DType t);       /* asserts t is one of those */

/* --- writing (synth, tests) --- */

/* Key/values for the writer (scalars; arrays take the caller's elements: packed numbers, or
 * GgufStr[n] for strings). */
GgufKv gguf_kv_u32(const char *key, uint32_t v);
GgufKv gguf_kv_i32(const char *key, int32_t v);
GgufKv gguf_kv_f32(const char *key, float v);
GgufKv gguf_kv_bool(const char *key, bool v);
GgufKv gguf_kv_str(const char *key, const char *s);
GgufKv gguf_kv_arr(const char *key, GgufType elem, uint64_t n, const void *elems);

/* Writes a GGUF v3 file through a temporary name renamed into place: kvs in order (plus
 * general.alignment when alignment is not 32 and kvs lack it; one among kvs is written as given,
 * which tests use to make bad files), then the tensors in order, each at the next multiple of
 * alignment (a power of two). A tensor's shape is outermost first, as in StWriteTensor; its data
 * holds shape x dtype bytes (rows of whole blocks for quantised types). */
bool gguf_write_file(Diag *d, const char *path, const GgufKv *kvs, int n_kv, const StWriteTensor *ts, int n_t,
                     uint32_t alignment);

#endif
