/* `sparsetrain report RUN_DIR... -o report.html`: one self-contained HTML
 * page comparing run folders (src/report/report.h). */
#ifndef ST_CLI_REPORT_CLI_H
#define ST_CLI_REPORT_CLI_H

/* argv[1] is "report"; returns the exit code (0 ok, 1 runtime, 2 usage). */
int st_cli_report(int argc, char **argv);

#endif
