#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).

Seeds are small valid inputs (plus a few near misses) in the layouts the
targets expect (see targets.c). The checkpoint seed is a real checkpoint of a
tiny model trained for one batch by the built CLI:

    python3 tests/fuzz/make_seeds.py [--cli build/sparsetrain]

Only the standard library is used, except for the JPEG seeds (Pillow, Debian
python3-pil; skipped with a note without it); output is deterministic.
"""
import argparse
import gzip
import io
import json
import os
import random
import struct
import subprocess
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


def idx(dims, payload):
    return struct.pack(">I", 0x800 | len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload


def mnist_pair(n, rng):
    images = idx([n, 28, 28], bytes(rng.randrange(256) for _ in range(n * 784)))
    labels = idx([n], bytes(rng.randrange(10) for _ in range(n)))
    return images, labels


def idx_input(flags, labels, images):
    return bytes([flags]) + struct.pack("<H", len(labels)) + labels + images


def cifar_records(n, label_bytes, rng, classes):
    out = bytearray()
    for _ in range(n):
        if label_bytes == 2:
            out.append(rng.randrange(20))
        out.append(rng.randrange(classes))
        out += bytes(rng.randrange(256) for _ in range(3072))
    return bytes(out)


def tar_bytes(members, fmt=tarfile.USTAR_FORMAT, compress=True):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gz(raw) if compress else raw


def safetensors(tensors, meta):
    header, blobs, offset = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def idx_seeds(rng):
    images, labels = mnist_pair(2, rng)
    put("idx", "test-split", idx_input(0, labels, images))
    put("idx", "train-split-fashion", idx_input(3, labels, images))
    put("idx", "gz-names", idx_input(4, gz(labels), gz(images)))
    put("idx", "label-count-mismatch", idx_input(0, idx([3], b"\x01\x02\x03"), images))
    put("idx", "empty", idx_input(0, b"", b""))
    put("idx_gz", "gzip", idx_input(0, gz(labels), gz(images)))
    put("idx_gz", "plain-in-gz-name", idx_input(1, labels, images))
    put("idx_gz", "truncated-gzip", idx_input(0, gz(labels), gz(images)[:-10]))


def cifar_seeds(rng):
    put("cifar", "cifar10", b"\x00" + cifar_records(2, 1, rng, 10))
    put("cifar", "cifar100", b"\x01" + cifar_records(2, 2, rng, 100))
    put("cifar", "cifar10-partial-record", b"\x00" + cifar_records(1, 1, rng, 10)[:-7])


def tar_seeds(rng):
    c10 = cifar_records(1, 1, rng, 10)
    c100 = cifar_records(1, 2, rng, 100)
    put("tar", "cifar10-ustar-gz", b"\x00" + tar_bytes([("cifar-10-batches-bin/test_batch.bin", c10)]))
    put("tar", "cifar100-gnu-gz", b"\x01" + tar_bytes([("cifar-100-binary/test.bin", c100)], tarfile.GNU_FORMAT))
    long_name = "d" * 120 + "/test_batch.bin"
    put("tar", "pax-long-name-plain", b"\x00" + tar_bytes([("readme", b"hello"), (long_name, c10)],
                                                            tarfile.PAX_FORMAT, compress=False))
    put("tar", "gnu-long-name", b"\x00" + tar_bytes([(long_name, c10)], tarfile.GNU_FORMAT, compress=False))
    put("tar", "small-members", b"\x00" + tar_bytes([("a", b"x" * 10), ("x/a", b"y")], compress=False))


def safetensors_seeds():
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
    put("safetensors", "two-tensors", safetensors(
        [("w", "F32", [2, 2], f32), ("b", "I64", [1], struct.pack("<q", 7))], {"format": "pt"}))
    put("safetensors", "all-dtypes", safetensors(
        [("a", "F64", [1], struct.pack("<d", 1.5)), ("b", "F16", [2], b"\x00\x3c\x00\xc0"),
         ("c", "BF16", [1], b"\x80\x3f"), ("d", "I32", [1], b"\x01\x00\x00\x00"), ("e", "I16", [1], b"\x02\x00"),
         ("f", "I8", [2], b"\x01\xff"), ("g", "U8", [3], b"\x00\x01\x02"), ("h", "BOOL", [2], b"\x00\x01"),
         ("s", "F32", [], struct.pack("<f", 2.0)), ("z", "F32", [0, 3], b"")], None))
    put("safetensors", "empty", safetensors([], {}))


def json_seeds():
    samples = {
        "object": b'{"a": [1, -2, 3.5e-3, true, false, null], "b": {"c": "\\u00e9\\ud83d\\ude00\\n"}}',
        "args": json.dumps({"model": "cifar_resnet_20", "lr": 0.1, "seed": 17, "sparse": 1}).encode(),
        "numbers": b"[0, -0, 1e308, -9223372036854775808, 18446744073709551616, 1.5E+2]",
        "nested": b"[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]",
        "string": "\"caf\u00e9 \\\" \\\\ \\/ \\b\\f\\r\\t\"".encode(),
    }
    for name, data in samples.items():
        put("json", name, data)


def flags_seeds():
    samples = {
        "all-types": [b"--model", b"lenet5", b"--batch-size=64", b"--seed", b"18446744073709551615", b"--lr", b"1e-3",
                      b"--sparse"],
        "underscores": [b"--batch_size", b"-7", b"--no-sparse", b"--lr=0.5"],
        "help": [b"--help"],
        "errors": [b"--lr", b"fast", b"--model", b"x" * 20],
    }
    for name, args in samples.items():
        put("flags", name, b"\x00".join(args))


def write_idx_folder(folder, rng, n):
    os.makedirs(folder, exist_ok=True)
    for split in ("train", "t10k"):
        images, labels = mnist_pair(n, rng)
        with open(os.path.join(folder, f"{split}-images-idx3-ubyte"), "wb") as f:
            f.write(images)
        with open(os.path.join(folder, f"{split}-labels-idx1-ubyte"), "wb") as f:
            f.write(labels)


def checkpoint_seeds(cli, rng):
    meta_only = {"format": "sparsetrain-checkpoint-1", "model": "cifar_resnet_8_1", "num_classes": "10",
                 "in_channels": "1", "in_height": "28", "in_width": "28", "epoch": "1", "step": "3", "seed": "17",
                 "best_val_acc": "-1", "best_epoch": "0", "best_test_acc": "0.5", "optimizer": "sgd",
                 "data": "mnist", "batch_in_epoch": "0", "epoch_loss_sum": "0", "epoch_correct": "0",
                 "epoch_seen": "0", "args": json.dumps({"model": "cifar_resnet_8_1", "lr": 0.1}),
                 "layer_densities": json.dumps({"conv1.weight": 0.5})}
    put("checkpoint", "metadata-only", safetensors([], meta_only))
    if not cli:
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_idx_folder(os.path.join(tmp, "data"), rng, 8)
        out = os.path.join(tmp, "seed.safetensors")
        subprocess.run([cli, "train", "--model", "cifar_resnet_8_1", "--data", "mnist", "--datadir",
                        os.path.join(tmp, "data"), "--epochs", "1", "--batch-size", "4", "--valid_split", "0.25",
                        "--sparse", "--fix", "--density", "0.5", "--threads", "1", "--quiet", "--save", out],
                       check=True)
        with open(out, "rb") as f:
            put("checkpoint", "cifar_resnet_8_1-sparse", f.read())


def jpeg_seeds(rng):
    """Small JPEGs in the variants ImageNet holds: baseline 4:2:0 and 4:4:4,
    progressive, grayscale, CMYK (Adobe), restart markers; plus a truncated one."""
    try:
        from PIL import Image
    except ImportError:
        print("note: Pillow (python3-pil) missing: JPEG seeds not written")
        return
    w, h = 19, 13
    pixels = bytes(rng.randrange(256) if i % 7 == 0 else (i * 5) % 256 for i in range(w * h * 3))
    rgb = Image.frombytes("RGB", (w, h), pixels)

    def encode(im, **options):
        b = io.BytesIO()
        im.save(b, "JPEG", **options)
        return b.getvalue()
    put("jpeg", "baseline-420", encode(rgb, quality=75))
    put("jpeg", "baseline-444", encode(rgb, quality=90, subsampling=0))
    put("jpeg", "progressive", encode(rgb, quality=75, progressive=True))
    put("jpeg", "grayscale", encode(rgb.convert("L"), quality=75))
    put("jpeg", "cmyk", encode(rgb.convert("CMYK"), quality=75))
    put("jpeg", "optimized-restarts", encode(rgb, quality=50, optimize=True, restart_marker_blocks=1))
    whole = encode(rgb, quality=75)
    put("jpeg", "truncated", whole[: len(whole) * 2 // 3])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", help="built sparsetrain executable (for the checkpoint seed)")
    args = parser.parse_args()
    rng = random.Random(7)
    idx_seeds(rng)
    cifar_seeds(rng)
    tar_seeds(rng)
    safetensors_seeds()
    json_seeds()
    flags_seeds()
    jpeg_seeds(rng)
    checkpoint_seeds(args.cli, rng)


if __name__ == "__main__":
    main()
