#!/usr/bin/python3
"""Training throughput of sparsetrain against PyTorch, side by side.

Runs `build/sparsetrain bench --json` and the same training step in PyTorch
(tools/torch_models.py, SGD with Nesterov momentum 0.9 and weight decay 5e-4,
random data, torch.set_num_threads(T)) alternately in one session, each in its
own process, `--repeats` times; prints every run, the medians and the ratio
(ours / PyTorch, > 1 means sparsetrain is faster). The order alternates so that
drifting machine load hurts both sides alike, and both sides get the same
OpenMP environment (see openmp_environment).

A sparse run (--sparse_init ERK --density 0.05) trains PyTorch the reference
code's way: dense weights multiplied by a Bernoulli mask after every step, with
each layer's density taken from sparsetrain's own run (its JSON lists the kept
count per prunable layer).

Usage (Debian's interpreter, which has torch):
  /usr/bin/python3 bench/bench_vs_pytorch.py [--model cifar_resnet_20] [--batch-size 128]
      [--threads 2] [--repeats 5] [--steps 5] [--warmup 2] [--sparse_init ERK --density 0.05]
      [--execution auto|sparse|dense] [--isa auto|avx512|avx2|generic]
      [--binary build/sparsetrain] [--json results.json]

bench/sweep_vs_pytorch.py imports this module for a whole matrix of models,
distributions and densities (run_ours, run_torch, weight_densities, ...).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cifar_resnet_20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="runs of each side (default 5)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per run (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per run (default 2)")
    p.add_argument("--sparse_init", default="dense", help="dense, uniform, ER, ERK, ... (default dense)")
    p.add_argument("--density", type=float, default=0.05)
    p.add_argument("--execution", default="auto", help="our side: auto, sparse or dense (default auto)")
    p.add_argument("--isa", default="auto", help="our side's kernels: auto, avx512, avx2, generic (default auto)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "sparsetrain"))
    p.add_argument("--json", help="also write all runs and the summary to this file")
    p.add_argument("--torch-worker", help=argparse.SUPPRESS)  # internal: one PyTorch run, config as JSON
    return p.parse_args(argv)


# ---------------------------------------------------------------- PyTorch side

def timed_masked_steps(model, opt, x, y, mask_pairs, warmup, steps):
    """Training steps of a PyTorch model on one batch, masked the reference code's way (SGD step, then
    every masked weight times its mask: Masking.step's apply_mask); returns the forward, backward and
    whole-step times in ms of the steps after the warm-up. mask_pairs: [(weight, mask)], may be empty."""
    import torch
    import torch.nn.functional as F

    fwd, bwd, step = [], [], []
    for it in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        if mask_pairs:
            with torch.no_grad():
                for w, m in mask_pairs:
                    w.mul_(m)
        t3 = time.perf_counter()
        if it >= warmup:
            fwd.append(1e3 * (t1 - t0))
            bwd.append(1e3 * (t2 - t1))
            step.append(1e3 * (t3 - t0))
    return fwd, bwd, step


def torch_worker(config):
    """One PyTorch run in this process; prints one JSON line like `sparsetrain bench --json`."""
    import torch

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import torch_models

    torch.set_num_threads(config["threads"])
    torch.manual_seed(17)
    model = torch_models.build(config["model"], config["classes"], config["channels"])
    model.train()
    params = dict(model.named_parameters())
    prunable = torch_models.prunable_weight_names(model)
    densities = config.get("densities") or {}
    unknown = sorted(set(densities) - set(prunable))
    if unknown:
        sys.exit(f"bench_vs_pytorch: densities given for {', '.join(unknown)}, "
                 f"which {config['model']} has no prunable weight of")
    masks = {}
    for name in prunable:
        d = densities.get(name, 1.0)
        if d < 1.0:
            w = params[name]
            masks[name] = (torch.rand_like(w) < d).float()
            with torch.no_grad():
                w.mul_(masks[name])
    mask_pairs = [(params[n], m) for n, m in masks.items()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    b = config["batch_size"]
    x = torch.randn(b, config["channels"], config["size"], config["size"])
    y = torch.randint(0, config["classes"], (b,))
    fwd, bwd, step = timed_masked_steps(model, opt, x, y, mask_pairs, config["warmup"], config["steps"])
    ms = statistics.median(step)
    kept = sum(int(masks[n].sum().item()) if n in masks else params[n].numel() for n in prunable)
    print(json.dumps({"forward_ms": statistics.median(fwd), "backward_ms": statistics.median(bwd),
                      "train_step": {"ms": ms, "images_per_s": 1e3 * b / ms},
                      "masked_layers": len(masks), "kept": kept, "prunable": sum(params[n].numel() for n in prunable),
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      # this worker process's peak resident memory (Linux: ru_maxrss in KiB)
                      "peak_rss_bytes": 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


# ---------------------------------------------------------------- driver

def openmp_environment():
    """The OpenMP settings both sides run with. `sparsetrain` bounds libgomp's
    barrier spinning itself (GOMP_SPINCOUNT=10000 unless the user set
    OMP_WAIT_POLICY or GOMP_SPINCOUNT); PyTorch uses the same libgomp, so it
    gets the same setting: the comparison is of the code, not of the runtime's
    knobs. Set either variable yourself to compare under other settings."""
    env = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    return env or {"GOMP_SPINCOUNT": "10000"}


def run_json(cmd, env):
    """Runs cmd and returns the JSON object on the last line of its output;
    a failing command raises RuntimeError with the end of its error output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(cmd[:2])} ... exited with {proc.returncode}: {tail}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{' '.join(cmd[:2])} ... printed nothing")
    return json.loads(lines[-1])


def weight_densities(layers):
    """Per-weight densities {name: kept / numel} from the `layers` list of
    `sparsetrain bench --json`. That list holds every step of the walk; only
    the conv and linear steps are weights (numel > 0), the others (batch norm,
    ReLU, residual adds, pooling) report numel 0 and are skipped."""
    return {l["name"]: l["kept"] / l["numel"] for l in layers if l.get("numel", 0) > 0}


def images_per_s(run):
    """Training throughput of one run of either side."""
    return run["train_step"]["images_per_s"]


def run_ours(a):
    """One `sparsetrain bench --json` run configured by the namespace `a`
    (parse_args's fields); returns its JSON object."""
    cmd = [a.binary, "bench", "--json", "--model", a.model, "--batch-size", str(a.batch_size),
           "--threads", str(a.threads), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--classes", str(a.classes), "--channels", str(a.channels), "--size", str(a.size),
           "--sparse_init", a.sparse_init, "--density", repr(a.density),
           "--execution", a.execution, "--isa", a.isa]
    return run_json(cmd, dict(os.environ, **openmp_environment()))


def run_torch(a, densities):
    """One PyTorch run in a fresh process (densities: {weight name: density}
    from weight_densities, or None for the dense model); returns its JSON."""
    config = {"model": a.model, "batch_size": a.batch_size, "threads": a.threads, "steps": a.steps,
              "warmup": a.warmup, "classes": a.classes, "channels": a.channels, "size": a.size,
              "densities": densities}
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), **openmp_environment())
    return run_json([sys.executable, os.path.abspath(__file__), "--torch-worker", json.dumps(config)], env)


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv):
    a = parse_args(argv)
    if a.torch_worker:
        torch_worker(json.loads(a.torch_worker))
        return 0
    if not os.path.exists(a.binary):
        sys.exit(f"bench_vs_pytorch: {a.binary} not found (build first: cmake --build build)")
    print(f"# {a.model}, batch {a.batch_size}, {a.threads} threads, sparse_init {a.sparse_init}"
          + (f" density {a.density}" if a.sparse_init != "dense" else "")
          + f", {a.repeats} repeats x ({a.warmup} warm-up + {a.steps} timed steps); CPU: {cpu_model()}; "
          + "OpenMP: " + " ".join(f"{k}={v}" for k, v in openmp_environment().items()) + " (both sides)")
    ours, theirs, densities = [], [], None
    for r in range(a.repeats):
        order = ("ours", "torch") if r % 2 == 0 else ("torch", "ours")
        if densities is None and a.sparse_init != "dense":
            order = ("ours", "torch")  # the PyTorch side needs our per-layer densities first
        for side in order:
            if side == "ours":
                res = run_ours(a)
                ours.append(res)
                if densities is None and a.sparse_init != "dense":
                    densities = weight_densities(res["layers"])
            else:
                res = run_torch(a, densities)
                theirs.append(res)
            print(f"repeat {r + 1} {side:5s}: {res['train_step']['images_per_s']:8.1f} images/s  "
                  f"(forward {res['forward_ms']:7.1f} ms, backward {res['backward_ms']:7.1f} ms, "
                  f"step {res['train_step']['ms']:7.1f} ms)", flush=True)

    def med(runs, key):
        return statistics.median(x[key] if key != "ips" else images_per_s(x) for x in runs)

    ours_ips, torch_ips = med(ours, "ips"), med(theirs, "ips")
    summary = {
        "model": a.model, "batch_size": a.batch_size, "threads": a.threads, "sparse_init": a.sparse_init,
        "density": a.density if a.sparse_init != "dense" else 1.0, "repeats": a.repeats, "cpu": cpu_model(),
        "openmp_environment": openmp_environment(),
        "execution": ours[-1].get("execution"), "isa": ours[-1].get("isa"),
        "conv_implementation": ours[-1].get("conv_implementation"), "torch": theirs[-1].get("torch"),
        "ours_images_per_s": ours_ips, "torch_images_per_s": torch_ips, "ratio": ours_ips / torch_ips,
        "ours_forward_ms": med(ours, "forward_ms"), "ours_backward_ms": med(ours, "backward_ms"),
        "torch_forward_ms": med(theirs, "forward_ms"), "torch_backward_ms": med(theirs, "backward_ms"),
        "ratios_per_repeat": [images_per_s(o) / images_per_s(t) for o, t in zip(ours, theirs)],
        "ours_peak_rss_bytes": statistics.median(x["memory"]["peak_rss_bytes"] for x in ours),
        "torch_peak_rss_bytes": statistics.median(x["peak_rss_bytes"] for x in theirs),
    }
    print(f"median sparsetrain: {ours_ips:8.1f} images/s  (forward {summary['ours_forward_ms']:.1f} ms, "
          f"backward {summary['ours_backward_ms']:.1f} ms; conv {summary['conv_implementation']})")
    print(f"median PyTorch {summary['torch']}: {torch_ips:8.1f} images/s  (forward {summary['torch_forward_ms']:.1f} ms, "
          f"backward {summary['torch_backward_ms']:.1f} ms)")
    print(f"ratio sparsetrain / PyTorch: {summary['ratio']:.2f}  (per repeat: "
          + ", ".join(f"{x:.2f}" for x in summary["ratios_per_repeat"]) + ")")
    print(f"peak RSS (median over runs, each its own process): sparsetrain {summary['ours_peak_rss_bytes'] / 2**20:.0f} MiB, "
          f"PyTorch {summary['torch_peak_rss_bytes'] / 2**20:.0f} MiB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"summary": summary, "ours": ours, "torch": theirs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
