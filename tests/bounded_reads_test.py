"""Readers check headers and sizes before they read (issue 12: a 1.9 MB .gz
used to inflate to 1.96 GB before its magic was checked), never block on a
FIFO, and the report survives a torn log line and absurd values. Each case
runs the CLI as a child and reads its peak RSS (os.wait4): a refused bomb must
stay far below the size it would inflate to.
"""
import gzip
import io
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, write_idx_dataset  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")
tmp = tempfile.mkdtemp(prefix="sparsetrain-bounded-")
good = write_idx_dataset(os.path.join(tmp, "good"), n_train=64, n_test=32)
BOMB = 256 << 20  # inflated size of each bomb
RSS_LIMIT_MB = 150  # what a refused bomb may cost (the tool itself needs ~30 MB)


def run(args, timeout=120):
    """(returncode, stderr, stdout, peak RSS in MB) of one CLI run; a hang fails the check."""
    p = subprocess.Popen([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            out, err = p.stdout.read(), p.stderr.read()
            return os.waitstatus_to_exitcode(status), err.strip(), out, usage.ru_maxrss / 1024
        time.sleep(0.02)
    p.kill()
    p.wait()
    return -1, "hung (killed after %d s)" % timeout, "", 0


def gz_of(head, zeros):
    """gzip of `head` followed by `zeros` zero bytes, compressed in pieces."""
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [c.compress(head)]
    chunk = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(c.compress(chunk))
    parts.append(c.flush())
    return b"".join(parts)


def variant(name, filename, blob):
    folder = os.path.join(tmp, name)
    shutil.copytree(good, folder)
    target = os.path.join(folder, filename)
    for f in (target, target.replace(".gz", "")):
        if os.path.exists(f):
            os.remove(f)
    with open(target, "wb") as f:
        f.write(blob)
    return folder


train = ["train", "--data", "mnist", "--model", "lenet5", "--batch-size", "16", "--epochs", "1", "--threads", "1",
         "--plain", "--quiet"]

# IDX: a wrong magic followed by 256 MB of zeros (gzip): refused from the header
d = variant("bomb-magic", "t10k-images-idx3-ubyte.gz", gz_of(b"\x00\x00\x09\x03", BOMB))
code, err, _, rss = run(train + ["--datadir", d])
check(f"IDX gzip bomb with a wrong magic: exit 1 at the header (peak RSS {rss:.0f} MB)",
      code == 1 and "not an IDX image file" in err and rss < RSS_LIMIT_MB, err)

# IDX: a valid header declaring 2.7 M test images (the set has 10000)
head = struct.pack(">IIII", 0x803, 2_700_000, 28, 28)
d = variant("declared", "t10k-images-idx3-ubyte.gz", gz_of(head, 4 << 20))
code, err, _, rss = run(train + ["--datadir", d])
check(f"IDX header declaring 2.7 M images: exit 1 naming the limit (peak RSS {rss:.0f} MB)",
      code == 1 and "2700000" in err and "at most 10000" in err and rss < RSS_LIMIT_MB, err)

# IDX: a valid header for 10000 images, then 256 MB more: decompression stops at the declared size
head = struct.pack(">IIII", 0x803, 10000, 28, 28)
d = variant("trailing", "t10k-images-idx3-ubyte.gz", gz_of(head, BOMB))
code, err, _, rss = run(train + ["--datadir", d])
check(f"IDX gzip with 256 MB beyond its declared images: exit 1, inflation capped (peak RSS {rss:.0f} MB)",
      code == 1 and "larger than expected" in err and rss < RSS_LIMIT_MB, err)

# CIFAR-10 .tar.gz whose first batch member is 256 MB (a batch is 30730000 bytes)
cifar = os.path.join(tmp, "cifar")
os.makedirs(cifar)


class Zeros(io.RawIOBase):
    """`n` zero bytes, read in pieces (this process stays small: a child's
    peak RSS counts what it shared with us before exec)."""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


with gzip.open(os.path.join(cifar, "cifar-10-binary.tar.gz"), "wb", compresslevel=1) as gz:
    with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.size = BOMB
        t.addfile(info, Zeros(BOMB))
code, err, _, rss = run(["train", "--data", "cifar10", "--datadir", cifar, "--model", "cifar_resnet_8_1", "--epochs",
                         "1", "--threads", "1", "--plain", "--quiet"])
check(f"CIFAR-10 archive with a 256 MB batch member: exit 1 before reading it (peak RSS {rss:.0f} MB)",
      code == 1 and "30730000" in err and rss < RSS_LIMIT_MB, err)

# A 6 GB (sparse) file as --checkpoint, and at the --save path
big = os.path.join(tmp, "big.safetensors")
with open(big, "wb") as f:
    header = b'{"__metadata__":{"format":"other"}}'
    f.write(struct.pack("<Q", len(header)) + header)
    f.truncate(6 << 30)
code, err, _, rss = run(["eval", "--checkpoint", big, "--datadir", good])
check(f"a 6 GB --checkpoint: exit 1 before reading it (peak RSS {rss:.0f} MB)",
      code == 1 and "more than a safetensors file here can be" in err and rss < RSS_LIMIT_MB, err)
code, err, _, rss = run(train + ["--datadir", good, "--save", big])
check(f"a 6 GB file at --save: refused from its header alone (peak RSS {rss:.0f} MB)",
      code == 2 and "not a sparsetrain checkpoint" in err and rss < RSS_LIMIT_MB, err)

# FIFOs where a data file or a run folder's log should be: refused, never waited on
d = os.path.join(tmp, "fifo-data")
shutil.copytree(good, d)
os.remove(os.path.join(d, "t10k-labels-idx1-ubyte"))
os.mkfifo(os.path.join(d, "t10k-labels-idx1-ubyte"))
code, err, _, _ = run(train + ["--datadir", d], timeout=60)
check("a FIFO as a data file: exit 1 at once, naming it", code == 1 and "not a regular file (a FIFO)" in err, err)
fifo_run = os.path.join(tmp, "fifo-run")
os.makedirs(fifo_run)
os.mkfifo(os.path.join(fifo_run, "log.jsonl"))
code, err, _, _ = run(["report", fifo_run, "-o", os.path.join(tmp, "r.html")], timeout=60)
check("a FIFO as a run folder's log.jsonl: report exits 1 at once", code == 1 and "FIFO" in err, err)

# the report: a torn last line is skipped with a warning; 1e308 never becomes NaN in an SVG
torn = os.path.join(tmp, "torn-run")
os.makedirs(torn)
with open(os.path.join(torn, "log.jsonl"), "w") as f:
    f.write('{"epoch": 1, "lr": 0.1, "train_loss": 1e308, "train_acc": 0.5, "val_acc": null, "test_acc": 0.5}\n')
    f.write('{"epoch": 2, "lr": 0.1, "train_loss": -1e308, "train_acc": 0.6, "val_acc": null, "test_acc": 0.6}\n')
    f.write('{"epoch": 3, "lr": 0.1, "train_lo')
html = os.path.join(tmp, "torn.html")
code, err, _, _ = run(["report", torn, "-o", html])
text = open(html).read() if os.path.exists(html) else ""
check("a torn last log line: report exits 0 with a warning naming the line",
      code == 0 and "warning" in err and "line 3" in err, err)
check("... and no NaN or Inf in the page's charts (values of 1e308 are left out)",
      text and "nan" not in text.lower().replace("nanosecond", "") and "inf\"" not in text, "")

shutil.rmtree(tmp, ignore_errors=True)
finish()
