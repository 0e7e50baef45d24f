/* ST_* environment variables -> the library's process-wide settings (see environment.h). */
#include "environment.h"

#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "kernels/isa.h"
#include "nn/layers.h"

static int is(const char *name, const char *value) {
    const char *v = getenv(name);
    return v && strcmp(v, value) == 0;
}

void st_cli_apply_environment(void) {
    st_runtime rt = {0};
    if (is("ST_CONV2D_BACKEND", "reference")) rt.conv_backend = ST_CONV2D_REFERENCE;
    if (is("ST_CONV2D_BACKEND", "onednn")) rt.conv_backend = ST_CONV2D_ONEDNN;
    rt.nchw_activations = is("ST_ACTIVATION_LAYOUT", "nchw");
    rt.winograd = is("ST_CONV2D_ALGORITHM", "winograd");
    st_runtime_set(&rt);
    const char *isa = getenv("ST_ISA");
    if (isa && st_isa_force(isa) != ST_OK) st_isa_force("generic"); /* unknown: the safe choice */
}
