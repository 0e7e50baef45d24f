/* `sparsetrain eval`: accuracy, NLL, calibration, OOD detection and
 * adversarial accuracy of a checkpoint, printed as text or JSON. */
#ifndef ST_CLI_EVAL_CLI_H
#define ST_CLI_EVAL_CLI_H

/* argv[1] is "eval"; flags start at argv[2]. Returns the process exit code:
 * 0 ok, 1 runtime failure (bad file), 2 usage error. */
int st_cli_eval(int argc, char **argv);

#endif
