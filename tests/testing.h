/* Minimal assertion helpers shared by the C unit tests (run under CTest). */
#ifndef ST_TESTING_H
#define ST_TESTING_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"

static int st_test_failures = 0;
/* Parts not run because a dependency is missing (TEST_SKIP_PART): the test
 * then exits ST_TEST_SKIP_CODE, CTest's SKIP_RETURN_CODE (tests/CMakeLists.txt),
 * and is reported "Skipped", never "Passed". */
static int st_test_skipped = 0;
#define ST_TEST_SKIP_CODE 77

#define TEST_SKIP_PART(...)                                                           \
    do {                                                                              \
        printf("SKIP (part): " __VA_ARGS__);                                          \
        printf("\n");                                                                 \
        st_test_skipped++;                                                            \
    } while (0)

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
            st_test_failures++;                                                       \
        }                                                                             \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                         \
    do {                                                                              \
        double st_a_ = (a), st_b_ = (b);                                              \
        if (!(fabs(st_a_ - st_b_) <= (tol))) {                                        \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g vs %s = %.9g (tol %g)\n", \
                    __FILE__, __LINE__, #a, st_a_, #b, st_b_, (double)(tol));         \
            st_test_failures++;                                                       \
        }                                                                             \
    } while (0)

#define CHECK_OK(expr)                                                                \
    do {                                                                              \
        st_status st_s_ = (expr);                                                     \
        if (st_s_ != ST_OK) {                                                         \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr, \
                    st_status_name(st_s_), st_last_error());                          \
            st_test_failures++;                                                       \
        }                                                                             \
    } while (0)

/* Zeroed test buffers; a test that cannot allocate stops at once. */
static inline void *new_bytes(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static inline float *new_floats(size_t n) { return (float *)new_bytes(n * sizeof(float)); }

/* n floats drawn uniformly from [-1, 1). */
static inline float *random_floats(st_rng *rng, size_t n) {
    float *x = new_floats(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)(st_rng_uniform_double(rng) * 2.0 - 1.0);
    return x;
}

#define TEST_MAIN_END()                                                               \
    do {                                                                              \
        if (st_test_failures) {                                                       \
            fprintf(stderr, "%d check(s) failed\n", st_test_failures);                \
            return 1;                                                                 \
        }                                                                             \
        if (st_test_skipped) {                                                        \
            printf("%d part(s) skipped (missing dependency); the rest passed\n",      \
                   st_test_skipped);                                                  \
            return ST_TEST_SKIP_CODE;                                                 \
        }                                                                             \
        printf("all checks passed\n");                                                \
        return 0;                                                                     \
    } while (0)

#endif
