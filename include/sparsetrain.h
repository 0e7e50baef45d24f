/* sparsetrain — public C API.
 * Train sparse neural networks from scratch on the CPU. Every fallible
 * function returns an st_status; st_last_error() gives the message of the
 * last failure on the calling thread. */
#ifndef SPARSETRAIN_H
#define SPARSETRAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum st_status {
    ST_OK = 0,
    ST_ERR_ARGUMENT = 1,    /* bad flag, value, model name, shape */
    ST_ERR_IO = 2,          /* cannot open / read / write a file */
    ST_ERR_FORMAT = 3,      /* truncated or corrupt file contents */
    ST_ERR_NOMEM = 4,       /* allocation failed */
    ST_ERR_NUMERIC = 5,     /* NaN / Inf in loss or gradients */
    ST_ERR_INTERRUPTED = 6  /* stopped by a signal */
} st_status;

/*! @return the message describing the last failure on this thread ("" if none). */
const char *st_last_error(void);
/*! @return a short constant name for a status code. */
const char *st_status_name(st_status code);

#ifdef __cplusplus
}
#endif
#endif
