"""scripts/sweep.sh on a tiny configuration (generated MNIST-like data, two
depths and two widths of small CIFAR ResNets, two seeds, one epoch of two
batches, evaluation on 50 images): every run folder gets its checkpoint, log
and eval.json, the report's gap-to-dense plot has one series for the depth
sweep and one for the width sweep with a point per model, averaging two dense
and two sparse seeds, a second invocation resumes an interrupted run and skips the finished
ones."""
import gzip
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, SRC, check, finish  # noqa: E402

tmp = tempfile.mkdtemp(prefix="sparsetrain-sweep-")
data = os.path.join(tmp, "data")
os.makedirs(data)
rng = np.random.RandomState(0)
protos = rng.randint(0, 256, size=(10, 28, 28))
for split, n in (("train", 400), ("t10k", 100)):
    y = rng.randint(0, 10, size=n)
    x = np.clip(protos[y] * 0.5 + rng.randint(0, 128, size=(n, 28, 28)), 0, 255).astype(np.uint8)
    for kind, arr in (("images-idx3", x), ("labels-idx1", y.astype(np.uint8))):
        header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
        with gzip.open(os.path.join(data, f"{split}-{kind}-ubyte.gz"), "wb") as f:
            f.write(header + arr.tobytes())

out = os.path.join(tmp, "sweep")
cmd = ["bash", os.path.join(SRC, "scripts", "sweep.sh"), "--out", out, "--data", "mnist", "--datadir", data,
       "--density", "0.2", "--seeds", "1 2", "--depths", "8 14", "--widths", "4 8", "--width-depth", "8",
       "--epochs", "1", "--eval-args", "--limit 50 --ood noise", "--", "--max-batches", "2", "--batch-size", "16",
       "--threads", "2", "--quiet"]
env = dict(os.environ, SPARSETRAIN=os.path.join(BUILD, "sparsetrain"))
r = subprocess.run(cmd, capture_output=True, text=True, env=env)
check("sweep.sh exits 0", r.returncode == 0, r.stderr.strip()[-400:])
models = ["cifar_resnet_8", "cifar_resnet_14", "cifar_resnet_8_4", "cifar_resnet_8_8"]
folders = [f"{m}-{k}-s{s}" for m in models for s in (1, 2) for k in ("dense", "ERK-0.2")]
missing = [f for f in folders for name in ("checkpoint.safetensors", "log.jsonl", "eval.json")
           if not os.path.exists(os.path.join(out, f, name))]
check(f"all {len(folders)} run folders have checkpoint, log and eval.json", not missing, str(missing[:4]))
html = open(os.path.join(out, "report.html")).read() if os.path.exists(os.path.join(out, "report.html")) else ""
check("the sweep ends with the report", "Accuracy gap to dense" in html)
for series, ms in (("ERK d=0.2, cifar_resnet_*", models[:2]), ("ERK d=0.2, cifar_resnet_8_*", models[2:])):
    for m in ms:
        check(f"gap table: {series} has {m} with 2 dense and 2 sparse runs",
              re.search(re.escape(f"<td>{series}</td><td>{m}</td>") + r"<td>\d+</td><td>[0-9.]+% \(2\)</td>"
                        r"<td>[0-9.]+% \(2\)</td>", html) is not None)
# an interrupted run (checkpoint, no eval.json) is resumed, not restarted or refused
interrupted = os.path.join(out, folders[0])
os.remove(os.path.join(interrupted, "eval.json"))
r2 = subprocess.run(cmd, capture_output=True, text=True, env=env)
check("an interrupted run is resumed from its checkpoint", r2.returncode == 0 and
      f"train --resume {interrupted}/checkpoint.safetensors" in r2.stdout and
      os.path.exists(os.path.join(interrupted, "eval.json")), (r2.stdout + r2.stderr)[-400:])
r2 = subprocess.run(cmd, capture_output=True, text=True, env=env)
check("a second run skips the finished runs", r2.returncode == 0 and r2.stdout.count(" done") == len(folders)
      and "train --model" not in r2.stdout, r2.stdout[-300:])
finish()
