/* Fuzz entry points: one function per parser, fed arbitrary bytes. They are
 * linked both into the libFuzzer executables (fuzz_main.c, -DST_FUZZ=ON) and
 * into the CTest replay of the seed corpora and the regression inputs
 * (tests/test_fuzz_regressions.c), so a crash found once stays fixed. */
#ifndef ST_TESTS_FUZZ_TARGETS_H
#define ST_TESTS_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

typedef void (*st_fuzz_fn)(const uint8_t *data, size_t size);

typedef struct st_fuzz_target {
    const char *name; /* also the folder name under corpus/ and regressions/ */
    st_fuzz_fn run;
} st_fuzz_target;

/* Every target, NULL-terminated. */
extern const st_fuzz_target st_fuzz_targets[];

/*! @return the target called `name`, or NULL. */
const st_fuzz_target *st_fuzz_find(const char *name);

/* Removes the scratch folder the file-based targets write into (also run at exit). */
void st_fuzz_cleanup(void);

#endif
