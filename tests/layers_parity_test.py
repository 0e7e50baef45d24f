#!/usr/bin/python3
"""Layer parity against PyTorch (torch.nn.functional), forward and backward.

For each case the script writes random float32 inputs to a fresh directory
as raw little-endian .bin files plus spec.txt ("<layer> <int args...>"),
runs `$ST_BUILD_DIR/tests/test_layers --parity DIR`, reads the outputs the
C harness writes back, and compares them with PyTorch:
relative error = ||ours - torch|| / ||torch|| <= 1e-4 (exact for indices).

File names per layer (inputs -> outputs):
  conv2d N C H W O K S P bias mask   x w [b] [mask] dy -> y dx dw [db]
  linear N IN OUT bias mask          x w [b] [mask] dy -> y dx dw [db]
  batchnorm N C S                    x gamma beta running_mean running_var dy
                                     -> y y_eval save_mean save_invstd
                                        running_mean_out running_var_out dx dgamma dbeta
  relu n                             x dy -> y dx
  add n                              x b -> y
  maxpool N C H W K S P              x dy -> y argmax(int32) dx (P: padding)
  avgpool N C H W K S                x dy -> y dx
  global_avgpool N C S               x dy -> y dx
  log_softmax_nll N K                logits labels(int32) -> log_probs loss_correct dlogits

`layers_parity_test.py --bench` instead times conv2d forward+backward in
sparsetrain and in PyTorch, 2 threads, median of 5.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

TOL = 1e-4
BUILD = os.environ.get("ST_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "build"))
BINARY = os.path.join(BUILD, "tests", "test_layers")

rng = np.random.default_rng(20240601)
failures = []


def randn(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def run_case(name, spec, inputs):
    """Writes inputs, runs the C harness, returns a reader for its outputs."""
    tmp = tempfile.TemporaryDirectory(prefix="st_parity_")
    d = tmp.name
    with open(os.path.join(d, "spec.txt"), "w") as f:
        f.write(spec + "\n")
    for key, arr in inputs.items():
        arr = np.ascontiguousarray(arr)
        assert arr.dtype in (np.float32, np.int32), key
        arr.tofile(os.path.join(d, key + ".bin"))
    proc = subprocess.run([BINARY, "--parity", d], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")))
    if proc.returncode != 0:
        failures.append(f"{name}: harness exited {proc.returncode}: {proc.stderr.strip()}")
        print(f"{name}: harness FAILED ({proc.stderr.strip()})")
        tmp.cleanup()
        return None

    def read(key, dtype=np.float32):
        return np.fromfile(os.path.join(d, key + ".bin"), dtype=dtype)

    read.cleanup = tmp.cleanup
    return read


def compare(case, what, ours, ref, exact=False):
    ref = np.asarray(ref, dtype=np.float64).ravel()
    ours = np.asarray(ours, dtype=np.float64).ravel()
    if ours.shape != ref.shape:
        failures.append(f"{case} {what}: shape {ours.shape} vs {ref.shape}")
        print(f"  {what:<18} shape mismatch {ours.shape} vs {ref.shape}  FAIL")
        return
    if exact:
        bad = int(np.count_nonzero(ours != ref))
        ok = bad == 0
        print(f"  {what:<18} {bad} mismatching entries  {'ok' if ok else 'FAIL'}")
    else:
        denom = np.linalg.norm(ref)
        rel = np.linalg.norm(ours - ref) / (denom if denom > 0 else 1.0)
        ok = rel <= TOL and np.all(np.isfinite(ours))
        print(f"  {what:<18} rel err {rel:.2e}  {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(f"{case} {what}")


def t(a, grad=False):
    return torch.tensor(a, requires_grad=grad)


# ---------------------------------------------------------------- conv / linear

def check_conv(n, c, h, w, o, k, s, p, bias, masked):
    name = f"conv2d n={n} {c}x{h}x{w}->{o} k={k} s={s} p={p}{' bias' if bias else ''}{' masked' if masked else ''}"
    print(name)
    x = randn(n, c, h, w)
    wt = randn(o, c, k, k, scale=(2.0 / (c * k * k)) ** 0.5)
    mask = (rng.random(wt.shape) < 0.3).astype(np.float32) if masked else None
    if masked:
        wt *= mask
    b = randn(o) if bias else None
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    dy = randn(n, o, oh, ow)
    inputs = {"x": x, "w": wt, "dy": dy}
    if bias:
        inputs["b"] = b
    if masked:
        inputs["mask"] = mask
    read = run_case(name, f"conv2d {n} {c} {h} {w} {o} {k} {s} {p} {int(bias)} {int(masked)}", inputs)
    if read is None:
        return
    xt, wtt = t(x, True), t(wt, True)
    bt = t(b, True) if bias else None
    y = F.conv2d(xt, wtt, bt, stride=s, padding=p)
    y.backward(t(dy))
    dw_ref = wtt.grad.numpy() * (mask if masked else 1.0)
    compare(name, "y", read("y"), y.detach().numpy())
    compare(name, "dx", read("dx"), xt.grad.numpy())
    compare(name, "dw", read("dw"), dw_ref)
    if masked:
        compare(name, "dw masked == 0", read("dw")[mask.ravel() == 0], np.zeros(int((mask == 0).sum())), exact=True)
    if bias:
        compare(name, "dbias", read("db"), bt.grad.numpy())
    read.cleanup()


def check_linear(n, i, o, bias, masked):
    name = f"linear n={n} {i}->{o}{' bias' if bias else ''}{' masked' if masked else ''}"
    print(name)
    x = randn(n, i)
    wt = randn(o, i, scale=(1.0 / i) ** 0.5)
    mask = (rng.random(wt.shape) < 0.2).astype(np.float32) if masked else None
    if masked:
        wt *= mask
    b = randn(o) if bias else None
    dy = randn(n, o)
    inputs = {"x": x, "w": wt, "dy": dy}
    if bias:
        inputs["b"] = b
    if masked:
        inputs["mask"] = mask
    read = run_case(name, f"linear {n} {i} {o} {int(bias)} {int(masked)}", inputs)
    if read is None:
        return
    xt, wtt = t(x, True), t(wt, True)
    bt = t(b, True) if bias else None
    y = F.linear(xt, wtt, bt)
    y.backward(t(dy))
    compare(name, "y", read("y"), y.detach().numpy())
    compare(name, "dx", read("dx"), xt.grad.numpy())
    compare(name, "dw", read("dw"), wtt.grad.numpy() * (mask if masked else 1.0))
    if masked:
        compare(name, "dw masked == 0", read("dw")[mask.ravel() == 0], np.zeros(int((mask == 0).sum())), exact=True)
    if bias:
        compare(name, "dbias", read("db"), bt.grad.numpy())
    read.cleanup()


# ------------------------------------------------------------------ batch norm

def check_batchnorm(n, c, hw, offset=0.0):
    name = f"batchnorm n={n} c={c} spatial={hw}" + (f" offset={offset}" if offset else "")
    print(name)
    shape = (n, c, hw) if hw > 1 else (n, c)
    x = randn(*shape) * randn(1, c, *([1] if hw > 1 else []), scale=2.0) + np.float32(offset)
    x = x.astype(np.float32)
    gamma, beta = randn(c), randn(c)
    rm = randn(c)
    rv = (0.5 + rng.random(c)).astype(np.float32)
    dy = randn(*shape)
    read = run_case(name, f"batchnorm {n} {c} {hw}", {"x": x, "gamma": gamma, "beta": beta, "running_mean": rm,
                                                      "running_var": rv, "dy": dy})
    if read is None:
        return
    y_eval = F.batch_norm(t(x), t(rm), t(rv), t(gamma), t(beta), training=False, momentum=0.1, eps=1e-5)
    xt, gt, bt = t(x, True), t(gamma, True), t(beta, True)
    rmt, rvt = t(rm), t(rv)
    y = F.batch_norm(xt, rmt, rvt, gt, bt, training=True, momentum=0.1, eps=1e-5)
    y.backward(t(dy))
    _, save_mean, save_invstd = torch.native_batch_norm(t(x), t(gamma), t(beta), t(rm), t(rv), True, 0.1, 1e-5)
    compare(name, "y", read("y"), y.detach().numpy())
    compare(name, "y (eval)", read("y_eval"), y_eval.numpy())
    compare(name, "save_mean", read("save_mean"), save_mean.numpy())
    compare(name, "save_invstd", read("save_invstd"), save_invstd.numpy())
    compare(name, "running_mean", read("running_mean_out"), rmt.numpy())
    compare(name, "running_var", read("running_var_out"), rvt.numpy())
    compare(name, "dx", read("dx"), xt.grad.numpy())
    compare(name, "dgamma", read("dgamma"), gt.grad.numpy())
    compare(name, "dbeta", read("dbeta"), bt.grad.numpy())
    read.cleanup()


# ----------------------------------------------------------------- elementwise

def check_relu_add(size):
    name = f"relu / add n={size}"
    print(name)
    x, dy = randn(size), randn(size)
    read = run_case(name, f"relu {size}", {"x": x, "dy": dy})
    if read is not None:
        xt = t(x, True)
        y = F.relu(xt)
        y.backward(t(dy))
        compare(name, "relu y", read("y"), y.detach().numpy())
        compare(name, "relu dx", read("dx"), xt.grad.numpy())
        read.cleanup()
    b = randn(size)
    read = run_case(name, f"add {size}", {"x": x, "b": b})
    if read is not None:
        compare(name, "add y", read("y"), (t(x) + t(b)).numpy())
        read.cleanup()


# --------------------------------------------------------------------- pooling

def check_pool(kind, n, c, h, w, k, s, p=0):
    name = f"{kind} n={n} c={c} {h}x{w} k={k} s={s} p={p}"
    print(name)
    x = randn(n, c, h, w)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    dy = randn(n, c, oh, ow)
    read = run_case(name, f"{kind} {n} {c} {h} {w} {k} {s} {p}", {"x": x, "dy": dy})
    if read is None:
        return
    xt = t(x, True)
    if kind == "maxpool":
        y, idx = F.max_pool2d(xt, k, s, p, return_indices=True)
    else:
        y = F.avg_pool2d(xt, k, s)
    y.backward(t(dy))
    compare(name, "y", read("y"), y.detach().numpy())
    if kind == "maxpool":
        compare(name, "argmax", read("argmax", np.int32), idx.numpy(), exact=True)
    compare(name, "dx", read("dx"), xt.grad.numpy())
    read.cleanup()


def check_global_avgpool(n, c, h, w):
    name = f"global_avgpool n={n} c={c} {h}x{w}"
    print(name)
    x = randn(n, c, h, w)
    dy = randn(n, c)
    read = run_case(name, f"global_avgpool {n} {c} {h * w}", {"x": x, "dy": dy})
    if read is None:
        return
    xt = t(x, True)
    y = F.adaptive_avg_pool2d(xt, 1).flatten(1)
    y.backward(t(dy))
    compare(name, "y", read("y"), y.detach().numpy())
    compare(name, "dx", read("dx"), xt.grad.numpy())
    read.cleanup()


# ------------------------------------------------------------------------ loss

def check_loss(n, k, scale, smoothing=0.0):
    """Log-softmax + NLL; with smoothing, against torch's
    CrossEntropyLoss(label_smoothing=...) (--label-smoothing)."""
    name = f"log_softmax_nll n={n} classes={k} logit scale={scale} label smoothing {smoothing}"
    print(name)
    z = randn(n, k, scale=scale)
    labels = rng.integers(0, k, n).astype(np.int32)
    labels[::3] = z[::3].argmax(1)  # some correct predictions
    read = run_case(name, f"log_softmax_nll {n} {k} {int(round(smoothing * 1000))}", {"logits": z, "labels": labels})
    if read is None:
        return
    zt = t(z, True)
    lp = F.log_softmax(zt, dim=1)
    if smoothing:
        loss = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(zt, torch.tensor(labels, dtype=torch.long))
    else:
        loss = F.nll_loss(lp, torch.tensor(labels, dtype=torch.long))
    loss.backward()
    loss_correct = read("loss_correct")
    compare(name, "log_probs", read("log_probs"), lp.detach().numpy())
    compare(name, "loss", loss_correct[:1], [loss.item()])
    compare(name, "correct", loss_correct[1:], [int((z.argmax(1) == labels).sum())], exact=True)
    compare(name, "dlogits", read("dlogits"), zt.grad.numpy())
    read.cleanup()


# ----------------------------------------------------------------------- bench

def bench():
    torch.set_num_threads(2)
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([BINARY, "--bench"], capture_output=True, text=True, env=env)
    print(out.stdout, end="")
    if out.returncode != 0:
        print(out.stderr)
        return 1
    for n, c, o, hw in ((128, 16, 16, 32), (128, 64, 64, 8)):
        x = torch.randn(n, c, hw, hw, requires_grad=True)
        w = torch.randn(o, c, 3, 3, requires_grad=True)
        dy = torch.randn(n, o, hw, hw)
        fwd, tot = [], []
        for r in range(6):
            x.grad = w.grad = None
            t0 = time.perf_counter()
            y = F.conv2d(x, w, None, 1, 1)
            t1 = time.perf_counter()
            y.backward(dy)
            t2 = time.perf_counter()
            if r:  # first run is warm-up
                fwd.append(t1 - t0)
                tot.append(t2 - t0)
        print(f"pytorch     conv {c}->{o} 3x3 {hw}x{hw} batch {n}, {torch.get_num_threads()} threads: "
              f"fwd {1e3 * np.median(fwd):.2f} ms  bwd {1e3 * (np.median(tot) - np.median(fwd)):.2f} ms  "
              f"fwd+bwd {1e3 * np.median(tot):.2f} ms (median of 5)")
    return 0


def main():
    if not os.path.exists(BINARY):
        print(f"test binary not found: {BINARY} (set ST_BUILD_DIR)")
        return 1
    if len(sys.argv) > 1 and sys.argv[1] == "--bench":
        return bench()
    torch.set_num_threads(2)
    # conv2d: kernel / stride / padding combinations, non-square, bias, masks, 1x1 fast path
    for (k, s, p) in ((1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 2, 1), (3, 1, 0), (5, 1, 2), (5, 2, 2)):
        check_conv(3, 5, 11, 9, 6, k, s, p, bias=(k != 3), masked=False)
        check_conv(4, 6, 10, 7, 5, k, s, p, bias=(k == 3), masked=True)
    check_conv(8, 16, 16, 16, 32, 3, 1, 1, bias=False, masked=False)
    check_conv(5, 16, 8, 8, 32, 1, 2, 0, bias=False, masked=True)  # ResNet shortcut
    check_linear(16, 64, 10, bias=True, masked=False)
    check_linear(7, 30, 13, bias=False, masked=False)
    check_linear(9, 100, 20, bias=True, masked=True)
    check_batchnorm(8, 16, 100)
    check_batchnorm(32, 20, 1)
    check_batchnorm(16, 8, 64, offset=50.0)
    check_batchnorm(64, 64, 64)
    check_relu_add(1000)
    check_relu_add(300001)
    check_pool("maxpool", 4, 6, 8, 10, 2, 2)
    check_pool("maxpool", 3, 4, 9, 11, 3, 2)
    check_pool("maxpool", 16, 32, 32, 32, 2, 2)
    check_pool("maxpool", 2, 5, 16, 16, 3, 2, 1)  # the ImageNet ResNet stem's pooling
    check_pool("maxpool", 3, 4, 9, 11, 3, 2, 1)
    check_pool("avgpool", 4, 6, 8, 10, 2, 2)
    check_pool("avgpool", 3, 4, 9, 7, 3, 1)
    check_global_avgpool(8, 64, 8, 8)
    check_global_avgpool(3, 5, 7, 5)
    check_loss(32, 10, 3.0)
    check_loss(16, 100, 1.0)
    check_loss(8, 10, 1000.0)
    check_loss(32, 10, 3.0, smoothing=0.1)  # the ImageNet recipe's --label-smoothing 0.1
    check_loss(16, 1000, 2.0, smoothing=0.1)
    check_loss(8, 10, 1000.0, smoothing=0.3)
    if failures:
        print(f"\n{len(failures)} parity failure(s):")
        for f in failures:
            print("  " + f)
        return 1
    print("\nall layer parity checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
