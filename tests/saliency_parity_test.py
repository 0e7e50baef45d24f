"""SNIP and GraSP layer-wise densities: C vs an independent PyTorch computation.

For each case the same weights and the same batch go to the C library
(`tests/test_saliency --parity IN OUT`, which scores with the model's own
forward/backward) and to PyTorch, which computes the scores the way the
reference code (VITA-Group/Random_Pruning, sparselearning/snip.py) does:

* SNIP: a multiplicative mask m = 1 on every conv/linear weight, |dL/dm| of the
  NLL loss of log_softmax(logits) on the batch (the weights are the
  Xavier-normal ones SNIP re-initialises with; that re-initialisation itself is
  tested in tests/test_saliency.c);
* GraSP: grad_w = sum over the two batch halves of dL/dw with logits / T
  (T = 200), then Hg by double backward of sum(grad_w * grad_f) per half, score
  -w * Hg, on 10 images per class ordered class by class (GraSP_fetch_data).
  Ours is forward-over-reverse mode (src/sparse/hvp.c).

PyTorch runs each in float64 (near exact) and float32. Checked: the scores
(relative L2 error 1e-4 against PyTorch float32, or as accurate as PyTorch
float32 where batch norm amplifies rounding), and the per-layer densities of
the reference's global selection rule within 1 % density per layer. Networks
are in training mode (batch statistics), as in the reference, where the
network has not been trained yet.
"""
import copy
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

torch.set_num_threads(2)
T = 200.0


def weights_of(model, names):
    params = dict(model.named_parameters())
    return [params[n] for n in names]


def snip_scores(model, names, images, labels, dtype):
    """The reference's SNIP (snip.py): monkey-patched conv/linear forwards
    with weight * weight_mask, weight_mask = 1, score |d loss / d mask|."""
    import types
    model = model.to(dtype).train()

    def conv_forward(self, x):
        return F.conv2d(x, self.weight * self.weight_mask, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)

    def linear_forward(self, x):
        return F.linear(x, self.weight * self.weight_mask, self.bias)

    masks = {}
    for module_name, layer in model.named_modules():
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            layer.weight_mask = torch.nn.Parameter(torch.ones_like(layer.weight))
            layer.weight.requires_grad = False
            masks[module_name + ".weight"] = layer.weight_mask
            forward = conv_forward if isinstance(layer, torch.nn.Conv2d) else linear_forward
            layer.forward = types.MethodType(forward, layer)
    loss = F.nll_loss(F.log_softmax(model(images.to(dtype)), dim=1), labels)
    loss.backward()
    return [masks[n].grad.abs().double().numpy() for n in names]


def grasp_scores(model, names, images, labels, dtype):
    """The reference's GraSP (one iteration, two halves), double backward."""
    model = model.to(dtype).train()
    weights = weights_of(model, names)
    x = images.to(dtype)
    n = x.shape[0]
    halves = [(x[: n // 2], labels[: n // 2]), (x[n // 2:], labels[n // 2:])]
    grad_w = None
    for xi, yi in halves:
        loss = F.cross_entropy(model(xi) / T, yi)
        g = torch.autograd.grad(loss, weights)
        grad_w = list(g) if grad_w is None else [a + b for a, b in zip(grad_w, g)]
    for w in weights:
        w.grad = None
    for xi, yi in halves:
        loss = F.cross_entropy(model(xi) / T, yi)
        grad_f = torch.autograd.grad(loss, weights, create_graph=True)
        z = sum((gw.detach() * gf).sum() for gw, gf in zip(grad_w, grad_f))
        z.backward()
    return [(-w.detach() * w.grad).double().numpy() for w in weights]


def select(scores, density, keep_highest):
    """The reference's selection (snip.py): top-k of the normalised scores."""
    flat = torch.cat([torch.from_numpy(s).flatten() for s in scores])
    if keep_highest:
        norm = flat.sum()
        k = int(len(flat) * density)
        threshold = torch.topk(flat / norm, k, sorted=True)[0][-1]
        return [float(((torch.from_numpy(s) / norm) >= threshold).double().mean()) for s in scores]
    norm = flat.sum().abs() + 1e-10
    r = int(len(flat) * (1 - density))
    threshold = torch.topk(flat / norm, r, sorted=True)[0][-1]
    return [float(((torch.from_numpy(s) / norm) <= threshold).double().mean()) for s in scores]


def class_major_batch(gen, per_class, channels, size, classes=10):
    images = torch.randn(per_class * classes, channels, size, size, generator=gen)
    labels = torch.arange(classes).repeat_interleave(per_class)
    # give each class its own mean image so that the data carries a signal
    means = torch.randn(classes, channels, size, size, generator=gen)
    return images + means[labels], labels


def run_case(method, model_name, channels, size, density, seed, batch=32, per_class=10, score_tol=1e-4):
    torch.manual_seed(seed)
    model = torch_models.build(model_name, num_classes=10, in_channels=channels)
    names = torch_models.prunable_weight_names(model)
    gen = torch.Generator().manual_seed(seed + 1)
    if method == "snip":
        with torch.no_grad():  # SNIP scores a Xavier-normal re-initialised copy
            for w in weights_of(model, names):
                torch.nn.init.xavier_normal_(w)
        images, labels = class_major_batch(gen, batch // 10 + 1, channels, size)
        perm = torch.randperm(images.shape[0], generator=gen)[:batch]
        images, labels = images[perm], labels[perm]
    else:
        images, labels = class_major_batch(gen, per_class, channels, size)  # class by class, as GraSP_fetch_data

    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        lc.save_checkpoint_like(inp, model, None, meta={
            "model": model_name, "in_height": str(size), "in_width": str(size),
            "method": method, "density": repr(density)})
        tensors, metadata = lc.read_safetensors(inp)
        tensors = list(tensors.items()) + [("batch.images", images.float().numpy()),
                                           ("batch.labels", labels.numpy().astype(np.int64))]
        lc.write_safetensors(inp, tensors, metadata)
        subprocess.run([os.path.join(BUILD, "tests", "test_saliency"), "--parity", inp, out], check=True)
        result, _ = lc.read_safetensors(out)

    if method == "snip":
        ref = snip_scores(copy.deepcopy(model), names, images, labels, torch.float64)
        ref32 = snip_scores(copy.deepcopy(model), names, images, labels, torch.float32)
    else:
        ref = grasp_scores(copy.deepcopy(model), names, images, labels, torch.float64)
        ref32 = grasp_scores(copy.deepcopy(model), names, images, labels, torch.float32)
    ours = [result["score." + n] for n in names]
    tag = f"{method} {model_name} {channels}x{size}x{size} batch {images.shape[0]} d={density}"
    flat = lambda scores: np.concatenate([x.ravel() for x in scores])  # noqa: E731
    per_layer = [rel(o, r) for o, r in zip(ours, ref)]
    worst = int(np.argmax(per_layer))
    check_against(f"{tag}: scores (worst layer {names[worst]} {per_layer[worst]:.1e})",
                  rel(flat(ours), flat(ref32)), rel(flat(ours), flat(ref)), rel(flat(ref32), flat(ref)), score_tol)
    theirs = select(ref, density, method == "snip")
    mine = list(result["densities"])
    diff = max(abs(a - b) for a, b in zip(mine, theirs))
    check(f"{tag}: per-layer densities", diff <= 0.01, f"max |C - torch| = {diff:.4f} (tolerance 0.01)")
    print("   C    :", " ".join(f"{x:.4f}" for x in mine))
    print("   torch:", " ".join(f"{x:.4f}" for x in theirs))


# Both are exact computations in float32: plain 1e-4 relative error on the
# scores, or as accurate as PyTorch float32 where batch norm makes that worse.
run_case("snip", "cifar_resnet_14_8", 3, 12, 0.1, seed=1)
run_case("snip", "lenet5", 1, 28, 0.05, seed=2)
run_case("snip", "lenet300-100", 1, 28, 0.2, seed=3)
run_case("GraSP", "cifar_resnet_14_8", 3, 12, 0.1, seed=4)
run_case("GraSP", "lenet5", 1, 28, 0.05, seed=5)
run_case("GraSP", "lenet300-100", 1, 28, 0.2, seed=6)

finish()
