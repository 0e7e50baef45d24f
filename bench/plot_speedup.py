#!/usr/bin/python3
"""Plot and table of a sweep: speed-up vs density from bench/sweep_vs_pytorch.py's JSON.

Writes a self-contained SVG (hand-written, no plotting library): x is the
density (log scale), y the training speed-up, one line per model x
distribution (colour = model, dash pattern = distribution), a reference line
at 1. --metric torch (default) plots ours / PyTorch masked-dense, --metric
dense ours / our own dense path. Also prints (or writes, --markdown) the
markdown table of every configuration for docs/PERFORMANCE.md.

Usage:
  python3 bench/plot_speedup.py sweep.json [--svg speedup.svg] [--markdown table.md]
      [--metric torch|dense] [--title TEXT]
"""

import argparse
import json
import math
import sys
from xml.sax.saxutils import escape

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
DASHES = ["", "7,4", "2,3", "9,3,2,3"]
METRICS = {"torch": ("speedup_vs_torch", "training speed-up over PyTorch masked-dense (images/s ratio)",
                     "PyTorch masked-dense"),
           "dense": ("speedup_vs_our_dense", "training speed-up over our dense path (images/s ratio)",
                     "our dense path")}

WIDTH, HEIGHT = 800, 460
LEFT, RIGHT, TOP, BOTTOM = 70, 240, 40, 60  # margins around the plot area


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="JSON written by bench/sweep_vs_pytorch.py --out")
    p.add_argument("--svg", help="write the plot here")
    p.add_argument("--markdown", help="write the table here (default: print it)")
    p.add_argument("--metric", choices=sorted(METRICS), default="torch")
    p.add_argument("--title", help="plot title (default: from the run's settings)")
    return p.parse_args(argv)


def series(rows, key):
    """{(model, distribution): [(density, value), ...] sorted by density},
    in first-seen order, skipping configurations without a value."""
    out = {}
    for r in rows:
        if r.get(key) is not None:
            out.setdefault((r["model"], r["sparse_init"]), []).append((r["density"], r[key]))
    return {k: sorted(v) for k, v in out.items()}


def nice_step(span):
    """A round tick spacing giving about 5-10 ticks over span."""
    raw = span / 6.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


class Axes:
    """Maps data to SVG coordinates: log10 density on x, linear value on y."""

    def __init__(self, densities, values):
        lo, hi = math.log10(min(densities)), math.log10(max(densities))
        pad = 0.08 * (hi - lo) if hi > lo else 0.3
        self.x0, self.x1 = lo - pad, hi + pad
        top = max(max(values), 1.0) * 1.1
        self.step = nice_step(top)
        self.y1 = self.step * math.ceil(top / self.step)
        self.y0 = 0.0

    def x(self, density):
        return LEFT + (math.log10(density) - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def y(self, value):
        return HEIGHT - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)


def fmt(v):
    return f"{v:.1f}"


def svg_plot(summary, meta, metric, title=None):
    """The SVG document (a string) of one metric's speed-up vs density."""
    key, ylabel, reference = METRICS[metric]
    lines = series(summary["rows"], key)
    if not lines:
        raise ValueError(f"no configuration in the results has {key}")
    densities = sorted({d for pts in lines.values() for d, _ in pts})
    ax = Axes(densities, [v for pts in lines.values() for _, v in pts])
    if title is None:
        title = (f"sparsetrain vs {reference}: batch {meta.get('batch_size')}, {meta.get('threads')} threads"
                 + (f", {meta['cpu']}" if meta.get("cpu") else ""))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{WIDTH / 2:.1f}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>']
    x_lo, x_hi, y_lo, y_hi = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
    # grid, ticks and labels
    n_ticks = int(round((ax.y1 - ax.y0) / ax.step))
    for i in range(n_ticks + 1):
        v = ax.y0 + i * ax.step
        y = ax.y(v)
        out.append(f'<line x1="{x_lo}" y1="{fmt(y)}" x2="{x_hi}" y2="{fmt(y)}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{x_lo - 6}" y="{fmt(y + 4)}" text-anchor="end">{v:g}</text>')
    for d in densities:
        x = ax.x(d)
        out.append(f'<line x1="{fmt(x)}" y1="{y_lo}" x2="{fmt(x)}" y2="{y_hi}" stroke="#e0e0e0"/>')
        out.append(f'<text x="{fmt(x)}" y="{y_lo + 18}" text-anchor="middle">{d:g}</text>')
    out.append(f'<rect x="{x_lo}" y="{y_hi}" width="{x_hi - x_lo}" height="{y_lo - y_hi}" '
               f'fill="none" stroke="black"/>')
    out.append(f'<text x="{(x_lo + x_hi) / 2:.1f}" y="{HEIGHT - 18}" text-anchor="middle">'
               f'overall density (log scale)</text>')
    out.append(f'<text transform="translate(18 {(y_lo + y_hi) / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f'{escape(ylabel)}</text>')
    y_ref = ax.y(1.0)
    out.append(f'<line x1="{x_lo}" y1="{fmt(y_ref)}" x2="{x_hi}" y2="{fmt(y_ref)}" stroke="black" '
               f'stroke-dasharray="3,3"/>')
    out.append(f'<text x="{x_lo + 4}" y="{fmt(y_ref + 15)}" fill="#555">{escape(reference)} = 1</text>')
    # one line per model x distribution
    models = list(dict.fromkeys(m for m, _ in lines))
    inits = list(dict.fromkeys(i for _, i in lines))
    for n, ((model, init), pts) in enumerate(lines.items()):
        colour = COLOURS[models.index(model) % len(COLOURS)]
        dash = DASHES[inits.index(init) % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        label = f"{model} {init}"
        coords = " ".join(f"{fmt(ax.x(d))},{fmt(ax.y(v))}" for d, v in pts)
        out.append(f'<g class="series" data-label="{escape(label)}">')
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for d, v in pts:
            out.append(f'<circle cx="{fmt(ax.x(d))}" cy="{fmt(ax.y(v))}" r="3.5" fill="{colour}">'
                       f'<title>{escape(label)}, density {d:g}: {v:.2f}x</title></circle>')
        out.append("</g>")
        ly = TOP + 10 + 20 * n
        out.append(f'<line x1="{x_hi + 14}" y1="{ly}" x2="{x_hi + 44}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{x_hi + 50}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def cell(v, spec, suffix=""):
    return "—" if v is None else format(v, spec) + suffix


def markdown_table(summary, meta):
    """The markdown table of every measured configuration (and its header)."""
    head = (f"Batch {meta.get('batch_size')}, {meta.get('threads')} threads, medians of "
            f"{meta.get('repeats')} runs of ours and {meta.get('torch_repeats')} of PyTorch "
            f"({meta.get('warmup')} warm-up + {meta.get('steps')} timed steps each); CPU: {meta.get('cpu')}; "
            f"PyTorch {meta.get('torch', '?')}; commit {meta.get('commit')}.")
    out = [head, "",
           "| model | distribution | density | execution | ours images/s | PyTorch masked images/s "
           "| ours / PyTorch | our dense images/s | ours / our dense | weight + optimiser memory |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        out.append(f"| {r['model']} | {r['sparse_init']} | {r['density']:g} | {r['execution']} "
                   f"| {cell(r['ours_images_per_s'], '.1f')} | {cell(r['torch_images_per_s'], '.1f')} "
                   f"| {cell(r['speedup_vs_torch'], '.2f', 'x')} | {cell(r['ours_dense_images_per_s'], '.1f')} "
                   f"| {cell(r['speedup_vs_our_dense'], '.2f', 'x')} | {cell(r['memory_ratio'], '.1%')} |")
    dense = [d for d in summary.get("dense", []) if d.get("torch_dense_images_per_s") is not None]
    if dense:  # --torch-dense: the unmasked models on both sides
        out += ["", "| model (dense, no mask) | our dense images/s | PyTorch dense images/s | ours / PyTorch |",
                "|---|---|---|---|"]
        for d in dense:
            out.append(f"| {d['model']} | {cell(d['ours_dense_images_per_s'], '.1f')} "
                       f"| {cell(d['torch_dense_images_per_s'], '.1f')} "
                       f"| {cell(d.get('ours_vs_torch_dense'), '.2f', 'x')} |")
    return "\n".join(out) + "\n"


def main(argv):
    a = parse_args(argv)
    try:
        with open(a.results) as f:
            doc = json.load(f)
        summary, meta = doc["summary"], doc.get("meta", {})
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"plot_speedup: cannot read {a.results} as a sweep_vs_pytorch.py result: {e!r}")
    if not summary.get("rows"):
        sys.exit(f"plot_speedup: {a.results} has no measured configuration")
    if a.svg:
        try:
            text = svg_plot(summary, meta, a.metric, a.title)
        except ValueError as e:
            sys.exit(f"plot_speedup: {a.results}: {e}")
        with open(a.svg, "w") as f:
            f.write(text)
    table = markdown_table(summary, meta)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(table)
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
