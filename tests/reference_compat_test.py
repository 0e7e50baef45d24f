"""Paste-in compatibility with the reference code (docs/COMING-FROM-PYTORCH.md).

* The reference README's two CIFAR loops, pasted verbatim into bash, with
  `python main.py` standing for `sparsetrain train` (a shell function that
  also adds `--epochs 1 --max-batches 1 --batch-size 8`, so each run is one
  small batch), on a tiny
  CIFAR-10 in the python version under `_dataset/cifar-10-batches-py/` -- where
  the reference keeps it -- found without --datadir.
* Every row of the flag table in docs/COMING-FROM-PYTORCH.md is run and must
  behave as its "expect" column says (runs / ignored / refused).
* --protocol reference: CIFAR-100 trains on all images and selects on the test
  set (val accuracy = test accuracy every epoch), CIFAR-10 augments validation;
  --iters (seeds, per-seed files, mean and spread); --log-interval lines;
  --max-threads gives bit-identical checkpoints; a checkpoint written before
  "protocol" existed still resumes.
"""
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, SRC, check, finish  # noqa: E402
import load_checkpoint as lc  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")

# The reference README's CIFAR loops, verbatim (VITA-Group/Random_Pruning, README.md).
README_LOOPS = r"""
for model in cifar_resnet_20 cifar_resnet_32 cifar_resnet_44 cifar_resnet_56 cifar_resnet_110 
do
    python main.py --sparse --seed 17 --sparse_init ERK --fix --lr 0.1 --density 0.05 --model $model --data cifar10 --epoch 160
done
for model in cifar_resnet_20_8 cifar_resnet_20_16 cifar_resnet_20_24 
do
    python main.py --sparse --seed 17 --sparse_init ERK --fix --lr 0.1 --density 0.05 --model $model --data cifar10 --epoch 160
done
"""


def python_batch(rng, n, cifar100):
    x = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
    if cifar100:
        fine = [int(v) for v in rng.randint(0, 100, size=n)]
        return {b"data": x, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]}
    return {b"data": x, b"labels": [int(v) for v in rng.randint(0, 10, size=n)]}


def write_cifar_python(root, cifar100, rng, per_batch=12, n_test=20):
    """torchvision's download layout: <root>/cifar-10-batches-py/ or <root>/cifar-100-python/."""
    folder = os.path.join(root, "cifar-100-python" if cifar100 else "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    names = ["train"] if cifar100 else [f"data_batch_{k}" for k in range(1, 6)]
    for name in names:
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(python_batch(rng, per_batch * (5 if cifar100 else 1), cifar100), f, protocol=2)
    with open(os.path.join(folder, "test" if cifar100 else "test_batch"), "wb") as f:
        pickle.dump(python_batch(rng, n_test, cifar100), f, protocol=2)


def run(args, cwd, timeout=600):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def flag_table():
    text = open(os.path.join(SRC, "docs", "COMING-FROM-PYTORCH.md")).read()
    body = text.split("<!-- flag-table")[1].split("<!-- /flag-table -->")[0]
    rows = []
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[2].startswith("`sparsetrain train"):
            continue
        rows.append((cells[0], cells[2].strip("`"), cells[3]))
    return rows


def main():
    if not os.path.exists(BIN):
        print(f"skipped: {BIN} not built")
        sys.exit(77)
    rng = np.random.RandomState(0)
    work = tempfile.mkdtemp(prefix="st_reference_")
    write_cifar_python(os.path.join(work, "_dataset"), False, rng)   # reference: datasets.CIFAR10('_dataset')
    write_cifar_python(os.path.join(work, "data"), True, rng)        # reference: CIFAR100(root='./data')

    # ---- the README's loops, verbatim ----
    script = ("python() { shift; \"$ST\" train \"$@\" --epochs 1 --max-batches 1 --batch-size 8 --threads 2 --plain; }\n"
              + README_LOOPS)
    p = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, cwd=work, timeout=900,
                       env=dict(os.environ, ST=BIN))
    runs = re.findall(r"final test accuracy", p.stdout)
    check("the README's two CIFAR loops run to completion (8 runs)", p.returncode == 0 and len(runs) == 8,
          f"exit {p.returncode}, {len(runs)} runs: {p.stderr.strip()[-400:]}")
    check("... reading the python-version CIFAR-10 from _dataset/ without --datadir",
          p.stdout.count("54 train / 6 val / 20 test images") == 8,
          p.stdout[:300])
    check("... with --epoch taken as --epochs (prefix)", "unknown flag" not in p.stderr)

    # ---- every row of the flag table ----
    rows = flag_table()
    check("the flag table lists every reference flag", len(rows) >= 35, str(len(rows)))
    # the width-1 model keeps the rows cheap; its 9-weight layers keep no weight at uniform 5 %, which
    # sparsetrain refuses unless allowed (a real model's layers are hundreds of times larger)
    base = ["--data", "cifar10", "--model", "cifar_resnet_8_1", "--epochs", "1", "--max-batches", "1",
            "--batch-size", "8", "--threads", "1", "--plain", "--allow-empty-layers"]
    for flag, command, expect in rows:
        words = shlex.split(command)[2:]
        if "--epoch" in words and words[words.index("--epoch") + 1] != "1":
            words[words.index("--epoch") + 1] = "2"
        p = run(["train"] + base + words, work)
        err = p.stderr.strip()
        if expect == "runs":
            # (resuming the finished one-epoch run of the --save row says so and prints its results)
            ok = p.returncode == 0 and ("final test accuracy" in p.stdout or "is already finished" in p.stdout)
        elif expect == "ignored":
            ok = p.returncode == 0 and "is ignored:" in err and len(err.splitlines()) == 1
        else:
            ok = p.returncode == 2 and len(err.splitlines()) == 1 and \
                ("not available" in err or "needs dynamic sparse training" in err)
        check(f"table row {flag}: `{command}` {expect}", ok, f"exit {p.returncode}: {err[-300:]}")
    p = run(["train"] + base + ["--de", "0.5"], work)
    check("an ambiguous prefix is refused naming the candidates",
          p.returncode == 2 and "--density" in p.stderr and "--detect-anomaly" in p.stderr, p.stderr.strip())

    # ---- --protocol reference ----
    logs = {}
    for data in ("cifar100", "cifar10"):
        for protocol in ("sound", "reference"):
            log = os.path.join(work, f"{data}-{protocol}.jsonl")
            p = run(["train"] + base + ["--data", data, "--epochs", "2", "--protocol", protocol, "--log", log], work)
            check(f"{data} --protocol {protocol} runs", p.returncode == 0, p.stderr.strip()[-300:])
            logs[(data, protocol)] = ([json.loads(l) for l in open(log)] if p.returncode == 0 else [], p.stdout)
    lines, out = logs[("cifar100", "reference")]
    check("CIFAR-100 reference: trains on all 60 images, validates on the 20 test images",
          "60 train / 20 val / 20 test images" in out, out[:300])
    check("CIFAR-100 reference: the model is selected on the test set (val acc = test acc every epoch)",
          len(lines) == 2 and all(l["val_acc"] == l["test_acc"] for l in lines))
    check("CIFAR-100 sound: held-out split", "54 train / 6 val / 20 test images" in logs[("cifar100", "sound")][1])
    sound, ref = logs[("cifar10", "sound")][0], logs[("cifar10", "reference")][0]
    check("CIFAR-10 reference: says its validation images are augmented",
          "protocol reference: validation images augmented" in logs[("cifar10", "reference")][1])
    check("CIFAR-10 reference: same training and test as sound (only validation differs)",
          len(sound) == len(ref) == 2 and all(a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
                                              for a, b in zip(sound, ref)))

    # --protocol reference resumes exactly (the augmented validation draws depend on the epoch only)
    straight, part = os.path.join(work, "straight.safetensors"), os.path.join(work, "part.safetensors")
    ref = base + ["--data", "cifar10", "--epochs", "3", "--protocol", "reference", "--max-batches", "2"]
    p1 = run(["train"] + ref + ["--save", straight, "--log", "straight.jsonl"], work)
    p2 = run(["train"] + ref + ["--save", part, "--log", "part.jsonl", "--stop-after", "1"], work)
    p3 = run(["train", "--resume", part, "--save", part, "--log", "part.jsonl", "--plain", "--threads", "1"], work)
    if p1.returncode == p2.returncode == p3.returncode == 0:
        ta, tb = lc.read_safetensors(straight)[0], lc.read_safetensors(part)[0]
        la = [json.loads(l)["val_acc"] for l in open(os.path.join(work, "straight.jsonl"))]
        lb = [json.loads(l)["val_acc"] for l in open(os.path.join(work, "part.jsonl"))]
        same = ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta) and la == lb
    else:
        same = False
    check("--protocol reference: 3 epochs = 1 + resume + 2 (weights and validation accuracies identical)", same,
          (p1.stderr + p2.stderr + p3.stderr)[-300:])

    # ---- --iters ----
    p = run(["train"] + base + ["--iters", "3", "--seed", "5", "--save", "it.safetensors", "--quiet"], work)
    m = re.search(r"over 3 runs \(seeds 5\.\.7\)", p.stdout)
    check("--iters 3: runs seeds 5..7 and reports mean and spread",
          p.returncode == 0 and m and "mean" in p.stdout and "std" in p.stdout and
          all(os.path.exists(os.path.join(work, f"it-seed{s}.safetensors")) for s in (5, 6, 7)),
          p.stdout[-400:] + p.stderr[-200:])
    if p.returncode == 0:
        seeds = [lc.read_safetensors(os.path.join(work, f"it-seed{s}.safetensors"))[1]["seed"] for s in (5, 6, 7)]
        check("--iters: each run's checkpoint has its own seed", seeds == ["5", "6", "7"], str(seeds))

    p = run(["train"] + base + ["--iters", "2", "--run-dir", "rd", "--quiet"], work)
    check("--iters 2 --run-dir: one run folder per seed",
          p.returncode == 0 and all(os.path.exists(os.path.join(work, "rd", f"seed{s}", f))
                                    for s in (17, 18) for f in ("checkpoint.safetensors", "log.jsonl")),
          p.stderr.strip()[-300:])

    # ---- --log-interval ----
    p = run(["train"] + base + ["--max-batches", "4", "--log-interval", "2"], work)
    lines = [l for l in p.stdout.splitlines() if l.startswith("Train Epoch: 1 [")]
    check("--log-interval 2: the reference's line for batches 0 and 2 of 4", p.returncode == 0 and len(lines) == 2
          and lines[1].startswith("Train Epoch: 1 [16/") and "Accuracy:" in lines[1], "\n".join(lines))

    # ---- --max-threads: identical batches ----
    a, b = os.path.join(work, "t1.safetensors"), os.path.join(work, "t4.safetensors")
    p1 = run(["train"] + base + ["--max-batches", "3", "--max-threads", "1", "--save", a, "--seed", "9"], work)
    p4 = run(["train"] + base + ["--max-batches", "3", "--max-threads", "4", "--save", b, "--seed", "9"], work)
    if p1.returncode == 0 and p4.returncode == 0:
        ta, tb = lc.read_safetensors(a)[0], lc.read_safetensors(b)[0]
        same = ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)
    else:
        same = False
    check("--max-threads 4 trains bit-identically to --max-threads 1", same, p1.stderr[-200:] + p4.stderr[-200:])

    # ---- a checkpoint from before "protocol" existed resumes ----
    old = os.path.join(work, "old.safetensors")
    p = run(["train"] + base + ["--epochs", "2", "--stop-after", "1", "--save", old], work)
    if p.returncode == 0:
        tensors, meta = lc.read_safetensors(old)
        args = json.loads(meta["args"])
        had = args.pop("protocol", None)
        meta["args"] = json.dumps(args)
        lc.write_safetensors(old, tensors, meta)
        p = run(["train", "--resume", old, "--save", old, "--plain"], work)
        resumed = json.loads(lc.read_safetensors(old)[1]["args"])
        check("a checkpoint without 'protocol' in its args resumes (as sound)",
              had == "sound" and p.returncode == 0 and resumed.get("protocol") == "sound", p.stderr.strip()[-300:])
    else:
        check("a checkpoint to resume", False, p.stderr.strip())

    shutil.rmtree(work, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
