/* exec: the one OpenMP parallel region of the runtime. A compiled step function is called by
 * every thread with (args, ith, nth); its kernels split rows by (ith, nth) and synchronise with
 * moert_barrier(), an orphaned `omp barrier` that binds to this region. */
#include "exec.h"

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The step's unit counter for the kernels (moert_work), on moert_exec's stack (several models may
 * step at once on threads of their own): each thread of the region finds it through exec_work. */
static _Thread_local int64_t *exec_work;

void moert_exec(MoeStepFn step, const MoeStepArgs *args, int n_threads) {
    if (n_threads <= 0) n_threads = omp_get_max_threads();
    _Alignas(64) int64_t work[8] = {0};
#pragma omp parallel num_threads(n_threads)
    {
        int64_t *outer = exec_work;
        const int nth = omp_get_num_threads();
        exec_work = nth > 1 ? work : NULL;
        step(args, (int32_t)omp_get_thread_num(), (int32_t)nth);
        exec_work = outer;
    }
}

int moert_default_threads(void) { return omp_get_max_threads(); }

/* Default visibility: compiled programs call it even when libmoert is built hidden. */
__attribute__((visibility("default"))) void moert_barrier(void) {
#pragma omp barrier
}

/* Left zero by every kernel that uses it (kernels.h: kt_take), so zero when each kernel starts. */
__attribute__((visibility("default"))) int64_t *moert_work(void) { return exec_work; }

bool moert_enable_amx(char *why, size_t n) {
#if defined(__x86_64__) && defined(__linux__)
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    if (!(d >> 22 & 1) || !(d >> 24 & 1)) { /* AMX-BF16, AMX-TILE */
        snprintf(why, n, "this CPU has no AMX-BF16 tiles");
        return false;
    }
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        snprintf(why, n, "the kernel refused the AMX tile state (arch_prctl: %s)", strerror(errno));
        return false;
    }
    return true;
#else
    snprintf(why, n, "AMX tiles exist on x86-64 Linux only");
    return false;
#endif
}
