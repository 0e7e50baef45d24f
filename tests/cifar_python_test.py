"""CIFAR-10/100 python version (the pickled batches torchvision downloads).

The batches are generated here with Python's own pickle in the real layout (a
dict with bytes keys, protocol 2, the "data" uint8 array and the label lists),
both as Python 3 writes it (bytes via _codecs.encode) and as the distributed
files were written by Python 2's cPickle (SHORT_BINSTRING/BINSTRING, batched
APPENDS/SETITEMS; checked by unpickling it with Python's pickle). Each
layout -- folder, archive sub-folder, .tar.gz -- must load to exactly the same
images and labels as the binary version of the same data (compared by hash
with the C loader, `test_data --load`). Corrupt, truncated and hostile
pickles (code-running globals, unknown opcodes, huge lengths, too many
objects) must give one clear error and never crash.
"""
import io
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish  # noqa: E402

LOADER = os.path.join(BUILD, "tests", "test_data")


def fnv(pixels, labels):
    h = 1469598103934665603
    for b in np.asarray(pixels, dtype=np.uint8).tobytes() + np.asarray(labels, dtype="<i4").tobytes():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def load(name, folder, split):
    p = subprocess.run([LOADER, "--load", name, folder, split], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout.strip() + p.stderr.strip()


# ---- Python 2 cPickle layout (protocol 2) ------------------------------------------

class Py2Pickler:
    """Writes what Python 2's cPickle.dump(obj, f, 2) wrote for the CIFAR
    batches: str (here: bytes) as SHORT_BINSTRING/BINSTRING, every str and
    container memoised, lists and dicts in batches of 1000."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = 0

    def put(self):
        self.memo += 1
        self.out += b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo)

    def string(self, s):
        self.out += (b"U" + bytes([len(s)]) if len(s) < 256 else b"T" + struct.pack("<I", len(s))) + s
        self.put()

    def int(self, v):
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)
        else:
            self.out += b"J" + struct.pack("<i", v)

    def array(self, a):
        self.out += b"cnumpy.core.multiarray\n_reconstruct\n"
        self.put()
        self.out += b"cnumpy\nndarray\n"
        self.put()
        self.out += b"K\x00\x85"
        self.string(b"b")
        self.out += b"\x87R"
        self.put()
        self.out += b"(K\x01"
        for d in a.shape:
            self.int(d)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[a.ndim]
        self.out += b"cnumpy\ndtype\n"
        self.put()
        self.string(b"u1")
        self.out += b"K\x00K\x01\x87R"
        self.put()
        self.out += b"(K\x03"
        self.string(b"|")
        self.out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        self.string(a.tobytes())
        self.out += b"tb"

    def value(self, v):
        if isinstance(v, bytes):
            self.string(v)
        elif isinstance(v, int):
            self.int(v)
        elif isinstance(v, np.ndarray):
            self.array(v)
        elif isinstance(v, list):
            self.out += b"]"
            self.put()
            for start in range(0, len(v), 1000):
                self.out += b"("
                for x in v[start:start + 1000]:
                    self.value(x)
                self.out += b"e"
        elif isinstance(v, dict):
            self.out += b"}"
            self.put()
            self.out += b"("
            for k, x in v.items():
                self.value(k)
                self.value(x)
            self.out += b"u"
        else:
            raise TypeError(type(v))

    def dumps(self, obj):
        self.value(obj)
        self.out += b"."
        return bytes(self.out)


def py2_dumps(obj):
    data = Py2Pickler().dumps(obj)
    back = pickle.loads(data, encoding="bytes")   # Python's own unpickler agrees
    assert back.keys() == obj.keys()
    for k in obj:
        assert (np.array_equal(back[k], obj[k]) if isinstance(obj[k], np.ndarray) else back[k] == obj[k]), k
    return data


# ---- data in both versions -----------------------------------------------------------

def batch10(rng, n, label):
    x = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
    y = [int(v) for v in rng.randint(0, 10, size=n)]
    return {b"batch_label": label, b"labels": y, b"data": x,
            b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)]}


def batch100(rng, n, label):
    x = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
    fine = [int(v) for v in rng.randint(0, 100, size=n)]
    coarse = [v // 5 for v in fine]
    return {b"filenames": [f"f{i}.png".encode() for i in range(n)], b"batch_label": label,
            b"fine_labels": fine, b"coarse_labels": coarse, b"data": x}


def binary10(b):
    return b"".join(bytes([y]) + b[b"data"][i].tobytes() for i, y in enumerate(b[b"labels"]))


def binary100(b):
    return b"".join(bytes([c, f]) + b[b"data"][i].tobytes()
                    for i, (c, f) in enumerate(zip(b[b"coarse_labels"], b[b"fine_labels"])))


def with_(d, changes):
    out = dict(d)
    out.update(changes)
    return out


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def tar_gz(path, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    write(path, buf.getvalue())


def main():
    if not os.path.exists(LOADER):
        print(f"skipped: {LOADER} not built")
        sys.exit(77)
    rng = np.random.RandomState(3)
    tmp = tempfile.mkdtemp(prefix="st_cifar_py_")
    sizes = [23, 17, 31, 9, 12]
    c10 = {f"data_batch_{k + 1}": batch10(rng, n, f"training batch {k + 1} of 5".encode())
           for k, n in enumerate(sizes)}
    c10["test_batch"] = batch10(rng, 19, b"testing batch 1 of 1")
    c100 = {"train": batch100(rng, 41, b"training batch 1 of 1"), "test": batch100(rng, 13, b"testing batch 1 of 1")}

    # binary versions
    for name, b in c10.items():
        write(os.path.join(tmp, "bin10", name + ".bin"), binary10(b))
    for name, b in c100.items():
        write(os.path.join(tmp, "bin100", name + ".bin"), binary100(b))

    dumpers = {"py3": lambda o: pickle.dumps(o, protocol=2), "py2": py2_dumps,
               "py3-protocol4": lambda o: pickle.dumps(o, protocol=4)}
    for tag, dump in dumpers.items():
        for name, b in c10.items():
            write(os.path.join(tmp, f"{tag}-flat10", name), dump(b))
            write(os.path.join(tmp, f"{tag}-sub10", "cifar-10-batches-py", name), dump(b))
        tar_gz(os.path.join(tmp, f"{tag}-tar10", "cifar-10-python.tar.gz"),
               [("cifar-10-batches-py/batches.meta", dump({b"label_names": [b"airplane"]}))] +
               [(f"cifar-10-batches-py/{n}", dump(b)) for n, b in c10.items()])
        for name, b in c100.items():
            write(os.path.join(tmp, f"{tag}-sub100", "cifar-100-python", name), dump(b))
        tar_gz(os.path.join(tmp, f"{tag}-tar100", "cifar-100-python.tar.gz"),
               [(f"cifar-100-python/{n}", dump(b)) for n, b in c100.items()])

    train10 = [c10[f"data_batch_{k + 1}"] for k in range(5)]
    expect = {
        ("cifar10", "train"): fnv(np.concatenate([b[b"data"] for b in train10]), sum((b[b"labels"] for b in train10), [])),
        ("cifar10", "test"): fnv(c10["test_batch"][b"data"], c10["test_batch"][b"labels"]),
        ("cifar100", "train"): fnv(c100["train"][b"data"], c100["train"][b"fine_labels"]),
        ("cifar100", "test"): fnv(c100["test"][b"data"], c100["test"][b"fine_labels"]),
    }
    counts = {("cifar10", "train"): sum(sizes), ("cifar10", "test"): 19, ("cifar100", "train"): 41,
              ("cifar100", "test"): 13}
    for (name, split), h in expect.items():
        folders = ["bin10"] if name == "cifar10" else ["bin100"]
        for tag in dumpers:
            folders += [f"{tag}-flat10", f"{tag}-sub10", f"{tag}-tar10"] if name == "cifar10" else \
                [f"{tag}-sub100", f"{tag}-tar100"]
        for folder in folders:
            rc, out = load(name, os.path.join(tmp, folder), split)
            want = f"ok count={counts[(name, split)]} classes={10 if name == 'cifar10' else 100} hash={h}"
            check(f"{name} {split} from {folder} equals the data written", rc == 0 and out == want,
                  out if out != want else "")

    # ---- corrupt, truncated and hostile pickles (test split, flat folder) ----
    good = pickle.dumps(c10["test_batch"], protocol=2)
    good2 = py2_dumps(c10["test_batch"])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > should_not_exist",))

    hostile = {
        "code-running global (os.system)": (pickle.dumps({b"data": Evil()}, protocol=2), "never runs code"),
        "builtins.eval via STACK_GLOBAL": (
            b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x041+1\x85R.", "never runs code"),
        "unknown opcode INST": (b"\x80\x02(ios\nsystem\nX\x02\x00\x00\x00lst.", "opcode 0x69"),
        "unknown opcode PERSID": (b"\x80\x02P0\n.", "opcode 0x50"),
        "protocol 0 text pickle": (pickle.dumps({b"a": 1}, protocol=0), "protocol"),
        "protocol 5": (b"\x80\x05}.", "protocol 5"),
        "huge BINSTRING length": (b"\x80\x02}q\x00(U\x04dataT\xf0\xff\xff\xffabc", "truncated"),
        "huge BINBYTES8 length": (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"x", "truncated"),
        "huge FRAME": (b"\x80\x04\x95" + struct.pack("<Q", 1 << 60) + b"}.", "truncated frame"),
        "huge memo key": (b"\x80\x02}r\xff\xff\xff\x7f.", "memo key"),
        "GET of missing memo": (b"\x80\x02h\x05.", "never PUT"),
        "too many objects": (b"\x80\x02(" + b"N" * 600000 + b"t.", "objects"),
        "array bigger than its data": (good2.replace(b"(K\x01K\x13M\x00\x0c\x86", b"(K\x01K\x14M\x00\x0c\x86"),
                                       "does not match its shape"),
        "truncated in the pixel data": (good[:len(good) // 2], "truncated"),
        "truncated (py2 layout)": (good2[:-1], "truncated"),
        "bytes after STOP": (good + b"N", "after the end"),
        "not a dict": (pickle.dumps([1, 2, 3], protocol=2), "not a dict"),
        "no labels": (pickle.dumps({b"data": c10["test_batch"][b"data"]}, protocol=2), "'labels'"),
        "label out of range": (pickle.dumps(with_(c10["test_batch"], {b"labels": [10] + c10["test_batch"][b"labels"][1:]}),
                                            protocol=2), "labels[0]"),
        "label count mismatch": (pickle.dumps(with_(c10["test_batch"], {b"labels": [1, 2]}), protocol=2),
                                 "2 labels for 19 images"),
        "data of the wrong shape": (pickle.dumps(with_(c10["test_batch"], {b"data": np.zeros((19, 1024), np.uint8)}),
                                                 protocol=2), "shape (N, 3072)"),
        "data of the wrong dtype": (pickle.dumps(with_(c10["test_batch"], {b"data": np.zeros((19, 3072), np.float32)}),
                                                 protocol=2), "dtype"),
        "empty file": (b"", "not a pickle"),
        "stack underflow": (b"\x80\x02s.", "underflow"),
        "APPENDS without MARK": (b"\x80\x02]K\x01e.", "MARK"),
    }
    for label, (data, needle) in hostile.items():
        folder = os.path.join(tmp, "bad", label.replace(" ", "_").replace("(", "").replace(")", ""))
        write(os.path.join(folder, "test_batch"), data)
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            rc, out = load("cifar10", folder, "test")
        finally:
            os.chdir(cwd)
        ok = rc == 1 and out.startswith("error bad file format") and "test_batch" in out and needle in out
        ok = ok and not os.path.exists(os.path.join(folder, "should_not_exist"))
        check(f"hostile pickle refused: {label}", ok, out[:200])

    # random corruption never crashes; it loads or fails cleanly
    r = random.Random(5)
    crashes = 0
    for trial in range(60):
        data = bytearray(good if trial % 2 else good2)
        for _ in range(r.randint(1, 6)):
            data[r.randrange(min(len(data), 600))] = r.randrange(256)
        folder = os.path.join(tmp, "fuzz", str(trial))
        write(os.path.join(folder, "test_batch"), bytes(data))
        rc, out = load("cifar10", folder, "test")
        if not ((rc == 0 and out.startswith("ok")) or (rc == 1 and out.startswith("error "))):
            crashes += 1
            print("unexpected:", rc, out[:200])
    check("randomly corrupted pickles load or fail cleanly (60 trials)", crashes == 0)
    shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
