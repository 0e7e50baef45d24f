/* Process-wide choices of kernel implementation, set by the caller (the CLI
 * maps the ST_* environment variables onto them; the library reads no
 * environment variable). Set them before building models; the instruction
 * set cap is kernels/isa.h's st_isa_force. Defaults: all 0. */
#ifndef ST_CORE_RUNTIME_H
#define ST_CORE_RUNTIME_H

typedef struct st_runtime {
    int conv_backend;     /* st_conv2d_backend (nn/layers.h): 0 auto (oneDNN where available), reference, onednn */
    int nchw_activations; /* 1: keep every activation NCHW under dense execution (comparisons) */
    int winograd;         /* 1: oneDNN's Winograd 3x3 convolutions (opt-in; see kernels/conv_onednn.c) */
} st_runtime;

void st_runtime_set(const st_runtime *r);
const st_runtime *st_runtime_get(void);

#endif
