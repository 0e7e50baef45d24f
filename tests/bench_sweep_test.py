"""The side-by-side benchmark scripts on a tiny configuration.

* bench/sweep_vs_pytorch.py runs cifar_resnet_20, uniform at densities 0.05
  and 0.5, 2 rounds (PyTorch in the first only), batch 8, one timed step: the
  JSON holds every scheduled run, the summary's medians and ratios follow
  from the raw runs, the PyTorch side masked exactly our weights at our
  densities, and the memory ratio falls with the density;
* bench/plot_speedup.py turns it into a well-formed SVG (one line per model x
  distribution with a point per density, inside the plot) and a markdown
  table with one row per configuration; on hand-made results the points sit
  where the values say (higher speed-up -> higher on the page, x by density);
* the schedule: rounds, our side first where PyTorch needs our densities,
  then alternating orders, PyTorch only in the first --torch-repeats rounds;
* --baseline-binary: one run of the earlier binary per configuration and
  round, in a rotating place, and our step time over its step time;
* the issue's targets, met or missed, only at the settings they are stated for;
* bad input gives a clear message and a non-zero exit.
"""
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, SRC, check, finish  # noqa: E402

SWEEP = os.path.join(SRC, "bench", "sweep_vs_pytorch.py")
PLOT = os.path.join(SRC, "bench", "plot_speedup.py")
BIN = os.path.join(BUILD, "sparsetrain")
SVG_NS = "{http://www.w3.org/2000/svg}"


def run(args):
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, timeout=300)


def ips(rec):
    return rec["result"]["train_step"]["images_per_s"]


def close(a, b):
    return a is not None and b is not None and abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def check_sweep(doc):
    runs, rows = doc["runs"], doc["summary"]["rows"]
    sides = sorted((r["side"], r["sparse_init"], r["density"], r["repeat"]) for r in runs)
    want = sorted([("ours_dense", "dense", 1.0, 0), ("ours_dense", "dense", 1.0, 1)]
                  + [("ours", "uniform", d, r) for d in (0.05, 0.5) for r in (0, 1)]
                  + [("torch", "uniform", d, 0) for d in (0.05, 0.5)])
    check("sweep: every scheduled run, once", sides == want, str(sides))
    check("sweep: meta complete", doc["meta"].get("complete") is True and doc["meta"]["batch_size"] == 8)
    check("sweep: one summary row per density", sorted(r["density"] for r in rows) == [0.05, 0.5])
    dense = [ips(r) for r in runs if r["side"] == "ours_dense"]
    check("sweep: our dense runs use the dense path",
          all(r["result"]["execution"] == "dense" for r in runs if r["side"] == "ours_dense"))
    for row in rows:
        d = row["density"]
        ours = [r for r in runs if r["side"] == "ours" and r["density"] == d]
        theirs = [r for r in runs if r["side"] == "torch" and r["density"] == d]
        o, t = statistics.median(ips(r) for r in ours), statistics.median(ips(r) for r in theirs)
        check(f"sweep {d}: medians of the raw runs",
              close(row["ours_images_per_s"], o) and close(row["torch_images_per_s"], t)
              and close(row["ours_dense_images_per_s"], statistics.median(dense)))
        check(f"sweep {d}: ratios", close(row["speedup_vs_torch"], o / t)
              and close(row["speedup_vs_our_dense"], o / statistics.median(dense))
              and len(row["speedup_vs_torch_per_round"]) == 1
              and close(row["speedup_vs_torch_per_round"][0], ips(ours[0]) / ips(theirs[0])),
              f"{row['speedup_vs_torch']:.3f} vs {o / t:.3f}")
        mem = ours[0]["result"]["memory"]
        check(f"sweep {d}: memory ratio", close(row["memory_ratio"], mem["param_bytes"] / mem["dense_param_bytes"]))
        # the PyTorch side masks every weight we pruned, at our density
        weights = [l for l in ours[0]["result"]["layers"] if l["numel"] > 0]
        pruned = sum(1 for l in weights if l["kept"] < l["numel"])
        tr = theirs[0]["result"]
        expect, total = ours[0]["result"]["kept"], ours[0]["result"]["prunable"]
        sigma = math.sqrt(total * d * (1 - d))
        check(f"sweep {d}: PyTorch masked our {pruned} pruned weights",
              tr["masked_layers"] == pruned and pruned > 0 and tr["prunable"] == total, str(tr["masked_layers"]))
        check(f"sweep {d}: PyTorch kept ~ our kept", abs(tr["kept"] - expect) <= 6 * sigma + 1,
              f"{tr['kept']} vs {expect}")
    lo, hi = sorted(rows, key=lambda r: r["density"])
    check("sweep: memory ratio grows with density", 0 < lo["memory_ratio"] < hi["memory_ratio"] <= 1.0,
          f"{lo['memory_ratio']:.3f}, {hi['memory_ratio']:.3f}")
    check("sweep: density 0.05 within the memory target", lo["memory_ratio"] <= 0.15)
    targets = doc["summary"]["targets"]
    check("sweep: targets checked (dense ratio per row, memory at 0.05)",
          len([t for t in targets if "our dense" in t["target"]]) == 2
          and len([t for t in targets if "memory" in t["target"]]) == 1)


def svg_points(root):
    """{label: [(x, y), ...]} of the plot's lines, and the plot frame."""
    lines = {}
    for g in root.iter(SVG_NS + "g"):
        poly = g.find(SVG_NS + "polyline")
        pts = [tuple(float(v) for v in p.split(",")) for p in poly.get("points").split()]
        lines[g.get("data-label")] = pts
    frame = [r for r in root.iter(SVG_NS + "rect") if r.get("fill") == "none"][0]
    box = [float(frame.get(k)) for k in ("x", "y", "width", "height")]
    return lines, box


def inside(pts, box):
    x, y, w, h = box
    return all(x <= px <= x + w and y <= py <= y + h for px, py in pts)


def check_plot(tmp, results):
    svg, md = os.path.join(tmp, "speedup.svg"), os.path.join(tmp, "table.md")
    for metric in ("torch", "dense"):
        p = run([PLOT, results, "--svg", svg, "--markdown", md, "--metric", metric])
        check(f"plot {metric}: exit 0", p.returncode == 0, p.stderr.strip())
        root = ET.parse(svg).getroot()
        lines, box = svg_points(root)
        check(f"plot {metric}: an svg with one line of 2 points",
              root.tag == SVG_NS + "svg" and list(lines) == ["cifar_resnet_20 uniform"]
              and len(lines["cifar_resnet_20 uniform"]) == 2, str(lines))
        check(f"plot {metric}: points inside the frame", all(inside(p, box) for p in lines.values()))
    with open(results) as f:
        rows = json.load(f)["summary"]["rows"]
    table = open(md).read().strip().splitlines()
    body = [l for l in table if l.startswith("| cifar_resnet_20 ")]
    check("table: one row per configuration, 10 columns",
          len(body) == 2 and all(l.count("|") == 11 for l in body), "\n".join(table))
    check("table: shows the speed-ups", all(f"{r['speedup_vs_torch']:.2f}x" in "\n".join(body) for r in rows))


def check_plot_geometry(tmp):
    """Hand-made results: where the points land must follow the values."""
    rows = [dict(model="m", sparse_init="ERK", density=d, execution="sparse", ours_images_per_s=s,
                 torch_images_per_s=1.0, ours_dense_images_per_s=1.0, speedup_vs_torch=s,
                 speedup_vs_our_dense=s, memory_ratio=d) for d, s in ((0.5, 1.5), (0.05, 6.0), (0.1, 3.0))]
    rows.append(dict(rows[0], sparse_init="uniform", speedup_vs_torch=None))
    path = os.path.join(tmp, "made.json")
    with open(path, "w") as f:
        json.dump({"meta": {"batch_size": 4, "threads": 1}, "summary": {"rows": rows}}, f)
    svg = os.path.join(tmp, "made.svg")
    p = run([PLOT, path, "--svg", svg, "--markdown", os.path.join(tmp, "made.md")])
    check("plot (made): exit 0", p.returncode == 0, p.stderr.strip())
    lines, box = svg_points(ET.parse(svg).getroot())
    pts = lines.get("m ERK", [])
    check("plot (made): rows without a value left out", list(lines) == ["m ERK"], str(list(lines)))
    xs, ys = [x for x, _ in pts], [y for _, y in pts]
    check("plot (made): x increases with density", len(pts) == 3 and xs == sorted(xs) and xs[0] < xs[2])
    check("plot (made): 0.1 sits where a log axis puts it",
          len(pts) == 3 and abs((xs[1] - xs[0]) / (xs[2] - xs[0]) - math.log10(2) / math.log10(10)) < 0.01)
    check("plot (made): higher speed-up is higher on the page, linearly",
          len(pts) == 3 and ys[0] < ys[1] < ys[2]
          and abs((ys[2] - ys[1]) / (ys[1] - ys[0]) - (3.0 - 1.5) / (6.0 - 3.0)) < 0.01)


def check_schedule():
    """The run order: rounds, our side first where PyTorch needs our densities,
    then alternating between rounds and between configurations."""
    sys.path.insert(0, os.path.join(SRC, "bench"))
    import sweep_vs_pytorch as sweep
    a = sweep.parse_args(["--models", "a,b", "--inits", "ERK,uniform", "--densities", "0.1,0.5",
                          "--repeats", "4", "--torch-repeats", "3"])
    tasks = sweep.schedule(a)
    check("schedule: run count", len(tasks) == 4 * 2 * (1 + 4) + 3 * 2 * 4, str(len(tasks)))
    first = {}  # (config, round) -> side that ran first
    for t in tasks:
        first.setdefault((t["model"], t["sparse_init"], t["density"], t["repeat"]), t["side"])
    pairs = [(m, i, d) for m in "ab" for i in ("ERK", "uniform") for d in (0.1, 0.5)]
    check("schedule: ours first in round 1", all(first[p + (0,)] == "ours" for p in pairs))
    check("schedule: order alternates between rounds",
          all({first[p + (1,)], first[p + (2,)]} == {"ours", "torch"} for p in pairs))
    check("schedule: order alternates within a round", {first[p + (1,)] for p in pairs} == {"ours", "torch"})
    check("schedule: no PyTorch run after --torch-repeats rounds",
          not [t for t in tasks if t["side"] == "torch" and t["repeat"] >= 3]
          and all(first[p + (3,)] == "ours" for p in pairs))
    check("schedule: our dense model once per model and round",
          sorted((t["model"], t["repeat"]) for t in tasks if t["side"] == "ours_dense")
          == sorted((m, r) for m in "ab" for r in range(4)))


def check_targets():
    """The issue's targets: speed-ups, step time against the baseline binary
    and fraction of the peak only at batch 128 / 2 threads."""
    import sweep_vs_pytorch as sweep
    row = dict(sparse_init="ERK", density=0.05, speedup_vs_our_dense=0.9, memory_ratio=0.2)
    rows = [dict(row, model="cifar_resnet_56", speedup_vs_torch=5.5, step_vs_baseline=0.7,
                 useful_fraction_of_peak=0.3),
            dict(row, model="cifar_resnet_20_64", speedup_vs_torch=4.0, speedup_vs_our_dense=1.2, memory_ratio=0.1,
                 step_vs_baseline=0.6, useful_fraction_of_peak=0.2),
            dict(row, model="cifar_resnet_56", sparse_init="uniform", speedup_vs_torch=9.0, step_vs_baseline=0.5,
                 useful_fraction_of_peak=0.5, memory_ratio=0.1, speedup_vs_our_dense=None)]
    dense = [{"model": "cifar_resnet_20", "ours_vs_torch_dense": 1.25}]
    got = {t["target"]: t["met"] for t in sweep.check_targets(rows, {"batch_size": 128, "threads": 2}, dense)}
    want = {"cifar_resnet_56 ERK 0.05: ours / PyTorch >= 5.0": True,
            "cifar_resnet_20_64 ERK 0.05: ours / PyTorch >= 8.0": False,
            "cifar_resnet_56 ERK 0.05: step / baseline's step <= 0.65": False,
            "cifar_resnet_56 ERK 0.05: useful GFLOP/s >= 25% of the FMA peak": True,
            "cifar_resnet_20_64 ERK 0.05: step / baseline's step <= 0.65": True,
            "cifar_resnet_20_64 ERK 0.05: useful GFLOP/s >= 25% of the FMA peak": False,
            "cifar_resnet_20 dense: ours / PyTorch dense >= 1.3": False,
            "cifar_resnet_56 ERK 0.05: ours / our dense >= 1": False,
            "cifar_resnet_56 ERK 0.05: memory <= 15%": False,
            "cifar_resnet_20_64 ERK 0.05: ours / our dense >= 1": True,
            "cifar_resnet_20_64 ERK 0.05: memory <= 15%": True,
            "cifar_resnet_56 uniform 0.05: memory <= 15%": True}
    check("targets: met / missed at batch 128, 2 threads", got == want, str(got))
    got = sweep.check_targets(rows, {"batch_size": 8, "threads": 2}, dense)
    check("targets: no speed targets at another batch size",
          len(got) == 5 and not any("PyTorch" in t["target"] or "baseline" in t["target"] or "peak" in t["target"]
                                    for t in got), str(got))


def check_baseline(tmp):
    """--baseline-binary: one more run per configuration and round, in a
    rotating place, and our step time over its step time in the summary."""
    import sweep_vs_pytorch as sweep
    a = sweep.parse_args(["--models", "a", "--inits", "ERK", "--densities", "0.1,0.5", "--repeats", "3",
                          "--torch-repeats", "2", "--baseline-binary", BIN])
    tasks = sweep.schedule(a)
    per = {}
    for t in tasks:
        if t["side"] != "ours_dense":
            per.setdefault((t["density"], t["repeat"]), []).append(t["side"])
    check("baseline schedule: once per configuration and round",
          all(v.count("baseline") == 1 for v in per.values()) and len(per) == 6, str(per))
    check("baseline schedule: ours precedes PyTorch in round 1",
          all(v.index("ours") < v.index("torch") for (d, r), v in per.items() if r == 0))
    check("baseline schedule: its place rotates", len({v.index("baseline") for v in per.values()}) >= 2, str(per))
    out = os.path.join(tmp, "baseline.json")
    p = run([SWEEP, "--models", "cifar_resnet_20", "--inits", "uniform", "--densities", "0.1",
             "--repeats", "2", "--torch-repeats", "1", "--steps", "1", "--warmup", "0",
             "--batch-size", "4", "--threads", "1", "--binary", BIN, "--baseline-binary", BIN, "--out", out])
    check("baseline sweep: exit 0", p.returncode == 0, (p.stdout + p.stderr).strip()[-2000:])
    if p.returncode != 0:
        return
    with open(out) as f:
        doc = json.load(f)
    base = [r for r in doc["runs"] if r["side"] == "baseline"]
    ours = [r for r in doc["runs"] if r["side"] == "ours"]
    row = doc["summary"]["rows"][0]
    step = lambda r: r["result"]["train_step"]["ms"]  # noqa: E731
    check("baseline sweep: a baseline run per round", len(base) == 2 and row["baseline_runs"] == 2)
    check("baseline sweep: step ratio of the medians",
          close(row["step_vs_baseline"], statistics.median(map(step, ours)) / statistics.median(map(step, base))),
          str(row.get("step_vs_baseline")))
    p = run([SWEEP, "--baseline-binary", os.path.join(tmp, "no_such_binary"), "--out", os.path.join(tmp, "x.json")])
    check("baseline sweep: a missing baseline binary is named", p.returncode == 1 and "no_such_binary" in p.stderr,
          p.stderr.strip())


def check_errors(tmp):
    p = run([SWEEP, "--models", "no_such_model", "--inits", "uniform", "--densities", "0.1", "--repeats", "1",
             "--steps", "1", "--warmup", "0", "--batch-size", "2", "--binary", BIN,
             "--out", os.path.join(tmp, "bad.json")])
    check("sweep: unknown model fails naming it", p.returncode != 0 and "no_such_model" in p.stderr,
          p.stderr.strip()[-300:])
    p = run([SWEEP, "--densities", "0.05,1.5"])
    check("sweep: density out of range is a usage error", p.returncode == 2 and "1.5" in p.stderr)
    p = run([SWEEP, "--repeats", "1", "--torch-repeats", "2"])
    check("sweep: --torch-repeats > --repeats refused", p.returncode == 2 and "torch-repeats" in p.stderr)
    p = run([PLOT, os.path.join(tmp, "missing.json")])
    check("plot: missing file fails naming it", p.returncode == 1 and "missing.json" in p.stderr
          and "Traceback" not in p.stderr, p.stderr.strip())


def main():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "sweep.json")
        p = run([SWEEP, "--models", "cifar_resnet_20", "--inits", "uniform", "--densities", "0.05,0.5",
                 "--repeats", "2", "--torch-repeats", "1", "--steps", "1", "--warmup", "1",
                 "--batch-size", "8", "--threads", "2", "--binary", BIN, "--out", out])
        check("sweep: exit 0", p.returncode == 0, (p.stdout + p.stderr).strip()[-2000:])
        if p.returncode == 0:
            with open(out) as f:
                check_sweep(json.load(f))
            check_plot(tmp, out)
        check_plot_geometry(tmp)
        check_schedule()
        check_targets()
        check_baseline(tmp)
        check_errors(tmp)
    finish()


if __name__ == "__main__":
    main()
