"""`sparsetrain eval` end to end against an independent computation.

A small masked lenet300-100 is trained for one epoch on generated MNIST-shaped
data; `eval --json --last --ood FOLDER` reports its metrics on the test split
(in-distribution) and on another generated data set (OOD). The same
checkpoint is loaded into PyTorch (tools/load_checkpoint.py), the same test
images are normalised with MNIST's mean/std, and the logits are computed in
float64; from them numpy computes top-1, top-5, the mean NLL, the maximum
softmax probability, ECE over 15 equal bins (lower, upper] (Guo et al.) with
its reliability counts, and scikit-learn the OOD metrics of the maximum
softmax probability (AUROC, AUPR-in, AUPR-out, FPR at 95 % TPR).

This checks the pipeline (normalisation, weights and masks as evaluated, the
metric calls and their parameters such as the 15 bins), not the metric
functions alone (test_eval_metrics, eval_metrics_sklearn_test do that).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, skip_part, write_idx_dataset  # noqa: E402
import load_checkpoint as lc  # noqa: E402

torch.set_num_threads(2)
BIN = os.path.join(BUILD, "sparsetrain")
MEAN, STD = 0.1307, 0.3081  # MNIST's normalisation (src/data/idx.c), as every MNIST recipe uses

# Tolerances. Our logits are float32, the reference's float64 from the same
# float32 weights: they differ by ~1e-6 relative, so
NLL_TOL = 1e-5   # the mean NLL moves by about that much (measured ~1e-7)
ECE_TOL = 1e-5   # each bin's mean confidence and accuracy likewise (no image lies that close to a bin edge)
OOD_TOL = 1e-4   # two scores closer than the logit error may swap order: each swap moves AUROC/AUPR by
                 # about 1 / (n_in * n_out) = 1.1e-5 here; none is expected, a few are allowed

tmp = tempfile.mkdtemp(prefix="sparsetrain-evalpipe-")
data = write_idx_dataset(os.path.join(tmp, "data"), n_train=512, n_test=300, seed=3)
# 30 % of the test labels replaced by random ones: top-1 and top-5 strictly inside (0, 1)
labels_path = os.path.join(data, "t10k-labels-idx1-ubyte")
raw = bytearray(open(labels_path, "rb").read())
noise = np.random.RandomState(4)
for i in np.flatnonzero(noise.rand(len(raw) - 8) < 0.3):
    raw[8 + i] = noise.randint(10)
open(labels_path, "wb").write(bytes(raw))
ood_dir = write_idx_dataset(os.path.join(tmp, "ood"), n_train=8, n_test=300, seed=9)
ck = os.path.join(tmp, "m.safetensors")
r = subprocess.run([BIN, "train", "--data", "mnist", "--datadir", data, "--model", "lenet300-100", "--epochs", "2",
                    "--batch-size", "32", "--lr", "0.01", "--sparse", "--fix", "--sparse_init", "ERK",
                    "--density", "0.2", "--threads", "2", "--plain", "--quiet", "--save", ck],
                   capture_output=True, text=True, timeout=300)
check("train exits 0", r.returncode == 0, r.stderr.strip()[-300:])
r = subprocess.run([BIN, "eval", "--checkpoint", ck, "--datadir", data, "--last", "--ood", ood_dir, "--json",
                    "--threads", "2"], capture_output=True, text=True, timeout=300)
check("eval --json exits 0", r.returncode == 0, r.stderr.strip()[-300:])
if r.returncode != 0:
    finish()
ours = json.loads(r.stdout)

ckpt = lc.load_checkpoint(ck)
model = ckpt.model.double().eval()


def logits_of(folder):
    images = lc.read_idx(os.path.join(folder, "t10k-images-idx3-ubyte"))
    labels = lc.read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte")).astype(np.int64)
    # the C side's normalisation table is float32: (p / 255 - mean) / std
    x = ((images.astype(np.float32) / np.float32(255) - np.float32(MEAN)) / np.float32(STD))[:, None]
    with torch.no_grad():
        z = model(torch.from_numpy(x.astype(np.float64))).numpy()
    return z, labels


def summary(z, y):
    shifted = z - z.max(axis=1, keepdims=True)
    logsum = np.log(np.exp(shifted).sum(axis=1))
    conf = 1.0 / np.exp(shifted).sum(axis=1)
    nll = logsum - shifted[np.arange(len(y)), y]
    rank = (z > z[np.arange(len(y)), y][:, None]).sum(axis=1)
    return conf, nll, rank


z_in, y_in = logits_of(data)
conf, nll, rank = summary(z_in, y_in)
check("count", ours["count"] == len(y_in), f"{ours['count']} vs {len(y_in)}")
top1, top5 = float(np.mean(rank == 0)), float(np.mean(rank < 5))
check("top-1 = PyTorch's (exact)", ours["top1"] == top1, f"C {ours['top1']} vs {top1}")
check("top-5 = PyTorch's (exact)", ours["top5"] == top5, f"C {ours['top5']} vs {top5}")
check("top-1 and top-5 are not trivial (the model learned; noisy labels)", 0.2 < top1 < top5 < 1.0, f"{top1} {top5}")
check("mean NLL", abs(ours["nll"] - nll.mean()) <= NLL_TOL, f"C {ours['nll']:.9f} vs {nll.mean():.9f}")

edges = np.linspace(0, 1, 16)
ok = (rank == 0).astype(float)
ece, counts = 0.0, []
for b in range(15):
    sel = (conf > edges[b]) & (conf <= edges[b + 1]) if b else (conf >= 0) & (conf <= edges[1])
    counts.append(int(sel.sum()))
    if sel.any():
        ece += sel.mean() * abs(ok[sel].mean() - conf[sel].mean())
print(f"   closest confidence to a bin edge: {np.abs(conf[:, None] - edges[None]).min():.2e}; "
      f"bins used: {sum(c > 0 for c in counts)}")
bins = ours["reliability"]
check("15 reliability bins with edges k/15", len(bins) == 15 and all(
    abs(b["lower"] - edges[i]) < 1e-15 and abs(b["upper"] - edges[i + 1]) < 1e-15 for i, b in enumerate(bins)),
    str([(b["lower"], b["upper"]) for b in bins[:3]]))
check("reliability counts = numpy's over (lower, upper]", [b["count"] for b in bins] == counts,
      f"{[b['count'] for b in bins]} vs {counts}")
check("ECE (15 bins)", abs(ours["ece"] - ece) <= ECE_TOL, f"C {ours['ece']:.9f} vs {ece:.9f}")
check("the confidences spread over several bins (the ECE check has teeth)", sum(c > 0 for c in counts) >= 4,
      str(counts))

z_out, _ = logits_of(ood_dir)
conf_out, _, _ = summary(z_out, np.zeros(len(z_out), dtype=np.int64))
o = ours.get("ood") or {}
check("OOD count", o.get("count") == len(conf_out), str(o.get("count")))
try:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
except ImportError:
    skip_part("OOD metrics: scikit-learn is not installed (Debian package python3-sklearn)")
else:
    yy = np.r_[np.ones(len(conf)), np.zeros(len(conf_out))]
    ss = np.r_[conf, conf_out]
    fpr, tpr, _ = roc_curve(yy, ss, drop_intermediate=False)
    ref = {"auroc": roc_auc_score(yy, ss), "aupr_in": average_precision_score(yy, ss),
           "aupr_out": average_precision_score(1 - yy, -ss),
           "fpr_at_95_tpr": fpr[np.searchsorted(tpr, 0.95, side="left")]}
    for k, v in ref.items():
        check(f"OOD {k} (maximum softmax probability)", k in o and abs(o[k] - v) <= OOD_TOL,
              f"C {o.get(k)} vs sklearn {v:.6f}")
    check("OOD metrics are not degenerate", 0.05 < ref["auroc"] < 0.999, str(ref["auroc"]))

finish()
