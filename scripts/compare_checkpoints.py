"""Byte-for-byte comparison of two sparsetrain checkpoints' tensors and of two
JSON-lines logs without their timing fields (used by compare-runs.sh)."""
import json
import struct
import sys

TIMING = {"images_per_s", "seconds"}
IDENTITY = {"run_id"}  # every fresh run draws its own id (docs/FORMATS.md): not a result


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


def log(path):
    with open(path) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING | IDENTITY} for line in f if line.strip()]


def main(old_ckpt, new_ckpt, old_log, new_log):
    a, b = tensors(old_ckpt), tensors(new_ckpt)
    ok = True
    if sorted(a) != sorted(b):
        print("  tensor names differ:", sorted(set(a) ^ set(b)))
        ok = False
    for k in sorted(set(a) & set(b)):
        if a[k] != b[k]:
            print("  tensor differs:", k)
            ok = False
    la, lb = log(old_log), log(new_log)
    if la != lb:
        print("  logs differ:\n   ", la, "\n   ", lb)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
