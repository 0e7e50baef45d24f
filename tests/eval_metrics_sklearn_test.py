"""OOD metrics and ECE of src/eval/metrics.c against independent computations
on fixed scores: scikit-learn (Debian python3-sklearn) for AUROC
(roc_auc_score), AUPR-in / AUPR-out (average_precision_score) and FPR at 95 %
TPR (roc_curve without dropping points), and a direct numpy ECE with
15 bins (lower, upper] as in Guo et al. Score sets include many ties
(rounded scores) so that the tie handling is compared too.
The C side is `tests/test_eval_metrics --ood FILE` / `--ece FILE`."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, skip  # noqa: E402

try:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
except ImportError:
    skip("scikit-learn is not installed (Debian package python3-sklearn; scripts/setup.sh installs it)")

TOOL = os.path.join(BUILD, "tests", "test_eval_metrics")
tmp = tempfile.mkdtemp(prefix="sparsetrain-metrics-")


def c_metrics(mode, lines):
    path = os.path.join(tmp, "in.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run([TOOL, mode, path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)


def reference_ood(s_in, s_out):
    y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    s = np.r_[s_in, s_out]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {"auroc": roc_auc_score(y, s), "aupr_in": average_precision_score(y, s),
            "aupr_out": average_precision_score(1 - y, -s),
            "fpr_at_95_tpr": fpr[np.searchsorted(tpr, 0.95, side="left")]}


rng = np.random.RandomState(7)
cases = {
    "continuous, overlapping": (rng.beta(5, 2, 700), rng.beta(2, 3, 450)),
    "heavy ties (2 decimals)": (np.round(rng.beta(5, 2, 500), 2), np.round(rng.beta(3, 3, 800), 2)),
    "very heavy ties (1 decimal)": (np.round(rng.rand(300), 1), np.round(rng.rand(200) * 0.8, 1)),
    "softmax-like, saturated at 1": (np.minimum(1, 0.4 + rng.rand(400)), np.minimum(1, 0.2 + rng.rand(400))),
    "tiny sets": (np.array([0.9, 0.8, 0.6, 0.6]), np.array([0.8, 0.5, 0.6])),
}
for name, (s_in, s_out) in cases.items():
    ours = c_metrics("--ood", [f"in {v!r}" for v in s_in] + [f"out {v!r}" for v in s_out])
    ref = reference_ood(s_in, s_out)
    for key in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"):
        check(f"{name}: {key}", abs(ours[key] - ref[key]) <= 1e-12, f"C {ours[key]:.15f} vs sklearn {ref[key]:.15f}")


def reference_ece(conf, ok, bins=15):
    edges = np.linspace(0, 1, bins + 1)
    ece, counts = 0.0, []
    for b in range(bins):
        lo, hi = edges[b], edges[b + 1]
        sel = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        counts.append(int(sel.sum()))
        if sel.any():
            ece += sel.mean() * abs(ok[sel].mean() - conf[sel].mean())
    return ece, counts


for name, conf in {"uniform confidences": 0.1 + 0.9 * rng.rand(2000),
                   "rounded confidences (bin edges hit)": np.round(rng.rand(1500), 3)}.items():
    ok = (rng.rand(len(conf)) < conf ** 1.5).astype(int)
    ours = c_metrics("--ece", [f"conf {c!r}" for c in conf] + [f"ok {k}" for k in ok])
    ece, counts = reference_ece(conf, ok)
    check(f"ECE, {name}", abs(ours["ece"] - ece) <= 1e-12, f"C {ours['ece']:.15f} vs numpy {ece:.15f}")
    check(f"reliability counts, {name}", ours["counts"] == counts, f"{ours['counts']} vs {counts}")

finish()
