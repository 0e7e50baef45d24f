/* One libFuzzer executable per target: built with -DST_FUZZ_TARGET="name". */
#include <stdio.h>
#include <stdlib.h>

#include "targets.h"

#ifndef ST_FUZZ_TARGET
#error "define ST_FUZZ_TARGET to the target's name"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const st_fuzz_target *target;
    if (!target) {
        target = st_fuzz_find(ST_FUZZ_TARGET);
        if (!target) {
            fprintf(stderr, "no fuzz target called %s\n", ST_FUZZ_TARGET);
            abort();
        }
    }
    target->run(data, size);
    return 0;
}
