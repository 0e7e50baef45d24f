"""The ImageNet family against torchvision (Debian python3-torchvision).

* Names, shapes and order of every parameter and buffer, and the trainable
  count, of our ResNet18/34/50/101/152 and WideResNet50_2/101_2 against
  torchvision.models' state_dict (num_batches_tracked aside: our checkpoints
  write it per BN, FORMATS.md), at 1000 classes for WideResNet50_2
  (68,883,240 parameters, SPEC section 2).
* On identical weights (torchvision's own initialisation, saved as a
  sparsetrain checkpoint), batches of 2 images of 64x64 and 10 classes:
  the logits of the first forward pass, every parameter gradient of the
  first backward pass, and the losses of 2 SGD steps (ResNet50: 1), C (tests/test_model
  --parity, dense execution) against PyTorch float32 and float64, with the
  same rule as tests/model_parity_test.py (testlib.check_against). ResNet18
  runs with random masks at density 0.5 (masked weights 0, gradients
  compared at kept positions) and the ImageNet recipe's loss and optimiser
  (label smoothing 0.1 against CrossEntropyLoss(label_smoothing=0.1), SGD
  without Nesterov with the *bn* parameters in a weight_decay=0 group, as
  the reference's get_optimizer, at a weight decay of 0.05 so that a
  decayed BN weight would show in the final weights), ResNet50 (bottleneck
  blocks) dense with plain cross entropy and one step (its float64
  backward is what makes this test slow).
  ResNet50 at torchvision's initialisation (fan-out, no zero-init of the
  last BN) on random 64x64 images is badly conditioned in float32: PyTorch's
  own float32 and float64 gradients differ by 2-4e-2, in the worst tensor
  (a BN bias) and as one vector alike (also with fan-in init, or batch 4),
  and its loss jumps to ~12 after one step at lr 0.01, so there
  the rule asks us to be as accurate as PyTorch float32 against float64;
  ResNet18 meets the plain 1e-4 outright.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, check_against, finish, rel, skip  # noqa: E402

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:  # a missing Debian package: reported as skipped
    skip(f"needs python3-torch, python3-numpy and python3-torchvision ({e})")

import load_checkpoint as lc  # noqa: E402
from torch_training import masked_training  # noqa: E402

torch.set_num_threads(2)
HARNESS = os.path.join(BUILD, "tests", "test_model")
TORCHVISION = {"ResNet18": "resnet18", "ResNet34": "resnet34", "ResNet50": "resnet50", "ResNet101": "resnet101",
               "ResNet152": "resnet152", "WideResNet50_2": "wide_resnet50_2", "WideResNet101_2": "wide_resnet101_2"}


def ours_describe(name, classes):
    out = subprocess.run([HARNESS, "--describe", name, str(classes), "3", "64"], check=True, capture_output=True,
                         text=True).stdout.split("\n")
    rows = [line.split(" ") for line in out if line]
    count = int(rows[-1][1])
    return [(n, tuple(int(d) for d in s.split(","))) for n, s in rows[:-1]], count


def uninitialised(name, classes):
    """torchvision's model without its (slow, here unused) initialisation."""
    saved = {f: getattr(torch.nn.init, f) for f in ("kaiming_normal_", "kaiming_uniform_", "uniform_", "constant_",
                                                      "normal_", "zeros_", "ones_")}
    try:
        for f in saved:
            setattr(torch.nn.init, f, lambda tensor, *args, **kwargs: tensor)
        return getattr(torchvision.models, TORCHVISION[name])(num_classes=classes)
    finally:
        for f, fn in saved.items():
            setattr(torch.nn.init, f, fn)


def check_names(name, classes):
    model = uninitialised(name, classes)
    theirs = [(k, tuple(v.shape)) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    ours, count = ours_describe(name, classes)
    want = sum(p.numel() for p in model.parameters())
    first_diff = next((f"ours {a} vs torchvision {b}" for a, b in zip(ours, theirs) if a != b), "")
    check(f"{name} ({classes} classes): names, shapes and order of {len(theirs)} tensors",
          ours == theirs, first_diff or f"{len(ours)} vs {len(theirs)} tensors")
    check(f"{name} ({classes} classes): {want:,} trainable parameters", count == want, f"ours {count:,}")


def torch_run(model, masks, images, labels, lr, dtype, smoothing=0.0, no_decay_bn=False, wd=1e-4):
    def make_optimizer(params):
        if no_decay_bn:  # the reference ImageNet main.py's get_optimizer without --bn-weight-decay
            groups = [{"params": [p for n, p in params.items() if "bn" in n], "weight_decay": 0},
                      {"params": [p for n, p in params.items() if "bn" not in n], "weight_decay": wd}]
        else:
            groups = list(params.values())
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=wd)

    return masked_training(model, masks, images, labels, make_optimizer,
                           torch.nn.CrossEntropyLoss(label_smoothing=smoothing), dtype)


def check_training(name, density, seed, steps=2, batch=2, size=64, lr=0.01, smoothing=0.0, no_decay_bn=False,
                   wd=1e-4):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, TORCHVISION[name])(num_classes=10)
    gen = torch.Generator().manual_seed(seed + 1)
    masks = {}
    weights = dict(model.named_parameters())
    if density < 1:
        for n, p in weights.items():
            if p.dim() in (2, 4):
                masks[n] = (torch.rand(p.shape, generator=gen) < density).to(torch.uint8)
        with torch.no_grad():
            for n, m in masks.items():
                weights[n].mul_(m.to(weights[n].dtype))
    images = torch.randn(steps, batch, 3, size, size, generator=gen)
    labels = torch.randint(0, 10, (steps, batch), generator=gen)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        lc.save_checkpoint_like(inp, model, masks, meta={
            "model": name, "in_height": str(size), "in_width": str(size), "lr": str(lr), "momentum": "0.9",
            "weight_decay": repr(wd), "adam": "0", "nesterov": "0", "label_smoothing": repr(smoothing),
            "no_decay_bn": "1" if no_decay_bn else "0"})
        tensors, metadata = lc.read_safetensors(inp)
        tensors = list(tensors.items()) + [("batch.images", images.numpy()), ("batch.labels", labels.numpy())]
        lc.write_safetensors(inp, tensors, metadata)
        subprocess.run([HARNESS, "--parity", inp, out], check=True)
        result, _ = lc.read_safetensors(out)
    l32, logits32, g32, f32 = torch_run(model, masks, images, labels, lr, torch.float32, smoothing, no_decay_bn, wd)
    l64, logits64, g64, f64 = torch_run(model, masks, images, labels, lr, torch.float64, smoothing, no_decay_bn, wd)
    tag = f"{name} d={density} batch={batch} {size}x{size}" + (
        f" label smoothing {smoothing}, no decay on *bn*" if smoothing or no_decay_bn else "")
    check_against(f"{tag}: logits", rel(result["logits0"], logits32), rel(result["logits0"], logits64),
                  rel(logits32, logits64), 1e-4)
    ours = {n: result["grad." + n] * (masks[n].numpy() if n in masks else 1) for n in g64}
    worst = max(g64, key=lambda n: rel(ours[n], g64[n]))
    check_against(f"{tag}: {len(g64)} gradients (worst {worst})", max(rel(ours[n], g32[n]) for n in g64),
                  max(rel(ours[n], g64[n]) for n in g64), max(rel(g32[n], g64[n]) for n in g64), 1e-4)
    # all gradients as one vector: a few tiny BN-bias gradients (sums of 8 values that nearly cancel) set
    # the worst tensor's error above, the whole gradient is well conditioned
    def cat(d):
        return np.concatenate([np.asarray(d[n], dtype=np.float64).ravel() for n in g64])
    check_against(f"{tag}: all gradients as one vector", rel(cat(ours), cat(g32)), rel(cat(ours), cat(g64)),
                  rel(cat(g32), cat(g64)), 1e-4)
    c = np.asarray(result["losses"], dtype=np.float64)
    check_against(f"{tag}: losses of {steps} SGD steps", float((np.abs(c - l32) / np.abs(l32)).max()),
                  float((np.abs(c - l64) / np.abs(l64)).max()), float((np.abs(l32 - l64) / np.abs(l64)).max()), 1e-4)
    if no_decay_bn:  # the *bn* weights moved by their gradients only, the rest decayed (wd large enough to tell)
        def flat(d):
            return np.concatenate([np.asarray(d[n], dtype=np.float64).ravel() for n in f64])
        fin = flat({n: result["final." + n] for n in f64})
        check_against(f"{tag}: final weights after {steps} steps", rel(fin, flat(f32)), rel(fin, flat(f64)),
                      rel(flat(f32), flat(f64)), 1e-5)
    print("   C      :", " ".join(f"{x:.6f}" for x in c))
    print("   torch32:", " ".join(f"{x:.6f}" for x in l32))


for n in TORCHVISION:
    check_names(n, 10)
check_names("WideResNet50_2", 1000)
check_training("ResNet18", 0.5, seed=4, smoothing=0.1, no_decay_bn=True, wd=0.05)
check_training("ResNet50", 1.0, seed=5, steps=1)  # one step: the float64 backward of ResNet50 is slow
finish()
