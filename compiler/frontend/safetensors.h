/* safetensors: read a Hugging Face checkpoint's tensors (one file, or shards listed by
 * model.safetensors.index.json) into a table of TensorInfo, and write safetensors files.
 * Files are mmap'd read-only and never copied: TensorInfo.data points into the mapping, valid
 * until st_close. Everything is validated before it is trusted (header length, JSON, byte
 * ranges inside the data section and not overlapping, shape x dtype size == byte range, dtype
 * one of BF16/F16/F32); every problem is a diag_error naming the file and tensor. */
#ifndef MOEC_SAFETENSORS_H
#define MOEC_SAFETENSORS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "diag.h"
#include "dtype.h"

enum { MOE_MAX_DIMS = 4 };

typedef struct TensorInfo {
    const char *name;               /* HF name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    const char *file;               /* basename of the shard that holds it */
    DType dtype;                    /* DT_F32, DT_F16 or DT_BF16 */
    int rank;                       /* 0..MOE_MAX_DIMS */
    int64_t shape[MOE_MAX_DIMS];    /* outermost first, as in the file */
    const void *data;               /* into the read-only mapping */
    size_t nbytes;
} TensorInfo;

typedef struct StShard {
    const char *path;               /* full path */
    void *map;
    size_t size;
} StShard;

typedef struct TensorTable {
    const char *dir;                /* the model folder */
    int n;                          /* number of tensors */
    TensorInfo *t;                  /* [n], sorted by name */
    int n_shards;
    StShard *shards;                /* [n_shards] */
} TensorTable;

/* Opens dir/model.safetensors.index.json if present (every shard named in weight_map must exist
 * and hold the tensors the map says), else dir/model.safetensors. Returns false after diag_error. */
bool st_open_dir(TensorTable *tt, Arena *a, Diag *d, const char *dir);
/* Opens one .safetensors file (appends its tensors to tt). */
bool st_open_file(TensorTable *tt, Arena *a, Diag *d, const char *path);
/* The tensor of that name, or NULL. Binary search. */
const TensorInfo *st_find(const TensorTable *tt, const char *name);
/* Unmaps every shard. */
void st_close(TensorTable *tt);
/* Total bytes of tensors per dtype, for inspect. */
size_t st_bytes_of(const TensorTable *tt, DType t);

/* --- writing (synth, tests) --- */
typedef struct StWriteTensor {
    const char *name;
    DType dtype;
    int rank;
    int64_t shape[MOE_MAX_DIMS];
    const void *data;               /* shape x dtype bytes */
} StWriteTensor;

/* Writes a .safetensors file (tensors in the given order, 8-byte aligned header) through a
 * temporary name renamed into place. Optional metadata {"format":"pt"}. */
bool st_write_file(Diag *d, const char *path, const StWriteTensor *ts, int n);

/* Streaming writer, for files too big to hold in memory: st_writer_begin writes the header for
 * ts[0..n) (their .data is ignored) to path + ".tmp.<pid>"; the caller then appends the data
 * section (every tensor's bytes, in the order given, in chunks of any size); st_writer_finish
 * checks the byte count, closes and renames into place. After a failure (false, after
 * diag_error) or to give up, st_writer_abort removes the temporary file. */
typedef struct StWriter {
    void *f;                        /* FILE *, NULL when not open */
    char *path, *tmp;               /* malloc'd; freed by finish/abort */
    uint64_t expected;              /* bytes of the data section declared by the header */
    uint64_t written;               /* bytes appended so far */
    Diag *d;
} StWriter;

bool st_writer_begin(StWriter *w, Diag *d, const char *path, const StWriteTensor *ts, int n);
bool st_writer_append(StWriter *w, const void *bytes, size_t n);
bool st_writer_finish(StWriter *w);
void st_writer_abort(StWriter *w);

/* "BF16", "F16", "F32": the safetensors spelling of a dtype. */
const char *st_dtype_name(DType t);

#endif
