/* exec: the one OpenMP parallel region of the runtime. A compiled step function is called by
 * every thread with (args, ith, nth); its kernels split rows by (ith, nth) and synchronise with
 * moert_barrier(), a barrier of this region's threads (ExecBarrier below). */
#include "exec.h"

#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#else
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EXEC_PAUSE() _mm_pause()
#else
#define EXEC_PAUSE() ((void)0)
#endif

/* The barrier between a step's kernels (a decode step of the Qwen3-MoE bench preset has 58). An `omp
 * barrier` of libgomp ends with a futex wake, a system call, at every barrier whether or not a thread
 * sleeps: 1.5 us per barrier for 2 threads on the Zen 5 VM, against 0.3 us for this one (a loop of
 * barriers, one process). Each thread spins on the generation, then after EXEC_SPINS pauses sleeps on
 * it (futex), so that more threads than cores still make progress; the last to arrive wakes sleepers
 * only when there are some. One per moert_exec call, on its stack (several models may step at once on
 * threads of their own): each thread of the region finds it through exec_bar. */
enum { EXEC_SPINS = 1 << 14 };
typedef struct ExecBarrier {
    _Alignas(64) atomic_int arrived; /* threads at the barrier of this generation */
    _Alignas(64) atomic_int gen;     /* bumped by the last to arrive */
    atomic_int sleepers;             /* threads in futex_wait on gen */
} ExecBarrier;
static _Thread_local ExecBarrier *exec_bar;
static _Thread_local int exec_nth;

static void exec_sleep(atomic_int *gen, int g) {
#if defined(__linux__)
    syscall(SYS_futex, (int *)gen, FUTEX_WAIT_PRIVATE, g, NULL, NULL, 0);
#else
    (void)gen, (void)g;
    sched_yield();
#endif
}

static void exec_wake(atomic_int *gen) {
#if defined(__linux__)
    syscall(SYS_futex, (int *)gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)gen;
#endif
}

static void exec_barrier_wait(ExecBarrier *b, int nth) {
    const int g = atomic_load_explicit(&b->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == nth - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed); /* no one arrives before gen moves */
        atomic_store(&b->gen, g + 1);
        if (atomic_load(&b->sleepers) > 0) exec_wake(&b->gen);
        return;
    }
    for (int i = 0; i < EXEC_SPINS; i++) {
        if (atomic_load_explicit(&b->gen, memory_order_acquire) != g) return;
        EXEC_PAUSE();
    }
    atomic_fetch_add(&b->sleepers, 1);
    while (atomic_load(&b->gen) == g) exec_sleep(&b->gen, g); /* returns at once if gen has moved */
    atomic_fetch_sub(&b->sleepers, 1);
}

void moert_exec(MoeStepFn step, const MoeStepArgs *args, int n_threads) {
    if (n_threads <= 0) n_threads = omp_get_max_threads();
    ExecBarrier bar = {0};
#pragma omp parallel num_threads(n_threads)
    {
        ExecBarrier *outer = exec_bar;
        const int outer_nth = exec_nth;
        exec_bar = &bar, exec_nth = omp_get_num_threads();
        step(args, (int32_t)omp_get_thread_num(), (int32_t)exec_nth);
        exec_bar = outer, exec_nth = outer_nth;
    }
}

int moert_default_threads(void) { return omp_get_max_threads(); }

/* Default visibility: compiled programs call it even when libmoert is built hidden. Outside
 * moert_exec (a test calling a step itself): as one thread, nothing to wait for. */
__attribute__((visibility("default"))) void moert_barrier(void) {
    if (exec_bar && exec_nth > 1) exec_barrier_wait(exec_bar, exec_nth);
}

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
