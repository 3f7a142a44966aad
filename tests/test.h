/* test.h: the tiny assertion kit every tests/unit/test_*.c uses.
 * EXPECT_* print the expression, expected and actual values, and count failures;
 * a test's main returns test_done() (0 pass, 1 fail). test_skip(msg) exits 77 (ctest: skipped). */
#ifndef MOEC_TEST_H
#define MOEC_TEST_H
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern int test_failures;
extern int test_checks;

#define EXPECT_TRUE(c) test_check((c), __FILE__, __LINE__, #c, "true", "false")
#define EXPECT_EQ(a, b)                                                                       \
    do {                                                                                      \
        long long ea_ = (long long)(a), eb_ = (long long)(b);                                 \
        test_check_eq(ea_ == eb_, __FILE__, __LINE__, #a " == " #b, ea_, eb_);                \
    } while (0)
#define EXPECT_NEAR(a, b, tol)                                                                \
    do {                                                                                      \
        double na_ = (double)(a), nb_ = (double)(b);                                          \
        test_check_near(fabs(na_ - nb_) <= (tol), __FILE__, __LINE__, #a, na_, nb_, (tol));   \
    } while (0)
#define EXPECT_STR_CONTAINS(hay, needle)                                                      \
    test_check(strstr((hay), (needle)) != NULL, __FILE__, __LINE__, #hay " contains " #needle, \
               (needle), (hay))

void test_check(bool ok, const char *file, int line, const char *what, const char *expected, const char *actual);
void test_check_eq(bool ok, const char *file, int line, const char *what, long long a, long long b);
void test_check_near(bool ok, const char *file, int line, const char *what, double a, double b, double tol);
int test_done(void);
_Noreturn void test_skip(const char *why);

/* Normalised mean squared error of got vs want: sum((g-w)^2) / max(sum(w^2), tiny). */
double test_nmse(const float *got, const float *want, size_t n);
/* Runs a shell command line; returns its exit status (or -1). stdout/stderr to the given files
 * when non-NULL. */
int test_run(const char *cmdline, const char *out_path, const char *err_path);
/* Reads a whole file into a malloc'd NUL-terminated buffer; *len set when non-NULL. */
char *test_read_file(const char *path, size_t *len);
/* A fresh temporary directory under MOEC_TEST_TMP (created); returned string is static per call. */
const char *test_tmpdir(const char *tag);

#endif
