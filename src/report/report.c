/* The HTML report (see report.h): a table, then the charts of
 * report/svg_chart.h, assembled into one page with inline CSS. */
#include "report/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/atomic_file.h"
#include "report/html.h"
#include "report/svg_chart.h"

/* "cifar_resnet_20_8" -> "cifar_resnet_20_*": the model with its last number
 * replaced, so that depth and width sweeps form separate series. */
static void model_family(const char *model, char *out, size_t size) {
    const size_t len = strlen(model);
    size_t end = len;
    while (end > 0 && (model[end - 1] < '0' || model[end - 1] > '9')) end--;
    size_t start = end;
    while (start > 0 && model[start - 1] >= '0' && model[start - 1] <= '9') start--;
    if (start == end) {
        snprintf(out, size, "%s", model);
        return;
    }
    snprintf(out, size, "%.*s*%s", (int)start, model, model + end);
}

static int by_series_then_size(const void *a, const void *b) {
    const st_gap_point *x = a, *y = b;
    int c = strcmp(x->series, y->series);
    if (c) return c;
    return x->parameters < y->parameters ? -1 : x->parameters > y->parameters ? 1 : 0;
}

st_status st_report_gaps(const st_report_run *runs, int n, st_gap_point **points, int *n_points) {
    *points = NULL;
    *n_points = 0;
    st_gap_point *p = st_calloc((size_t)n + 1, sizeof *p, "gap points");
    if (!p) return ST_ERR_NOMEM;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const st_report_run *r = &runs[i];
        if (!r->has_checkpoint || !r->sparse || !isfinite(st_report_run_accuracy(r))) continue;
        char family[64], series[96];
        model_family(r->model, family, sizeof family);
        snprintf(series, sizeof series, "%s d=%g, %s", r->sparse_init, r->density, family);
        int j = 0;
        while (j < k && !(strcmp(p[j].series, series) == 0 && strcmp(p[j].model, r->model) == 0)) j++;
        if (j == k) {
            snprintf(p[k].series, sizeof p[k].series, "%s", series);
            snprintf(p[k].model, sizeof p[k].model, "%s", r->model);
            p[k].parameters = (double)r->parameters;
            k++;
        }
        p[j].sparse_acc += st_report_run_accuracy(r);
        p[j].sparse_runs++;
    }
    int kept = 0;
    for (int j = 0; j < k; j++) {
        for (int i = 0; i < n; i++) {
            const st_report_run *r = &runs[i];
            if (r->has_checkpoint && !r->sparse && strcmp(r->model, p[j].model) == 0 &&
                isfinite(st_report_run_accuracy(r))) {
                p[j].dense_acc += st_report_run_accuracy(r);
                p[j].dense_runs++;
            }
        }
        if (!p[j].dense_runs) continue;
        p[j].dense_acc /= p[j].dense_runs;
        p[j].sparse_acc /= p[j].sparse_runs;
        p[j].gap = p[j].dense_acc - p[j].sparse_acc;
        p[kept++] = p[j];
    }
    if (!kept) {
        free(p);
        return ST_OK;
    }
    qsort(p, (size_t)kept, sizeof *p, by_series_then_size);
    *points = p;
    *n_points = kept;
    return ST_OK;
}

static void cell_number(st_text *t, double v, const char *fmt) {
    st_json_append_text(t, "<td>");
    if (isfinite(v))
        st_text_printf(t, fmt, v);
    else
        st_json_append_text(t, "&ndash;");
    st_json_append_text(t, "</td>");
}

static void cell_text(st_text *t, const char *s) {
    st_json_append_text(t, "<td>");
    st_text_escaped(t, s && s[0] ? s : "-");
    st_json_append_text(t, "</td>");
}

static double last_finite(const double *v, int n) {
    for (int i = n - 1; i >= 0; i--)
        if (isfinite(v[i])) return v[i];
    return NAN;
}

static void comparison_table(st_text *t, const st_report_run *runs, int n) {
    st_json_append_text(t,
                        "<h2>Runs</h2><table><tr><th>run</th><th>model</th><th>distribution</th><th>density "
                        "(achieved)</th><th>weights kept</th><th>epochs</th><th>last test acc</th><th>eval top-1</th>"
                        "<th>top-5</th><th>NLL</th><th>ECE</th><th>OOD AUROC</th><th>FPR@95</th>"
                        "<th>adversarial acc</th><th>inference MFLOPs sparse / dense</th>"
                        "<th>training FLOPs (logged epochs) sparse / dense</th></tr>\n");
    for (int i = 0; i < n; i++) {
        const st_report_run *r = &runs[i];
        st_json_append_text(t, "<tr>");
        cell_text(t, r->name);
        cell_text(t, r->model);
        cell_text(t, r->sparse_init);
        if (r->has_checkpoint) {
            char buf[96];
            snprintf(buf, sizeof buf, "%.4g (%.4f)", r->density, r->flops.prunable ? (double)r->flops.kept / (double)r->flops.prunable : 0.0);
            cell_text(t, buf);
            snprintf(buf, sizeof buf, "%lld / %lld", (long long)r->flops.kept, (long long)r->flops.prunable);
            cell_text(t, buf);
        } else {
            cell_text(t, NULL);
            cell_text(t, NULL);
        }
        cell_number(t, r->n_epochs ? r->epoch[r->n_epochs - 1] : NAN, "%.0f");
        cell_number(t, r->n_epochs ? 100 * last_finite(r->test_acc, r->n_epochs) : NAN, "%.2f%%");
        cell_number(t, r->has_eval ? 100 * r->top1 : NAN, "%.2f%%");
        cell_number(t, r->has_eval ? 100 * r->top5 : NAN, "%.2f%%");
        cell_number(t, r->has_eval ? r->nll : NAN, "%.4f");
        cell_number(t, r->has_eval ? r->ece : NAN, "%.4f");
        if (r->has_ood) {
            char buf[96];
            snprintf(buf, sizeof buf, "%.4f (vs %s)", r->ood.auroc, r->ood_data);
            cell_text(t, buf);
        } else {
            cell_text(t, NULL);
        }
        cell_number(t, r->has_ood ? r->ood.fpr_at_95_tpr : NAN, "%.4f");
        if (r->has_attack) {
            char buf[96];
            snprintf(buf, sizeof buf, "%.2f%% (%s, eps %.3g/255, %.0f images)", 100 * r->attack_accuracy,
                     r->attack_kind, 255 * r->attack_eps, r->attack_count);
            cell_text(t, buf);
        } else {
            cell_text(t, NULL);
        }
        if (r->has_checkpoint) {
            char buf[96];
            snprintf(buf, sizeof buf, "%.4g / %.4g", r->flops.forward_sparse / 1e6, r->flops.forward_dense / 1e6);
            cell_text(t, buf);
        } else {
            cell_text(t, NULL);
        }
        if (r->n_epochs && r->train_flops_dense > 0) {
            char buf[96];
            /* dynamic sparse training: the sparse steps plus the dense gradients of the update steps (RigL's count) */
            if (r->train_flops_updates > 0)
                snprintf(buf, sizeof buf, "%.3e + %.3e updates / %.3e", r->train_flops_sparse, r->train_flops_updates,
                         r->train_flops_dense);
            else
                snprintf(buf, sizeof buf, "%.3e / %.3e", r->train_flops_sparse, r->train_flops_dense);
            cell_text(t, buf);
        } else {
            cell_text(t, NULL);
        }
        st_json_append_text(t, "</tr>\n");
    }
    st_json_append_text(t, "</table>\n<p class=\"note\">FLOPs count one multiply-accumulate as one; inference per "
                           "example, training = 3 x forward per example trained (docs/DISTRIBUTIONS.md). "
                           "Accuracy columns: last logged epoch, and eval.json (best-on-validation weights by "
                           "default).</p>\n");
}

static void training_curves(st_text *t, const st_report_run *runs, int n) {
    int with_log = 0;
    for (int i = 0; i < n; i++) with_log += runs[i].n_epochs > 0;
    if (!with_log) return;
    st_chart_series *s = st_calloc((size_t)n, sizeof *s, "chart series");
    if (!s) {
        t->failed = 1;
        return;
    }
    st_json_append_text(t, "<h2>Training curves</h2><div class=\"row\">\n");
    const struct {
        const char *title, *y;
        int which;
    } charts[] = {{"Training loss", "loss", 0}, {"Test accuracy", "accuracy", 1}, {"Learning rate", "learning rate", 2}};
    for (size_t c = 0; c < sizeof charts / sizeof charts[0]; c++) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            const st_report_run *r = &runs[i];
            if (!r->n_epochs) continue;
            s[k].name = r->name;
            s[k].n = r->n_epochs;
            s[k].x = r->epoch;
            s[k].y = charts[c].which == 0 ? r->train_loss : charts[c].which == 1 ? r->test_acc : r->lr;
            k++;
        }
        st_chart_axes a = {charts[c].title, "epoch", charts[c].y, 0, charts[c].which != 1, 0, 0};
        st_svg_line_chart(t, &a, s, k);
    }
    st_json_append_text(t, "</div>\n");
    free(s);
}

/* Dynamic sparse training: the ITOP rate and the death rate in force at every mask update. */
static void mask_update_charts(st_text *t, const st_report_run *runs, int n) {
    int with_updates = 0;
    for (int i = 0; i < n; i++) with_updates += runs[i].n_updates > 0;
    if (!with_updates) return;
    st_chart_series *s = st_calloc((size_t)n, sizeof *s, "chart series");
    if (!s) {
        t->failed = 1;
        return;
    }
    st_json_append_text(t, "<h2>Dynamic sparse training</h2><div class=\"row\">\n");
    for (int c = 0; c < 2; c++) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            const st_report_run *r = &runs[i];
            if (!r->n_updates) continue;
            s[k++] = (st_chart_series){r->name, r->n_updates, r->update_step, c ? r->update_death_rate : r->update_itop};
        }
        st_chart_axes a = {c ? "Death rate at each mask update" : "ITOP rate (positions ever active)",
                           "optimiser step", c ? "death rate" : "ITOP rate", 0, 1, 0, 0};
        st_svg_line_chart(t, &a, s, k);
    }
    st_json_append_text(t, "</div>\n<p class=\"note\">ITOP rate: the fraction of all prunable positions that "
                           "have been active at some point of the run (In-Time Over-Parameterisation); a --fix "
                           "run stays at its density.</p>\n");
    free(s);
}

static void gap_plot(st_text *t, const st_report_run *runs, int n) {
    st_gap_point *p;
    int k;
    if (st_report_gaps(runs, n, &p, &k) != ST_OK) {
        t->failed = 1;
        return;
    }
    st_json_append_text(t, "<h2>Gap to dense vs model size</h2>\n");
    if (!k) {
        st_json_append_text(t, "<p class=\"note\">Needs a dense and a sparse run of the same model (e.g. from "
                               "scripts/sweep.sh).</p>\n");
        return;
    }
    st_chart_series s[32];
    double *x = st_calloc((size_t)k, sizeof(double), "gap plot"), *y = st_calloc((size_t)k, sizeof(double), "gap plot");
    int n_series = 0;
    for (int i = 0; x && y && i < k; i++) {
        x[i] = p[i].parameters;
        y[i] = 100 * p[i].gap;
        if (n_series > 0 && strcmp(s[n_series - 1].name, p[i].series) == 0) {
            s[n_series - 1].n++;
        } else if (n_series < 32) {
            s[n_series] = (st_chart_series){p[i].series, 1, x + i, y + i};
            n_series++;
        }
    }
    if (x && y) {
        st_chart_axes a = {"Accuracy gap to dense (dense - sparse)", "parameters of the dense model (log scale)",
                           "gap (percentage points)", 1, 1, 0, 0};
        st_svg_line_chart(t, &a, s, n_series);
        st_json_append_text(t, "<table><tr><th>series</th><th>model</th><th>parameters</th><th>dense acc (runs)</th>"
                               "<th>sparse acc (runs)</th><th>gap</th></tr>\n");
        for (int i = 0; i < k; i++) {
            st_json_append_text(t, "<tr>");
            cell_text(t, p[i].series);
            cell_text(t, p[i].model);
            cell_number(t, p[i].parameters, "%.0f");
            st_text_printf(t, "<td>%.2f%% (%d)</td><td>%.2f%% (%d)</td><td>%.2f</td></tr>\n", 100 * p[i].dense_acc,
                           p[i].dense_runs, 100 * p[i].sparse_acc, p[i].sparse_runs, 100 * p[i].gap);
        }
        st_json_append_text(t, "</table>\n");
    } else {
        t->failed = 1;
    }
    free(x), free(y), free(p);
}

static void per_run(st_text *t, const st_report_run *r) {
    st_json_append_text(t, "<h3>");
    st_text_escaped(t, r->name);
    st_json_append_text(t, "</h3><div class=\"row\">\n");
    if (r->has_checkpoint && r->n_layers > 0) {
        const char **labels = calloc((size_t)r->n_layers, sizeof *labels);
        double *d = calloc((size_t)r->n_layers, sizeof *d);
        if (labels && d) {
            for (int l = 0; l < r->n_layers; l++) {
                labels[l] = r->layers[l].name;
                d[l] = (double)r->layers[l].kept / (double)r->layers[l].numel;
            }
            char title[200];
            snprintf(title, sizeof title, "Layer-wise density: %s, %s", r->model, r->sparse_init);
            st_chart_axes a = {title, "prunable layer (hover for its name)", "density (kept / weights)", 0, 1, 0, 0};
            st_svg_bar_chart(t, &a, labels, d, r->n_layers, 1.0);
        } else {
            t->failed = 1;
        }
        free(labels), free(d);
    }
    if (r->has_eval) {
        char title[200];
        snprintf(title, sizeof title, "Reliability: ECE %.4f, top-1 %.2f%%", r->ece, 100 * r->top1);
        st_svg_reliability(t, title, r->reliability, ST_ECE_BINS);
    }
    if (r->has_ood) {
        char title[200], out_name[64];
        snprintf(title, sizeof title, "Max. softmax probability: AUROC %.4f vs %s", r->ood.auroc, r->ood_data);
        snprintf(out_name, sizeof out_name, "OOD (%s)", r->ood_data);
        const char *names[2] = {"in-distribution (test)", out_name};
        const int64_t *counts[2] = {r->hist_in, r->hist_out};
        st_chart_axes a = {title, "maximum softmax probability", "fraction of images", 0, 1, 0, 0};
        st_svg_histograms(t, &a, names, counts, 2, ST_SCORE_BINS, 0.0, 1.0);
    }
    st_json_append_text(t, "</div>\n");
}

st_status st_report_html(const st_report_run *runs, int n, char **html) {
    st_text t;
    st_json_builder_init(&t);
    st_json_append_text(&t,
                        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>sparsetrain report</title>"
                        "<style>body{font-family:sans-serif;margin:24px;color:#222}"
                        "table{border-collapse:collapse;font-size:13px;margin:8px 0}"
                        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
                        "td:first-child,th:first-child{text-align:left}th{background:#f2f2f2}"
                        ".row{display:flex;flex-wrap:wrap;gap:12px}.note{color:#666;font-size:12px}"
                        "svg.chart{border:1px solid #eee}</style></head><body>\n"
                        "<h1>sparsetrain report</h1>\n<p>");
    st_text_printf(&t, "%d run%s:", n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        st_json_append_text(&t, i ? ", <code>" : " <code>");
        st_text_escaped(&t, runs[i].dir);
        st_json_append_text(&t, "</code>");
    }
    st_json_append_text(&t, "</p>\n");
    comparison_table(&t, runs, n);
    training_curves(&t, runs, n);
    mask_update_charts(&t, runs, n);
    gap_plot(&t, runs, n);
    st_json_append_text(&t, "<h2>Per run</h2>\n");
    for (int i = 0; i < n; i++) per_run(&t, &runs[i]);
    st_json_append_text(&t, "</body></html>\n");
    size_t length;
    return st_json_builder_finish(&t, html, &length);
}

st_status st_report_write(const st_report_run *runs, int n, const char *path, int force) {
    char *html;
    ST_TRY(st_report_html(runs, n, &html));
    st_status s = st_atomic_write_file(path, ST_FILE_HTML, force, html, strlen(html));
    free(html);
    return s;
}
