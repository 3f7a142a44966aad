#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int test_failures;
int test_checks;

void test_check(bool ok, const char *file, int line, const char *what, const char *expected, const char *actual) {
    test_checks++;
    if (ok) return;
    test_failures++;
    fprintf(stderr, "%s:%d: FAIL %s\n  expected: %s\n  actual:   %s\n", file, line, what, expected, actual);
}

void test_check_eq(bool ok, const char *file, int line, const char *what, long long a, long long b) {
    test_checks++;
    if (ok) return;
    test_failures++;
    fprintf(stderr, "%s:%d: FAIL %s\n  left:  %lld\n  right: %lld\n", file, line, what, a, b);
}

void test_check_near(bool ok, const char *file, int line, const char *what, double a, double b, double tol) {
    test_checks++;
    if (ok) return;
    test_failures++;
    fprintf(stderr, "%s:%d: FAIL %s: %.9g vs %.9g (|diff| %.3g > tol %.3g)\n", file, line, what, a, b, fabs(a - b), tol);
}

int test_done(void) {
    if (test_failures) {
        fprintf(stderr, "%d of %d checks failed\n", test_failures, test_checks);
        return 1;
    }
    printf("all %d checks passed\n", test_checks);
    return test_checks > 0 ? 0 : 1; /* a test that checked nothing is a failure */
}

void test_skip(const char *why) {
    printf("SKIP: %s\n", why);
    exit(77);
}

double test_nmse(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double dlt = (double)got[i] - (double)want[i];
        num += dlt * dlt;
        den += (double)want[i] * (double)want[i];
    }
    return num / (den > 1e-30 ? den : 1e-30);
}

int test_run(const char *cmdline, const char *out_path, const char *err_path) {
    char buf[8192];
    snprintf(buf, sizeof buf, "%s >%s 2>%s", cmdline, out_path ? out_path : "/dev/null", err_path ? err_path : "/dev/null");
    int st = system(buf);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        fclose(f);
        return NULL;
    }
    p[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return p;
}

const char *test_tmpdir(const char *tag) {
    static char path[4096];
#ifdef MOEC_TEST_TMP
    const char *root = MOEC_TEST_TMP;
#else
    const char *root = "/tmp";
#endif
    mkdir(root, 0755);
    snprintf(path, sizeof path, "%s/%s.%d", root, tag, (int)getpid());
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) return NULL;
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return NULL;
    return path;
}
