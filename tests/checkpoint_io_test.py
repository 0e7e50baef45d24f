"""Checkpoint exchange between PyTorch and the C safetensors code.

Python writes a cifar_resnet_20 checkpoint (state_dict + masks + optimiser
state + metadata); the C reader/writer copies it (`tests/test_io --roundtrip`);
the copy must be byte-identical, read back identically in Python and load
strictly into the PyTorch model with the same outputs. A checkpoint the trainer
wrote, given new values by Python, goes through the C checkpoint loader and
writer (`tests/test_io --checkpoint-roundtrip`) unchanged. Also checks that the C
reader rejects a truncated file, and exercises tools/load_checkpoint.py's
command line (density report, IDX evaluation). Exits non-zero on failure.
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback

import numpy as np
import torch

SOURCE_DIR = os.environ.get("ST_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
BUILD_DIR = os.environ.get("ST_BUILD_DIR", "")
sys.path.insert(0, os.path.join(SOURCE_DIR, "tools"))
import load_checkpoint as lc  # noqa: E402
import torch_models  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def make_model(name, seed, density=0.3):
    """A model with non-trivial BN statistics and random masks at `density`."""
    torch.manual_seed(seed)
    model = torch_models.build(name)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.num_batches_tracked.fill_(391 * 3)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    params = dict(model.named_parameters())
    masks = {n: (torch.rand_like(params[n]) < density).to(torch.uint8)
             for n in torch_models.prunable_weight_names(model)}
    return model, masks


def apply_masks(model, masks):
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m.to(params[n].dtype))


def test_python_side(tmp):
    # The reference counts.
    check(torch_models.count_parameters(torch_models.build("cifar_resnet_20")) == 272474,
          "cifar_resnet_20 must have 272,474 parameters")
    check(torch_models.count_parameters(torch_models.build("WideResNet50_2", 1000)) == 68883240,
          "WideResNet50_2 must have 68,883,240 parameters")
    names = list(torch_models.build("cifar_resnet_20").state_dict())
    check(names[:3] == ["conv.weight", "bn.weight", "bn.bias"] and names[-2:] == ["fc.weight", "fc.bias"],
          "cifar_resnet_20 state_dict names")
    check("blocks.3.shortcut.0.weight" in names and "blocks.0.shortcut.0.weight" not in names,
          "shortcut convs only where stride/width change")
    vgg = list(torch_models.build("vgg11").state_dict())
    check(vgg[0] == "feature.0.weight" and "feature.4.weight" in vgg and "feature.5.running_var" in vgg,
          "vgg11 feature indices (conv 0, BN 1, ReLU 2, M 3, conv 4, BN 5)")

    # Python writer -> Python reader, every dtype.
    tensors = [("f32", np.arange(6, dtype=np.float32).reshape(2, 3)), ("f64", np.array(2.5)),
               ("i64", np.array([-1, 2**40], dtype=np.int64)), ("u8", np.array([0, 255], dtype=np.uint8)),
               ("bool", np.array([True, False])), ("empty", np.zeros((0, 4), dtype=np.float32)),
               ("bf16", torch.tensor([1.5, -2.0], dtype=torch.bfloat16))]
    path = os.path.join(tmp, "dtypes.safetensors")
    lc.write_safetensors(path, tensors, {"k": "v\u00e9\n\"", "empty": ""})
    back, meta = lc.read_safetensors(path)
    check(list(back) == [n for n, _ in tensors], "python reader keeps data order")
    for n, v in tensors[:-1]:
        check(back[n].dtype == v.dtype and back[n].shape == v.shape and np.array_equal(back[n], v),
              f"python round trip of {n}")
    check(np.array_equal(back["bf16"], np.array([1.5, -2.0], dtype=np.float32)), "bf16 read as float32")
    check(meta == {"k": "v\u00e9\n\"", "empty": ""}, "python metadata round trip")
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    check(n % 8 == 0, "header padded to a multiple of 8")
    rejected = 0
    for cut in range(len(data)):
        try:
            lc.parse_safetensors(data[:cut], "cut")
        except lc.SafetensorsError:
            rejected += 1
    check(rejected == len(data), "python reader rejects every truncation")


def run_c_roundtrip(test_io, src, dst):
    return subprocess.run([test_io, "--roundtrip", src, dst], capture_output=True, text=True, timeout=120)


def test_checkpoint_exchange(tmp, test_io):
    model, masks = make_model("cifar_resnet_20", seed=17)
    params = dict(model.named_parameters())
    optim = {f"{n}.momentum_buffer": torch.randn_like(p) for n, p in list(params.items())[:5]}
    args = {"model": "cifar_resnet_20", "density": 0.3, "sparse_init": "ERK", "note": "caf\u00e9 \"quoted\""}
    src = os.path.join(tmp, "from_torch.safetensors")
    lc.save_checkpoint_like(src, model, masks, {"model": "cifar_resnet_20", "epoch": 3, "args": json.dumps(args)},
                            optim_state=optim)
    apply_masks(model, masks)

    tensors, meta = lc.read_safetensors(src)
    check(meta["format"] == "sparsetrain-checkpoint-1" and meta["model"] == "cifar_resnet_20", "format/model metadata")
    check(meta["num_classes"] == "10" and meta["in_channels"] == "3" and meta["epoch"] == "3", "numeric metadata")
    check(json.loads(meta["args"]) == args, "args metadata is the run's arguments as JSON")
    check(tensors["blocks.0.bn1.num_batches_tracked"].dtype == np.int64, "num_batches_tracked stored as I64")
    check(tensors["mask.conv.weight"].dtype == np.uint8, "masks stored as U8")
    check(len([k for k in tensors if k.startswith("mask.")]) == 22, "one mask per prunable weight (22)")

    dst = src
    if test_io:
        dst = os.path.join(tmp, "through_c.safetensors")
        r = run_c_roundtrip(test_io, src, dst)
        check(r.returncode == 0, f"C round trip succeeds (rc {r.returncode}: {r.stderr.strip()})")
        if r.returncode == 0:
            with open(src, "rb") as a, open(dst, "rb") as b:
                check(a.read() == b.read(), "C writer output is byte-identical to the Python writer's")
            tensors2, meta2 = lc.read_safetensors(dst)
            check(meta2 == meta, "metadata identical after the C round trip")
            check(list(tensors2) == list(tensors), "tensor names and order identical after the C round trip")
            for k, v in tensors.items():
                w = tensors2.get(k)
                check(w is not None and w.dtype == v.dtype and w.shape == v.shape and np.array_equal(w, v),
                      f"tensor {k} identical after the C round trip")
        # The C reader rejects a truncated checkpoint with a message naming it.
        with open(src, "rb") as f:
            data = f.read()
        for cut in (4, 100, len(data) // 2, len(data) - 1):
            bad = os.path.join(tmp, f"truncated_{cut}.safetensors")
            with open(bad, "wb") as f:
                f.write(data[:cut])
            r = run_c_roundtrip(test_io, bad, os.path.join(tmp, "never.safetensors"))
            check(r.returncode != 0 and bad in r.stderr, f"C reader rejects a file truncated at {cut} bytes")
        check(not os.path.exists(os.path.join(tmp, "never.safetensors")), "no output from a failed read")
    else:
        check(False, "the C helper tests/test_io is built (it is part of every build)")

    # Strict load into PyTorch, masks applied, same outputs.
    ckpt = lc.load_checkpoint(dst)
    check(ckpt.masked_nonzero == 0, "masked weights are exactly zero in the file")
    check(set(ckpt.masks) == set(masks), "all masks loaded")
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    ckpt.model.eval()
    with torch.no_grad():
        check(torch.equal(model(x), ckpt.model(x)), "loaded model computes the same logits")
    for n, p in ckpt.model.named_parameters():
        if n in masks:
            check(bool((p[masks[n] == 0] == 0).all()), f"mask applied to {n}")

    # A checkpoint with an unexpected tensor or a missing one fails strictly.
    broken = dict(tensors)
    broken["extra.weight"] = np.zeros(3, dtype=np.float32)
    path = os.path.join(tmp, "extra.safetensors")
    lc.write_safetensors(path, broken, meta)
    try:
        lc.load_checkpoint(path)
        check(False, "strict load rejects an unexpected tensor")
    except lc.SafetensorsError:
        pass

    # Command line: density report.
    tool = os.path.join(SOURCE_DIR, "tools", "load_checkpoint.py")
    r = subprocess.run([sys.executable, tool, dst, "--layers"], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"load_checkpoint.py runs ({r.stderr.strip()})")
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    check("parameters: 272,474" in r.stdout, "CLI prints the parameter count")
    check(f"masked density: {kept / total:.6f}" in r.stdout, "CLI prints the masked density")
    print(r.stdout, end="")


def write_idx(path, array, type_code):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_checkpoint_writer(tmp, test_io):
    """The C checkpoint writer (st_checkpoint_save, what the trainer calls):
    a checkpoint the trainer wrote (Adam state, masks, best-on-validation
    copy, metadata) gets new values from Python in every float tensor and
    every count, goes through the C loader and writer (`test_io
    --checkpoint-roundtrip`), and must come back with every tensor (values,
    dtype, shape) and every metadata entry unchanged, except optimiser state
    at masked positions, which the loader zeroes."""
    sys.path.insert(0, os.path.join(SOURCE_DIR, "tests"))
    from testlib import write_idx_dataset
    data = write_idx_dataset(os.path.join(tmp, "writer-data"), n_train=128, n_test=32)
    made = os.path.join(tmp, "trained.safetensors")
    r = subprocess.run([os.path.join(BUILD_DIR, "sparsetrain"), "train", "--data", "mnist", "--datadir", data,
                        "--model", "cifar_resnet_8_4", "--epochs", "2", "--max-batches", "2", "--batch-size", "16",
                        "--optimizer", "adam", "--lr", "0.001", "--sparse", "--fix", "--sparse_init", "ERK",
                        "--density", "0.3", "--threads", "2", "--plain", "--quiet", "--save", made],
                       capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"a short Adam run writes a checkpoint ({r.stderr.strip()[-200:]})")
    if r.returncode != 0:
        return
    tensors, meta = lc.read_safetensors(made)
    rng = np.random.RandomState(5)
    changed = {}
    for k, v in tensors.items():
        if k.startswith(("mask.", "itop.")):
            changed[k] = v
            continue
        if v.dtype == np.int64:  # num_batches_tracked
            changed[k] = np.asarray(rng.randint(1, 10 ** 6), dtype=np.int64).reshape(v.shape)
            continue
        new = rng.standard_normal(v.shape).astype(np.float32)
        if k.endswith("exp_avg_sq") or k.endswith("running_var"):
            new = np.abs(new)
        weight = k.split(".", 1)[1] if k.startswith(("best.", "optim.")) else k
        weight = weight.rsplit(".", 1)[0] if k.startswith("optim.") else weight  # optim.<weight>.<state>
        mask = tensors.get("mask." + weight)
        # masked positions of weights stay exactly 0; optimiser state gets
        # values there too (PyTorch's buffers do: the reference masks weights,
        # not gradients), which the loader must zero (expected below)
        changed[k] = new * mask if mask is not None and not k.startswith("optim.") else new
    src = os.path.join(tmp, "writer-in.safetensors")
    dst = os.path.join(tmp, "writer-out.safetensors")
    lc.write_safetensors(src, list(changed.items()), meta)
    r = subprocess.run([test_io, "--checkpoint-roundtrip", src, dst], capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, f"C checkpoint loader + writer succeed (rc {r.returncode}: {r.stderr.strip()})")
    if r.returncode != 0:
        return
    out, meta2 = lc.read_safetensors(dst)
    expected = dict(changed)
    for k, v in changed.items():
        if k.startswith("optim.") and "mask." + k[len("optim."):].rsplit(".", 1)[0] in changed:
            expected[k] = v * changed["mask." + k[len("optim."):].rsplit(".", 1)[0]]
    check(any(not np.array_equal(expected[k], changed[k]) for k in changed),
          "the input has optimiser state at masked positions (to be zeroed)")
    kinds = {k.split(".")[0] for k in changed}
    check({"best", "mask", "optim"} <= kinds and any(k.endswith("exp_avg_sq") for k in changed),
          f"the checkpoint holds best.*, mask.*, optim.* (Adam) tensors: {sorted(kinds)}")
    check(sorted(out) == sorted(changed), f"the C writer writes the same tensors "
          f"(missing {sorted(set(changed) - set(out))[:3]}, extra {sorted(set(out) - set(changed))[:3]})")
    differ = [k for k, v in expected.items() if k not in out or out[k].dtype != v.dtype or out[k].shape != v.shape or
              not np.array_equal(out[k], v)]
    check(not differ, "every tensor identical after the C checkpoint loader and writer, optimiser state at masked "
          f"positions zeroed (differ: {differ[:4]})")
    check(meta2 == meta, "every metadata entry identical after the C checkpoint writer "
          f"({ {k: (meta.get(k), meta2.get(k)) for k in set(meta) | set(meta2) if meta.get(k) != meta2.get(k)} })")


def test_idx_evaluation(tmp, test_io):
    model, masks = make_model("lenet5", seed=3, density=0.5)
    apply_masks(model, masks)
    model.eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 28, 28), dtype=np.uint8)
    mean, std = 0.1307, 0.3081
    x = torch.from_numpy(((images.astype(np.float32) / 255.0 - mean) / std)[:, None])
    with torch.no_grad():
        labels = model(x).argmax(1).numpy().astype(np.uint8)
    labels[:5] = (labels[:5] + 1) % 10   # 5 of 37 wrong on purpose
    img_path, lab_path = os.path.join(tmp, "images-idx3-ubyte.gz"), os.path.join(tmp, "labels-idx1-ubyte.gz")
    write_idx(img_path, images, 0x08)
    write_idx(lab_path, labels, 0x08)
    check(np.array_equal(lc.read_idx(img_path), images), "IDX reader (gzip)")
    ckpt_path = os.path.join(tmp, "lenet5.safetensors")
    lc.save_checkpoint_like(ckpt_path, model, masks, {"model": "lenet5"})
    if test_io:
        copied = os.path.join(tmp, "lenet5_c.safetensors")
        check(run_c_roundtrip(test_io, ckpt_path, copied).returncode == 0, "C round trip of lenet5")
        ckpt_path = copied
    tool = os.path.join(SOURCE_DIR, "tools", "load_checkpoint.py")
    r = subprocess.run([sys.executable, tool, ckpt_path, "--idx-images", img_path, "--idx-labels", lab_path,
                        "--mean", str(mean), "--std", str(std)], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, f"IDX evaluation runs ({r.stderr.strip()})")
    check(f"accuracy: {32 / 37:.4f} on 37 images" in r.stdout, f"IDX accuracy is 32/37 (got: {r.stdout.strip()})")


def main():
    test_io = os.path.join(BUILD_DIR, "tests", "test_io") if BUILD_DIR else ""
    if not (test_io and os.access(test_io, os.X_OK)):
        test_io = ""
    base = os.path.join(BUILD_DIR, "tests", "tmp") if BUILD_DIR and os.path.isdir(BUILD_DIR) else None
    if base:
        os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="checkpoint_io.", dir=base)
    for test in (test_python_side, test_checkpoint_exchange, test_checkpoint_writer, test_idx_evaluation):
        try:
            test(tmp) if test is test_python_side else test(tmp, test_io)
        except Exception:
            traceback.print_exc()
            failures.append(f"{test.__name__} raised")
    if failures:
        print(f"FAIL: {len(failures)} check(s) failed; files kept in {tmp}")
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
