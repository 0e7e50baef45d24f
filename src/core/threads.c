/* Thread-count bounds (see threads.h). */
#include "core/threads.h"

#include <unistd.h>

#include "core/status.h"

int st_online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 && n <= 1 << 20 ? (int)n : 1;
}

st_status st_threads_check(const char *flag, int threads) {
    if (!flag) flag = "--threads";
    if (threads < 0) return st_fail(ST_ERR_ARGUMENT, "%s must be >= 0 (got %d)", flag, threads);
    int cores = st_online_cores();
    int most = cores * ST_THREADS_PER_CORE;
    if (threads > most)
        return st_fail(ST_ERR_ARGUMENT, "%s %d is too many: this machine has %d online core%s; use at most %d (%dx the cores), or 0 for all cores",
                       flag, threads, cores, cores == 1 ? "" : "s", most, ST_THREADS_PER_CORE);
    return ST_OK;
}
