#!/usr/bin/env python3
"""Whole-model A/B of the executions: `sparsetrain bench` with --execution
dense, sparse, mixed and auto on the same model, density and batch,
interleaved round by round, medians of each.

Reports the wall time of a training step and the CPU time the process spent
on it (every thread; OMP_WAIT_POLICY=PASSIVE so that waiting threads sleep
instead of spinning): on a shared machine the wall time depends on what else
runs, the CPU time much less, so the CPU-time ratios are the ones to trust
there. Writes a markdown table to stdout.

  python3 bench/execution_ab.py [--rounds 3] [--threads 2] [--cases quick|cifar|imagenet|all]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("ST_BIN", os.path.join(ROOT, "build", "sparsetrain"))

# (model, sparse_init, density, extra flags of bench)
CASES = {
    "quick": [("cifar_resnet_8_4", "ERK", 0.2, ["--size", "12", "--batch-size", "32"])],
    "cifar": [
        ("cifar_resnet_20", "ERK", 0.05, []),
        ("cifar_resnet_20", "ERK", 0.2, []),
        ("cifar_resnet_56", "ERK", 0.1, []),
        ("cifar_resnet_20_64", "ERK", 0.05, []),
        ("vgg16", "ERK", 0.05, []),
    ],
    "imagenet": [
        ("ResNet18", "ERK_plus", 0.2, ["--size", "64", "--classes", "100", "--batch-size", "32"]),
        ("ResNet50", "ERK_plus", 0.2, ["--size", "112", "--classes", "1000", "--batch-size", "32"]),
        ("WideResNet50_2", "ERK_plus", 0.2, ["--size", "112", "--classes", "1000", "--batch-size", "32"]),
    ],
}
CASES["all"] = CASES["cifar"] + CASES["imagenet"]
EXECUTIONS = ["dense", "sparse", "mixed", "auto"]


def bench(model, init, density, extra, execution, threads, steps):
    cmd = [BIN, "bench", "--model", model, "--sparse_init", init, "--density", str(density), "--threads", str(threads),
           "--steps", str(steps), "--warmup", "1", "--execution", execution, "--json"] + extra
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["train_step"]["ms"], r["train_step"]["cpu_ms"], r["execution"], r["conv_implementation"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--cases", default="quick", choices=sorted(CASES))
    a = p.parse_args()
    print("| model | init, density | bench flags | execution | runs on | step ms (wall) | step ms (CPU) | CPU vs best of dense/sparse |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for model, init, density, extra in CASES[a.cases]:
        wall = {e: [] for e in EXECUTIONS}
        cpu = {e: [] for e in EXECUTIONS}
        runs_on = {}
        for _ in range(a.rounds):
            for e in EXECUTIONS:
                w, c, executor, impl = bench(model, init, density, extra, e, a.threads, a.steps)
                wall[e].append(w)
                cpu[e].append(c)
                runs_on[e] = f"{executor}: {impl}"
        med_cpu = {e: statistics.median(cpu[e]) for e in EXECUTIONS}
        best = min(med_cpu["dense"], med_cpu["sparse"])
        for e in EXECUTIONS:
            print(f"| {model} | {init} {density} | {' '.join(extra)} | {e} | {runs_on[e]} | "
                  f"{statistics.median(wall[e]):.1f} | {med_cpu[e]:.1f} | {med_cpu[e] / best:.3f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
