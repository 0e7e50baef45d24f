"""Dynamic sparse training against an independent PyTorch implementation.

One layer's update step (tests/dst_probe: sparse/dst.h's criteria) on the same
weights, gradients and masks as a PyTorch version written from the SPEC:
* magnitude death + gradient growth: the same mask after death and after
  growth, exactly, with ties (weights and gradients quantised to a few levels)
  going to the lower position (a stable sort);
* SET death + random growth: the same mask after death exactly; random growth
  regrows exactly the removed count among the inactive positions and, over
  many seeds, every inactive position about equally often;
* Taylor_FO death + random_unfired growth: the same mask after death; grown
  positions never active before while there are enough of them;
* magnitude death + momentum growth: the dense momentum after T steps of
  dense gradients equals torch.optim.SGD's momentum_buffer (weight decay,
  with and without Nesterov: the buffer is the same) / torch.optim.Adam's
  exp_avg and exp_avg_sq, stepped on a dense tensor holding the masked
  weights, as the reference's masked-dense training does; growth takes the
  inactive positions of largest |momentum| (Adam: |exp_avg / (sqrt(exp_avg_sq)
  + 1e-8)|), the reference's momentum_growth and get_momentum_for_weight;
* the death-rate schedule of a real run (the JSON log's mask_update lines) =
  torch.optim.lr_scheduler.CosineAnnealingLR(T_max = the run's steps,
  eta_min = 0.005) stepped once per optimiser step, as the reference steps it.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD, check, finish, skip  # noqa: E402

try:
    import numpy as np
    import torch
except ImportError:
    skip("NumPy or PyTorch (python3-numpy, python3-torch) is not installed")

torch.set_num_threads(2)
PROBE = os.path.join(BUILD, "tests", "dst_probe")
CLI = os.path.join(BUILD, "sparsetrain")
FASHION = "/usr/share/datasets/fashion-mnist"


def probe(tmp, death, growth, rate, seed, w, g, mask, fired):
    src, dst = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    n = w.size
    with open(src, "wb") as f:
        f.write(np.int64(n).tobytes())
        f.write(w.astype("<f4").tobytes())
        f.write(g.astype("<f4").tobytes())
        f.write(mask.astype(np.uint8).tobytes())
        f.write(fired.astype(np.uint8).tobytes())
    r = subprocess.run([PROBE, death, growth, repr(rate), str(seed), src, dst], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    out = np.fromfile(dst, dtype=np.uint8)
    return out[:n].astype(bool), out[n:].astype(bool)


def first_by_key(positions, keys, k):
    """The k positions of smallest key, ties to the lower position (positions increasing)."""
    order = torch.argsort(keys, stable=True)
    return positions[order[:k]]


def torch_death(kind, w, g, mask, rate):
    w, g, mask = torch.from_numpy(w), torch.from_numpy(g), torch.from_numpy(mask.astype(bool))
    kept = torch.nonzero(mask).flatten()
    k = min(math.ceil(rate * kept.numel()), kept.numel())
    new = mask.clone()
    if kind == "magnitude":
        new[first_by_key(kept, w[kept].abs(), k)] = False
    elif kind == "Taylor_FO":
        new[first_by_key(kept, (w[kept] * g[kept]) ** 2, k)] = False
    elif kind == "SET":
        pos = kept[w[kept] >= 0]
        neg = kept[w[kept] < 0]
        k_pos = (k + 1) // 2
        k_neg = k - k_pos
        if k_pos > pos.numel():
            k_neg += k_pos - pos.numel()
            k_pos = pos.numel()
        if k_neg > neg.numel():
            k_pos += k_neg - neg.numel()
            k_neg = neg.numel()
        new[first_by_key(pos, w[pos], k_pos)] = False
        new[first_by_key(neg, -w[neg], k_neg)] = False
    return new.numpy(), int(mask.sum() - new.sum())


def torch_gradient_growth(g, mask, count):
    g, mask = torch.from_numpy(g), torch.from_numpy(mask)
    inactive = torch.nonzero(~mask).flatten()
    new = mask.clone()
    new[first_by_key(inactive, -g[inactive].abs(), count)] = True
    return new.numpy()


def probe_momentum(tmp, rate, w, mask, steps, opt, beta1, beta2, wd):
    """Our momentum growth after len(steps) steps of (w_t, g_t): (mask after death, after growth, m1, m2)."""
    src, dst = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    n = w.size
    with open(src, "wb") as f:
        f.write(np.int64(n).tobytes())
        f.write(w.astype("<f4").tobytes())
        f.write(np.zeros(n, dtype="<f4").tobytes())
        f.write(mask.astype(np.uint8).tobytes())
        f.write(mask.astype(np.uint8).tobytes())
        for wt, gt in steps:
            f.write(wt.astype("<f4").tobytes())
            f.write(gt.astype("<f4").tobytes())
    r = subprocess.run([PROBE, "magnitude", "momentum", repr(rate), "1", src, dst, opt, repr(beta1), repr(beta2),
                        repr(wd), str(len(steps))], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    raw = open(dst, "rb").read()
    death = np.frombuffer(raw, dtype=np.uint8, count=n).astype(bool)
    growth = np.frombuffer(raw, dtype=np.uint8, count=n, offset=n).astype(bool)
    m1 = np.frombuffer(raw, dtype="<f4", count=n, offset=2 * n)
    m2 = np.frombuffer(raw, dtype="<f4", count=n, offset=6 * n) if opt == "adam" else None
    return death, growth, m1, m2


def torch_momentum(steps, opt, beta1, beta2, wd, nesterov):
    """The reference's view: a dense parameter holding the masked weights, its dense gradient every step,
    torch.optim's own state; returns the momentum get_momentum_for_weight would rank by and the raw state."""
    p = torch.nn.Parameter(torch.zeros(steps[0][0].size))
    if opt == "sgd":
        o = torch.optim.SGD([p], lr=0.1, momentum=beta1, weight_decay=wd, nesterov=nesterov)
    else:
        o = torch.optim.Adam([p], lr=0.01, betas=(beta1, beta2), weight_decay=wd)
    for wt, gt in steps:
        with torch.no_grad():
            p.copy_(torch.from_numpy(wt))  # the step's (masked) weights, as apply_mask leaves them
        p.grad = torch.from_numpy(gt.copy())
        o.step()
    state = o.state[p]
    if opt == "sgd":
        buf = state["momentum_buffer"]
        return buf, buf, None
    m1, m2 = state["exp_avg"], state["exp_avg_sq"]
    return m1 / (torch.sqrt(m2) + 1e-08), m1, m2


def torch_momentum_growth(score, mask, count):
    """The reference's momentum_growth: |momentum| * (mask == 0), sorted descending, the first `count`
    (no ties among continuous values; ours breaks them to the lower position)."""
    score = score.detach().clone()
    new = torch.from_numpy(mask.copy())
    score = score.abs() * (~new).float()
    idx = torch.argsort(-score, stable=True)
    new[idx[:count]] = True
    return new.numpy()


def layer(rng, n, density, levels):
    w = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    if levels:  # a few values only: many ties
        w = (np.round(w * levels) / levels).astype(np.float32)
        g = (np.round(g * levels) / levels).astype(np.float32)
    mask = rng.random_sample(n) < density
    if not mask.any():
        mask[rng.randint(n)] = True
    w = np.where(mask, w, 0).astype(np.float32)
    return w, g, mask


def main():
    if not os.path.exists(PROBE):
        check("tests/dst_probe is built", False, PROBE)
        return
    rng = np.random.RandomState(15)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(n, d, lv) for n in (1, 7, 300, 4608) for d in (0.05, 0.5, 1.0) for lv in (0, 3)]
        ok_md, ok_set, ok_taylor, details = 0, 0, 0, []
        for n, density, levels in cases:
            w, g, mask = layer(rng, n, density, levels)
            rate = float(rng.uniform(0.1, 0.9))
            fired = mask | (rng.random_sample(n) < 0.1)
            # magnitude + gradient (RigL-like)
            after_death, after_growth = probe(tmp, "magnitude", "gradient", rate, 1, w, g, mask, fired)
            want_death, removed = torch_death("magnitude", w, g, mask, rate)
            want_growth = torch_gradient_growth(g, want_death, removed)
            same = np.array_equal(after_death, want_death) and np.array_equal(after_growth, want_growth)
            ok_md += same
            if not same:
                details.append(f"magnitude+gradient n={n} d={density} levels={levels}")
            # SET + random (SET-like)
            after_death, after_growth = probe(tmp, "SET", "random", rate, 2, w, g, mask, fired)
            want_death, removed = torch_death("SET", w, g, mask, rate)
            grown = after_growth & ~after_death
            same = (np.array_equal(after_death, want_death) and grown.sum() == removed and
                    np.array_equal(after_growth & after_death, after_death) and after_growth.sum() == mask.sum())
            ok_set += same
            if not same:
                details.append(f"SET+random n={n} d={density} levels={levels}")
            # Taylor_FO + random_unfired
            after_death, after_growth = probe(tmp, "Taylor_FO", "random_unfired", rate, 3, w, g, mask, fired)
            want_death, removed = torch_death("Taylor_FO", w, g, mask, rate)
            grown = after_growth & ~after_death
            unfired = ~fired
            enough = removed <= unfired.sum()
            same = (np.array_equal(after_death, want_death) and grown.sum() == removed and
                    (not enough or not (grown & fired).any()) and (enough or (unfired <= after_growth).all()))
            ok_taylor += same
            if not same:
                details.append(f"Taylor_FO+random_unfired n={n} d={density} levels={levels}")
        check(f"magnitude death + gradient growth = PyTorch's on {len(cases)} layers (with ties)",
              ok_md == len(cases), "; ".join(details))
        check(f"SET death = PyTorch's, random growth regrows the removed count on {len(cases)} layers",
              ok_set == len(cases), "; ".join(details))
        check(f"Taylor_FO death = PyTorch's, random_unfired prefers never-active positions on {len(cases)} layers",
              ok_taylor == len(cases), "; ".join(details))

        # magnitude death + momentum growth against torch.optim's own state
        ok, worst, details = 0, 0.0, []
        configs = [("sgd", 0.9, 0.0, 5e-4, False), ("sgd", 0.9, 0.0, 0.0, True), ("sgd", 0.5, 0.0, 1e-3, True),
                   ("adam", 0.9, 0.999, 0.0, False), ("adam", 0.8, 0.99, 1e-4, False)]
        for c, (opt, beta1, beta2, wd, nesterov) in enumerate(configs):
            for n, density in ((300, 0.1), (4608, 0.3)):
                _, _, mask = layer(rng, n, density, 0)
                steps = []
                for t in range(6):  # the masked weights drift, the dense gradient is nonzero everywhere
                    wt = np.where(mask, rng.standard_normal(n), 0).astype(np.float32)
                    steps.append((wt, rng.standard_normal(n).astype(np.float32)))
                w = steps[-1][0]
                rate = float(rng.uniform(0.2, 0.6))
                after_death, after_growth, m1, m2 = probe_momentum(tmp, rate, w, mask, steps, opt, beta1, beta2, wd)
                score, t1, t2 = torch_momentum(steps, opt, beta1, beta2, wd, nesterov)
                want_death, removed = torch_death("magnitude", w, np.zeros(n, np.float32), mask, rate)
                want_growth = torch_momentum_growth(score, want_death, removed)
                err = float(np.abs(m1 - t1.numpy()).max() / max(1e-30, np.abs(t1.numpy()).max()))
                if m2 is not None:
                    err = max(err, float(np.abs(m2 - t2.numpy()).max() / max(1e-30, np.abs(t2.numpy()).max())))
                worst = max(worst, err)
                same = (np.array_equal(after_death, want_death) and np.array_equal(after_growth, want_growth)
                        and err <= 1e-6)
                ok += same
                if not same:
                    details.append(f"{opt} beta {beta1} wd {wd} nesterov {nesterov} n={n}: state error {err:.1e}, "
                                   f"{int((after_growth != want_growth).sum())} positions differ")
        check(f"momentum growth = the reference's (torch.optim state after 6 dense steps, SGD +- Nesterov and Adam) "
              f"on {ok} of {2 * len(configs)} layers", ok == 2 * len(configs),
              f"worst relative state error {worst:.1e}; " + "; ".join(details))

        # random growth is uniform over the inactive positions (many seeds)
        n = 40
        w, g, mask = layer(rng, n, 0.25, 0)
        counts = np.zeros(n)
        trials = 400
        inactive_after = None
        for seed in range(trials):
            after_death, after_growth = probe(tmp, "magnitude", "random", 0.5, 100 + seed, w, g, mask, mask)
            counts += after_growth & ~after_death
            inactive_after = ~after_death
        cand = counts[inactive_after]
        expected = counts.sum() / inactive_after.sum()
        chi2 = float(((cand - expected) ** 2 / expected).sum())
        dof = int(inactive_after.sum()) - 1
        # chi-square with ~30 degrees of freedom: mean dof, sd sqrt(2 dof); 4 sd is far beyond chance
        check("random growth is uniform over the inactive positions (chi-square over 400 seeds)",
              chi2 < dof + 4 * math.sqrt(2 * dof) and (counts[~inactive_after] == 0).all(),
              f"chi2 {chi2:.1f} with {dof} degrees of freedom")

    # the death-rate schedule of a real run
    if not os.path.exists(os.path.join(FASHION, "train-images-idx3-ubyte.gz")):
        check("Fashion-MNIST for the schedule check", False, "dataset-fashion-mnist is installed by setup.sh")
        return
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        r = subprocess.run([CLI, "train", "--model", "lenet300-100", "--sparse", "--datadir", FASHION, "--epochs", "2",
                            "--max-batches", "30", "--update_frequency", "5", "--death-rate", "0.4", "--batch-size",
                            "32", "--valid_split", "0", "--threads", "2", "--quiet", "--log", log],
                           capture_output=True, text=True, timeout=300)
        check("a short dynamic run", r.returncode == 0, r.stderr.strip()[-300:])
        if r.returncode != 0:
            return
        updates = [json.loads(l) for l in open(log) if '"mask_update"' in l]
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=60, eta_min=0.005)
        rates = {}
        for step in range(1, 60):
            opt.step()
            sched.step()
            rates[step] = opt.param_groups[0]["lr"]
        worst = max((abs(u["death_rate"] - rates[u["step"]]) for u in updates), default=1.0)
        check("the run's death rates = CosineAnnealingLR(T_max = 60 steps, eta_min = 0.005), updates every 5 steps "
              "but not at the last", [u["step"] for u in updates] == list(range(5, 60, 5)) and worst < 1e-9,
              f"{len(updates)} updates, worst difference {worst:.1e}")
        epochs = [json.loads(l) for l in open(log) if '"epoch"' in l]
        check("the ITOP rate grows and each update keeps the model's kept count",
              all(u["removed"] == u["regrown"] for u in updates) and
              all(a["itop_rate"] <= b["itop_rate"] for a, b in zip(updates, updates[1:])) and
              len(epochs) == 2 and epochs[-1]["itop_rate"] == updates[-1]["itop_rate"] > 0.05 * 1.2)


main()
finish()
