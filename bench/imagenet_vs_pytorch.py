#!/usr/bin/python3
"""ImageNet-size training speed and memory of sparsetrain against PyTorch's
masked-dense training, side by side (issue 16's evidence).

For each model (ResNet50 and WideResNet50_2 by default) this times, at
224x224, 1000 classes, batch 32 and 2 threads:
  * ours, dense: `sparsetrain bench --sparse_init dense --execution dense`;
  * ours, ERK_plus at density 0.2 with the classifier dense (the paper's
    ImageNet masks; `bench` keeps fc_density 1), once per `--executions`
    entry (auto, dense, sparse);
  * PyTorch, dense: the torchvision model, one SGD step (momentum 0.9, weight
    decay 1e-4, as the reference's ImageNet optimiser; cross-entropy on random
    data), torch.set_num_threads(threads);
  * PyTorch, masked: the same with every prunable weight multiplied by its
    mask after each step, the reference's Masking.step (optimizer.step, then
    apply_mask); each layer's density is taken from our own ERK_plus run (its
    JSON lists kept / numel per weight, under torchvision's names).
Every run is its own process with the same OpenMP settings (bench_vs_pytorch's
openmp_environment). The repeats are rounds; within a round every run of a
model is made once, and the order of the runs turns from round to round, so a
drifting machine load hits every configuration alike. Reported per
configuration: the median training images/s, the ratio to PyTorch's
masked-dense (or dense) run, the ratio to our dense path, the median peak
resident memory of the process (the kernel's ru_maxrss of that child, the same
measure for both sides; the parent never imports PyTorch, since a child's
ru_maxrss also counts what it inherited before exec) and, for our runs, the
useful GFLOP/s and their share of the FMA peak that each `bench` run
measures with the same threads.

Timings on a shared machine are indicative only (docs/PERFORMANCE.md); the
markdown table (--out-md) records the command that made it.

Usage (Debian's interpreter, which has torch and torchvision):
  /usr/bin/python3 bench/imagenet_vs_pytorch.py [--models ResNet50,WideResNet50_2] [--density 0.2]
      [--batch-size 32] [--size 224] [--classes 1000] [--threads 2] [--repeats 3] [--steps 3] [--warmup 1]
      [--executions auto,dense,sparse,mixed] [--out imagenet_vs_pytorch.json] [--out-md imagenet_vs_pytorch.md]
  /usr/bin/python3 bench/imagenet_vs_pytorch.py --quick    # ResNet18 at 64x64, batch 4, 1 repeat: a smoke run
"""

import argparse
import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_vs_pytorch as bvp  # noqa: E402

TORCHVISION = {"ResNet18": "resnet18", "ResNet34": "resnet34", "ResNet50": "resnet50", "ResNet101": "resnet101",
               "ResNet152": "resnet152", "WideResNet50_2": "wide_resnet50_2", "WideResNet101_2": "wide_resnet101_2"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="ResNet50,WideResNet50_2",
                   help="comma-separated, of " + ", ".join(TORCHVISION) + " (default ResNet50,WideResNet50_2)")
    p.add_argument("--density", type=float, default=0.2, help="ERK_plus overall density, fc dense (default 0.2)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--size", type=int, default=224, help="input height = width (default 224)")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per run (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per run (default 1)")
    p.add_argument("--executions", default="auto,dense,sparse,mixed",
                   help="our ERK_plus runs: comma-separated auto, dense, sparse, mixed (default all four)")
    p.add_argument("--isa", default="auto", help="our kernels: auto, avx512, avx2, generic (default auto)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: ResNet18 at 64x64, batch 4, 1 repeat, 1 warm-up + 1 timed step")
    p.add_argument("--binary", default=os.path.join(bvp.ROOT, "build", "sparsetrain"))
    p.add_argument("--out", default="imagenet_vs_pytorch.json", help="JSON of every run and the summary")
    p.add_argument("--out-md", default="imagenet_vs_pytorch.md", help="the markdown table")
    p.add_argument("--torch-worker", help=argparse.SUPPRESS)  # internal: one PyTorch run, config as JSON
    a = p.parse_args(argv)
    if a.quick:
        a.models, a.size, a.batch_size, a.repeats, a.steps, a.warmup = "ResNet18", 64, 4, 1, 1, 1
    a.models = [m.strip() for m in a.models.split(",") if m.strip()]
    a.executions = [e.strip() for e in a.executions.split(",") if e.strip()]
    for m in a.models:
        if m not in TORCHVISION:
            p.error(f"--models: {m} is not one of " + ", ".join(TORCHVISION))
    for e in a.executions:
        if e not in ("auto", "dense", "sparse", "mixed"):
            p.error(f"--executions: {e} is not auto, dense, sparse or mixed")
    for name in ("repeats", "steps", "batch_size", "threads", "size", "classes"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.warmup < 0 or not 0 < a.density <= 1:
        p.error("--warmup must not be negative and --density must be in (0, 1]")
    return a


# ---------------------------------------------------------------- PyTorch side

def torch_worker(config):
    """One PyTorch run in this process: prints one JSON line shaped like `sparsetrain bench --json`'s."""
    import torch
    import torchvision

    torch.set_num_threads(config["threads"])
    torch.manual_seed(17)
    model = getattr(torchvision.models, TORCHVISION[config["model"]])(num_classes=config["classes"])
    model.train()
    params = dict(model.named_parameters())
    densities = config.get("densities") or {}
    unknown = sorted(set(densities) - set(params))
    if unknown:
        sys.exit(f"imagenet_vs_pytorch: our run has weights {', '.join(unknown[:3])} that torchvision's "
                 f"{config['model']} lacks")
    masks = []
    for name, d in densities.items():
        if d < 1.0:
            w = params[name]
            m = (torch.rand_like(w) < d).float()
            with torch.no_grad():
                w.mul_(m)
            masks.append((w, m))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    b, s = config["batch_size"], config["size"]
    x = torch.randn(b, 3, s, s)
    y = torch.randint(0, config["classes"], (b,))
    fwd, bwd, step = bvp.timed_masked_steps(model, opt, x, y, masks, config["warmup"], config["steps"])
    ms = statistics.median(step)
    print(json.dumps({"forward_ms": statistics.median(fwd), "backward_ms": statistics.median(bwd),
                      "train_step": {"ms": ms, "images_per_s": 1e3 * b / ms}, "masked_layers": len(masks),
                      "torch": torch.__version__, "torchvision": torchvision.__version__,
                      "threads": torch.get_num_threads()}))


# ---------------------------------------------------------------- runs

def run_measured(cmd, env):
    """Runs cmd in its own process; returns (the JSON object of its last output line, its peak RSS in bytes:
    the kernel's ru_maxrss of that child, from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited with {proc.returncode}: {tail}")
    lines = stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... printed nothing")
    return json.loads(lines[-1]), usage.ru_maxrss * 1024  # Linux: kilobytes


def ours_cmd(a, model, sparse, execution):
    return [a.binary, "bench", "--json", "--model", model, "--size", str(a.size), "--classes", str(a.classes),
            "--batch-size", str(a.batch_size), "--threads", str(a.threads), "--steps", str(a.steps),
            "--warmup", str(a.warmup), "--sparse_init", "ERK_plus" if sparse else "dense",
            "--density", repr(a.density), "--execution", execution, "--isa", a.isa]


def run_one(a, task, densities):
    """One scheduled run; densities maps a model to the per-weight densities of its first ERK_plus run."""
    model, side = task["model"], task["side"]
    if side.startswith("ours"):
        sparse = side != "ours_dense"
        res, rss = run_measured(ours_cmd(a, model, sparse, task["execution"]),
                                dict(os.environ, **bvp.openmp_environment()))
        if sparse:
            densities.setdefault(model, bvp.weight_densities(res["layers"]))
    else:
        config = {"model": model, "batch_size": a.batch_size, "size": a.size, "classes": a.classes,
                  "threads": a.threads, "steps": a.steps, "warmup": a.warmup,
                  "densities": densities[model] if side == "torch_masked" else None}
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), **bvp.openmp_environment())
        res, rss = run_measured([sys.executable, os.path.abspath(__file__), "--torch-worker", json.dumps(config)],
                                env)
    return res, rss


def schedule(a):
    """Rounds; per model: our ERK_plus runs (one per execution), our dense run, PyTorch dense and masked. The
    first round starts with an ERK_plus run of ours (PyTorch's masks need its densities); later rounds rotate
    the order by the round number."""
    runs = []
    for r in range(a.repeats):
        for model in a.models:
            tasks = [dict(model=model, side="ours_sparse", execution=e) for e in a.executions]
            tasks += [dict(model=model, side="ours_dense", execution="dense"),
                      dict(model=model, side="torch_dense", execution="-"),
                      dict(model=model, side="torch_masked", execution="-")]
            k = r % len(tasks)  # round 1 unrotated: an ERK_plus run of ours comes first
            tasks = tasks[k:] + tasks[:k]
            runs += [dict(t, repeat=r) for t in tasks]
    return runs


# ---------------------------------------------------------------- summary

def summarise(a, records):
    groups = {}
    for rec in records:
        groups.setdefault((rec["model"], rec["side"], rec["execution"]), []).append(rec)
    med = lambda recs, get: statistics.median(get(r) for r in recs) if recs else None  # noqa: E731
    ips = lambda r: bvp.images_per_s(r["result"])  # noqa: E731
    rows = []
    for model in a.models:
        ours_dense = med(groups.get((model, "ours_dense", "dense"), []), ips)
        torch_dense = med(groups.get((model, "torch_dense", "-"), []), ips)
        torch_masked = med(groups.get((model, "torch_masked", "-"), []), ips)
        configs = [("ours_dense", "dense")] + [("ours_sparse", e) for e in a.executions] + \
                  [("torch_dense", "-"), ("torch_masked", "-")]
        for side, execution in configs:
            recs = groups.get((model, side, execution), [])
            if not recs:
                continue
            last = recs[-1]["result"]
            value = med(recs, ips)
            ours = side.startswith("ours")
            versus = torch_masked if side in ("ours_sparse", "torch_masked") else torch_dense
            peak = med(recs, lambda r: r["result"]["fma_peak"]["gflops"]) if ours else None
            useful = med(recs, lambda r: r["result"]["train_step"]["useful_gflops"]) if ours else None
            fraction = med(recs, lambda r: r["result"]["train_step"]["useful_gflops"] / r["result"]["fma_peak"]["gflops"]
                           if r["result"]["fma_peak"]["gflops"] else 0.0) if ours else None
            rows.append({
                "model": model, "side": side, "execution": last.get("execution", execution) if ours else "-",
                "requested_execution": execution, "runs": len(recs), "images_per_s": value,
                "step_ms": med(recs, lambda r: r["result"]["train_step"]["ms"]),
                "vs_torch": value / versus if value and versus else None,
                "vs_our_dense": value / ours_dense if ours and value and ours_dense else None,
                "peak_rss_bytes": med(recs, lambda r: r["peak_rss_bytes"]),
                "useful_gflops": useful, "fma_peak_gflops": peak,
                "fraction_of_peak": fraction or None,  # per run (each measures its own peak), median
                "param_bytes": last["memory"]["param_bytes"] if ours else None,
                "activation_bytes": last["memory"].get("activation_bytes") if ours else None,
            })
    return rows


def label(row, density):
    if row["side"] == "ours_dense":
        return "sparsetrain, dense"
    if row["side"] == "torch_dense":
        return "PyTorch, dense"
    if row["side"] == "torch_masked":
        return f"PyTorch masked-dense, ERK_plus {density:g} fc dense"
    return f"sparsetrain, ERK_plus {density:g} fc dense, --execution {row['requested_execution']}"


def markdown(a, rows, meta):
    fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
    lines = [f"Training images/s at {a.size}x{a.size}, {a.classes} classes, batch {a.batch_size}, {a.threads} "
             f"threads; medians of {a.repeats} interleaved round(s) of {a.warmup} warm-up + {a.steps} timed "
             f"step(s); peak RSS of each process (ru_maxrss). {meta['cpu']}, {meta['date']}, commit "
             f"{meta['commit']}, PyTorch {meta['torch']}. Indicative only: the machine is shared "
             "(docs/PERFORMANCE.md).", "",
             f"Command: `{meta['command']}`", "",
             "| model | run | execution | images/s | vs PyTorch | vs our dense | peak RSS (MB) | useful GFLOP/s "
             "| of FMA peak |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {label(r, a.density)} | {r['execution']} | {fmt(r['images_per_s'], '.2f')} "
                     f"| {fmt(r['vs_torch'], '.2f')} | {fmt(r['vs_our_dense'], '.2f')} "
                     f"| {fmt(r['peak_rss_bytes'] / 1e6 if r['peak_rss_bytes'] else None, '.0f')} "
                     f"| {fmt(r['useful_gflops'], '.1f')} "
                     f"| {fmt(100 * r['fraction_of_peak'] if r['fraction_of_peak'] else None, '.1f')}"
                     f"{'%' if r['fraction_of_peak'] else ''} |")
    peak = next((r["fma_peak_gflops"] for r in rows if r["fma_peak_gflops"]), None)
    lines += ["", f"Measured FMA peak ({a.threads} threads): {fmt(peak, '.1f')} GFLOP/s. \"vs PyTorch\": against "
              "PyTorch's masked-dense run for the sparse rows, its dense run for the dense ones."]
    return "\n".join(lines) + "\n"


def write_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv):
    a = parse_args(argv)
    if a.torch_worker:
        torch_worker(json.loads(a.torch_worker))
        return 0
    if not os.path.exists(a.binary):
        sys.exit(f"imagenet_vs_pytorch: {a.binary} not found (build first: cmake --build build)")
    # Not imported here: a child's ru_maxrss counts the memory it had before exec, a copy of this process's, so
    # this process stays small (PyTorch is imported by the PyTorch workers only).
    missing = [m for m in ("torch", "torchvision") if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"imagenet_vs_pytorch: no module {', '.join(missing)} (Debian packages python3-torch "
                 "python3-torchvision)")
    meta = {"command": " ".join(["bench/imagenet_vs_pytorch.py"] + argv), "cpu": bvp.cpu_model(),
            "date": datetime.date.today().isoformat(), "commit": None, "torch": None,
            "openmp_environment": bvp.openmp_environment()}
    try:
        meta["commit"] = subprocess.run(["git", "-C", bvp.ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True).stdout.strip() or None
    except OSError:
        pass
    print(f"# {', '.join(a.models)} at {a.size}x{a.size}, batch {a.batch_size}, {a.threads} threads, ERK_plus "
          f"{a.density:g} fc dense; {a.repeats} round(s); CPU: {meta['cpu']}", flush=True)
    records, densities = [], {}
    for task in schedule(a):
        res, rss = run_one(a, task, densities)
        records.append(dict(task, result=res, peak_rss_bytes=rss))
        print(f"round {task['repeat'] + 1} {task['model']:15s} {task['side']:12s} {task['execution']:6s}: "
              f"{bvp.images_per_s(res):8.2f} images/s (step {res['train_step']['ms']:9.1f} ms), peak RSS "
              f"{rss / 1e6:7.0f} MB", flush=True)
    meta["torch"] = next((r["result"]["torch"] for r in records if "torch" in r["result"]), None)
    rows = summarise(a, records)
    write_file(a.out, json.dumps({"settings": {k: v for k, v in vars(a).items() if k != "torch_worker"},
                                  "meta": meta, "rows": rows, "runs": records}, indent=1))
    table = markdown(a, rows, meta)
    write_file(a.out_md, table)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
