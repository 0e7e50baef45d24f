"""What `train --resume` does with the flags given next to it (issue 12: they
used to be silently replaced by the checkpoint's values), on tiny generated data:

* --epochs extends a run (it trains on to the new count; the checkpoint and
  its stored arguments record it), --datadir points a run at data that moved;
* a run-defining flag that differs from the checkpoint's is refused (exit 2,
  naming the flag and the checkpoint's value); the same value is accepted;
* resuming a finished run says so, prints its results and trains nothing;
* the log of a resumed run is appended to, each line carrying the run id.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, write_idx_dataset  # noqa: E402
import load_checkpoint as lc  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")
tmp = tempfile.mkdtemp(prefix="sparsetrain-resume-")
data = write_idx_dataset(os.path.join(tmp, "data"), n_train=64, n_test=32)
common = ["train", "--data", "mnist", "--datadir", data, "--model", "lenet5", "--batch-size", "16", "--threads", "2",
          "--plain", "--quiet"]


def run(args):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=300)


ck = os.path.join(tmp, "run.safetensors")
log = os.path.join(tmp, "run.jsonl")
r = run(common + ["--epochs", "2", "--save", ck, "--log", log])
check("a 2-epoch run", r.returncode == 0, r.stderr.strip())
run_id = lc.read_safetensors(ck)[1].get("run_id")

r = run(["train", "--resume", ck, "--save", ck, "--plain", "--quiet"])
check("resuming a finished run: exit 0, says it is finished, prints its results, trains nothing",
      r.returncode == 0 and "already finished (2 of 2 epochs)" in r.stdout and "best validation epoch" in r.stdout and
      "0.00%" not in r.stdout.split("test acc")[0] and lc.read_safetensors(ck)[1].get("epoch") == "2",
      r.stdout.strip() + r.stderr.strip())

moved = os.path.join(tmp, "moved")
shutil.move(data, moved)
r = run(["train", "--resume", ck, "--save", ck, "--log", log, "--epochs", "3", "--datadir", moved, "--plain",
         "--quiet"])
meta = lc.read_safetensors(ck)[1]
check("--epochs 3 extends the run and --datadir finds the moved data",
      r.returncode == 0 and meta.get("epoch") == "3" and json.loads(meta["args"])["epochs"] == 3 and
      json.loads(meta["args"])["datadir"] == moved, r.stderr.strip())
lines = [json.loads(line) for line in open(log)]
check("the resumed run appended one line to its log, every line with the run id",
      [line["epoch"] for line in lines] == [1, 2, 3] and all(line.get("run_id") == run_id for line in lines),
      str([(line["epoch"], line.get("run_id")) for line in lines]))

r = run(["train", "--resume", ck, "--save", ck, "--datadir", moved, "--epochs", "4", "--seed", "17", "--model",
         "lenet5", "--plain", "--quiet", "--stop-after", "1"])
check("flags equal to the checkpoint's are accepted", r.returncode == 0, r.stderr.strip())
for flag, value, theirs in (("--seed", "18", "seed 17"), ("--optimizer", "adam", "optimizer sgd"),
                            ("--batch-size", "8", "batch-size 16"), ("--density", "5", "density 0.05")):
    before = open(ck, "rb").read()
    r = run(["train", "--resume", ck, "--save", ck, "--datadir", moved, flag, value, "--plain", "--quiet"])
    msg = r.stderr.strip()
    check(f"{flag} {value} differs from the checkpoint's: refused (exit 2) naming the flag and its value there, "
          "checkpoint untouched",
          r.returncode == 2 and len(msg.splitlines()) == 1 and f"{flag} {value} differs" in msg and theirs in msg and
          open(ck, "rb").read() == before, msg)

r = run(common + ["--epochs", "1", "--log", log])
check("a fresh run does not take over the log of another run (exit 2, --force named)",
      r.returncode == 2 and "log of another run" in r.stderr and "--force" in r.stderr and
      len(open(log).readlines()) == 3, r.stderr.strip())

# interrupted after the last step of an epoch, before its evaluation: batch_in_epoch == the epoch's batches
mid = os.path.join(tmp, "mid.safetensors")
r = run(common[:4] + [moved] + common[5:] + ["--epochs", "3", "--stop-after", "1", "--save", mid])
tensors, meta = lc.read_safetensors(mid)
meta = dict(meta, batch_in_epoch="4", epoch_seen="58", epoch_correct="5", epoch_loss_sum="130", step="8")
with open(mid, "wb") as f:
    f.write(lc.serialize_safetensors(tensors, meta))
r = run(["train", "--resume", mid, "--save", mid, "--plain", "--quiet", "--stop-after", "1"])
check("a checkpoint saved after an epoch's last step (batch_in_epoch = batches per epoch) resumes: it evaluates "
      "that epoch and goes on", r.returncode == 0 and lc.read_safetensors(mid)[1].get("epoch") == "2", r.stderr.strip())

shutil.rmtree(tmp, ignore_errors=True)
finish()
