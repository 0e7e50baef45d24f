"""bench/imagenet_vs_pytorch.py in its smoke mode (--quick: ResNet18 at 64x64,
batch 4, one round, one timed step; here only --execution auto on our sparse
side): it runs every side, the JSON holds each run with its peak RSS and the
summary rows follow from them (medians of one run = the run; ratios against
the right PyTorch run), PyTorch masked exactly the weights our ERK_plus run
reported at our densities (fc dense), and the markdown table has one row per
configuration with the command that made it. Bad arguments give a clear
message. Exits 77 (skipped) without torch / torchvision. No timing is checked
(the machine is shared)."""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, SRC, check, finish, skip  # noqa: E402

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
    skip("PyTorch or torchvision (python3-torch, python3-torchvision) is not installed")

SCRIPT = os.path.join(SRC, "bench", "imagenet_vs_pytorch.py")
BIN = os.path.join(BUILD, "sparsetrain")

with tempfile.TemporaryDirectory() as tmp:
    out, md = os.path.join(tmp, "r.json"), os.path.join(tmp, "r.md")
    r = subprocess.run([sys.executable, SCRIPT, "--quick", "--executions", "auto", "--binary", BIN, "--out", out,
                        "--out-md", md], capture_output=True, text=True, timeout=600)
    check("--quick runs", r.returncode == 0, (r.stdout + r.stderr).strip()[-400:])
    doc = json.load(open(out)) if os.path.exists(out) else {"runs": [], "rows": []}
    runs, rows = doc["runs"], doc["rows"]
    sides = sorted(x["side"] for x in runs)
    check("one run of each side: our ERK_plus (auto), our dense, PyTorch dense and masked",
          sides == ["ours_dense", "ours_sparse", "torch_dense", "torch_masked"], f"{sides}")
    check("every run has its peak RSS (> 10 MB) and a positive throughput",
          all(x["peak_rss_bytes"] > 10e6 and x["result"]["train_step"]["images_per_s"] > 0 for x in runs))
    by_side = {x["side"]: x for x in runs}
    ours = by_side.get("ours_sparse", {}).get("result", {})
    torch_masked = by_side.get("torch_masked", {}).get("result", {})
    layers = [l for l in ours.get("layers", []) if l.get("numel", 0) > 0]
    partial = [l for l in layers if l["kept"] < l["numel"]]
    check("our run is ResNet18 at 64x64 with ERK_plus masks, fc dense",
          ours.get("model") == "ResNet18" and ours.get("sparse_init") == "ERK_plus" and partial
          and any(l["name"] == "fc.weight" and l["kept"] == l["numel"] for l in layers), f"{ours.get('model')}")
    check("PyTorch masked exactly the weights our run had partly pruned",
          torch_masked.get("masked_layers") == len(partial), f"{torch_masked.get('masked_layers')} vs {len(partial)}")
    ips = {x["side"]: x["result"]["train_step"]["images_per_s"] for x in runs}
    row = {x["side"]: x for x in rows}
    ok = len(rows) == 4 and all(abs(row[s]["images_per_s"] - ips[s]) < 1e-9 for s in ips)
    ok = ok and abs(row["ours_sparse"]["vs_torch"] - ips["ours_sparse"] / ips["torch_masked"]) < 1e-9
    ok = ok and abs(row["ours_dense"]["vs_torch"] - ips["ours_dense"] / ips["torch_dense"]) < 1e-9
    ok = ok and abs(row["ours_sparse"]["vs_our_dense"] - ips["ours_sparse"] / ips["ours_dense"]) < 1e-9
    ok = ok and 0 < row["ours_sparse"]["fraction_of_peak"] < 1 and row["ours_sparse"]["fma_peak_gflops"] > 0
    check("summary rows: medians, ratios against PyTorch masked / dense and our dense, share of the FMA peak", ok,
          json.dumps(rows)[:400])
    text = open(md).read() if os.path.exists(md) else ""
    table = [line for line in text.splitlines() if line.startswith("| ResNet18 |")]
    check("markdown table: a row per configuration, the command, the shared-machine caveat",
          len(table) == 4 and "--quick" in text and "Indicative only" in text, text[:300])
    r = subprocess.run([sys.executable, SCRIPT, "--models", "ResNet9"], capture_output=True, text=True, timeout=60)
    check("an unknown model is refused, naming it", r.returncode != 0 and "ResNet9" in r.stderr, r.stderr[-200:])
finish()
