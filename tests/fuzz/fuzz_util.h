/* fuzz_util: what the libFuzzer targets share. Each target hands the fuzzer's bytes to a parser
 * the way a user's file reaches it: written to a file in a private folder (in /dev/shm when there
 * is one, so an iteration costs no disk I/O), then opened by the same entry point moec uses.
 * Diagnostics are counted, not printed (Diag.quiet). Build and run: tests/fuzz/fuzz.cmake. */
#ifndef MOEC_FUZZ_UTIL_H
#define MOEC_FUZZ_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The target's private folder, made on first use and emptied at exit. */
static char fuzz_dir_path[256];
static inline void fuzz_cleanup(void) {
    char cmd[300];
    if (fuzz_dir_path[0] && snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path) < (int)sizeof cmd)
        (void)!system(cmd);
}
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/moec-fuzz-%d", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
                 (int)getpid());
        mkdir(fuzz_dir_path, 0700);
        atexit(fuzz_cleanup);
    }
    return fuzz_dir_path;
}

/* Writes bytes to fuzz_dir()/name; the path (static storage, one per call site's name). */
static inline const char *fuzz_file(const char *name, const void *bytes, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(bytes, 1, n, f) != n) abort();
    if (fclose(f)) abort();
    return path;
}

/* A NUL-terminated malloc'd copy of the bytes. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#endif
