"""`sparsetrain report` end to end, on runs trained for seconds on generated
MNIST-like data (`train --run-dir`, `eval --out RUN_DIR/eval.json`):

* the page is self-contained (no script, no external resource), every <svg>
  is well-formed XML with drawn marks, and the expected charts are all there
  (3 training curves, the gap-to-dense plot, per run: layer-wise densities,
  reliability diagram, OOD histogram);
* the table and the gap-to-dense table carry the numbers of the runs'
  eval.json files (dense accuracy averaged over two seeds);
* the training log's FLOPs agree with `sparsetrain inspect` for the same
  masks;
* rendered in headless Chromium (Debian package chromium, installed by
  scripts/setup.sh): no console errors and every chart has a non-empty
  rendered box with visible marks. This part is skipped, with a message,
  only when chromium is not installed;
* bad input: a missing or empty run folder, a malformed eval.json, no -o.
"""
import gzip
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, skip_part  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")
tmp = tempfile.mkdtemp(prefix="sparsetrain-report-")


def write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path + ".gz", "wb") as f:
        f.write(header + array.tobytes())


def make_data(folder, n_train=600, n_test=200):
    rng = np.random.RandomState(3)
    protos = rng.randint(0, 256, size=(10, 28, 28))
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.randint(0, 10, size=n)
        x = np.clip(protos[y] * 0.5 + rng.randint(0, 128, size=(n, 28, 28)), 0, 255)
        write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte"), x)
        write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte"), y)


def run(args):
    return subprocess.run([BIN] + args, capture_output=True, text=True)


data = os.path.join(tmp, "data")
make_data(data)
runs = []
for model, sparse, seed in (("lenet300-100", False, 1), ("lenet300-100", False, 2), ("lenet300-100", True, 1),
                            ("lenet5", False, 1), ("lenet5", True, 1)):
    name = f"{model}-{'erk' if sparse else 'dense'}-s{seed}"
    d = os.path.join(tmp, "runs", name)
    args = ["train", "--model", model, "--data", "mnist", "--datadir", data, "--epochs", "2", "--batch-size", "32",
            "--lr", "0.02", "--seed", str(seed), "--threads", "2", "--quiet", "--run-dir", d]
    if sparse:
        args += ["--sparse", "--fix", "--sparse_init", "ERK", "--density", "0.2"]
    r = run(args)
    check(f"train --run-dir {name}", r.returncode == 0 and os.path.exists(os.path.join(d, "checkpoint.safetensors"))
          and os.path.exists(os.path.join(d, "log.jsonl")), r.stderr.strip()[-300:])
    r = run(["eval", "--checkpoint", os.path.join(d, "checkpoint.safetensors"), "--datadir", data, "--ood", "noise",
             "--attack", "fgsm", "--eps", "0.1", "--threads", "2", "--out", os.path.join(d, "eval.json")])
    check(f"eval --out {name}/eval.json", r.returncode == 0, r.stderr.strip())
    runs.append((name, model, sparse, d))

# FLOPs in the log agree with inspect for the same masks (same seed, density, distribution)
log = [json.loads(l) for l in open(os.path.join(runs[2][3], "log.jsonl"))]
ins = json.loads(run(["inspect", "--model", "lenet300-100", "--sparse_init", "ERK", "--density", "0.2", "--seed", "1",
                      "--json"]).stdout)
check("log FLOPs per example = inspect's (sparse and dense)",  # 1e-9: the same count printed through %.9g / JSON
      abs(log[-1]["flops_forward_sparse"] - ins["flops_sparse"]) <= 1e-9 * ins["flops_sparse"] and
      abs(log[-1]["flops_forward_dense"] - ins["flops_dense"]) <= 1e-9 * ins["flops_dense"],
      f"log {log[-1]['flops_forward_sparse']} / {log[-1]['flops_forward_dense']}, inspect {ins['flops_sparse']} / "
      f"{ins['flops_dense']}")
check("log training FLOPs = 3 x forward x images of the epoch (540 after the validation split)",  # 1e-6: %g printing
      abs(log[-1]["flops_epoch_train_sparse"] - 3 * ins["flops_sparse"] * 540) <= 1e-6 * log[-1]["flops_epoch_train_sparse"],
      str(log[-1]["flops_epoch_train_sparse"]))

out = os.path.join(tmp, "report.html")
r = run(["report"] + [d for _, _, _, d in runs] + ["-o", out])
check("report exits 0 and writes the page", r.returncode == 0 and os.path.exists(out), r.stderr.strip())
html = open(out).read() if os.path.exists(out) else ""

check("self-contained: no script, link, iframe, src= or href=",
      not re.search(r"<script|<link|<iframe|\bsrc=|\bhref=", html, re.I))
check("no network address besides the SVG namespace",
      set(re.findall(r"https?://[^\"' <]+", html)) <= {"http://www.w3.org/2000/svg"},
      str(set(re.findall(r"https?://[^\"' <]+", html))))
svgs = re.findall(r"<svg\b.*?</svg>", html, re.S)
titles = []
for i, s in enumerate(svgs):
    try:
        root = ET.fromstring(s)
    except ET.ParseError as e:
        check(f"svg {i} is well-formed XML", False, str(e))
        continue
    ns = "{http://www.w3.org/2000/svg}"
    marks = [e for e in root.iter() if e.tag in (ns + "rect", ns + "polyline", ns + "circle")]
    title = root.find(ns + "title").text
    titles.append(title)
    check(f"svg '{title}' is well-formed and has marks", len(marks) > 2, f"{len(marks)} marks")
expected = ["Training loss", "Test accuracy", "Learning rate", "Accuracy gap to dense"] + \
    [p for _ in runs for p in ("Layer-wise density", "Reliability", "Max. softmax probability")]
check(f"all {len(expected)} charts are present",
      len(titles) == len(expected) and all(any(t.startswith(e) for t in titles) for e in set(expected)),
      f"{len(titles)} charts: {titles}")

evals = {name: json.load(open(os.path.join(d, "eval.json"))) for name, _, _, d in runs}
for name, _, _, _ in runs:
    e = evals[name]
    check(f"table row of {name} shows its eval top-1, ECE and OOD AUROC",
          re.search(re.escape(name) + r".*?" + re.escape(f"{100 * e['top1']:.2f}%") + r".*?" +
                    re.escape(f"{e['ece']:.4f}") + r".*?" + re.escape(f"{e['ood']['auroc']:.4f}"), html, re.S)
          is not None)
dense_mean = (evals["lenet300-100-dense-s1"]["top1"] + evals["lenet300-100-dense-s2"]["top1"]) / 2
gap = dense_mean - evals["lenet300-100-erk-s1"]["top1"]
check("gap-to-dense table: mean of the two dense seeds minus the sparse run",
      re.search(r"ERK d=0.2, lenet\*.*?lenet300-100.*?" + re.escape(f"{100 * dense_mean:.2f}% (2)") + r".*?" +
                re.escape(f"{100 * gap:.2f}"), html, re.S) is not None, f"expected dense {100 * dense_mean:.2f}% gap "
                                                                        f"{100 * gap:.2f}")

# --- rendering in headless Chromium ---------------------------------------------------------------
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if not chromium:
    skip_part("rendering: chromium is not installed (Debian package chromium; scripts/setup.sh installs it)")
else:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000",
             f"--user-data-dir={os.path.join(tmp, 'chromium-profile')}"]
    r = subprocess.run([chromium, *flags, "--dump-dom", "file://" + out], capture_output=True, text=True, timeout=120)
    console = [l for l in r.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    loaded = r.returncode == 0 and "sparsetrain report" in r.stdout
    check("chromium loads the page", loaded, "" if loaded else r.stderr[-300:])
    check("no console messages or errors while rendering", not console, "\n".join(console[:5]))
    # A copy with a probe that measures the laid-out charts (the report itself has no script).
    probe = """<pre id="probe-result"></pre><script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  var charts = Array.prototype.map.call(document.querySelectorAll('svg'), function (s) {
    var box = s.getBoundingClientRect();
    var marks = Array.prototype.filter.call(s.querySelectorAll('rect,polyline,circle'), function (m) {
      var b = m.getBBox(); return b.width > 0 || b.height > 0; }).length;
    return {title: s.querySelector('title').textContent, width: box.width, height: box.height, marks: marks};
  });
  document.getElementById('probe-result').textContent = JSON.stringify({charts: charts, errors: window.__errors});
});
</script>"""
    probed = os.path.join(tmp, "probed.html")
    with open(probed, "w") as f:
        f.write(html.replace("</body>", probe + "</body>"))
    r = subprocess.run([chromium, *flags, "--dump-dom", "file://" + probed], capture_output=True, text=True,
                       timeout=120)
    m = re.search(r'<pre id="probe-result">(.*?)</pre>', r.stdout, re.S)
    result = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")) if m and m.group(1) else None
    check("the probe ran in the rendered page", result is not None, "" if result else r.stderr[-300:])
    if result:
        check("no script errors in the rendered page", not result["errors"], str(result["errors"]))
        check(f"every chart is rendered ({len(expected)} svg)", len(result["charts"]) == len(expected),
              str(len(result["charts"])))
        bad = [c for c in result["charts"] if not (c["width"] > 100 and c["height"] > 100 and c["marks"] > 2)]
        check("every chart has a non-empty box and visible marks", not bad, str(bad[:3]))

# --- bad input -----------------------------------------------------------------------------------
empty = os.path.join(tmp, "empty")
os.makedirs(empty)
broken = os.path.join(tmp, "broken")
os.makedirs(broken)
with open(os.path.join(broken, "eval.json"), "w") as f:
    f.write('{"top1": 0.5')
# extreme numbers in the files: no hang, no crash, a page
extreme = os.path.join(tmp, "extreme")
os.makedirs(extreme)
with open(os.path.join(extreme, "log.jsonl"), "w") as f:
    for e, loss in ((1, 1e300), (2, 1e300 * (1 + 1e-15)), (3, -5e307)):
        f.write(json.dumps({"epoch": e, "lr": 1e-300, "train_loss": loss, "test_acc": 1e17 + e}) + "\n")
bins = [{"lower": b / 15, "upper": (b + 1) / 15, "count": 1e300, "confidence": 0.5, "accuracy": 2} for b in range(15)]
with open(os.path.join(extreme, "eval.json"), "w") as f:
    json.dump({"top1": 0.5, "ece": 1e308, "reliability": bins, "score_histogram_in": [1e300] * 20, "ood": None,
               "attack": None}, f)
r = subprocess.run([BIN, "report", extreme, "-o", os.path.join(tmp, "extreme.html")], capture_output=True, text=True,
                   timeout=60)
check("extreme values in a run's files still give a page", r.returncode == 0, r.stderr.strip())

for args, code, words in ((["report", os.path.join(tmp, "nope"), "-o", out], 1, "nope"),
                          (["report", empty, "-o", out], 1, "empty"),
                          (["report", broken, "-o", out], 1, "eval.json"),
                          (["report", runs[0][3]], 2, "-o"),
                          (["report", "-o", out], 2, "run folder"),
                          (["report", runs[0][3], "-o", out, "--colour"], 2, "--colour")):
    r = run(args)
    check(f"report {' '.join(a.replace(tmp, '') for a in args[1:])}: exit {code}, message names {words}",
          r.returncode == code and words in r.stderr, f"rc {r.returncode}: {r.stderr.strip()}")

finish()
