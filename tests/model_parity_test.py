"""Whole-model parity with PyTorch (Debian python3-torch).

For each case, identical initial weights, masks and batches go to our C
implementation (`tests/test_model --parity IN OUT`) and to PyTorch, which runs
the same training twice: in float32 (PyTorch's normal precision) and in
float64 (a near-exact reference). Checked:

* logits of the first forward pass: C vs PyTorch float32, relative error <= 1e-4;
  (cases marked sparse run the C side on the sparse executor: packed weights
  and the direct sparse kernels, metadata sparse_execution = 1);
* every parameter gradient of the first backward pass, the loss of every
  SGD/Adam step (masks re-applied after each step, as the reference code does)
  and the final weights after the last step (relative L2 over all parameters).

A ResNet with batch norm at initialisation is numerically sensitive: PyTorch's
own float32 and float64 runs of cifar_resnet_20 differ by ~1e-3 in some
gradients and by several percent in the loss after 20 steps at lr 0.1, so no
float32 implementation can agree with PyTorch to 1e-3 over that horizon. The
test therefore requires, per quantity, that our error against the float64
reference is at most max(tolerance, 3 x PyTorch float32's own error), i.e. that
we are as accurate as PyTorch, and the plain tolerance (1e-4 gradients, 1e-3
losses) against PyTorch float32 wherever PyTorch's float32 result is itself
accurate (float32 vs float64 below a tenth of the tolerance). Well-conditioned
cases (LeNets, VGG, small-batch ResNet) meet the plain tolerances outright.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, check_against, finish, rel  # noqa: E402
import load_checkpoint as lc  # noqa: E402
import torch_models  # noqa: E402
from torch_training import masked_training  # noqa: E402

torch.set_num_threads(2)


def torch_run(model, masks, images, labels, optimizer, lr, dtype):
    def make_optimizer(params):
        if optimizer == "adam":
            return torch.optim.Adam(params.values(), lr=lr, weight_decay=5e-4)
        return torch.optim.SGD(params.values(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)

    return masked_training(model, masks, images, labels, make_optimizer,
                           lambda logits, y: F.nll_loss(F.log_softmax(logits, dim=1), y), dtype)


def run_case(model_name, in_channels, size, steps, batch, density, optimizer, lr, seed, sparse=False):
    torch.manual_seed(seed)
    model = torch_models.build(model_name, num_classes=10, in_channels=in_channels)
    gen = torch.Generator().manual_seed(seed + 1)
    masks = {}
    if density < 1:
        weights = dict(model.named_parameters())
        for name in torch_models.prunable_weight_names(model):
            masks[name] = (torch.rand(weights[name].shape, generator=gen) < density).to(torch.uint8)
        with torch.no_grad():
            for name, m in masks.items():
                weights[name].mul_(m.to(weights[name].dtype))
    images = torch.randn(steps, batch, in_channels, size, size, generator=gen)
    labels = torch.randint(0, 10, (steps, batch), generator=gen)

    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        lc.save_checkpoint_like(inp, model, masks, meta={
            "model": model_name, "in_height": str(size), "in_width": str(size), "lr": str(lr),
            "momentum": "0.9", "weight_decay": "5e-4", "adam": "1" if optimizer == "adam" else "0",
            "sparse_execution": "1" if sparse else "0"})
        tensors, metadata = lc.read_safetensors(inp)
        tensors = list(tensors.items()) + [("batch.images", images.numpy()), ("batch.labels", labels.numpy())]
        lc.write_safetensors(inp, tensors, metadata)
        subprocess.run([os.path.join(BUILD, "tests", "test_model"), "--parity", inp, out], check=True)
        result, _ = lc.read_safetensors(out)

    l32, logits32, g32, f32 = torch_run(model, masks, images, labels, optimizer, lr, torch.float32)
    l64, logits64, g64, f64 = torch_run(model, masks, images, labels, optimizer, lr, torch.float64)
    tag = f"{model_name} d={density} {optimizer} lr={lr} batch={batch} seed={seed}" + (" sparse executor" if sparse else "")
    lo = rel(result["logits0"], logits32)
    check(f"{tag}: logits", lo <= 1e-4, f"C vs torch32 {lo:.2e} (tolerance 1e-4)")
    worst = max(g64, key=lambda n: rel(result["grad." + n] * (masks[n].numpy() if n in masks else 1), g64[n]))
    ours = {n: result["grad." + n] * (masks[n].numpy() if n in masks else 1) for n in g64}
    check_against(f"{tag}: gradients (worst layer {worst})", max(rel(ours[n], g32[n]) for n in g64),
                  max(rel(ours[n], g64[n]) for n in g64), max(rel(g32[n], g64[n]) for n in g64), 1e-4)
    c = np.asarray(result["losses"], dtype=np.float64)
    r32 = np.abs(c - l32) / np.abs(l32)
    r64 = np.abs(c - l64) / np.abs(l64)
    t = np.abs(l32 - l64) / np.abs(l64)
    check_against(f"{tag}: loss sequence over {steps} steps", float(r32.max()), float(r64.max()), float(t.max()), 1e-3)
    # Final weights after all steps (the C side writes them as final.<name>),
    # all parameters as one vector (relative L2): per tensor, BN biases that
    # start at 0 have no meaningful relative error. Same rule as above at 1e-4
    # (float32 rounding of ~1e-7 per step, compounded over the steps).
    def flat(d):
        return np.concatenate([np.asarray(d[n], dtype=np.float64).ravel() for n in f64])
    fin = flat({n: result["final." + n] for n in f64})
    check_against(f"{tag}: final weights after {steps} steps", rel(fin, flat(f32)), rel(fin, flat(f64)),
                  rel(flat(f32), flat(f64)), 1e-4)
    print("   C       :", " ".join(f"{x:.5f}" for x in c[:10]))
    print("   torch32 :", " ".join(f"{x:.5f}" for x in l32[:10]))
    print("   torch64 :", " ".join(f"{x:.5f}" for x in l64[:10]))


# The case: 20 SGD steps of a randomly masked cifar_resnet_20.
run_case("cifar_resnet_20", 3, 32, steps=20, batch=32, density=0.1, optimizer="sgd", lr=0.1, seed=3)
# Dense cifar_resnet_20, a well-conditioned batch: plain 1e-4 on every gradient.
run_case("cifar_resnet_20", 3, 32, steps=3, batch=16, density=1.0, optimizer="sgd", lr=0.01, seed=1)
run_case("lenet5", 1, 28, steps=10, batch=16, density=0.2, optimizer="adam", lr=1e-3, seed=5)
run_case("vgg11", 3, 32, steps=3, batch=8, density=0.3, optimizer="sgd", lr=0.01, seed=6)
run_case("lenet300-100", 1, 28, steps=10, batch=16, density=0.1, optimizer="sgd", lr=0.05, seed=7)
# The sparse executor (packed weights, direct kernels) against PyTorch directly, at a batch below one
# vector of the kernels' batch-innermost layout (8 < 16 lanes) and at one with a wide run and a remainder.
run_case("cifar_resnet_20", 3, 32, steps=3, batch=8, density=0.05, optimizer="sgd", lr=0.01, seed=3, sparse=True)
run_case("lenet5", 1, 28, steps=5, batch=130, density=0.2, optimizer="adam", lr=1e-3, seed=5, sparse=True)

finish()
