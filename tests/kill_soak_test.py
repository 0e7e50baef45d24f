"""Crash-and-kill soak (issue 12): runs with --run-dir (so --save and --log)
killed at a random moment by SIGINT, SIGTERM, a double signal, SIGKILL, or a
full disk (a small tmpfs as root, else RLIMIT_FSIZE). Afterwards every
checkpoint left is a valid checkpoint that resumes, every log is whole JSON
lines of its run, and no temporary file is left once the next run on the
folder has started (stale ones of dead processes are removed). Prints the
counts. The schedule is seeded: a failure can be replayed.
"""
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, write_idx_dataset  # noqa: E402
import load_checkpoint as lc  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")
RUNS = 16
rng = random.Random(12)
tmp = tempfile.mkdtemp(prefix="sparsetrain-soak-")
data = write_idx_dataset(os.path.join(tmp, "data"), n_train=96, n_test=32)
common = ["train", "--data", "mnist", "--datadir", data, "--model", "lenet5", "--batch-size", "16", "--threads", "1",
          "--plain", "--quiet"]


def can_mount():
    if os.geteuid() != 0:
        return False
    probe = os.path.join(tmp, "probe")
    os.makedirs(probe)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", probe])
    return ok


mounted = can_mount()
probe = os.path.join(tmp, "size")
subprocess.run([BIN] + common + ["--epochs", "1", "--run-dir", probe], capture_output=True, check=True)
ck_size = os.path.getsize(os.path.join(probe, "checkpoint.safetensors"))

counts = {}
problems = []
for i in range(RUNS):
    kind = ["SIGINT", "SIGTERM", "double", "SIGKILL", "disk full"][i % 5]
    counts[kind] = counts.get(kind, 0) + 1
    folder = os.path.join(tmp, f"run{i}")
    disk = None
    preexec = None
    if kind == "disk full":
        if mounted:
            disk = os.path.join(tmp, f"disk{i}")
            os.makedirs(disk)
            room = int(ck_size * rng.uniform(0.6, 1.9))  # a second copy never fits
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={room}", "tmpfs", disk], check=True)
            folder = os.path.join(disk, "run")
        else:
            limit = int(ck_size * rng.uniform(0.3, 1.5))

            def preexec(limit=limit):
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    p = subprocess.Popen([BIN] + common + ["--epochs", "100000", "--run-dir", folder], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
    if kind != "disk full":
        time.sleep(rng.uniform(0.05, 0.8))
        sig = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "double": signal.SIGINT,
               "SIGKILL": signal.SIGKILL}[kind]
        p.send_signal(sig)
        if kind == "double":
            time.sleep(rng.uniform(0, 0.02))
            p.send_signal(sig)
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        problems.append(f"run {i} ({kind}) did not stop")
    expected = {"SIGINT": (130,), "SIGTERM": (130,), "double": (130,), "SIGKILL": (-9,), "disk full": (1,)}[kind]
    if p.returncode not in expected:
        problems.append(f"run {i} ({kind}): exit {p.returncode}: {err.strip()[-200:]}")
    if disk:  # resume where there is room again
        moved = os.path.join(tmp, f"run{i}")
        shutil.copytree(folder, moved, symlinks=True)
        subprocess.run(["umount", disk])
        folder = moved
    ck = os.path.join(folder, "checkpoint.safetensors")
    log = os.path.join(folder, "log.jsonl")
    run_id = None
    if os.path.exists(ck):
        try:
            meta = lc.read_safetensors(ck)[1]
            run_id = meta.get("run_id")
            if meta.get("format") != "sparsetrain-checkpoint-1":
                problems.append(f"run {i} ({kind}): checkpoint without our format")
        except Exception as e:  # noqa: BLE001
            problems.append(f"run {i} ({kind}): checkpoint not valid: {e}")
    if os.path.exists(log):
        for n, line in enumerate(open(log, "rb").read().split(b"\n")[:-1], 1):
            try:
                obj = json.loads(line)
                if run_id and obj.get("run_id") != run_id:
                    problems.append(f"run {i} ({kind}): log line {n} of another run")
            except ValueError:
                problems.append(f"run {i} ({kind}): log line {n} is not JSON: {line[:60]!r}")
    if os.path.exists(ck):
        r = subprocess.run([BIN, "train", "--resume", ck, "--run-dir", folder, "--stop-after", "1", "--plain",
                            "--quiet"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            problems.append(f"run {i} ({kind}): resume failed: exit {r.returncode}: {r.stderr.strip()[-200:]}")
        else:
            lines = [json.loads(line) for line in open(log)]
            if not lines or any(line.get("run_id") != run_id for line in lines):
                problems.append(f"run {i} ({kind}): log after the resume is not this run's whole lines")
    # a kill before the run created its folder leaves none: nothing to check there
    leftovers = [f for f in os.listdir(folder) if ".tmp." in f] if os.path.isdir(folder) else []
    if leftovers and os.path.exists(ck):
        problems.append(f"run {i} ({kind}): temporary files left after the next run: {leftovers}")

print("   runs by kind:", ", ".join(f"{k} {v}" for k, v in counts.items()),
      "(full disk: %s)" % ("small tmpfs" if mounted else "RLIMIT_FSIZE"))
check(f"{RUNS} killed runs: every checkpoint valid and resumable, every log whole JSON lines of its run, "
      "no temporary file left", not problems, "; ".join(problems[:5]))
shutil.rmtree(tmp, ignore_errors=True)
finish()
