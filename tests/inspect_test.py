"""`sparsetrain inspect`: the JSON's keys and internal consistency, densities
against an independent transcription of the reference code's ERK/ER loop, the
table, data-dependent distributions, and usage errors.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, SRC, check, finish, skip_part  # noqa: E402
import torch_models  # noqa: E402
import torch  # noqa: E402 (after torch_models, which needs it too)



CMD = [os.path.join(BUILD, "sparsetrain"), "inspect"]
print("using", " ".join(CMD))


def inspect(*args, expect=0):
    r = subprocess.run(CMD + list(args), capture_output=True, text=True, timeout=300)
    if r.returncode != expect:
        print(r.stdout[-2000:], r.stderr[-2000:])
    return r


def inspect_json(*args):
    r = inspect(*args, "--json")
    return json.loads(r.stdout) if r.returncode == 0 else None


def reference_erk(shapes, density, kernel_aware):
    """sparselearning/core.py's ER / ERK loop, transcribed."""
    dense_layers, valid = set(), False
    while not valid:
        divisor, rhs, raw = 0, 0, {}
        for name, shape in shapes.items():
            n_param = np.prod(shape)
            if name in dense_layers:
                rhs -= n_param * (1 - density)
            else:
                rhs += n_param * density
                dims = shape if kernel_aware else shape[:2]
                raw[name] = np.sum(dims) / np.prod(dims)
                divisor += raw[name] * n_param
        epsilon = rhs / divisor
        max_prob = np.max(list(raw.values()))
        if max_prob * epsilon > 1:
            for name, p in raw.items():
                if p == max_prob:
                    dense_layers.add(name)
        else:
            valid = True
    return {n: 1.0 if n in dense_layers else epsilon * raw[n] for n in shapes}


KEYS = ["layers", "total_prunable", "target_density", "overall_density", "flops_dense", "flops_sparse"]
LAYER_KEYS = ["name", "shape", "numel", "density", "kept", "flops_dense", "flops_sparse"]


def consistent(tag, j, model, exact=True):
    check(f"{tag}: keys", all(k in j for k in KEYS) and all(all(k in l for k in LAYER_KEYS) for l in j["layers"]))
    names = torch_models.prunable_weight_names(model)
    params = dict(model.named_parameters())
    check(f"{tag}: every prunable layer, PyTorch names and shapes, in parameter order",
          [l["name"] for l in j["layers"]] == names and
          all(l["shape"] == list(params[l["name"]].shape) and l["numel"] == params[l["name"]].numel()
              for l in j["layers"]))
    total = sum(l["numel"] for l in j["layers"])
    kept = sum(l["kept"] for l in j["layers"])
    check(f"{tag}: totals", j["total_prunable"] == total and j["total_kept"] == kept and
          math.isclose(j["overall_density"], kept / total, rel_tol=1e-12),
          f"{kept} of {total} kept, overall density {j['overall_density']:.5f} (target {j['target_density']})")
    if exact:
        check(f"{tag}: exact sampling keeps round(d_l n_l)",
              all(l["kept"] == int(np.floor(l["density"] * l["numel"] + 0.5)) for l in j["layers"]))
    check(f"{tag}: sparse FLOPs = dense FLOPs x kept share",
          all(math.isclose(l["flops_sparse"], l["flops_dense"] * l["kept"] / l["numel"], rel_tol=1e-12)
              for l in j["layers"]))
    dense = sum(l["flops_dense"] for l in j["layers"]) + j["flops_other"]
    sparse = sum(l["flops_sparse"] for l in j["layers"]) + j["flops_other"]
    check(f"{tag}: FLOPs totals = layers + other ops, training step = 3 x forward",
          math.isclose(j["flops_dense"], dense, rel_tol=1e-12) and math.isclose(j["flops_sparse"], sparse,
                                                                                 rel_tol=1e-12) and
          math.isclose(j["train_flops_sparse"], 3 * sparse, rel_tol=1e-12) and
          math.isclose(sum(l["flops_share"] for l in j["layers"]) + j["flops_other"] / dense, 1, rel_tol=1e-9))


# ERK / ER against the reference loop on several models and densities.
for name, args in [("cifar_resnet_20", []), ("vgg16", []), ("lenet5", []), ("cifar_resnet_32_8", ["--data", "cifar100"])]:
    model = torch_models.build(name, num_classes=100 if "cifar100" in args else 10)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()
              if n in torch_models.prunable_weight_names(model)}
    for init in ["ERK", "ER"]:
        for density in [0.01, 0.05, 0.3]:
            j = inspect_json("--model", name, "--sparse_init", init, "--density", str(density),
                             "--mask-sampling", "exact", *args)
            if j is None:
                check(f"{name} {init} {density}: runs", False)
                continue
            ref = reference_erk(shapes, density, init == "ERK")
            diff = max(abs(l["density"] - ref[l["name"]]) for l in j["layers"])
            # 1e-12: the same double arithmetic in another order
            check(f"{name} {init} d={density}: densities equal the reference loop", diff <= 1e-12, f"max diff {diff:.1e}")
            consistent(f"{name} {init} d={density}", j, model)
            # 1e-3: each layer keeps round(d_l n_l), off by <= 0.5 weight per layer (and forced-dense layers' rounding)
            check(f"{name} {init} d={density}: overall density within 1e-3 of target",
                  abs(j["overall_density"] - density) <= 1e-3, f"{j['overall_density']:.6f}")

# Known FLOPs: cifar_resnet_20 is 40.81M multiply-accumulates of conv/linear; uniform at d has d of them.
j = inspect_json("--model", "cifar_resnet_20", "--sparse_init", "uniform", "--density", "0.1")
check("cifar_resnet_20: 40,813,184 conv/linear MACs", j["flops_prunable_dense"] == 40813184, str(j["flops_prunable_dense"]))
check("uniform 0.1: sparse conv/linear FLOPs ~ 10 %",  # 1e-3: per-layer rounding of the kept counts
      abs(j["flops_prunable_sparse"] / j["flops_prunable_dense"] - 0.1) < 1e-3)
dense = inspect_json("--model", "cifar_resnet_20", "--sparse_init", "dense")
check("dense: every layer kept, sparse FLOPs = dense FLOPs",
      dense["overall_density"] == 1 and dense["flops_sparse"] == dense["flops_dense"])

# Other distributions, shapes from --data / --input, Bernoulli sampling.
model = torch_models.build("cifar_resnet_20")
for init, extra in [("uniform_plus", []), ("ERK_plus", ["--fc_density", "1.0"]), ("global_magnitude", []),
                    ("ERK", ["--mask-sampling", "bernoulli"])]:
    j = inspect_json("--model", "cifar_resnet_20", "--sparse_init", init, "--density", "0.1", *extra)
    if j is None:
        check(f"{init}: runs", False)
        continue
    consistent(f"cifar_resnet_20 {init} {' '.join(extra)}", j, model, exact="bernoulli" not in extra)
    if init == "uniform_plus":
        check("uniform_plus: stem dense, classifier 0.2", j["layers"][0]["density"] == 1 and
              j["layers"][-1]["density"] == 0.2)
    if init == "ERK_plus":
        check("ERK_plus: classifier at --fc_density 1", j["layers"][-1]["density"] == 1)
    if init == "global_magnitude":
        expected = sum(l["density"] * l["numel"] for l in j["layers"])
        check("global_magnitude: int(d N) weights selected", abs(expected - int(0.1 * j["total_prunable"])) < 0.5)
j = inspect_json("--model", "cifar_resnet_20", "--data", "fashion-mnist", "--sparse_init", "ERK")
check("--data fashion-mnist: 1x28x28 input", j["input"] == [1, 28, 28] and j["layers"][0]["shape"] == [16, 1, 3, 3])
j = inspect_json("--model", "cifar_resnet_20", "--data", "cifar100", "--sparse_init", "ERK")
check("--data cifar100: 100 classes", j["layers"][-1]["shape"] == [100, 64])
j = inspect_json("--model", "cifar_resnet_20", "--input", "1x16x16", "--sparse_init", "ERK")
check("--input 1x16x16: FLOPs scale with the input", j["layers"][1]["flops_dense"] == 16 * 16 * 16 * 16 * 9)

# The table names every layer and gives the totals.
r = inspect("--model", "cifar_resnet_20", "--sparse_init", "ERK", "--density", "0.05")
check("table: every layer and the totals", r.returncode == 0 and
      all(n in r.stdout for n in torch_models.prunable_weight_names(model)) and
      "overall density" in r.stdout and "forward FLOPs" in r.stdout and "training step FLOPs" in r.stdout)

# snip / GraSP score real training data (the embedded Fashion-MNIST, if installed).
if os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"):
    lenet = torch_models.build("lenet5")
    for init in ["snip", "GraSP"]:
        j = inspect_json("--model", "lenet5", "--data", "fashion-mnist", "--sparse_init", init, "--density", "0.05")
        if j is None:
            check(f"lenet5 {init}: runs", False)
            continue
        consistent(f"lenet5 {init} on fashion-mnist", j, lenet)
        selected = sum(l["density"] * l["numel"] for l in j["layers"])
        want = int(0.05 * j["total_prunable"]) + (1 if init == "GraSP" else 0)  # GraSP keeps its threshold score
        check(f"lenet5 {init}: d*N weights selected", abs(selected - want) < 0.5 + 1e-6, f"{selected:.1f} vs {want}")
else:
    skip_part("snip/GraSP on data: Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed")

# An ImageNet model (the paper's recipe: ERK_plus 0.2, classifier dense): names and
# shapes of tools/torch_models.py's torchvision re-statement, fc.weight at 1.0,
# and the dense multiply-adds of every conv / linear layer at 224x224 against
# PyTorch forward hooks (out_h * out_w * out * in * k * k; fc: in * out).
model = torch_models.build("ResNet50", num_classes=1000)
j = inspect_json("--model", "ResNet50", "--sparse_init", "ERK_plus", "--density", "0.2", "--fc_density", "1.0",
                 "--input", "3x224x224", "--classes", "1000")
if j is None:
    check("ResNet50 ERK_plus: runs", False)
else:
    consistent("ResNet50 ERK_plus 0.2 at 224x224", j, model)
    fc = [l for l in j["layers"] if l["name"] == "fc.weight"]
    check("ResNet50 ERK_plus: the classifier (found by structure) is dense, overall 0.2",
          len(fc) == 1 and fc[0]["density"] == 1.0 and abs(j["overall_density"] - 0.2) < 1e-6)
    macs = {}

    def hook(name):
        def f(module, inputs, out):
            w = module.weight
            macs[name + ".weight"] = (out.shape[2] * out.shape[3] if out.dim() == 4 else 1) * w.numel()
        return f
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(hook(name))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224))
    worst = max(abs(l["flops_dense"] - macs[l["name"]]) for l in j["layers"])
    check("ResNet50 at 224x224: dense FLOPs of every layer = PyTorch's multiply-adds "
          f"(total {sum(macs.values()) / 1e9:.4f} G)", worst == 0, f"worst difference {worst}")

# Usage errors: exit code 2 and a message naming the flag.
for args, needle in [(["--sparse_init", "snip"], "--data"), (["--sparse_init", "nonsense"], "--sparse_init"),
                     (["--density", "0"], "--density"), (["--input", "3x32"], "--input"),
                     (["--model", "resnet"], "resnet"), (["--data", "imagenet"], "--data"),
                     (["--mask-sampling", "some"], "--mask-sampling")]:
    r = inspect(*args, expect=2)
    check(f"error {' '.join(args)}", r.returncode == 2 and needle in r.stderr, r.stderr.strip())

finish()
