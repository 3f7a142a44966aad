/* exec: runs one compiled step on the model's threads. The only place OpenMP appears. */
#ifndef MOERT_EXEC_H
#define MOERT_EXEC_H
#include "format.h"

/* Calls step(args, ith, nth) on every thread of one OpenMP parallel region of n_threads
 * (n_threads <= 0: OpenMP's default); returns when all threads are done. */
void moert_exec(MoeStepFn step, const MoeStepArgs *args, int n_threads);
/* OpenMP's default thread count. */
int moert_default_threads(void);

#endif
