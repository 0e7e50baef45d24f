/* SVG chart drawing (see svg_chart.h): a plot frame maps data to pixels,
 * draws axes with round-number ticks, then each chart adds its marks. */
#include "report/svg_chart.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define CHART_W 560
#define CHART_H 300
#define LEGEND_W 190
#define MARGIN_L 64
#define MARGIN_R 16
#define MARGIN_T 34
#define MARGIN_B 48

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

const char *st_chart_colour(int i) { return palette[(unsigned)i % (sizeof palette / sizeof palette[0])]; }

typedef struct frame {
    double x0, x1, y0, y1; /* data range */
    int log_x;
    int width;             /* whole svg width (chart + legend) */
} frame;

static double px(const frame *f, double x) {
    double a = f->log_x ? log10(x) : x, lo = f->log_x ? log10(f->x0) : f->x0, hi = f->log_x ? log10(f->x1) : f->x1;
    return MARGIN_L + (a - lo) / (hi - lo) * (CHART_W - MARGIN_L - MARGIN_R);
}

static double py(const frame *f, double y) {
    return CHART_H - MARGIN_B - (y - f->y0) / (f->y1 - f->y0) * (CHART_H - MARGIN_T - MARGIN_B);
}

/* Values a chart can place: finite and far enough from the largest double
 * that ranges and rounded ticks stay finite (a log line with 1e308 is left
 * out rather than turning every coordinate into NaN). */
static int plottable(double v) { return isfinite(v) && fabs(v) <= 1e300; }

/* A round tick step giving about `want` intervals over `range`. */
static double nice_step(double range, int want) {
    double raw = range / want, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void format_tick(char *buf, size_t size, double v, double step) {
    if (fabs(v) < step * 1e-9) v = 0;
    if (fabs(v) >= 1e4 || (fabs(v) > 0 && fabs(v) < 1e-3))
        snprintf(buf, size, "%.3g", v);
    else {
        int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, size, "%.*f", decimals > 6 ? 6 : decimals, v);
    }
}

/* Widens a degenerate range and rounds it outwards to ticks. */
static void settle_range(double *lo, double *hi) {
    if (!(*hi > *lo)) {
        double pad = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1.0;
        *lo -= pad, *hi += pad;
    }
    double step = nice_step(*hi - *lo, 5);
    *lo = floor(*lo / step + 1e-9) * step;
    *hi = ceil(*hi / step - 1e-9) * step;
}

static void open_svg(st_text *t, const frame *f, const st_chart_axes *a) {
    st_text_printf(t,
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" height=\"%d\" "
                   "viewBox=\"0 0 %d %d\" role=\"img\"><title>",
                   f->width, CHART_H, f->width, CHART_H);
    st_text_escaped(t, a->title ? a->title : "chart");
    st_text_printf(t, "</title><rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>", f->width,
                   CHART_H);
    st_text_printf(t, "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">", MARGIN_L);
    st_text_escaped(t, a->title ? a->title : "");
    st_text_printf(t, "</text>");
}

static void draw_axes(st_text *t, const frame *f, const st_chart_axes *a, int x_ticks) {
    const int left = MARGIN_L, right = CHART_W - MARGIN_R, top = MARGIN_T, bottom = CHART_H - MARGIN_B;
    char buf[64];
    /* y ticks and grid */
    double step = nice_step(f->y1 - f->y0, 5);
    for (int k = 0; k <= 50 && f->y0 + k * step <= f->y1 + step * 1e-6; k++) { /* bounded: huge values */
        const double v = f->y0 + k * step, y = py(f, v);
        format_tick(buf, sizeof buf, v, step);
        st_text_printf(t,
                       "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                       "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>",
                       left, y, right, y, left - 6, y + 4, buf);
    }
    /* x ticks */
    if (!x_ticks) {
        /* the caller labels the x axis itself */
    } else if (f->log_x) {
        int decades = 0;
        for (double decade = pow(10, floor(log10(f->x0))); decade <= f->x1 && decades++ < 40; decade *= 10)
            for (int m = 1; m <= 5; m += (m == 1 ? 1 : 3)) {
                double v = decade * m;
                if (v < f->x0 * (1 - 1e-9) || v > f->x1 * (1 + 1e-9)) continue;
                snprintf(buf, sizeof buf, "%.3g", v);
                double x = px(f, v);
                st_text_printf(t,
                               "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e4e4e4\"/>"
                               "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>",
                               x, top, x, bottom, x, bottom + 16, buf);
            }
    } else {
        double xs = nice_step(f->x1 - f->x0, 6);
        const double first = ceil(f->x0 / xs - 1e-9) * xs;
        for (int k = 0; k <= 50 && first + k * xs <= f->x1 + xs * 1e-6; k++) {
            const double v = first + k * xs;
            format_tick(buf, sizeof buf, v, xs);
            double x = px(f, v);
            st_text_printf(t, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>", x,
                           bottom + 16, buf);
        }
    }
    st_text_printf(t,
                   "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>"
                   "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>",
                   left, bottom, right, bottom, left, top, left, bottom);
    if (a->x_label) {
        st_text_printf(t, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">", (left + right) / 2,
                       CHART_H - 8);
        st_text_escaped(t, a->x_label);
        st_text_printf(t, "</text>");
    }
    if (a->y_label) {
        st_text_printf(t,
                       "<text x=\"14\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" "
                       "transform=\"rotate(-90 14 %d)\">",
                       (top + bottom) / 2, (top + bottom) / 2);
        st_text_escaped(t, a->y_label);
        st_text_printf(t, "</text>");
    }
}

static void legend(st_text *t, const char *const *names, int n, int start_x) {
    for (int i = 0; i < n; i++) {
        int y = MARGIN_T + 6 + 18 * i;
        if (y > CHART_H - 10) break;
        st_text_printf(t,
                       "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                       "<text x=\"%d\" y=\"%d\" font-size=\"11\">",
                       start_x, y - 10, st_chart_colour(i), start_x + 18, y);
        char shortened[40];
        snprintf(shortened, sizeof shortened, "%s", names[i] ? names[i] : "");
        if (names[i] && strlen(names[i]) >= sizeof shortened) strcpy(shortened + sizeof shortened - 4, "...");
        st_text_escaped(t, shortened);
        st_text_printf(t, "</text>");
    }
}

void st_svg_line_chart(st_text *t, const st_chart_axes *a, const st_chart_series *s, int n_series) {
    frame f = {INFINITY, -INFINITY, INFINITY, -INFINITY, a->log_x, CHART_W + LEGEND_W};
    for (int i = 0; i < n_series; i++)
        for (int k = 0; k < s[i].n; k++) {
            double x = s[i].x[k], y = s[i].y[k];
            if (!plottable(x) || !plottable(y) || (a->log_x && !(x > 0))) continue;
            f.x0 = fmin(f.x0, x), f.x1 = fmax(f.x1, x), f.y0 = fmin(f.y0, y), f.y1 = fmax(f.y1, y);
        }
    if (!isfinite(f.x0)) f.x0 = a->log_x ? 1 : 0, f.x1 = a->log_x ? 10 : 1, f.y0 = 0, f.y1 = 1;
    if (a->y_max > a->y_min) f.y0 = a->y_min, f.y1 = a->y_max;
    if (a->y_from_zero) f.y0 = fmin(f.y0, 0), f.y1 = fmax(f.y1, 0);
    if (a->log_x) {
        if (!(f.x1 > f.x0)) f.x0 /= 2, f.x1 *= 2;
        f.x0 = pow(10, floor(log10(f.x0) * 2) / 2), f.x1 = pow(10, ceil(log10(f.x1) * 2) / 2);
    } else if (!(f.x1 > f.x0)) {
        f.x0 -= 1, f.x1 += 1;
    }
    settle_range(&f.y0, &f.y1);
    open_svg(t, &f, a);
    draw_axes(t, &f, a, 1);
    const char *names[64];
    for (int i = 0; i < n_series; i++) {
        if (i < 64) names[i] = s[i].name;
        const char *colour = st_chart_colour(i);
        int open = 0;
        for (int k = 0; k < s[i].n; k++) {
            double x = s[i].x[k], y = s[i].y[k];
            int ok = plottable(x) && plottable(y) && (!a->log_x || x > 0);
            if (ok && !open) {
                st_text_printf(t, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colour);
                open = 1;
            }
            if (ok) st_text_printf(t, "%.1f,%.1f ", px(&f, x), py(&f, y));
            if (!ok && open) {
                st_text_printf(t, "\"/>");
                open = 0;
            }
        }
        if (open) st_text_printf(t, "\"/>");
        for (int k = 0; k < s[i].n && s[i].n <= 60; k++) {
            double x = s[i].x[k], y = s[i].y[k];
            if (!plottable(x) || !plottable(y) || (a->log_x && !(x > 0))) continue;
            st_text_printf(t, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>", px(&f, x), py(&f, y),
                           colour);
            st_text_escaped(t, s[i].name ? s[i].name : "");
            st_text_printf(t, ": (%g, %g)</title></circle>", x, y);
        }
    }
    legend(t, names, n_series < 64 ? n_series : 64, CHART_W + 4);
    st_text_printf(t, "</svg>\n");
}

void st_svg_bar_chart(st_text *t, const st_chart_axes *a, const char *const *labels, const double *values, int n,
                      double y_max) {
    frame f = {0, n > 0 ? n : 1, 0, y_max > 0 ? y_max : 1, 0, CHART_W};
    open_svg(t, &f, a);
    draw_axes(t, &f, a, 0);
    const double slot = (px(&f, 1) - px(&f, 0)), width = slot * 0.8;
    const int every = n > 40 ? (n + 19) / 20 : n > 20 ? 2 : 1;
    for (int i = 0; i < n; i++) {
        double v = plottable(values[i]) ? values[i] : 0, top = py(&f, v), base = py(&f, 0);
        st_text_printf(t, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"><title>",
                       px(&f, i) + slot * 0.1, top, width, base - top > 0 ? base - top : 0.5, st_chart_colour(0));
        st_text_escaped(t, labels && labels[i] ? labels[i] : "");
        st_text_printf(t, ": %.4g</title></rect>", values[i]);
        if (i % every == 0)
            st_text_printf(t, "<text x=\"%.1f\" y=\"%d\" font-size=\"9\" text-anchor=\"middle\">%d</text>",
                           px(&f, i) + slot / 2, CHART_H - MARGIN_B + 28, i);
    }
    st_text_printf(t, "</svg>\n");
}

void st_svg_histograms(st_text *t, const st_chart_axes *a, const char *const *names, const int64_t *const *counts,
                       int n_sets, int bins, double lo, double hi) {
    double top = 0;
    for (int s = 0; s < n_sets; s++) {
        int64_t total = 0;
        for (int b = 0; b < bins; b++) total += counts[s][b];
        for (int b = 0; b < bins && total; b++) top = fmax(top, (double)counts[s][b] / (double)total);
    }
    frame f = {lo, hi, 0, top > 0 ? top : 1, 0, CHART_W + LEGEND_W};
    settle_range(&f.y0, &f.y1);
    f.y0 = 0;
    open_svg(t, &f, a);
    draw_axes(t, &f, a, 1);
    const double width = (hi - lo) / bins;
    for (int s = 0; s < n_sets; s++) {
        int64_t total = 0;
        for (int b = 0; b < bins; b++) total += counts[s][b];
        for (int b = 0; b < bins && total; b++) {
            double frac = (double)counts[s][b] / (double)total, x0 = px(&f, lo + b * width),
                   x1 = px(&f, lo + (b + 1) * width);
            st_text_printf(t,
                           "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\" "
                           "fill-opacity=\"0.5\" stroke=\"%s\"><title>",
                           x0, py(&f, frac), x1 - x0, py(&f, 0) - py(&f, frac), st_chart_colour(s),
                           st_chart_colour(s));
            st_text_escaped(t, names[s] ? names[s] : "");
            st_text_printf(t, " (%.3g, %.3g]: %lld</title></rect>", lo + b * width, lo + (b + 1) * width,
                           (long long)counts[s][b]);
        }
    }
    legend(t, names, n_sets, CHART_W + 4);
    st_text_printf(t, "</svg>\n");
}

void st_svg_reliability(st_text *t, const char *title, const st_reliability_bin *bins, int n_bins) {
    st_chart_axes a = {title, "confidence (maximum softmax probability)", "accuracy", 0, 0, 0, 1};
    frame f = {0, 1, 0, 1, 0, CHART_W + LEGEND_W};
    open_svg(t, &f, &a);
    draw_axes(t, &f, &a, 1);
    for (int b = 0; b < n_bins; b++) {
        const st_reliability_bin *r = &bins[b];
        if (!r->count) continue;
        double x0 = px(&f, r->lower), x1 = px(&f, r->upper);
        st_text_printf(t,
                       "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\" stroke=\"#fff\">"
                       "<title>(%.3f, %.3f]: %lld images, accuracy %.4f, mean confidence %.4f</title></rect>",
                       x0, py(&f, r->accuracy), x1 - x0, py(&f, 0) - py(&f, r->accuracy), st_chart_colour(0),
                       r->lower, r->upper, (long long)r->count, r->accuracy, r->mean_confidence);
        double c = r->mean_confidence, lo = fmin(c, r->accuracy), hi = fmax(c, r->accuracy);
        st_text_printf(t,
                       "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\" fill-opacity=\"0.35\"/>",
                       x0, py(&f, hi), x1 - x0, py(&f, lo) - py(&f, hi), st_chart_colour(1));
    }
    st_text_printf(t,
                   "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>",
                   px(&f, 0), py(&f, 0), px(&f, 1), py(&f, 1));
    const char *names[2] = {"accuracy per bin", "gap to mean confidence"};
    legend(t, names, 2, CHART_W + 4);
    st_text_printf(t, "</svg>\n");
}
