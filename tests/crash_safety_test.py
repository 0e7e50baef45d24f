"""Crash safety of `sparsetrain train` (issue: hardening), on tiny generated data.

* a second SIGINT/SIGTERM exits at once (130) and the last checkpoint stays a
  valid, loadable file with no temporary file left behind;
* a full disk (a small tmpfs when running as root, else RLIMIT_FSIZE) and an
  unwritable folder (a read-only remount as root, else chmod) fail the save
  with a clear message (the path and the errno text), exit 1, and keep the
  previous checkpoint byte for byte;
* --save refuses a checkpoint of another run or a non-checkpoint file (exit 2)
  unless --force; --resume carries the run id over;
* a NaN/Inf stops the run naming the step and the tensor, with a hint, and
  keeps the last good checkpoint (also with --detect-anomaly).
"""
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, write_idx_dataset  # noqa: E402
import load_checkpoint as lc  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")
tmp = tempfile.mkdtemp(prefix="sparsetrain-crash-")
os.chmod(tmp, 0o755)
data = write_idx_dataset(os.path.join(tmp, "data"), n_train=96, n_test=32)
common = ["train", "--data", "mnist", "--datadir", data, "--model", "lenet5", "--batch-size", "16", "--threads", "2",
          "--plain", "--quiet"]


def run(args, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=300, **kw)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def valid_checkpoint(path):
    try:
        _, meta = lc.read_safetensors(path)
        return meta.get("format") == "sparsetrain-checkpoint-1"
    except Exception as e:  # noqa: BLE001 - any failure means "not valid"
        print("   ", path, e)
        return False


def temp_files(folder):
    return [f for f in os.listdir(folder) if ".tmp." in f]


def one_line_error(r, code, *needles):
    msg = r.stderr.strip()
    return (r.returncode == code and len(msg.splitlines()) == 1 and
            all(n.lower() in msg.lower() for n in needles))


# --- a second signal exits at once; the checkpoint stays valid -------------------------------
for trial, (sig, delay) in enumerate([(signal.SIGINT, 0.0), (signal.SIGTERM, 0.02), (signal.SIGINT, 0.1)]):
    ck = os.path.join(tmp, f"sig{trial}.safetensors")
    p = subprocess.Popen([BIN] + common + ["--epochs", "1000", "--save", ck], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.exists(ck) and time.time() < deadline and p.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    p.send_signal(sig)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    check(f"double {sig.name} (trial {trial}): exit 130 at once", p.returncode == 130,
          f"exit {p.returncode}: {err.strip()[-300:]}")
    check(f"double {sig.name} (trial {trial}): the last checkpoint is a valid checkpoint, no temporary file",
          valid_checkpoint(ck) and not temp_files(tmp), str(temp_files(tmp)))
r = run(["eval", "--checkpoint", os.path.join(tmp, "sig0.safetensors"), "--datadir", data])
check("the checkpoint left by a double signal evaluates", r.returncode == 0, r.stderr.strip())

# one signal: finish the step, save, print the resume command
ck = os.path.join(tmp, "term.safetensors")
p = subprocess.Popen([BIN] + common + ["--epochs", "1000", "--save", ck], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
while not os.path.exists(ck) and p.poll() is None:
    time.sleep(0.01)
p.send_signal(signal.SIGTERM)
out, err = p.communicate(timeout=120)
check("one SIGTERM: exit 130, checkpoint saved, resume command printed",
      p.returncode == 130 and "resume with: sparsetrain train --resume " + ck in err and valid_checkpoint(ck),
      err.strip()[-300:])


# --- full disk ------------------------------------------------------------------------------------
def can_mount():
    if os.geteuid() != 0:
        return False
    probe = os.path.join(tmp, "probe")
    os.makedirs(probe, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", probe])
    return ok


mounted = can_mount()
disk = os.path.join(tmp, "disk")
os.makedirs(disk)
first = run(common + ["--epochs", "1", "--save", os.path.join(tmp, "size.safetensors")])
size = os.path.getsize(os.path.join(tmp, "size.safetensors")) if first.returncode == 0 else 1 << 20
if mounted:
    # room for one checkpoint and a half: the second save runs out of space
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size * 3 // 2 + 8192}", "tmpfs", disk], check=True)
    os.chmod(disk, 0o755)
    print("   (full disk: a small tmpfs)")
try:
    ck = os.path.join(disk, "run.safetensors")
    r = run(common + ["--epochs", "2", "--stop-after", "1", "--save", ck])
    check("full disk: the first checkpoint fits", r.returncode == 0 and valid_checkpoint(ck), r.stderr.strip())
    before = read(ck) if os.path.exists(ck) else b""
    preexec = None
    if not mounted:
        print("   (full disk simulated with RLIMIT_FSIZE: writes past the limit fail with EFBIG)")

        def preexec():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))
    r = run(["train", "--resume", ck, "--save", ck, "--plain", "--quiet"], preexec_fn=preexec)
    expected = "No space left on device" if mounted else "File too large"
    check("full disk: the save fails with one clear message naming the file and the cause",
          one_line_error(r, 1, ck, expected), f"exit {r.returncode}: {r.stderr.strip()}")
    check("full disk: the previous checkpoint is kept byte for byte, no temporary file left",
          os.path.exists(ck) and read(ck) == before and not temp_files(disk), str(temp_files(disk)))
finally:
    if mounted:
        subprocess.run(["umount", disk])

# --- unwritable folder ------------------------------------------------------------------------------
def make_unwritable(folder):
    """Read-only remount of a tmpfs as root (root ignores permissions), chmod otherwise."""
    if mounted:
        return subprocess.run(["mount", "-o", "remount,ro", folder], capture_output=True).returncode == 0
    if os.geteuid() == 0:
        return False
    os.chmod(folder, 0o555)
    return True


def make_writable(folder):
    if mounted:
        subprocess.run(["mount", "-o", "remount,rw", folder], capture_output=True)
    else:
        os.chmod(folder, 0o755)


ro = os.path.join(tmp, "ro")
os.makedirs(ro)
if mounted:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", ro], check=True)
    os.chmod(ro, 0o755)
cause = "Read-only file system" if mounted else "Permission denied"
try:
    ck = os.path.join(ro, "run.safetensors")
    r = run(common + ["--epochs", "3", "--stop-after", "1", "--save", ck])
    check("unwritable folder: the first checkpoint is written", r.returncode == 0 and valid_checkpoint(ck),
          r.stderr.strip())
    before = read(ck) if os.path.exists(ck) else b""
    if make_unwritable(ro):
        r = run(["train", "--resume", ck, "--save", ck, "--plain", "--quiet"])
        check("unwritable folder: resume refuses at once with a clear message, exit 1",
              one_line_error(r, 1, ck, "not writable"), f"exit {r.returncode}: {r.stderr.strip()}")
        check("unwritable folder: the checkpoint is kept byte for byte", read(ck) == before)
        make_writable(ro)
        # The folder turns read-only while the run is going: the next save fails.
        ck2 = os.path.join(ro, "mid.safetensors")
        p = subprocess.Popen([BIN] + common + ["--epochs", "1000", "--save", ck2], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        while not os.path.exists(ck2) and p.poll() is None:
            time.sleep(0.01)
        made = make_unwritable(ro)
        out, err = p.communicate(timeout=300)
        check("folder made unwritable mid-run: the next save fails naming the file and the cause, exit 1",
              made and p.returncode == 1 and ck2 in err and cause in err and len(err.strip().splitlines()) == 1,
              f"exit {p.returncode}: {err.strip()}")
        check("folder made unwritable mid-run: the last checkpoint is valid, no temporary file",
              valid_checkpoint(ck2) and not temp_files(ro))
        make_writable(ro)
    else:
        print("   (running as root without mount: the unwritable-folder checks are skipped)")
finally:
    if mounted:
        subprocess.run(["umount", ro])

# --- --save never overwrites another run's checkpoint without --force ----------------------------
a = os.path.join(tmp, "a.safetensors")
r = run(common + ["--epochs", "4", "--stop-after", "1", "--save", a])
before = read(a)
_, meta = lc.read_safetensors(a)
run_id = meta.get("run_id", "")
check("a checkpoint records a 32-hex-digit run id", len(run_id) == 32 and all(c in "0123456789abcdef" for c in run_id),
      run_id)
r = run(common + ["--epochs", "2", "--save", a])
check("--save onto another run's checkpoint: refused, exit 2, message names the file, its run and --force",
      one_line_error(r, 2, a, "another run", run_id, "--force", "--resume"), r.stderr.strip())
check("... and the file is untouched", read(a) == before)
r = run(["train", "--resume", a, "--save", a, "--stop-after", "1", "--plain", "--quiet"])
_, meta2 = lc.read_safetensors(a)
check("--resume carries the run id over (same file)",
      r.returncode == 0 and meta2.get("run_id") == run_id and meta2.get("epoch") == "2",
      r.stderr.strip())
b = os.path.join(tmp, "b.safetensors")
with open(b, "wb") as f:
    f.write(read(a))
os.remove(a)
r = run(["train", "--resume", b, "--save", a, "--stop-after", "1", "--plain", "--quiet"])
check("--resume into another path keeps the run id", r.returncode == 0 and lc.read_safetensors(a)[1].get("run_id") == run_id,
      r.stderr.strip())
r = run(["train", "--resume", b, "--save", a, "--plain", "--quiet"])
check("a resumed copy of the same run may overwrite its own checkpoint", r.returncode == 0, r.stderr.strip())
r = run(common + ["--epochs", "1", "--save", a, "--force"])
check("--force overwrites it with a new run (new run id)",
      r.returncode == 0 and lc.read_safetensors(a)[1].get("run_id") not in ("", run_id), r.stderr.strip())
notes = os.path.join(tmp, "notes.txt")
with open(notes, "w") as f:
    f.write("my notes\n")
r = run(common + ["--epochs", "1", "--save", notes])
check("--save onto a file that is not a checkpoint: refused, exit 2, file untouched",
      one_line_error(r, 2, notes, "not a sparsetrain checkpoint", "--force") and read(notes) == b"my notes\n",
      r.stderr.strip())
r = run(common + ["--epochs", "1", "--save", tmp])
check("--save naming a folder: refused, exit 2", one_line_error(r, 2, "folder"), r.stderr.strip())

# --- numerical faults keep the last good checkpoint -----------------------------------------------
good = os.path.join(tmp, "good.safetensors")
r = run(common + ["--epochs", "3", "--stop-after", "1", "--save", good])
tensors, meta = lc.read_safetensors(good)
tensors["fc4.weight"] = np.full_like(tensors["fc4.weight"], 1e38)  # finite, overflows the logits
with open(good, "wb") as f:
    f.write(lc.serialize_safetensors(tensors, meta))
before = read(good)
r = run(["train", "--resume", good, "--save", good, "--plain", "--quiet"])
check("NaN loss after resume: exit 1, names the step, the largest weight and the --lr hint",
      one_line_error(r, 1, "step 7 ", "training loss", "fc4.weight", "--lr", good + " is kept"), r.stderr.strip())
check("... and the last good checkpoint is untouched", read(good) == before)
r = run(["train", "--resume", good, "--save", good, "--plain", "--quiet", "--detect-anomaly"])
check("--detect-anomaly names the first layer whose output overflows (the last linear) and the overflowing weight",
      one_line_error(r, 1, "step 7 ", "first goes non-finite at layer", "linear fc4.weight", "|w| = 1e+38"),
      r.stderr.strip())
fresh = os.path.join(tmp, "fresh.safetensors")
r = run(common + ["--epochs", "1", "--lr", "1e30", "--save", fresh])
check("NaN in a fresh run: exit 1, nothing written", one_line_error(r, 1, "step ", "no checkpoint of this run") and
      not os.path.exists(fresh), r.stderr.strip())
r = run(common + ["--epochs", "1", "--detect-anomaly"])
check("--detect-anomaly on a healthy run changes nothing", r.returncode == 0, r.stderr.strip())

# --- a running run holds its --save path and --run-dir (issue 12) ----------------------------------
def start_long(args):
    """A run that keeps going until signalled; returns once its first checkpoint exists."""
    p = subprocess.Popen([BIN] + common + ["--epochs", "100000"] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    return p


held = os.path.join(tmp, "held.safetensors")
p = start_long(["--save", held])
deadline = time.time() + 120
while not os.path.exists(held) and time.time() < deadline and p.poll() is None:
    time.sleep(0.01)
r = run(common + ["--epochs", "1", "--save", held])
check("a second run on the --save path of a running one: refused at once, exit 1, naming the path, the lock and the pid",
      one_line_error(r, 1, held, "in use", "another sparsetrain run", f"pid {p.pid}"), r.stderr.strip())
r = run(["train", "--resume", held, "--save", held, "--plain", "--quiet"])
check("... also when it resumes that very checkpoint", one_line_error(r, 1, held, "in use"), r.stderr.strip())
p.send_signal(signal.SIGINT)
p.communicate(timeout=120)
check("the first run ends normally (130 on SIGINT), its lock file removed",
      p.returncode == 130 and not os.path.exists(held + ".lock") and valid_checkpoint(held))
r = run(["train", "--resume", held, "--save", held, "--plain", "--quiet", "--stop-after", "1"])
check("... after which the path is free again", r.returncode == 0, r.stderr.strip())

rd = os.path.join(tmp, "held-dir")
p = start_long(["--run-dir", rd])
while not os.path.exists(os.path.join(rd, "checkpoint.safetensors")) and p.poll() is None:
    time.sleep(0.01)
r = run(common + ["--epochs", "1", "--run-dir", rd, "--force", "--save", os.path.join(tmp, "elsewhere.safetensors")])
check("a second run on the --run-dir of a running one: refused, exit 1, even with --force",
      one_line_error(r, 1, rd, "in use", "another sparsetrain run"), r.stderr.strip())
log_before = read(os.path.join(rd, "log.jsonl"))
p.send_signal(signal.SIGINT)
p.communicate(timeout=120)
r = run(common + ["--epochs", "1", "--run-dir", rd, "--save", os.path.join(tmp, "elsewhere.safetensors")])
check("a run folder of another run, idle: refused (exit 2), its log untouched",
      one_line_error(r, 2, rd, "belongs to another run", "--force") and
      read(os.path.join(rd, "log.jsonl")).startswith(log_before), r.stderr.strip())

# --- a log that cannot be written stops the run after its checkpoint is saved -------------------------
if mounted:
    logdisk = os.path.join(tmp, "logdisk")
    os.makedirs(logdisk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", logdisk], check=True)
    try:
        with open(os.path.join(logdisk, "filler"), "wb") as f:  # leave less room than one log line
            try:
                f.write(b"x" * 8192)
            except OSError:
                pass
        with open(os.path.join(logdisk, "filler"), "r+b") as f:
            f.truncate(os.path.getsize(os.path.join(logdisk, "filler")) - 100)
        lg = os.path.join(logdisk, "log.jsonl")
        ck = os.path.join(tmp, "logfull.safetensors")
        r = run(common + ["--epochs", "3", "--save", ck, "--log", lg])
        _, meta = lc.read_safetensors(ck) if os.path.exists(ck) else ({}, {})
        check("full disk under --log: exit 1 naming the log and the cause",
              one_line_error(r, 1, lg, "No space left on device"), f"exit {r.returncode}: {r.stderr.strip()}")
        check("... the epoch's checkpoint is saved, the log holds no torn line",
              meta.get("epoch") == "1" and read(lg).count(b"\n") == len(read(lg).splitlines()) and
              all(line.startswith(b"{") and line.endswith(b"}") for line in read(lg).splitlines()),
              repr(read(lg)[-80:]))
    finally:
        subprocess.run(["umount", logdisk])
else:
    print("   (not root: the full-disk log case needs a small tmpfs and is skipped)")

# --- a signal during the evaluation stops it at once, saving the trained epoch as not yet evaluated ----
slow = write_idx_dataset(os.path.join(tmp, "slow-eval"), n_train=64, n_test=5000)
ev_ck = os.path.join(tmp, "eval-stop.safetensors")
p = subprocess.Popen([BIN, "train", "--data", "mnist", "--datadir", slow, "--model", "lenet5", "--batch-size", "16",
                      "--test-batch-size", "1", "--max-batches", "1", "--epochs", "3", "--threads", "1", "--plain",
                      "--quiet", "--save", ev_ck], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
while not os.path.exists(ev_ck) and p.poll() is None:  # epoch 1 evaluated and saved
    time.sleep(0.01)
time.sleep(0.3)  # epoch 2's one batch is trained; its evaluation (5000 one-image batches) is going
t0 = time.time()
p.send_signal(signal.SIGINT)
out, err = p.communicate(timeout=120)
waited = time.time() - t0
meta = lc.read_safetensors(ev_ck)[1]
check(f"SIGINT during the evaluation: exit 130 within {waited:.2f} s, the epoch saved as trained, not evaluated",
      p.returncode == 130 and "while evaluating epoch 2" in err and waited < 1.0 and meta.get("epoch") == "1" and
      meta.get("batch_in_epoch") == "1", err.strip()[-300:])
r = run(["train", "--resume", ev_ck, "--save", ev_ck, "--plain", "--quiet", "--stop-after", "1"])
check("... and the resume evaluates that epoch and goes on",
      r.returncode == 0 and lc.read_safetensors(ev_ck)[1].get("epoch") == "2", r.stderr.strip())

# --- a temporary file left by a SIGKILLed save (a dead pid) is removed by the next run -------------
stale_ck = os.path.join(tmp, "stale.safetensors")
child = subprocess.Popen(["true"])
child.wait()
stale = f"{stale_ck}.tmp.{child.pid}"
with open(stale, "wb") as f:
    f.write(b"half a checkpoint")
alive = f"{stale_ck}.tmp.{os.getpid()}"  # a live process's: not ours to remove
with open(alive, "wb") as f:
    f.write(b"x")
r = run(common + ["--epochs", "1", "--save", stale_ck])
check("a stale NAME.tmp.<dead pid> is removed at start, a live process's kept",
      r.returncode == 0 and not os.path.exists(stale) and os.path.exists(alive), r.stderr.strip())
os.remove(alive)

# --- eval --out onto a device node: refused, the node kept (a node of our own, never /dev/null) --------
if os.geteuid() == 0:
    node = os.path.join(tmp, "null-node")
    os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))
    r = run(["eval", "--checkpoint", os.path.join(tmp, "sig0.safetensors"), "--datadir", data, "--out", node])
    import stat as stat_module
    check("eval --out onto a device node: refused, exit 2, the node is still a device",
          one_line_error(r, 2, node, "is a device") and stat_module.S_ISCHR(os.stat(node).st_mode), r.stderr.strip())
else:
    print("   (not root: the device-node case is skipped)")

shutil.rmtree(tmp, ignore_errors=True)
finish()
