/* Process-wide kernel choices (see runtime.h). */
#include "core/runtime.h"

static st_runtime current;

void st_runtime_set(const st_runtime *r) { current = *r; }
const st_runtime *st_runtime_get(void) { return &current; }
