/* cli: small helpers shared by the subcommands' flag parsing. Errors are one line on stderr. */
#ifndef MOEC_CLI_H
#define MOEC_CLI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "interp/kernels.h"

/* Parses "1,2,3" into a malloc'd array; false after diag_error naming the flag. */
bool cli_parse_ids(Diag *d, const char *flag, const char *s, int32_t **ids, int64_t *n);
/* Parses a whole integer/float in [lo, hi]; false after diag_error naming the flag. */
bool cli_parse_int(Diag *d, const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_parse_double(Diag *d, const char *flag, const char *s, double lo, double hi, double *out);
/* Parses an --act value: exact, int8 or bf16 (interp/kernels.h); false after diag_error naming the flag. */
bool cli_parse_act(Diag *d, const char *flag, const char *s, GkAct *act);
/* The value after argv[*i] for flag (advancing *i); NULL after diag_error when missing. */
const char *cli_value(Diag *d, int argc, char **argv, int *i);
/* mkdir -p: creates path and its missing parents (mode 0755); false (errno set) when it cannot, or
 * (ENOTDIR) when path exists and is not a folder. */
bool cli_mkdir_p(const char *path);
/* moec's cache folder: $XDG_CACHE_HOME/moec, else $HOME/.cache/moec (/tmp/.cache/moec without HOME). */
void cli_cache_dir(char *buf, size_t n);
/* The path of the running moec (/proc/self/exe) into buf; false (errno set) when unknown. */
bool cli_self_exe(char *buf, size_t n);
struct rusage;
/* Runs argv[0] (a path) as a child with stdout into out_path and stderr into err_path (each NULL:
 * /dev/null) and waits: its exit status, 128 + signal number, or -1 (errno set) when it could not
 * run. ru (may be NULL) gets the child's resource usage. */
int cli_run_child(char **argv, const char *out_path, const char *err_path, struct rusage *ru);

#endif
