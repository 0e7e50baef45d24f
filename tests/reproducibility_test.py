"""Reproducibility (docs/REPRODUCIBILITY.md): with the same seed and thread
count two runs give bit-identical checkpoints (every weight, mask, optimiser
state and batch-norm statistic) and the same log apart from timings; with a
different thread count the masks are identical and the weights equal within
float tolerance; a different seed gives a different run (so the comparison
can fail)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, write_idx_dataset  # noqa: E402
import load_checkpoint as lc  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")
tmp = tempfile.mkdtemp(prefix="sparsetrain-repro-")
data = write_idx_dataset(os.path.join(tmp, "data"), n_train=160, n_test=64)
TIMING = {"images_per_s", "seconds"}
RUN_ID = {"run_id"}  # each fresh run draws its own id (docs/FORMATS.md)

configs = {
    "sparse cifar_resnet_8_4": ["--model", "cifar_resnet_8_4", "--sparse", "--fix", "--sparse_init", "ERK",
                                "--density", "0.3"],
    "dense lenet5, adam": ["--model", "lenet5", "--optimizer", "adam", "--lr", "0.001"],
}


def train(name, flags, threads, seed, label):
    ck = os.path.join(tmp, f"{name}-{threads}-{seed}-{label}.safetensors".replace(" ", "_").replace(",", ""))
    log = ck.replace(".safetensors", ".jsonl")
    r = subprocess.run([BIN, "train", "--data", "mnist", "--datadir", data, "--batch-size", "32", "--epochs", "2",
                        "--max-batches", "3", "--seed", str(seed), "--threads", str(threads), "--plain", "--quiet",
                        "--save", ck, "--log", log] + flags, capture_output=True, text=True, timeout=600)
    check(f"{name}: train with {threads} thread(s), seed {seed}", r.returncode == 0, r.stderr.strip()[-300:])
    tensors = lc.read_safetensors(ck)[0] if r.returncode == 0 else {}
    lines = [{k: v for k, v in json.loads(l).items() if k not in TIMING | RUN_ID} for l in open(log)] if r.returncode == 0 else []
    return tensors, lines


def max_rel_diff(a, b):
    worst = 0.0
    for k in b:
        x, y = np.asarray(a[k], dtype=np.float64), np.asarray(b[k], dtype=np.float64)
        scale = max(float(np.max(np.abs(y))) if y.size else 0.0, 1e-6)
        worst = max(worst, float(np.max(np.abs(x - y))) / scale if y.size else 0.0)
    return worst


for name, flags in configs.items():
    a, log_a = train(name, flags, 2, 5, "a")
    b, log_b = train(name, flags, 2, 5, "b")
    same = bool(a) and a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    check(f"{name}: same seed and threads -> bit-identical checkpoint tensors", same,
          str([k for k in a if k in b and not np.array_equal(a[k], b[k])][:3]))
    check(f"{name}: ... and the same log (losses, accuracies) apart from timings", log_a == log_b and len(log_a) == 2)
    c, log_c = train(name, flags, 1, 5, "c")
    masks = [k for k in a if k.startswith("mask.")]
    check(f"{name}: 1 vs 2 threads -> identical masks", all(np.array_equal(a[k], c[k]) for k in masks))
    diff = max_rel_diff(c, a) if a and c else 1.0
    # 1e-4: 2 threads reassociate float32 sums (dense GEMM/oneDNN), ~1e-7 per step, compounded over the run's steps
    check(f"{name}: 1 vs 2 threads -> weights equal within float tolerance (max diff / max |w| <= 1e-4)",
          diff <= 1e-4, f"{diff:.2e}")
    d, _ = train(name, flags, 2, 6, "d")
    check(f"{name}: another seed gives another run", bool(d) and max_rel_diff(d, a) > 1e-2)  # other masks: O(1)

shutil.rmtree(tmp, ignore_errors=True)
finish()
