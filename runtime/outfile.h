/* outfile: every output file is written under a temporary name in the same folder and renamed
 * into place only when complete, so a failure never leaves half a file nor clobbers an old one. */
#ifndef MOE_OUTFILE_H
#define MOE_OUTFILE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct MoeOutFile {
    FILE *f;
    char *path, *tmp;
    bool failed;
} MoeOutFile;

/* Opens "<path>.tmp.<pid>" for writing; false (errno set) when it cannot. */
bool moe_out_open(MoeOutFile *o, const char *path);
void moe_out_write(MoeOutFile *o, const void *p, size_t n);
/* Flushes, closes and renames into place; false (and the temporary removed) on any error. */
bool moe_out_commit(MoeOutFile *o);
/* Closes and removes the temporary. */
void moe_out_abort(MoeOutFile *o);

/* Monotonic wall-clock seconds. */
double moe_now_s(void);
/* The --verbose timing line shared by `moec run` and compiled executables (parsed by moec bench
 * and moec demo):
 * "timing: load L s | prefill N tok in P s = X tok/s | decode M tok in D s = Y tok/s" */
void moe_print_timing(FILE *f, double load_s, int64_t n_prefill, double prefill_s, int64_t n_decode, double decode_s);

/* One timing line, read back (by moec demo; the tok/s figures are exact to 0.1, the times to 0.1 ms). */
typedef struct MoeTiming {
    double load_s, prefill_s, prefill_tps, decode_s, decode_tps;
    int64_t n_prefill, n_decode;
} MoeTiming;
/* Parses a line moe_print_timing wrote (trailing text ignored); false when it is not one. */
bool moe_parse_timing(const char *line, MoeTiming *t);

#endif
