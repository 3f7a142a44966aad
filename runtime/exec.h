/* exec: runs one compiled step on the model's threads. The only place OpenMP appears. */
#ifndef MOERT_EXEC_H
#define MOERT_EXEC_H
#include <stdbool.h>
#include <stddef.h>

#include "format.h"

/* Calls step(args, ith, nth) on every thread of one OpenMP parallel region of n_threads
 * (n_threads <= 0: OpenMP's default); returns when all threads are done. */
void moert_exec(MoeStepFn step, const MoeStepArgs *args, int n_threads);
/* OpenMP's default thread count. */
int moert_default_threads(void);
/* Asks the kernel for the x86 AMX tile state (Linux arch_prctl ARCH_REQ_XCOMP_PERM), once per
 * process, before any thread runs a step that uses tiles. False with a reason in why (n bytes) when
 * this CPU or kernel has none. */
bool moert_enable_amx(char *why, size_t n);

#endif
