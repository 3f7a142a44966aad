/* exec: the one OpenMP parallel region of the runtime. A compiled step function is called by
 * every thread with (args, ith, nth); its kernels split rows by (ith, nth) and synchronise with
 * moert_barrier(), an orphaned `omp barrier` that binds to this region. */
#include "exec.h"

#include <omp.h>

void moert_exec(MoeStepFn step, const MoeStepArgs *args, int n_threads) {
    if (n_threads <= 0) n_threads = omp_get_max_threads();
#pragma omp parallel num_threads(n_threads)
    step(args, (int32_t)omp_get_thread_num(), (int32_t)omp_get_num_threads());
}

int moert_default_threads(void) { return omp_get_max_threads(); }

/* Default visibility: compiled programs call it even when libmoert is built hidden. */
__attribute__((visibility("default"))) void moert_barrier(void) {
#pragma omp barrier
}
