/* `sparsetrain inspect`: the layer-wise densities, kept counts and FLOPs a
 * model gets from a --sparse_init distribution, as a table or as JSON. */
#ifndef ST_CLI_INSPECT_H
#define ST_CLI_INSPECT_H

/* argv[1] is "inspect"; flags start at argv[2]. Returns the process exit
 * code: 0 ok, 1 runtime failure (e.g. a missing data set), 2 usage error. */
int st_cli_inspect(int argc, char **argv);

#endif
