/* Thread-local error messages behind st_status codes (see status.h). */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char st_error_message[1024];

const char *st_last_error(void) { return st_error_message; }

const char *st_status_name(st_status code) {
    switch (code) {
    case ST_OK: return "ok";
    case ST_ERR_ARGUMENT: return "invalid argument";
    case ST_ERR_IO: return "i/o error";
    case ST_ERR_FORMAT: return "bad file format";
    case ST_ERR_NOMEM: return "out of memory";
    case ST_ERR_NUMERIC: return "numerical fault";
    case ST_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown error";
}

st_status st_fail(st_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st_error_message, sizeof st_error_message, fmt, ap);
    va_end(ap);
    return code;
}

st_status st_fail_context(st_status code, const char *fmt, ...) {
    char old[sizeof st_error_message];
    memcpy(old, st_error_message, sizeof old);
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* prefix + ": " + old message, truncated to the buffer */
    size_t cap = sizeof st_error_message - 1, n = strlen(prefix);
    if (n > cap) n = cap;
    memcpy(st_error_message, prefix, n);
    const char *sep = ": ";
    for (int i = 0; i < 2 && n < cap; i++) st_error_message[n++] = sep[i];
    size_t m = strlen(old);
    if (m > cap - n) m = cap - n;
    memcpy(st_error_message + n, old, m);
    st_error_message[n + m] = 0;
    return code;
}

void st_assert_failed(const char *cond, const char *file, int line) {
    fprintf(stderr, "sparsetrain: internal error: assertion `%s' failed at %s:%d\n", cond, file, line);
    abort();
}

void *st_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) st_fail(ST_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *st_malloc_aligned(size_t bytes, const char *what) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) p = NULL;
    if (!p) st_fail(ST_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *st_calloc(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) st_fail(ST_ERR_NOMEM, "out of memory allocating %zu x %zu bytes for %s", count, size, what);
    return p;
}
