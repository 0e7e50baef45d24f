/* Inline SVG charts for the HTML report: line charts (training curves, the
 * gap-to-dense plot), bar charts (layer-wise densities, score histograms)
 * and the reliability diagram. Each function appends one complete <svg>
 * element; no scripts, no external resources. Non-finite points are left
 * out (a line breaks there). */
#ifndef ST_REPORT_SVG_CHART_H
#define ST_REPORT_SVG_CHART_H

#include <stdint.h>

#include "eval/metrics.h"
#include "report/html.h"

typedef struct st_chart_series {
    const char *name;
    int n;
    const double *x, *y;
} st_chart_series;

typedef struct st_chart_axes {
    const char *title, *x_label, *y_label;
    int log_x;             /* logarithmic x axis (positive x only) */
    int y_from_zero;       /* include 0 in the y range */
    double y_min, y_max;   /* fixed y range when y_max > y_min */
} st_chart_axes;

/* One polyline (with point markers) per series, legend on the right. */
void st_svg_line_chart(st_text *t, const st_chart_axes *axes, const st_chart_series *series, int n_series);

/* One bar per value (y range [0, y_max]); labels[i] becomes the bar's hover
 * title, and every k-th bar gets its index under the axis. */
void st_svg_bar_chart(st_text *t, const st_chart_axes *axes, const char *const *labels, const double *values,
                      int n, double y_max);

/* Overlaid histograms of `n_sets` count arrays over [lo, hi] in `bins` bins,
 * each drawn as fractions of its own total (translucent bars). */
void st_svg_histograms(st_text *t, const st_chart_axes *axes, const char *const *names, const int64_t *const *counts,
                       int n_sets, int bins, double lo, double hi);

/* Reliability diagram: accuracy per confidence bin (bars), the diagonal of
 * perfect calibration, and the gap to it. */
void st_svg_reliability(st_text *t, const char *title, const st_reliability_bin *bins, int n_bins);

/* The i-th colour of the palette (cycled). */
const char *st_chart_colour(int i);

#endif
