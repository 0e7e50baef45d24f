"""`sparsetrain train --sparse_init snip|GraSP|global_magnitude` end to end on
the embedded Fashion-MNIST: the run prints its layer-wise densities, records
them in the checkpoint (metadata "layer_densities"), they are the ones
`sparsetrain inspect` computes for the same flags (same batch, same seed), the
masks hold exactly round(d_l n_l) weights (exact sampling, the default), and
--resume continues from them.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, SRC, check, finish, skip  # noqa: E402
import load_checkpoint as lc  # noqa: E402

if not os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"):
    skip("Fashion-MNIST (Debian package dataset-fashion-mnist; scripts/setup.sh installs it) is not installed")

CLI = os.path.join(BUILD, "sparsetrain")
INSPECT = [CLI, "inspect"]

with tempfile.TemporaryDirectory() as tmp:
    for init in ["snip", "GraSP", "global_magnitude"]:
        ckpt = os.path.join(tmp, f"{init}.safetensors")
        # lenet300-100 and no validation split: each epoch's test evaluation stays cheap
        flags = ["--model", "lenet300-100", "--data", "fashion-mnist", "--sparse_init", init, "--density", "0.05",
                 "--seed", "5", "--batch-size", "64", "--valid_split", "0"]
        r = subprocess.run([CLI, "train", *flags, "--sparse", "--fix", "--epochs", "2", "--stop-after", "1",
                            "--max-batches", "3", "--threads", "2", "--plain", "--save", ckpt],
                           capture_output=True, text=True, timeout=600)
        check(f"{init}: train runs", r.returncode == 0, r.stderr.strip()[-300:])
        if r.returncode != 0:
            continue
        check(f"{init}: the run prints its layer-wise densities", f"layer-wise densities ({init}" in r.stdout and
              "fc2.weight" in r.stdout)
        tensors, meta = lc.read_safetensors(ckpt)
        recorded = json.loads(meta.get("layer_densities", "{}"))
        check(f"{init}: checkpoint records the layer densities",
              list(recorded) == ["fc1.weight", "fc2.weight", "fc3.weight"], str(recorded))
        ins = subprocess.run(INSPECT + flags + ["--json"], capture_output=True, text=True, timeout=300)
        j = json.loads(ins.stdout) if ins.returncode == 0 else {"layers": []}
        same = all(recorded.get(l["name"]) == l["density"] for l in j["layers"]) and len(j["layers"]) == 3
        check(f"{init}: inspect computes the same densities as train", same)
        kept = {n: int(tensors["mask." + n].sum()) if "mask." + n in tensors else tensors[n].size for n in recorded}
        want = {n: int(np.floor(d * tensors[n].size + 0.5)) for n, d in recorded.items()}
        check(f"{init}: masks keep round(d_l n_l) (exact sampling)", kept == want, f"{kept} vs {want}")
        check(f"{init}: inspect's masks are the run's", [l["kept"] for l in j["layers"]] == list(kept.values()))
        if init != "GraSP":
            continue
        # resume the interrupted run: densities carried over, same masks
        r = subprocess.run([CLI, "train", "--resume", ckpt, "--save", ckpt, "--threads", "2", "--plain"],
                           capture_output=True, text=True, timeout=600)
        check(f"{init}: resume runs", r.returncode == 0, r.stderr.strip()[-300:])
        tensors2, meta2 = lc.read_safetensors(ckpt)
        check(f"{init}: resumed checkpoint keeps densities and masks",
              json.loads(meta2.get("layer_densities", "{}")) == recorded and
              all(np.array_equal(tensors["mask." + n], tensors2["mask." + n]) for n in recorded
                  if "mask." + n in tensors))

finish()
