/* Bounds on worker-thread counts (--threads of train, eval, bench, inspect). */
#ifndef ST_CORE_THREADS_H
#define ST_CORE_THREADS_H

#include "sparsetrain.h"

/* A thread count above this many per online core is refused: it only adds
 * overhead, and OpenMP runtimes fail (or crash) creating absurd teams. */
#define ST_THREADS_PER_CORE 4

/*! @return the number of online cores (at least 1). */
int st_online_cores(void);

/*! Checks a --threads value: 0 (all cores) or 1 .. ST_THREADS_PER_CORE x the
 *  online cores. @return ST_OK, or ST_ERR_ARGUMENT naming `flag`, the value,
 *  the core count and the largest accepted value. */
st_status st_threads_check(const char *flag, int threads);

#endif
