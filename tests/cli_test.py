"""End-to-end tests of the `sparsetrain` command on small generated data.

* train -> checkpoint -> eval, and the same checkpoint loaded into PyTorch by
  tools/load_checkpoint.py gives the same test accuracy;
* exact resume: N epochs straight == N/2 + resume + N/2 (--stop-after), and
  == a run interrupted by SIGINT mid-epoch (sent after the first epoch's line,
  the test fails if the run finished first) then resumed (bit-identical);
* the JSON-lines log has one object per epoch with the documented keys;
* bad input: unknown flag/model, bad density, missing/truncated/corrupt data
  and checkpoint files give one clear message, a non-zero exit, no crash and
  no partial file.
"""
import gzip
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, SRC, check, finish  # noqa: E402
import load_checkpoint as lc  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")


def write_idx(path, array, gz):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if gz:
        with gzip.open(path + ".gz", "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


def make_mnist_like(folder, n_train=640, n_test=200, seed=0):
    """Learnable synthetic data: each class is a noisy fixed 28x28 pattern."""
    rng = np.random.RandomState(seed)
    protos = rng.randint(0, 256, size=(10, 28, 28))
    def sample(n):
        y = rng.randint(0, 10, size=n)
        x = np.clip(protos[y] * 0.6 + rng.randint(0, 100, size=(n, 28, 28)), 0, 255)
        return x, y
    os.makedirs(folder, exist_ok=True)
    x, y = sample(n_train)
    write_idx(os.path.join(folder, "train-images-idx3-ubyte"), x, gz=True)
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte"), y, gz=True)
    x, y = sample(n_test)
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte"), x, gz=False)
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), y, gz=False)


def run(args, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, **kw)


def tensors_equal(a, b, prefix=""):
    ta, _ = lc.read_safetensors(a)
    tb, _ = lc.read_safetensors(b)
    keys = [k for k in ta if k.startswith(prefix)]
    diff = [k for k in keys if k not in tb or not np.array_equal(ta[k], tb[k])]
    return len(keys) > 0 and not diff, diff[:3]


tmp = tempfile.mkdtemp(prefix="sparsetrain-cli-")
data = os.path.join(tmp, "data")
make_mnist_like(data)
common = ["train", "--data", "mnist", "--datadir", data, "--model", "cifar_resnet_8_4", "--batch-size", "32",
          "--threads", "2", "--sparse", "--fix", "--sparse_init", "uniform", "--density", "0.5", "--lr", "0.05",
          "--plain"]

# --- train, eval, load into PyTorch -------------------------------------------------------
ck = os.path.join(tmp, "a.safetensors")
log = os.path.join(tmp, "a.jsonl")
r = run(common + ["--epochs", "4", "--save", ck, "--log", log])
check("train exits 0", r.returncode == 0, r.stderr.strip()[-300:])
check("train prints the final test accuracy", "final test accuracy" in r.stdout)
lines = [json.loads(l) for l in open(log)] if os.path.exists(log) else []
keys = {"epoch", "lr", "train_loss", "train_acc", "val_acc", "test_acc", "images_per_s", "seconds"}
check("log has one JSON object per epoch with the documented keys",
      len(lines) == 4 and all(keys <= set(l) for l in lines), str(lines[:1]))
check("learning rate steps x0.1 at 50% and 75%", [l["lr"] for l in lines] == [0.05, 0.05, 0.005, 0.0005] if lines
      else False, str([l["lr"] for l in lines]))
check("training learns the synthetic task", lines and lines[-1]["test_acc"] > 0.5, str(lines[-1:]))
r = run(["eval", "--checkpoint", ck, "--datadir", data, "--last"])
check("eval of the last weights exits 0", r.returncode == 0, r.stderr.strip())
acc_c = float(r.stdout.split("test accuracy:")[1].split("%")[0]) / 100 if r.returncode == 0 else -1
check("eval reports the logged last-epoch test accuracy", lines and abs(acc_c - lines[-1]["test_acc"]) < 1e-9,
      f"{acc_c} vs {lines[-1]['test_acc'] if lines else None}")
loaded = subprocess.run([sys.executable, os.path.join(SRC, "tools", "load_checkpoint.py"), ck,
                         "--idx-images", os.path.join(data, "t10k-images-idx3-ubyte"),
                         "--idx-labels", os.path.join(data, "t10k-labels-idx1-ubyte")],
                        capture_output=True, text=True)
acc_py = float(loaded.stdout.split("accuracy:")[1].split()[0]) if loaded.returncode == 0 else -1
check("load_checkpoint.py loads it into PyTorch with the same accuracy",
      loaded.returncode == 0 and acc_c >= 0 and abs(acc_py - acc_c) <= 1 / 200 + 1e-9,
      f"torch {acc_py} vs C {acc_c}; {loaded.stderr.strip()[-200:]}")
ckpt = lc.load_checkpoint(ck)
check("checkpoint masks are exact (no weight at a masked position)", ckpt.masked_nonzero == 0)
r = run(["eval", "--checkpoint", ck, "--datadir", data])
check("eval uses the best-on-validation weights by default", r.returncode == 0 and "test accuracy" in r.stdout)

# --- exact resume ----------------------------------------------------------------------------
half = os.path.join(tmp, "half.safetensors")
r1 = run(common + ["--epochs", "4", "--save", half, "--stop-after", "2"])
r2 = run(["train", "--resume", half, "--save", half, "--threads", "2", "--plain"])
ok, diff = tensors_equal(ck, half)
check("4 epochs == 2 + resume + 2 (bit-identical checkpoint tensors)", r1.returncode == 0 and r2.returncode == 0 and ok,
      f"{diff} {r1.stderr[-200:]} {r2.stderr[-200:]}")

# A real interrupt: SIGINT once the first epoch's line is printed (stdout is
# flushed per epoch), i.e. with 5 of 6 epochs (200 batches) still to run;
# the run must stop mid-epoch (exit 130, "interrupted at epoch E, batch B" with
# B < 40), and the resumed run must equal the uninterrupted one bit for bit.
# Adam, so that its step counter (bias correction) must survive the resume too.
# A run that finishes before the signal fails the test.
inter = common + ["--epochs", "6", "--batch-size", "16", "--optimizer", "adam", "--lr", "0.002"]
straight = os.path.join(tmp, "straight.safetensors")
r = run(inter + ["--save", straight])
check("uninterrupted 6-epoch Adam run exits 0", r.returncode == 0, r.stderr.strip()[-300:])
batches_per_epoch = 640 // 16
for attempt in range(3):
    sig = os.path.join(tmp, "sig.safetensors")
    if os.path.exists(sig):
        os.remove(sig)
    with open(os.path.join(tmp, "sig.err"), "w+") as err_file:
        p = subprocess.Popen([BIN] + inter + ["--save", sig], stdout=subprocess.PIPE, stderr=err_file, text=True)
        first = ""
        for line in p.stdout:
            if line.startswith("epoch 1/6 "):
                first = line
                p.send_signal(signal.SIGINT)
                break
        rest = p.stdout.read()
        p.wait(timeout=300)
        err_file.seek(0)
        err = err_file.read()
    m = re.search(r"interrupted at epoch (\d+), batch (\d+)", err)
    where = (int(m.group(1)), int(m.group(2))) if m else None
    if p.returncode == 130 and where and where[1] == batches_per_epoch:
        print(f"   (signal landed on the last batch of epoch {where[0]}; retrying for a mid-epoch stop)")
        continue
    break
check("SIGINT after epoch 1: the run had not finished (signal sent while it ran)", bool(first) and
      p.returncode != 0 and "final test accuracy" not in rest, f"exit {p.returncode}; first line {first.strip()!r}")
check("SIGINT: exit 130, interrupted mid-epoch (after epoch 1), checkpoint saved, resume command printed",
      p.returncode == 130 and where is not None and where[0] >= 2 and 1 <= where[1] < batches_per_epoch and
      "resume with" in err and os.path.exists(sig), f"exit {p.returncode}, at {where}: {err.strip()[-300:]}")
if p.returncode == 130:
    r = run(["train", "--resume", sig, "--save", sig, "--threads", "2", "--plain"])
    ok, diff = tensors_equal(straight, sig)
    check("interrupted mid-epoch + resume == uninterrupted run (bit-identical tensors, Adam state included)",
          r.returncode == 0 and ok, f"{diff} {r.stderr[-300:]}")

# --- --isa caps the sparse kernels' instruction set -------------------------------------------
# bench reports the kernels it ran; a 1-epoch sparse run gives the same weights with every cap
# (1e-4: FMA vs separate multiply-add rounding, ~1e-7 per step, over 20 steps).
auto_isa = None
for isa in ("generic", "avx2", "avx512", "auto"):
    r = run(["bench", "--model", "lenet300-100", "--sparse_init", "uniform", "--density", "0.1", "--execution",
             "sparse", "--isa", isa, "--warmup", "0", "--steps", "1", "--batch-size", "8", "--channels", "1",
             "--size", "28", "--threads", "1", "--json"])
    got = json.loads(r.stdout)["isa"] if r.returncode == 0 else None
    if isa == "auto":
        auto_isa = got
    elif got != isa:
        # a cap above what the CPU has falls back (bench names what ran); below it must be honoured
        check(f"--isa {isa}: bench runs the capped kernels", isa == "avx512" and got in ("avx2", "generic"),
              f"ran {got}: {r.stderr.strip()[-200:]}")
    else:
        check(f"--isa {isa}: bench runs the capped kernels", True)
# bench --json: the FMA peak measured by the run, and each conv / linear pass's GFLOP/s and share of it
r = run(["bench", "--model", "lenet5", "--sparse_init", "uniform", "--density", "0.2", "--execution", "sparse",
         "--warmup", "1", "--steps", "2", "--batch-size", "16", "--channels", "1", "--size", "28", "--threads", "2",
         "--json"])
res = json.loads(r.stdout) if r.returncode == 0 else {}
peak = res.get("fma_peak", {})
check("bench --json: the FMA peak of this machine, for the kernels' instruction set",
      peak.get("gflops", 0) > 0 and peak.get("threads") == 2 and peak.get("isa") == res.get("isa") and
      abs(peak["per_thread"] * 2 - peak["gflops"]) < 1e-2 * peak["gflops"] and
      abs(res["useful_fraction_of_peak"] - res["train_step"]["useful_gflops"] / peak["gflops"]) < 1e-3,
      f"{peak} {r.stderr.strip()[-200:]}")
weighted = [l for l in res.get("layers", []) if l["numel"] > 0]  # lenet5: conv1, conv2, fc1, fc2
def pass_ok(layer, index):
    p = layer.get("passes", {})
    f, d, w = p.get("forward"), p.get("input_gradient"), p.get("weight_gradient")
    if not f or not w or (d is None) != (index == 0):  # the first layer's input gradient is not computed
        return False
    ok = abs(f["ms"] - layer["forward_ms"]) < 1e-3 and f["gflops"] > 0 and w["gflops"] > 0
    ok = ok and w["ms"] + (d["ms"] if d else 0) <= layer["backward_ms"] + 1e-3
    for q in (f, w) + ((d,) if d else ()):
        ok = ok and abs(q["fraction_of_peak"] - q["gflops"] / peak["gflops"]) < 1e-3
    if layer["kind"] == "linear":  # one output pixel: a pass is 2 * kept * batch FLOPs
        ok = ok and abs(w["gflops"] * w["ms"] * 1e6 - 2 * layer["kept"] * 16) < 2e-2 * 2 * layer["kept"] * 16
    return ok
check("bench --json: forward, input- and weight-gradient GFLOP/s and fraction of peak of every conv / linear layer",
      len(weighted) == 4 and all(pass_ok(l, i) for i, l in enumerate(weighted)), json.dumps(weighted)[:600])

isa_runs = {}
for isa in ("generic", "auto"):
    path = os.path.join(tmp, f"isa-{isa}.safetensors")
    r = run(common + ["--model", "lenet300-100", "--execution", "sparse", "--epochs", "1", "--isa", isa,
                      "--save", path, "--quiet"])
    check(f"train --isa {isa} exits 0", r.returncode == 0, r.stderr.strip()[-300:])
    isa_runs[isa] = lc.read_safetensors(path)[0] if r.returncode == 0 else {}
if all(isa_runs.values()):
    a, b = isa_runs["generic"], isa_runs["auto"]
    worst = max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-3)) for k in b if b[k].dtype == np.float32)
    check(f"train --isa generic == --isa auto ({auto_isa}) within float rounding", worst <= 1e-4, f"{worst:.1e}")
expect_error_isa = run(["train", "--isa", "sse9"])
check("--isa sse9: exit 2 naming it", expect_error_isa.returncode == 2 and "sse9" in expect_error_isa.stderr,
      expect_error_isa.stderr.strip())

# --- bad input --------------------------------------------------------------------------------
def expect_error(name, args, needle, code=None):
    before = set(os.listdir(tmp))
    r = run(args)
    after = set(os.listdir(tmp))
    msg = r.stderr.strip()
    ok = r.returncode != 0 and r.returncode < 128 and needle.lower() in msg.lower() and len(msg.splitlines()) <= 2
    if code is not None:
        ok = ok and r.returncode == code
    ok = ok and not any(".tmp." in f for f in after - before)
    check(f"bad input: {name}", ok, f"exit {r.returncode}: {msg[:200]}")


expect_error("unknown flag", ["train", "--bogus", "1"], "--bogus", 2)
expect_error("flag without value", ["train", "--lr"], "--lr", 2)
expect_error("non-numeric value", ["train", "--lr", "fast"], "--lr", 2)
expect_error("unknown model", common + ["--model", "resnet_99"], "resnet_99", 2)
expect_error("invalid resnet depth", common + ["--model", "cifar_resnet_21"], "cifar_resnet_21", 2)
expect_error("density 0", common + ["--density", "0"], "--density", 2)
expect_error("density > 1", common + ["--density", "1.5"], "--density", 2)
expect_error("unknown sparse_init", common + ["--sparse_init", "magic"], "magic", 2)
expect_error("unknown data set", common + ["--data", "imagenet2"], "imagenet2", 2)
expect_error("missing data folder", common + ["--datadir", os.path.join(tmp, "nope")], "nope")
bad = os.path.join(tmp, "bad")
make_mnist_like(bad, 64, 32)
with open(os.path.join(bad, "t10k-images-idx3-ubyte"), "r+b") as f:
    f.truncate(1000)
expect_error("truncated data file", common + ["--datadir", bad, "--epochs", "1"], "t10k-images-idx3-ubyte")
with open(os.path.join(bad, "t10k-images-idx3-ubyte"), "wb") as f:
    f.write(b"\x00\x00\x09\x03" + b"\x00" * 100)
expect_error("corrupt data file (bad magic)", common + ["--datadir", bad, "--epochs", "1"], "t10k-images-idx3-ubyte")
with open(ck, "rb") as f:
    blob = f.read()
trunc = os.path.join(tmp, "trunc.safetensors")
with open(trunc, "wb") as f:
    f.write(blob[: len(blob) // 2])
expect_error("truncated checkpoint (eval)", ["eval", "--checkpoint", trunc, "--datadir", data], "trunc.safetensors")
expect_error("truncated checkpoint (resume)", ["train", "--resume", trunc], "trunc.safetensors")
corrupt = os.path.join(tmp, "corrupt.safetensors")
with open(corrupt, "wb") as f:
    f.write(blob[:8] + b"#" * 40 + blob[48:])
expect_error("corrupt checkpoint header", ["eval", "--checkpoint", corrupt, "--datadir", data], "corrupt.safetensors")
expect_error("missing checkpoint", ["eval", "--checkpoint", os.path.join(tmp, "none.safetensors")], "none.safetensors")
ro = os.path.join(tmp, "no-such-dir", "x.safetensors")
expect_error("unwritable checkpoint path", common + ["--epochs", "1", "--save", ro], "no-such-dir")
expect_error("NaN loss", common + ["--epochs", "1", "--lr", "1e30"], "NaN")

finish()
