#include "diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

enum { MAX_PRINTED = 20 };

void diag_error(Diag *d, const char *fmt, ...) {
    va_list ap;
    if (d->n_errors == 0) {
        va_start(ap, fmt);
        vsnprintf(d->first, sizeof d->first, fmt, ap);
        va_end(ap);
    }
    d->n_errors++;
    if (d->quiet || d->n_errors > MAX_PRINTED) return;
    fputs("moec: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void diag_note(Diag *d, const char *fmt, ...) {
    if (d->quiet || d->n_errors > MAX_PRINTED) return;
    va_list ap;
    fputs("moec: note: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void diag_summary(Diag *d) {
    if (d->quiet || d->n_errors <= 1) return;
    fprintf(stderr, "moec: %d errors%s\n", d->n_errors, d->n_errors > MAX_PRINTED ? " (first 20 shown)" : "");
}

void moe_assert_fail(const char *file, int line, const char *cond) {
    fprintf(stderr, "moec: internal error: %s:%d: assertion failed: %s\n", file, line, cond);
    abort();
}
