#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "textio.h"

bool cli_parse_int(Diag *d, const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        diag_error(d, "%s: expected an integer in [%" PRId64 ", %" PRId64 "]; got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_double(Diag *d, const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        diag_error(d, "%s: expected a number in [%g, %g]; got '%s'", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_act(Diag *d, const char *flag, const char *s, GkAct *act) {
    for (GkAct a = GK_ACT_EXACT; a <= GK_ACT_BF16; a++)
        if (!strcmp(s, gk_act_name(a))) {
            *act = a;
            return true;
        }
    diag_error(d, "%s: expected exact, int8 or bf16; got '%s'", flag, s);
    return false;
}

bool cli_parse_ids(Diag *d, const char *flag, const char *s, int32_t **ids, int64_t *n) {
    int st = moe_parse_ids(s, ids, n);
    if (st != MOE_IDS_OK) diag_error(d, "%s: %s; got '%s'", flag, moe_parse_ids_error(st), s);
    return st == MOE_IDS_OK;
}

const char *cli_value(Diag *d, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        diag_error(d, "%s: expected a value after it", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool cli_mkdir_p(const char *path) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return false;
    }
    for (char *c = p + 1; *c; c++) { /* each parent, then the folder itself */
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return false;
        *c = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return false;
    struct stat st;
    if (stat(p, &st) != 0) return false;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return false;
    }
    return true;
}

void cli_cache_dir(char *buf, size_t n) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(buf, n, "%s/moec", xdg);
    else snprintf(buf, n, "%s/.cache/moec", home && *home ? home : "/tmp");
}

bool cli_self_exe(char *buf, size_t n) {
    ssize_t len = readlink("/proc/self/exe", buf, n - 1);
    if (len <= 0) return false;
    buf[len] = 0;
    return true;
}

int cli_run_child(char **argv, const char *out_path, const char *err_path, struct rusage *ru) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fo = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    struct rusage own;
    while (wait4(pid, &st, 0, ru ? ru : &own) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
