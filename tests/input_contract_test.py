"""docs/INPUT-CONTRACT.md, row by row: every row of its "Bad input" table is
run here (by its id) and must give the documented exit code, a one-line
message containing the documented words, no crash (no exit >= 128 or signal)
and no temporary file. A row without a case, or a case without a row, fails.
"""
import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
import io
import json

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, SRC, check, finish, write_idx_dataset  # noqa: E402
import load_checkpoint as lc  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")
tmp = tempfile.mkdtemp(prefix="sparsetrain-contract-")


def contract_rows():
    rows = {}
    with open(os.path.join(SRC, "docs", "INPUT-CONTRACT.md")) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 5 and re.fullmatch(r"[a-z0-9-]+", cells[0]) and cells[3].isdigit():
                rows[cells[0]] = (int(cells[3]), cells[4])
    return rows


# ---- inputs ------------------------------------------------------------------------------------
good = write_idx_dataset(os.path.join(tmp, "good"), n_train=64, n_test=32)


def idx_variant(name, edit):
    """A copy of the good data set with one file changed by edit(folder)."""
    folder = os.path.join(tmp, name)
    shutil.copytree(good, folder)
    edit(folder)
    return folder


def truncate(folder):
    path = os.path.join(folder, "t10k-images-idx3-ubyte")
    with open(path, "r+b") as f:
        f.truncate(1000)


def bad_magic(folder):
    with open(os.path.join(folder, "t10k-images-idx3-ubyte"), "r+b") as f:
        f.write(b"\x00\x00\x09\x03")


def fewer_labels(folder):
    path = os.path.join(folder, "t10k-labels-idx1-ubyte")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:4] + struct.pack(">I", 31) + data[8:-1])


def label_range(folder):
    path = os.path.join(folder, "t10k-labels-idx1-ubyte")
    data = bytearray(open(path, "rb").read())
    data[8 + 5] = 10
    open(path, "wb").write(bytes(data))


def corrupt_gzip(folder):
    path = os.path.join(folder, "t10k-images-idx3-ubyte")
    blob = gzip.compress(open(path, "rb").read(), mtime=0)
    os.remove(path)
    blob = blob[:40] + bytes(b ^ 0x5A for b in blob[40:80]) + blob[80:]
    open(path + ".gz", "wb").write(blob)


def cifar_folder(name, test_bytes, archive=None):
    folder = os.path.join(tmp, name)
    os.makedirs(folder)
    rng = np.random.RandomState(1)
    record = lambda n: b"".join(bytes([rng.randint(10)]) + rng.randint(0, 256, 3072).astype(np.uint8).tobytes()
                                for _ in range(n))
    files = {f"data_batch_{i}.bin": record(4) for i in range(1, 6)}
    files["test_batch.bin"] = record(4)[:test_bytes] if test_bytes else record(4)
    if archive:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
            for fname, data in files.items():
                info = tarfile.TarInfo("cifar-10-batches-bin/" + fname)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        raw = bytearray(buf.getvalue())
        raw[148] ^= 0x07  # damage the first header's checksum field
        open(os.path.join(folder, "cifar-10-binary.tar.gz"), "wb").write(gzip.compress(bytes(raw), mtime=0))
    else:
        for fname, data in files.items():
            open(os.path.join(folder, fname), "wb").write(data)
    return folder


common = ["train", "--data", "mnist", "--datadir", good, "--model", "lenet5", "--batch-size", "16", "--epochs", "1",
          "--threads", "2", "--plain", "--quiet"]
ck = os.path.join(tmp, "ck.safetensors")
r = subprocess.run([BIN] + common + ["--save", ck], capture_output=True, text=True)
check("a good checkpoint to damage", r.returncode == 0, r.stderr.strip())
blob = open(ck, "rb").read()


def write(name, data):
    path = os.path.join(tmp, name)
    open(path, "wb").write(data)
    return path


tensors, meta = lc.read_safetensors(ck)
no_format = dict(meta)
del no_format["format"]
big_epoch = dict(meta, epoch="1e300")
wrong_shape = dict(tensors)
wrong_shape["fc4.weight"] = np.zeros((3, 3), dtype=np.float32)
os.makedirs(os.path.join(tmp, "a-folder"))
# a dynamic sparse training checkpoint (stopped after epoch 1 of 2), and two damaged ITOP records
dst_ck = os.path.join(tmp, "dst.safetensors")
r = subprocess.run([BIN] + common + ["--sparse", "--epochs", "2", "--stop-after", "1", "--max-batches", "4",
                                     "--update_frequency", "2", "--save", dst_ck], capture_output=True, text=True)
check("a dynamic sparse training checkpoint to damage", r.returncode == 0, r.stderr.strip())
dst_tensors, dst_meta = lc.read_safetensors(dst_ck)
check("it holds the ITOP record", any(k.startswith("itop.") for k in dst_tensors), str(list(dst_tensors)[:8]))
no_itop = {k: v for k, v in dst_tensors.items() if not k.startswith("itop.")}
short_itop = dict(dst_tensors)
short_itop["itop.conv1.weight"] = np.zeros_like(dst_tensors["itop.conv1.weight"])

def python_cifar(name, payload):
    """A folder with cifar-10-batches-py/ whose data_batch_1 is `payload`."""
    folder = os.path.join(tmp, name, "cifar-10-batches-py")
    os.makedirs(folder)
    open(os.path.join(folder, "data_batch_1"), "wb").write(payload)
    open(os.path.join(folder, "test_batch"), "wb").write(payload)
    return os.path.dirname(folder)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(tmp, "pwned"),))


import pickle  # noqa: E402
good_py = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2)
evil_legacy = write("evil-legacy.pth", pickle.dumps({"state_dict": Evil()}, protocol=2))
evil_pth = os.path.join(tmp, "evil.pth")
try:
    import torch
    torch.save({"state_dict": {"foo.weight": torch.zeros(3)}}, os.path.join(tmp, "nomodel.pth"))
    torch.save({"state_dict": Evil()}, evil_pth)
except ImportError:
    open(os.path.join(tmp, "nomodel.pth"), "wb").write(b"")
    open(evil_pth, "wb").write(b"")


# ---- outputs (issue 12): a run folder, a FIFO, a second checkpoint to resume --------------------
run_a = os.path.join(tmp, "run-a")
r = subprocess.run([BIN] + common + ["--run-dir", run_a], capture_output=True, text=True)
check("a good run folder to aim at", r.returncode == 0, r.stderr.strip())
fifo = os.path.join(tmp, "a.fifo")
os.mkfifo(fifo)
resumable = write("resumable.safetensors", blob)
os.makedirs(os.path.join(tmp, "sub"))
sparse = ["--sparse", "--fix", "--density", "0.1"]
# an unfinished run (1 of 3 epochs) with crafted progress counters (issue 12: a huge batch_in_epoch hung)
ck3 = os.path.join(tmp, "ck3.safetensors")
r = subprocess.run([BIN] + common + ["--epochs", "3", "--stop-after", "1", "--save", ck3], capture_output=True, text=True)
check("an unfinished checkpoint to damage", r.returncode == 0, r.stderr.strip())
tensors3, meta3 = lc.read_safetensors(ck3)


def crafted(name, **changes):
    return write(name, lc.serialize_safetensors(tensors3, dict(meta3, **changes)))


# bounded readers (issue 12): headers and sizes are checked before a file is read or inflated
def gz_bomb(name, head, zeros):
    def edit(folder):
        path = os.path.join(folder, "t10k-images-idx3-ubyte")
        os.remove(path)
        c = zlib.compressobj(1, zlib.DEFLATED, 31)
        with open(path + ".gz", "wb") as f:
            f.write(c.compress(head))
            for _ in range(zeros >> 20):
                f.write(c.compress(bytes(1 << 20)))
            f.write(c.flush())
    return idx_variant(name, edit)


big = os.path.join(tmp, "big.safetensors")
with open(big, "wb") as f:
    f.truncate(6 << 30)  # sparse: no disk used
fifo_data = idx_variant("fifo-data", lambda d: (os.remove(os.path.join(d, "t10k-labels-idx1-ubyte")),
                                                os.mkfifo(os.path.join(d, "t10k-labels-idx1-ubyte"))))
fifo_run = os.path.join(tmp, "fifo-run")
os.makedirs(fifo_run)
os.mkfifo(os.path.join(fifo_run, "log.jsonl"))

# damaged values: a NaN weight (lenet5), a negative BN variance (a small ResNet)
nan_tensors = dict(tensors)
nan_tensors["fc4.weight"] = tensors["fc4.weight"].copy()
nan_tensors["fc4.weight"].flat[3] = np.nan
bn_ck = os.path.join(tmp, "bn.safetensors")
r = subprocess.run([BIN] + common + ["--model", "cifar_resnet_8_1", "--max-batches", "1", "--save", bn_ck],
                   capture_output=True, text=True)
check("a checkpoint with batch norm", r.returncode == 0, r.stderr.strip())
bn_tensors, bn_meta = lc.read_safetensors(bn_ck)
var_name = next(k for k in bn_tensors if k.endswith("running_var") and not k.startswith("best."))
bn_tensors[var_name] = bn_tensors[var_name].copy()
bn_tensors[var_name].flat[0] = -1.0

not_utf8 = os.fsdecode(os.path.join(os.fsencode(tmp), b"data\xff"))
shutil.copytree(good, not_utf8)

# files that a refused command must leave byte for byte as they were
keep = {"log-over-checkpoint": ck, "log-is-resume": resumable, "eval-out-checkpoint": ck,
        "report-out-checkpoint": os.path.join(run_a, "checkpoint.safetensors"),
        "report-out-log-force": os.path.join(run_a, "log.jsonl"),
        "run-dir-other-run": os.path.join(run_a, "log.jsonl"), "log-other-run": os.path.join(run_a, "log.jsonl"),
        "log-not-a-log": os.path.join(tmp, "notes.txt")}


def image_tree(name, train_classes, val_classes=("cat", "dog")):
    """An ImageFolder tree whose class folders each hold one (undecoded) .JPEG,
    except those named empty_*; the errors here come before any decoding."""
    root = os.path.join(tmp, name)
    os.makedirs(root)
    for split, classes in (("train", train_classes), ("val", val_classes)):
        os.makedirs(os.path.join(root, split))
        for c in classes:
            os.makedirs(os.path.join(root, split, c))
            if not c.startswith("empty"):
                open(os.path.join(root, split, c, "x.JPEG"), "wb").write(b"\xff\xd8 not decoded here")
    return root


imagenet = common + ["--data", "imagenet", "--model", "cifar_resnet_8_1", "--image-size", "32"]
os.makedirs(os.path.join(tmp, "no-split"))
cases = {
    "no-command": [],
    "unknown-command": ["fly"],
    "help": ["train", "--help"],
    "unknown-flag": ["train", "--bogus", "1"],
    "missing-value": ["train", "--lr"],
    "not-a-number": ["train", "--lr", "fast"],
    "not-finite": ["train", "--lr", "inf"],
    "not-an-integer": ["train", "--epochs", "2.5"],
    "int-overflow": ["train", "--batch-size", "99999999999"],
    "negative-seed": ["train", "--seed", "-1"],
    "positional": ["train", "lenet5"],
    "switch-value": ["train", "--sparse=1"],
    "too-long": ["train", "--model", "m" * 200],
    "unknown-model": common + ["--model", "resnet_99"],
    "bad-depth": common + ["--model", "cifar_resnet_21"],
    "density-zero": common + ["--density", "0"],
    "density-above-one": common + ["--density", "1.5"],
    "batch-size-zero": common + ["--batch-size", "0"],
    "epochs-zero": common + ["--epochs", "0"],
    "lr-negative": common + ["--lr=-1"],
    "momentum-one": common + ["--momentum", "1"],
    "valid-split-one": common + ["--valid_split", "1"],
    "unknown-optimizer": common + ["--optimizer", "rmsprop"],
    "unknown-schedule": common + ["--lr-schedule", "exponential"],
    "label-smoothing-one": common + ["--label-smoothing", "1"],
    "warmup-negative": common + ["--warmup", "-1"],
    "unknown-model-config": common + ["--model", "ResNet18", "-c", "fan_out"],
    "model-config-cifar": common + ["--model-config", "fanin"],
    "short-unknown": common + ["-z", "1"],
    "two-data-folders": ["train", tmp, tmp],
    "unknown-sparse-init": common + ["--sparse", "--fix", "--sparse_init", "magic"],
    "unknown-mask-sampling": common + ["--mask-sampling", "some"],
    "dst-death-rate": common + ["--sparse", "--death-rate", "2"],
    "negative-threads": common + ["--threads=-1"],
    "unknown-data": common + ["--data", "imagenet2"],
    "missing-datadir": common + ["--datadir", os.path.join(tmp, "nope")],
    "truncated-idx": common + ["--datadir", idx_variant("truncated", truncate)],
    "bad-idx-magic": common + ["--datadir", idx_variant("magic", bad_magic)],
    "idx-count-mismatch": common + ["--datadir", idx_variant("count", fewer_labels)],
    "idx-label-range": common + ["--datadir", idx_variant("range", label_range)],
    "idx-corrupt-gzip": common + ["--datadir", idx_variant("gzip", corrupt_gzip)],
    "cifar-partial-record": common + ["--data", "cifar10", "--datadir", cifar_folder("cifar-part", 3073 * 2 + 100),
                                      "--model", "cifar_resnet_8_1"],
    "cifar-tar-bad-checksum": common + ["--data", "cifar10", "--datadir", cifar_folder("cifar-tar", 0, archive=True),
                                        "--model", "cifar_resnet_8_1"],
    "cifar-py-code": common + ["--data", "cifar10", "--model", "cifar_resnet_8_1", "--datadir",
                               python_cifar("py-code", pickle.dumps({b"data": Evil()}, protocol=2))],
    "cifar-py-truncated": common + ["--data", "cifar10", "--model", "cifar_resnet_8_1", "--datadir",
                                    python_cifar("py-trunc", good_py[:len(good_py) // 2])],
    "cifar-py-opcode": common + ["--data", "cifar10", "--model", "cifar_resnet_8_1", "--datadir",
                                 python_cifar("py-inst", b"\x80\x02(ios\nsystem\n.")],
    "ambiguous-flag": common + ["--de", "0.5"],
    "dst-unknown-death": common + ["--sparse", "--death", "bogus"],
    "dst-momentum-growth": common + ["--sparse", "--growth", "momentum", "--momentum", "0"],
    "dst-update-frequency": common + ["--sparse", "--update_frequency", "0"],
    "multiplier-resume": common + ["--multiplier", "2", "--resume", ck],
    "unknown-protocol": common + ["--protocol", "paper"],
    "iters-range": common + ["--iters", "0"],
    "iters-resume": common + ["--iters", "2", "--resume", ck],
    "convert-not-pth": ["convert", write("junk.pth", b"not a checkpoint"), os.path.join(tmp, "o1.safetensors")],
    "convert-code": ["convert", evil_pth, os.path.join(tmp, "o2.safetensors")],
    "convert-code-legacy": ["convert", evil_legacy, os.path.join(tmp, "o4.safetensors")],
    "convert-no-model": ["convert", os.path.join(tmp, "nomodel.pth"), os.path.join(tmp, "o3.safetensors")],
    "imagefolder-no-split": imagenet + ["--datadir", os.path.join(tmp, "no-split")],
    "imagefolder-empty-tree": imagenet + ["--datadir", image_tree("tree-empty", ())],
    "imagefolder-empty-class": imagenet + ["--datadir", image_tree("tree-empty-class", ("cat", "empty_class"))],
    "imagefolder-val-class": imagenet + ["--datadir", image_tree("tree-val-class", ("cat", "dog"), ("cat", "zebra"))],
    "imagefolder-valid-split": imagenet + ["--datadir", image_tree("tree-split", ("cat", "dog")), "--valid_split", "0.1"],
    "imagefolder-image-size": imagenet + ["--datadir", image_tree("tree-size", ("cat", "dog")), "--image-size", "4"],
    "imagefolder-workers": imagenet + ["--datadir", image_tree("tree-workers", ("cat", "dog")), "--workers", "100"],
    "bench-imagefolder-missing": ["bench", "--imagefolder", os.path.join(tmp, "no-split")],
    "resume-missing": ["train", "--resume", os.path.join(tmp, "none.safetensors")],
    "resume-truncated": ["train", "--resume", write("trunc.safetensors", blob[: len(blob) // 2])],
    "resume-not-checkpoint": ["train", "--resume", write("plain.safetensors",
                                                         lc.serialize_safetensors(tensors, no_format))],
    "resume-bad-counter": ["train", "--resume", write("counter.safetensors",
                                                      lc.serialize_safetensors(tensors, big_epoch))],
    "save-no-folder": common + ["--save", os.path.join(tmp, "no-such-dir", "x.safetensors")],
    "save-other-run": common + ["--save", ck],
    "save-not-checkpoint": common + ["--save", write("notes.txt", b"notes\n")],
    "save-folder": common + ["--save", os.path.join(tmp, "a-folder")],
    "nan-loss": common + ["--lr", "1e30"],
    "eval-no-checkpoint": ["eval"],
    "eval-missing": ["eval", "--checkpoint", os.path.join(tmp, "none.safetensors")],
    "eval-corrupt-header": ["eval", "--datadir", good, "--checkpoint",
                            write("corrupt.safetensors", blob[:8] + b"#" * 40 + blob[48:])],
    "eval-wrong-shape": ["eval", "--last", "--datadir", good, "--checkpoint",
                         write("shape.safetensors", lc.serialize_safetensors(wrong_shape, meta))],
    "eval-shape-mismatch": ["eval", "--checkpoint", ck, "--data", "cifar10", "--datadir",
                            cifar_folder("cifar-good", 0)],
    "eval-unknown-data": ["eval", "--checkpoint", ck, "--data", "imagenet2"],
    "inspect-unknown-model": ["inspect", "--model", "resnet_99"],
    "inspect-bad-input": ["inspect", "--model", "lenet5", "--input", "3x32"],
    "inspect-snip-no-data": ["inspect", "--model", "lenet5", "--sparse_init", "snip"],
    "bench-zero-steps": ["bench", "--steps", "0"],
    "resume-batch-huge": ["train", "--resume", crafted("b53.safetensors", batch_in_epoch=str(2 ** 53))],
    "resume-batch-past-epoch": ["train", "--resume", crafted("b1000.safetensors", batch_in_epoch="1000")],
    "resume-seen-too-many": ["train", "--resume", crafted("seen.safetensors", batch_in_epoch="1", epoch_seen="17")],
    "resume-step-too-many": ["train", "--resume", crafted("step.safetensors", step="1000")],
    "resume-epoch-past-run": ["train", "--resume", crafted("e9.safetensors", epoch="9")],
    "resume-changed-flag": ["train", "--resume", ck3, "--density", "0.5"],
    "resume-dst-no-itop": ["train", "--resume", write("no-itop.safetensors", lc.serialize_safetensors(no_itop, dst_meta))],
    "resume-dst-itop-misses-mask": ["train", "--resume", write("short-itop.safetensors", lc.serialize_safetensors(short_itop, dst_meta))],
    "resume-bogus-model": ["train", "--resume", ck3, "--model", "bogus"],
    "resume-bad-args": ["train", "--resume", crafted("args.safetensors",
                                                     args=json.dumps(dict(json.loads(meta3["args"]), density=5)))],
    "seed-blank": ["train", "--seed", " -1"],
    "lr-hex": ["train", "--lr", "0x10"],
    "idx-declared-too-many": common + ["--datadir", gz_bomb("declared", struct.pack(">IIII", 0x803, 2_700_000, 28, 28),
                                                             1 << 20)],
    "idx-gzip-bomb": common + ["--datadir", gz_bomb("bomb", b"\x00\x00\x09\x03", 32 << 20)],
    "checkpoint-too-big": ["eval", "--checkpoint", big, "--datadir", good],
    "data-fifo": common + ["--datadir", fifo_data],
    "report-log-fifo": ["report", fifo_run, "-o", os.path.join(tmp, "fifo-report.html")],
    "eval-nan-weight": ["eval", "--last", "--datadir", good, "--checkpoint",
                        write("nan.safetensors", lc.serialize_safetensors(nan_tensors, meta))],
    "eval-negative-variance": ["eval", "--last", "--datadir", good, "--checkpoint",
                               write("negvar.safetensors", lc.serialize_safetensors(bn_tensors, bn_meta))],
    "density-empty-layers": common + ["--sparse", "--fix", "--density", "1e-9"],
    "datadir-not-utf8": common + ["--datadir", not_utf8],
    "model-input-too-small": common + ["--model", "vgg11"],
    "log-over-checkpoint": common + ["--log", ck],
    "log-is-resume": ["train", "--resume", resumable, "--save", os.path.join(tmp, "s.safetensors"), "--log", resumable],
    "save-is-log": common + ["--save", os.path.join(tmp, "x"), "--log", os.path.join(tmp, "sub", "..", "x")],
    "log-fifo": common + ["--log", fifo],
    "save-fifo": common + ["--save", fifo],
    "log-other-run": common + ["--log", os.path.join(run_a, "log.jsonl")],
    "log-not-a-log": common + ["--log", os.path.join(tmp, "notes.txt")],
    "run-dir-other-run": common + ["--run-dir", run_a, "--save", os.path.join(tmp, "b.safetensors")],
    "save-name-too-long": common + ["--save", os.path.join(tmp, "n" * 250)],
    "threads-too-many": common + sparse + ["--threads", "100000"],
    "eval-out-checkpoint": ["eval", "--checkpoint", ck, "--datadir", good, "--out", ck],
    "eval-out-fifo": ["eval", "--checkpoint", ck, "--datadir", good, "--out", fifo],
    "eval-out-folder": ["eval", "--checkpoint", ck, "--datadir", good, "--out", os.path.join(tmp, "a-folder")],
    "eval-threads-too-many": ["eval", "--checkpoint", ck, "--datadir", good, "--threads", "100000"],
    "inspect-threads-too-many": ["inspect", "--model", "lenet5", "--threads", "100000"],
    "bench-threads-too-many": ["bench", "--model", "lenet5", "--threads", "100000"],
    "report-out-checkpoint": ["report", run_a, "-o", os.path.join(run_a, "checkpoint.safetensors")],
    "report-out-log-force": ["report", run_a, "--force", "-o", os.path.join(run_a, "log.jsonl")],
    "report-out-fifo": ["report", run_a, "-o", fifo],
}

rows = contract_rows()
check("the contract table has rows", len(rows) > 40, str(len(rows)))
check("every row has a case", not set(rows) - set(cases), str(sorted(set(rows) - set(cases))))
check("every case has a row", not set(cases) - set(rows), str(sorted(set(cases) - set(rows))))
for rid, (code, words) in rows.items():
    if rid not in cases:
        continue
    before = set(os.listdir(tmp))
    kept = open(keep[rid], "rb").read() if rid in keep else None
    r = subprocess.run([BIN] + cases[rid], capture_output=True, text=True, timeout=300)
    leftovers = [f for f in set(os.listdir(tmp)) - before if ".tmp." in f]
    msg = r.stderr.strip()
    if code == 0:
        ok = r.returncode == 0 and "usage:" in r.stdout
    else:
        needles = [w.strip() for w in words.split(",")] if rid != "no-command" else [words]
        lines = msg.splitlines()
        ok = (r.returncode == code and (len(lines) == 1 or rid in ("no-command", "unknown-command")) and
              all(n.lower() in msg.lower() for n in needles))
    if kept is not None and open(keep[rid], "rb").read() != kept:
        ok, msg = False, f"{keep[rid]} was changed; " + msg
    check(f"{rid}: exit {code}", ok and not leftovers, f"exit {r.returncode}: {msg[:300]}")

check("no pickle ever ran code", not os.path.exists(os.path.join(tmp, "pwned")))
shutil.rmtree(tmp, ignore_errors=True)
finish()
