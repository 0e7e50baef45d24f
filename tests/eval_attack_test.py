"""Adversarial evaluation end to end.

1. The input gradient (d loss / d images) of our models in evaluation mode
   (running batch-norm statistics), computed by our own backward pass, against
   PyTorch autograd on the same weights, masks and images
   (`tests/test_eval_attack --input-grad IN OUT`), in float32 and float64.
2. `sparsetrain eval --attack` on a small model trained for a few batches on
   Fashion-MNIST: FGSM lowers accuracy and raises the loss, PGD (same eps) is
   at least as strong as FGSM, eps 0 changes nothing, and --json carries it.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, check_against, finish, rel, skip_part  # noqa: E402
import load_checkpoint as lc  # noqa: E402
import torch_models  # noqa: E402

torch.set_num_threads(2)
TOOL = os.path.join(BUILD, "tests", "test_eval_attack")
BIN = os.path.join(BUILD, "sparsetrain")
tmp = tempfile.mkdtemp(prefix="sparsetrain-attack-")


def torch_input_grad(model, images, labels, dtype):
    model = model.to(dtype).eval()
    x = images.to(dtype).clone().requires_grad_(True)
    logits = model(x)
    loss = F.nll_loss(F.log_softmax(logits, dim=1), labels)
    loss.backward()
    return logits.detach().double().numpy(), loss.item(), x.grad.double().numpy()


def gradient_case(model_name, in_channels, size, batch, density, seed):
    torch.manual_seed(seed)
    model = torch_models.build(model_name, num_classes=10, in_channels=in_channels)
    gen = torch.Generator().manual_seed(seed + 1)
    masks = {}
    weights = dict(model.named_parameters())
    if density < 1:
        for name in torch_models.prunable_weight_names(model):
            masks[name] = (torch.rand(weights[name].shape, generator=gen) < density).to(torch.uint8)
        with torch.no_grad():
            for name, m in masks.items():
                weights[name].mul_(m.to(weights[name].dtype))
    with torch.no_grad():  # running statistics away from (0, 1): evaluation mode is then not training mode
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(0.3 * torch.randn(mod.running_mean.shape, generator=gen))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=gen))
                mod.weight.copy_(0.5 + torch.rand(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=gen))
    images = torch.randn(batch, in_channels, size, size, generator=gen)
    labels = torch.randint(0, 10, (batch,), generator=gen)
    inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
    lc.save_checkpoint_like(inp, model, masks, meta={"model": model_name, "in_height": str(size),
                                                     "in_width": str(size)})
    tensors, metadata = lc.read_safetensors(inp)
    tensors = list(tensors.items()) + [("batch.images", images.numpy()), ("batch.labels", labels.numpy())]
    lc.write_safetensors(inp, tensors, metadata)
    r = subprocess.run([TOOL, "--input-grad", inp, out], capture_output=True, text=True)
    tag = f"{model_name} density {density}"
    if r.returncode != 0:
        check(f"{tag}: C input gradient runs", False, r.stderr)
        return
    ours, _ = lc.read_safetensors(out)
    lo32, l32, g32 = torch_input_grad(model, images, labels, torch.float32)
    lo64, l64, g64 = torch_input_grad(model, images, labels, torch.float64)
    # 1e-4: float32 forward passes in two summation orders (~1e-6 measured)
    check(f"{tag}: eval-mode logits", rel(ours["logits"], lo32) <= 1e-4, f"{rel(ours['logits'], lo32):.2e}")
    check(f"{tag}: eval-mode loss", abs(float(ours["loss"][0]) - l64) <= 1e-4 * abs(l64),
          f"C {float(ours['loss'][0]):.6f} vs torch {l64:.6f}")
    check_against(f"{tag}: d loss / d images", rel(ours["input_grad"], g32), rel(ours["input_grad"], g64),
                  rel(g32, g64), 1e-4)


gradient_case("lenet300-100", 1, 28, batch=8, density=0.3, seed=1)
gradient_case("lenet5", 1, 28, batch=8, density=0.5, seed=2)
gradient_case("cifar_resnet_8_4", 3, 16, batch=8, density=1.0, seed=3)
gradient_case("cifar_resnet_8_4", 3, 16, batch=8, density=0.3, seed=4)
gradient_case("vgg11", 3, 32, batch=2, density=0.2, seed=5)


# --- the CLI on a small trained model ----------------------------------------------------------
FASHION = "/usr/share/datasets/fashion-mnist"


def evaluate(ck, *extra):
    r = subprocess.run([BIN, "eval", "--checkpoint", ck, "--limit", "300", "--threads", "2", "--json", *extra],
                       capture_output=True, text=True)
    if r.returncode != 0:
        check(f"eval {' '.join(extra)} exits 0", False, r.stderr.strip())
        return None
    return json.loads(r.stdout)


if not os.path.isdir(FASHION):
    skip_part(f"the CLI part: {FASHION} is missing (Debian package dataset-fashion-mnist; scripts/setup.sh installs it)")
else:
    ck = os.path.join(tmp, "lenet5.safetensors")
    r = subprocess.run([BIN, "train", "--model", "lenet5", "--data", "fashion-mnist", "--epochs", "1",
                        "--max-batches", "60", "--lr", "0.05", "--threads", "2", "--quiet", "--save", ck],
                       capture_output=True, text=True)
    check("a small lenet5 trains", r.returncode == 0, r.stderr.strip()[-300:])
    clean = evaluate(ck)
    fgsm = evaluate(ck, "--attack", "fgsm", "--eps", "8/255")
    pgd = evaluate(ck, "--attack", "pgd", "--eps", "8/255", "--steps", "5", "--step-size", "2/255")
    zero_f = evaluate(ck, "--attack", "fgsm", "--eps", "0")
    zero_p = evaluate(ck, "--attack", "pgd", "--eps", "0", "--steps", "3")
    if clean and fgsm and pgd and zero_f and zero_p:
        a_f, a_p = fgsm["attack"], pgd["attack"]
        print(f"   clean acc {clean['top1']:.3f} nll {clean['nll']:.3f}; FGSM acc {a_f['accuracy']:.3f} "
              f"nll {a_f['nll']:.3f}; PGD acc {a_p['accuracy']:.3f} nll {a_p['nll']:.3f}")
        check("the model learned something (clean accuracy > 50 %)", clean["top1"] > 0.5, str(clean["top1"]))
        check("attack JSON keeps the clean metrics", fgsm["top1"] == clean["top1"] and fgsm["nll"] == clean["nll"])
        check("FGSM lowers accuracy", a_f["accuracy"] < clean["top1"] - 0.05, f"{a_f['accuracy']} vs {clean['top1']}")
        check("FGSM raises the loss", a_f["nll"] > clean["nll"], f"{a_f['nll']} vs {clean['nll']}")
        check("PGD at the same eps is at least as strong as FGSM",
              a_p["accuracy"] <= a_f["accuracy"] and a_p["nll"] >= a_f["nll"],
              f"acc {a_p['accuracy']} vs {a_f['accuracy']}, nll {a_p['nll']} vs {a_f['nll']}")
        check("PGD records its settings", a_p["kind"] == "pgd" and a_p["steps"] == 5 and
              abs(a_p["eps"] - 8 / 255) < 1e-12 and abs(a_p["step_size"] - 2 / 255) < 1e-12, str(a_p))
        for tag, z in (("FGSM", zero_f), ("PGD", zero_p)):
            check(f"{tag} with eps 0 changes nothing", z["attack"]["accuracy"] == clean["top1"] and
                  z["attack"]["nll"] == clean["nll"], str(z["attack"]))
    limited = evaluate(ck, "--attack", "fgsm", "--eps", "8/255", "--attack-limit", "100")
    first100 = evaluate(ck, "--limit", "100")
    if limited and first100 and clean:
        a = limited["attack"]
        check("--attack-limit attacks the first N images and keeps the clean metrics on all",
              a["count"] == 100 and limited["count"] == 300 and limited["top1"] == clean["top1"] and
              a["clean_accuracy"] == first100["top1"] and a["accuracy"] < a["clean_accuracy"], str(a))
    # a folder as the OOD set: Fashion-MNIST's test images flipped upside down, written as IDX files
    import gzip, struct  # noqa: E401
    flipped = os.path.join(tmp, "flipped")
    os.makedirs(flipped, exist_ok=True)
    with gzip.open(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    images = np.frombuffer(raw[16:], dtype=np.uint8).reshape(-1, 28, 28)[:, ::-1, :]
    with open(os.path.join(flipped, "t10k-images-idx3-ubyte"), "wb") as f:
        f.write(raw[:16] + images.tobytes())
    with gzip.open(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz")) as f:
        labels_raw = f.read()
    with open(os.path.join(flipped, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(labels_raw)
    folder = evaluate(ck, "--ood", flipped)
    check("--ood FOLDER loads the IDX test split found there",
          folder is not None and folder["ood"] and folder["ood"]["count"] == 300 and folder["ood"]["data"] == flipped,
          str(folder and folder["ood"]))
    ood = evaluate(ck, "--ood", "noise")
    if ood:
        o = ood["ood"]
        check("--ood noise reports the four OOD metrics in range",
              o and all(0 <= o[k] <= 1 for k in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr")) and
              o["count"] == 300, str(o))
        check("score histograms count every image", sum(ood["score_histogram_in"]) == 300 and
              sum(o["score_histogram_out"]) == 300)
        check("reliability table has 15 bins covering every image",
              len(ood["reliability"]) == 15 and sum(b["count"] for b in ood["reliability"]) == 300)
    out = os.path.join(tmp, "eval.json")
    r = subprocess.run([BIN, "eval", "--checkpoint", ck, "--limit", "100", "--out", out], capture_output=True,
                       text=True)
    check("--out writes the JSON next to the text report", r.returncode == 0 and "ECE" in r.stdout and
          os.path.exists(out) and json.load(open(out))["count"] == 100, r.stderr.strip())
    for args, words in ((["--attack", "cw"], "--attack"), (["--eps", "abc", "--attack", "fgsm"], "--eps"),
                        (["--ood", "noise:pink"], "noise:pink"), (["--ood", "cifar10"], "cifar10"),
                        (["--ood", tmp], "neither a data set name"),
                        (["--attack", "pgd", "--steps", "0"], "--steps"),
                        (["--attack", "fgsm", "--attack-limit", "-1"], "--attack-limit")):
        r = subprocess.run([BIN, "eval", "--checkpoint", ck, "--limit", "10", *args], capture_output=True, text=True)
        check(f"eval {' '.join(args)} fails with a message naming {words}",
              r.returncode in (1, 2) and words in r.stderr and "Traceback" not in r.stderr,
              f"rc {r.returncode}: {r.stderr.strip()}")

finish()
