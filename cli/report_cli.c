/* `sparsetrain report` (see report_cli.h): run folders are the positional
 * arguments; -o / --out names the HTML file. */
#include "report_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/atomic_file.h"
#include "report/report.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: sparsetrain report RUN_DIR... -o report.html\n\n"
            "Writes one self-contained HTML page (inline SVG, no scripts, no network) comparing runs: a table, "
            "training curves,\nlayer-wise densities, reliability diagrams, OOD score histograms and the gap to dense "
            "vs model size.\nA run folder holds a training log (log.jsonl or *.jsonl, from train --log), a checkpoint "
            "(checkpoint.safetensors\nor *.safetensors, from train --save) and/or eval.json (from eval --out); "
            "train --run-dir DIR writes the first two.\n\n"
            "  -o, --out FILE   the HTML file to write (required)\n"
            "  --force          let -o replace a file that is not an HTML report (never a folder, device or FIFO,\n"
            "                   never a file the report reads)\n"
            "  --help           show this help\n");
}

int st_cli_report(int argc, char **argv) {
    const char *out = NULL;
    int force = 0;
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    int n = 0;
    if (!dirs) return 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            free(dirs);
            return 0;
        }
        if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sparsetrain report: %s needs a file name\n", a);
                free(dirs);
                return 2;
            }
            out = argv[++i];
        } else if (strcmp(a, "--force") == 0) {
            force = 1;
        } else if (strncmp(a, "--out=", 6) == 0) {
            out = a + 6;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sparsetrain report: unknown option %s (see --help)\n", a);
            free(dirs);
            return 2;
        } else {
            dirs[n++] = a;
        }
    }
    if (!out || !n) {
        fprintf(stderr, "sparsetrain report: %s\n", !n ? "give at least one run folder" : "-o FILE is required");
        usage(stderr);
        free(dirs);
        return 2;
    }
    st_report_run *runs = calloc((size_t)n, sizeof *runs);
    st_status s = runs ? ST_OK : st_fail(ST_ERR_NOMEM, "out of memory");
    if (s == ST_OK) s = st_output_check(out, "-o", ST_FILE_HTML, force); /* before reading anything */
    int loaded = 0;
    for (; s == ST_OK && loaded < n; loaded++) {
        s = st_report_run_load(dirs[loaded], &runs[loaded]);
        if (s != ST_OK) break;
    }
    for (int i = 0; s == ST_OK && i < n; i++)
        if (runs[i].skipped_lines)
            fprintf(stderr, "sparsetrain report: warning: skipped %d line(s) of the log of %s that are not log objects "
                    "(first: %s)\n", runs[i].skipped_lines, runs[i].dir, runs[i].first_skipped);
    /* never write over a file the report reads (by inode: -o run/log.jsonl with --force) */
    st_file_claims *claims = s == ST_OK ? malloc(sizeof *claims) : NULL;
    if (s == ST_OK && !claims) s = st_fail(ST_ERR_NOMEM, "out of memory");
    if (claims) st_file_claims_init(claims);
    static const char *const labels[3] = {"the log", "the checkpoint", "the eval result"};
    for (int i = 0; s == ST_OK && i < n; i++)
        for (int k = 0; s == ST_OK && k < 3; k++) s = st_claim_input(claims, runs[i].files[k], labels[k]);
    if (s == ST_OK) s = st_claim_output(claims, out, "-o");
    free(claims);
    if (s == ST_OK) s = st_report_write(runs, n, out, force);
    for (int i = 0; i < loaded && runs; i++) st_report_run_free(&runs[i]);
    free(runs);
    free(dirs);
    if (s != ST_OK) {
        fprintf(stderr, "sparsetrain report: error: %s\n", st_last_error());
        return s == ST_ERR_ARGUMENT ? 2 : 1;
    }
    printf("wrote %s (%d run%s)\n", out, n, n == 1 ? "" : "s");
    return 0;
}
