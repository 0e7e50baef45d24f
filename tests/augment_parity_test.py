"""CIFAR augmentation and normalisation against torchvision (Debian
python3-torchvision): the training pipeline of the reference code,
transforms.RandomCrop(32, padding=4[, padding_mode='reflect']) +
RandomHorizontalFlip() + ToTensor() + Normalize(mean, std), applied with the
same crop offsets and flips as ours.

Our C side (`tests/test_data_loader --augment IN OUT`) augments random
images with the draws of epoch 0 and returns the draws; torchvision's
functional ops (pad, crop, hflip, to float / 255, normalize) apply those same
draws. Both reflect padding (CIFAR-10, torch 'reflect': the edge pixel is not
repeated) and zero padding (CIFAR-100) are checked, and the draws themselves:
every offset in [0, 8] and both flips occur, about half the images flipped.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, skip  # noqa: E402
import load_checkpoint as lc  # noqa: E402

try:
    import torchvision.transforms.functional as TF
except ImportError:
    skip("torchvision is not installed (Debian package python3-torchvision; scripts/setup.sh installs it)")

MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)  # CIFAR-10's, as in the reference code
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
N = 200
rng = np.random.RandomState(3)
images = rng.randint(0, 256, size=(N, 3, 32, 32)).astype(np.uint8)

with tempfile.TemporaryDirectory() as tmp:
    for reflect in (1, 0):
        inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        lc.write_safetensors(inp, [("images", images), ("mean", MEAN), ("std", STD)],
                             {"seed": "17", "reflect": str(reflect)})
        r = subprocess.run([os.path.join(BUILD, "tests", "test_data_loader"), "--augment", inp, out],
                           capture_output=True, text=True)
        check(f"reflect={reflect}: C harness runs", r.returncode == 0, r.stderr.strip())
        if r.returncode != 0:
            continue
        result, _ = lc.read_safetensors(out)
        ours, draws = result["images"], result["draws"]
        ref = np.empty_like(ours)
        mode = "reflect" if reflect else "constant"
        for i in range(N):
            oy, ox, flip = (int(v) for v in draws[i])
            img = torch.from_numpy(images[i])
            img = TF.pad(img, [4, 4, 4, 4], fill=0, padding_mode=mode)
            img = TF.crop(img, oy, ox, 32, 32)
            if flip:
                img = TF.hflip(img)
            x = img.float() / 255.0  # ToTensor
            ref[i] = TF.normalize(x, MEAN.tolist(), STD.tolist()).numpy()
        worst = float(np.abs(ours - ref).max())
        # 1e-5: both are float32 (p / 255 - mean) / std, rounded in another order (values up to ~2.1)
        check(f"reflect={reflect}: augmented + normalised images = torchvision's (max abs diff {worst:.1e})",
              worst <= 1e-5)
        oys, oxs, flips = draws[:, 0], draws[:, 1], draws[:, 2]
        check(f"reflect={reflect}: crop offsets cover [0, 8], both flips occur",
              set(oys.tolist()) == set(range(9)) and set(oxs.tolist()) == set(range(9)) and
              set(flips.tolist()) == {0, 1}, f"{sorted(set(oys.tolist()))} {sorted(set(flips.tolist()))}")
        # 200 fair flips: mean 100, standard deviation 7; +-35 is 5 of them
        check(f"reflect={reflect}: about half the images flipped", 65 <= int(flips.sum()) <= 135, str(flips.sum()))

finish()
