/* The ST_* environment variables of the sparsetrain command (the library
 * reads none): they set the process-wide kernel choices before a command
 * runs; flags given on the command line (--isa) come after and win.
 *   ST_ISA=generic|avx2|avx512      cap the kernels' instruction set (unknown: generic)
 *   ST_CONV2D_BACKEND=reference|onednn   dense convolutions' backend (default: oneDNN where available)
 *   ST_ACTIVATION_LAYOUT=nchw       no channel-blocked activations under dense execution
 *   ST_CONV2D_ALGORITHM=winograd    oneDNN's Winograd 3x3 convolutions (opt-in) */
#ifndef ST_CLI_ENVIRONMENT_H
#define ST_CLI_ENVIRONMENT_H

void st_cli_apply_environment(void);

#endif
