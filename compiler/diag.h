/* diag: user-facing errors, and asserts for our own bugs.
 * User failures (bad config, bad tensor, bad flag) go through diag_error in the form
 *   "<file>: <subject>: <problem>; expected X, got Y"
 * one line each on stderr, prefixed "moec: error: ". The first 20 are printed; callers check
 * diag_failed() and exit 1. Bugs go through MOE_ASSERT / MOE_UNREACHABLE (print, abort). */
#ifndef MOEC_DIAG_H
#define MOEC_DIAG_H
#include <stdbool.h>

typedef struct Diag {
    int n_errors;  /* errors reported so far */
    bool quiet;    /* count but do not print (used by tests that probe failures) */
    char first[512]; /* text of the first error, for tests */
} Diag;

void diag_error(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_note(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool diag_failed(const Diag *d) { return d->n_errors > 0; }
/* Prints "moec: N errors" when more than one was reported (a single error stays one line). */
void diag_summary(Diag *d);

_Noreturn void moe_assert_fail(const char *file, int line, const char *cond);
#define MOE_ASSERT(c) ((c) ? (void)0 : moe_assert_fail(__FILE__, __LINE__, #c))
#define MOE_UNREACHABLE() moe_assert_fail(__FILE__, __LINE__, "unreachable")

#endif
