"""`sparsetrain convert`: the reference code's .pth checkpoints <-> .safetensors.

A sparse CIFAR ResNet with the reference's parameter names (tools/torch_models.py,
the same state_dict as the reference's cifar_resnet.Model) is trained a few
masked SGD steps in PyTorch and saved exactly as the reference's main.py saves
it ({'epoch', 'state_dict', 'optimizer'} with torch.save). Then:
  * convert -> .safetensors: masks are recovered from the zeros, the momentum
    buffers are kept, and `sparsetrain eval` gives the same test accuracy as
    PyTorch on the same images;
  * --resume of the converted file trains on with the masks intact;
  * convert back -> .pth: the reference's load_state_dict / optimizer
    load_state_dict accept it and the weights are those of the checkpoint;
  * both .pth formats (legacy, written by the reference's PyTorch 1.5, and zip)
    convert alike;
  * bad inputs (not a .pth, wrong tensors) give one clear message.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish  # noqa: E402

BIN = os.path.join(BUILD, "sparsetrain")
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.2023, 0.1994, 0.2010], np.float32).reshape(1, 3, 1, 1)


def run(args, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=600, **kw)


def write_cifar10(folder, rng, n_train=64, n_test=48):
    """A learnable CIFAR-10 shaped set in the binary version: class = bright square position."""
    os.makedirs(folder, exist_ok=True)
    out = {}
    for name, n in [("data_batch_%d.bin" % k, n_train // 5 + (k == 1) * (n_train % 5)) for k in range(1, 6)] + \
            [("test_batch.bin", n_test)]:
        y = rng.randint(0, 10, size=n)
        x = rng.randint(0, 80, size=(n, 3, 32, 32))
        for i, c in enumerate(y):
            x[i, :, (c // 5) * 16:(c // 5) * 16 + 16, (c % 5) * 6:(c % 5) * 6 + 6] += 150
        x = np.clip(x, 0, 255).astype(np.uint8)
        with open(os.path.join(folder, name), "wb") as f:
            for i in range(n):
                f.write(bytes([y[i]]) + x[i].tobytes())
        out[name] = (x, y)
    return out


def main():
    try:
        import torch
        import torch.nn.functional as F
        import torch_models
    except ImportError as e:
        print(f"skipped: {e}")
        sys.exit(77)
    torch.manual_seed(0)
    rng = np.random.RandomState(1)
    tmp = tempfile.mkdtemp(prefix="st_convert_")
    data = os.path.join(tmp, "data")
    sets = write_cifar10(data, rng)
    xtr = np.concatenate([sets["data_batch_%d.bin" % k][0] for k in range(1, 6)])
    ytr = np.concatenate([sets["data_batch_%d.bin" % k][1] for k in range(1, 6)])
    xte, yte = sets["test_batch.bin"]

    def norm(x):
        return torch.from_numpy((x.astype(np.float32) / 255.0 - MEAN) / STD)

    # ---- the reference's training loop, in miniature ----
    model = torch_models.build("cifar_resnet_8_4", 10, 3)
    masks = {}
    for name, p in model.named_parameters():
        if name in torch_models.prunable_weight_names(model):
            masks[name] = (torch.rand(p.shape) < 0.5).float()
            with torch.no_grad():
                p.mul_(masks[name])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[80, 120])
    model.train()
    for step in range(6):
        idx = rng.randint(0, len(xtr), size=16)
        opt.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(norm(xtr[idx])), 1), torch.from_numpy(ytr[idx].astype(np.int64)))
        loss.backward()
        opt.step()
        with torch.no_grad():  # Masking.step: weights and momentum masked after every step
            for name, p in model.named_parameters():
                if name in masks:
                    p.mul_(masks[name])
                    opt.state[p]["momentum_buffer"].mul_(masks[name])
    sched.step()
    pth = os.path.join(tmp, "model_final.pth")   # PyTorch 1.5 (the reference's) wrote the legacy format
    saved = {"epoch": 3, "state_dict": model.state_dict(), "optimizer": opt.state_dict()}
    torch.save(saved, pth, _use_new_zipfile_serialization=False)
    pth_zip = os.path.join(tmp, "model_final_zip.pth")  # PyTorch >= 1.6: zip
    torch.save(saved, pth_zip)
    model.eval()
    with torch.no_grad():
        torch_correct = int((model(norm(xte)).argmax(1).numpy() == yte).sum())

    # ---- .pth -> .safetensors ----
    st = os.path.join(tmp, "converted.safetensors")
    p = run(["convert", pth, st, "--arg", "epochs=3", "--arg", "batch_size=16", "--arg", "max_batches=2",
             "--arg", "valid_split=0"])
    check("convert .pth -> .safetensors succeeds", p.returncode == 0, p.stderr.strip() + p.stdout.strip())
    if p.returncode == 0:
        import load_checkpoint as lc
        tensors, meta = lc.read_safetensors(st)
        check("model inferred from the tensors", meta.get("model") == "cifar_resnet_8_4", meta.get("model"))
        check("epoch: the .pth's next epoch 3 = 2 completed", meta.get("epoch") == "2", meta.get("epoch"))
        same = all(np.array_equal(tensors["mask." + n], m.numpy().astype(np.uint8)) for n, m in masks.items())
        check("masks recovered from the zeros equal the masks trained with", same)
        buf_ok = all(np.allclose(tensors[f"optim.{n}.momentum_buffer"], opt.state[q]["momentum_buffer"].numpy())
                     for n, q in model.named_parameters())
        check("momentum buffers kept", buf_ok)
        args = json.loads(meta["args"])
        check("optimiser settings carried into args (initial lr, momentum, weight decay)",
              args["lr"] == 0.05 and args["momentum"] == 0.9 and args["l2"] == 5e-4 and args["sparse"] == 1)

        st_zip = os.path.join(tmp, "converted_zip.safetensors")
        p = run(["convert", pth_zip, st_zip, "--arg", "epochs=3", "--arg", "batch_size=16", "--arg", "max_batches=2",
                 "--arg", "valid_split=0"])
        tz = lc.read_safetensors(st_zip)[0] if p.returncode == 0 else {}
        check("the zip-format .pth converts to the same tensors as the legacy one",
              tz.keys() == tensors.keys() and all(np.array_equal(tz[k], tensors[k]) for k in tz), p.stderr.strip())

        p = run(["eval", "--checkpoint", st, "--datadir", data, "--json"])
        ok = p.returncode == 0
        acc = json.loads(p.stdout)["top1"] if ok else None
        check("sparsetrain eval on the converted checkpoint = PyTorch's accuracy",
              ok and round(acc * len(yte)) == torch_correct,
              f"ours {acc}, torch {torch_correct}/{len(yte)}" if ok else p.stderr.strip())

        resumed = os.path.join(tmp, "resumed.safetensors")
        p = run(["train", "--resume", st, "--save", resumed, "--datadir", data, "--threads", "1", "--plain"])
        check("--resume of the converted checkpoint trains on", p.returncode == 0 and "(resumed)" in p.stdout,
              (p.stderr + p.stdout)[-400:])
        if p.returncode == 0:
            t2, m2 = lc.read_safetensors(resumed)
            check("resumed run finished epoch 3", m2.get("epoch") == "3", m2.get("epoch"))
            kept = all(np.array_equal(t2["mask." + n], tensors["mask." + n]) for n in masks)
            zero = all(not np.any(t2[n][t2["mask." + n] == 0]) for n in masks)
            moved = any(not np.array_equal(t2[n], tensors[n]) for n in masks)
            check("masks unchanged by the resumed training, masked weights 0, kept ones trained",
                  kept and zero and moved)

            # ---- .safetensors -> .pth, loaded as the reference loads it ----
            back = os.path.join(tmp, "back.pth")
            p = run(["convert", resumed, back])
            check("convert .safetensors -> .pth succeeds", p.returncode == 0, p.stderr.strip())
            if p.returncode == 0:
                import convert_checkpoint
                ck = convert_checkpoint._load_pth(back)  # torch.load, without running code from the file
                ref = torch_models.build("cifar_resnet_8_4", 10, 3)
                ref.load_state_dict(ck["state_dict"])
                ropt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
                ropt.load_state_dict(ck["optimizer"])
                same = all(np.array_equal(ck["state_dict"][n].numpy(), t2[n]) for n in t2
                           if not n.startswith(("mask.", "optim.", "best.")))
                check("the .pth loads into the reference's model and optimizer, weights equal",
                      same and ck["epoch"] == 4 and len(ropt.state) == len(list(ref.parameters())))

    # ---- bad inputs ----
    junk = os.path.join(tmp, "junk.pth")
    with open(junk, "wb") as f:
        f.write(b"not a checkpoint at all")
    p = run(["convert", junk, os.path.join(tmp, "x.safetensors")])
    check("a file that is not a .pth: one clear message", p.returncode != 0 and "cannot read" in p.stderr
          and "Traceback" not in p.stderr, p.stderr.strip()[-300:])
    torch.save({"state_dict": {"foo.weight": torch.zeros(3)}}, junk)
    p = run(["convert", junk, os.path.join(tmp, "x.safetensors")])
    check("unknown tensors: one clear message", p.returncode != 0 and "give --model" in p.stderr
          and "Traceback" not in p.stderr, p.stderr.strip()[-300:])
    p = run(["convert", os.path.join(tmp, "missing.pth"), os.path.join(tmp, "x.safetensors")])
    check("missing input: one clear message", p.returncode != 0 and "cannot open" in p.stderr, p.stderr.strip())
    check("no partial output file", not os.path.exists(os.path.join(tmp, "x.safetensors")))
    finish()


if __name__ == "__main__":
    main()
