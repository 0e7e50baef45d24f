/* `sparsetrain report`: one self-contained HTML file (inline SVG and CSS, no
 * scripts, no network) comparing run folders: a table of every run, training
 * curves (loss, test accuracy, learning rate), the layer-wise densities of
 * each run, reliability diagrams and OOD score histograms (from eval.json),
 * and the gap to dense vs model size (the paper's depth/width sweeps). */
#ifndef ST_REPORT_REPORT_H
#define ST_REPORT_REPORT_H

#include "report/run_data.h"

/*! Writes the report of `n` loaded runs to `path` (atomically, through the
 * output guard of io/atomic_file.h: `force` lets it replace a file that is
 * not an HTML report).
 * @return ST_ERR_ARGUMENT if the guard refuses; ST_ERR_IO if it cannot be
 * written; ST_ERR_NOMEM. */
st_status st_report_write(const st_report_run *runs, int n, const char *path, int force);

/*! The report as text (the caller frees *html). */
st_status st_report_html(const st_report_run *runs, int n, char **html);

/* One point of the gap-to-dense plot. */
typedef struct st_gap_point {
    char series[96];   /* "<sparse_init> d=<density>, <model family>" */
    char model[64];
    double parameters; /* of the model */
    double dense_acc, sparse_acc, gap; /* means over seeds; gap = dense - sparse */
    int dense_runs, sparse_runs;
} st_gap_point;

/*! Pairs sparse runs with dense runs of the same model (mean accuracy over
 * seeds, st_report_run_accuracy) and returns one point per (sparse
 * configuration, model) that has both, sorted by series then size. *points
 * is malloc'd (NULL when none); the caller frees it. */
st_status st_report_gaps(const st_report_run *runs, int n, st_gap_point **points, int *n_points);

#endif
