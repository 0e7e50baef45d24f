/* Error values for the whole library: every fallible function returns an
 * st_status; the human-readable message naming the culprit (file, layer,
 * flag) is kept per thread and read with st_last_error(). */
#ifndef ST_CORE_STATUS_H
#define ST_CORE_STATUS_H

#include "sparsetrain.h"

/* Records a formatted message for the calling thread and returns `code`,
 * so callers write `return st_fail(ST_ERR_IO, "cannot open %s", path);`. */
st_status st_fail(st_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefixes the current message with more context ("loading X: <old>"). */
st_status st_fail_context(st_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Always-on check for internal invariants (programming errors, not input). */
#define ST_ASSERT(cond)                                                       \
    do {                                                                      \
        if (!(cond)) st_assert_failed(#cond, __FILE__, __LINE__);             \
    } while (0)
void st_assert_failed(const char *cond, const char *file, int line);

/* Checked allocation: returns NULL and sets ST_ERR_NOMEM message on failure. */
void *st_malloc(size_t bytes, const char *what);
void *st_calloc(size_t count, size_t size, const char *what);
/* As st_malloc, aligned to a 64-byte cache line (activation buffers: vector
 * loads that straddle two lines cost twice); release with free(). */
void *st_malloc_aligned(size_t bytes, const char *what);

#define ST_TRY(expr)                                                          \
    do {                                                                      \
        st_status st_try_status_ = (expr);                                    \
        if (st_try_status_ != ST_OK) return st_try_status_;                   \
    } while (0)

#endif
