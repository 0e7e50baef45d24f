#!/usr/bin/env python3
"""Converts checkpoints between the reference code's .pth and sparsetrain's
.safetensors (`sparsetrain convert IN OUT` runs this with Debian's python3).

    convert_checkpoint.py model_final.pth model.safetensors [--data cifar10] [--model NAME]
                          [--arg KEY=JSON ...]
    convert_checkpoint.py checkpoint.safetensors model_final.pth [--best]

.pth -> .safetensors: the reference (VITA-Group/Random_Pruning, CIFAR/main.py)
saves {'epoch': next epoch (1-based), 'state_dict': model.state_dict(),
'optimizer': optimizer.state_dict()}; a bare state_dict is accepted too. It is
read with torch.load(weights_only=True) or, where the installed PyTorch's
weights-only loader is too narrow, an unpickler that resolves only torch's
tensor rebuilders and OrderedDict: no code from the file is run. The model name is inferred from the tensor shapes
(cifar_resnet_N[_W], vggNN) unless --model gives it. Masks are recovered from
the zeros: when any conv/linear weight holds exact zeros the run is sparse and
every prunable weight gets mask = (weight != 0). SGD momentum buffers are kept
(optimizer state index i = i-th parameter); the optimiser step count is not
in a .pth and is written as 0 (SGD does not use it). The run's arguments
("args", what --resume continues with) are sparsetrain's defaults, the
.pth's optimiser settings (initial lr, momentum, weight decay), the inferred
model/data/density, and any --arg KEY=VALUE (a JSON value, e.g.
--arg epochs=200 --arg batch_size=64).

.safetensors -> .pth: the layout above, loadable by the reference's
model.load_state_dict(...) and optimizer.load_state_dict(...) (SGD with
Nesterov momentum as the reference builds it); masked weights are 0.
"""
import argparse
import collections
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load_checkpoint as lc  # noqa: E402
import torch_models  # noqa: E402

DEFAULT_ARGS = collections.OrderedDict([
    ("model", "cifar_resnet_20"), ("data", "cifar10"), ("datadir", ""), ("batch_size", 128),
    ("test_batch_size", 100), ("epochs", 160), ("lr", 0.1), ("momentum", 0.9), ("l2", 5e-4),
    ("optimizer", "sgd"), ("lr_schedule", "multistep"), ("seed", 17), ("valid_split", 0.1), ("sparse", 0),
    ("fix", 1), ("sparse_init", "ERK"), ("density", 1.0), ("fc_density", 1.0), ("mask_sampling", "exact"),
    ("scaled", 0), ("augment", -1), ("max_batches", 0), ("protocol", "sound"),
])


class ConvertError(Exception):
    pass


def infer_model(state):
    """The sparsetrain name of a reference CIFAR model from its state_dict."""
    if "conv.weight" in state and "fc.weight" in state:
        blocks = {int(m.group(1)) for k in state for m in [re.match(r"blocks\.(\d+)\.conv1\.weight$", k)] if m}
        if not blocks or len(blocks) % 3:
            raise ConvertError("a CIFAR ResNet with a block count that is not a multiple of 3")
        depth, width = 6 * (len(blocks) // 3) + 2, state["conv.weight"].shape[0]
        return f"cifar_resnet_{depth}" if width == 16 else f"cifar_resnet_{depth}_{width}"
    convs = [k for k in state if re.match(r"feature\.\d+\.weight$", k) and state[k].dim() == 4]
    if convs and "classifier.weight" in state:
        for depth, cfg in torch_models.VGG_CONFIGS.items():
            if len([c for c in cfg if c != "M"]) == len(convs):
                return f"vgg{depth}"
    raise ConvertError("cannot tell the model from the tensor names; give --model")


_ALLOWED_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
                    ("torch", "Size"), ("torch", "device")}


def _restricted_pickle_module():
    """A stand-in for the pickle module whose Unpickler resolves only the
    names a checkpoint of tensors and plain containers uses (torch's storage
    types and tensor rebuilders, OrderedDict); any other global -- code the
    file would run -- is refused."""
    import io
    import pickle
    import types

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in _ALLOWED_GLOBALS or (module == "torch" and name.endswith("Storage")):
                return super().find_class(module, name)
            raise ConvertError(f"it refers to {module}.{name}, which a checkpoint of tensors does not need "
                               "(refused: loading it would run code)")

    m = types.ModuleType("sparsetrain_restricted_pickle")
    m.Unpickler = Unpickler
    m.UnpicklingError = pickle.UnpicklingError
    m.Pickler, m.dump, m.dumps = pickle.Pickler, pickle.dump, pickle.dumps
    m.HIGHEST_PROTOCOL, m.DEFAULT_PROTOCOL = pickle.HIGHEST_PROTOCOL, pickle.DEFAULT_PROTOCOL
    m.load = lambda f, **kw: Unpickler(f, **kw).load()
    m.loads = lambda data, **kw: Unpickler(io.BytesIO(data), **kw).load()
    return m


def _load_pth(src):
    """torch.load without running code from the file: tensors and plain
    containers only. torch.load(weights_only=True) does this on newer PyTorch
    but Debian's 1.13 rejects plain floats with it, and 1.13 ignores a
    pickle_module argument, so the module torch.serialization unpickles with
    is swapped for the restricted one while loading (zip and legacy formats)."""
    import torch
    import torch.serialization as ser
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - older PyTorch: the restricted unpickler below
        pass
    restricted, saved = _restricted_pickle_module(), ser.pickle
    ser.pickle = restricted
    try:
        return torch.load(src, map_location="cpu", pickle_module=restricted)
    finally:
        ser.pickle = saved


def pth_to_safetensors(src, dst, opts):
    import torch
    try:
        ckpt = _load_pth(src)
    except ConvertError as e:
        raise ConvertError(f"{src}: {e}")
    except Exception as e:  # noqa: BLE001 - torch raises many kinds
        raise ConvertError(f"{src}: cannot read as a PyTorch checkpoint ({str(e).splitlines()[0]})")
    if not isinstance(ckpt, dict):
        raise ConvertError(f"{src}: not a dict")
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConvertError(f"{src}: 'state_dict' is not a dict of tensors")
    state = collections.OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state.items())
    name = opts.model or infer_model(state)
    num_classes = state["fc.weight" if "fc.weight" in state else "classifier.weight"].shape[0]
    model = torch_models.build(name, num_classes, 3)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ConvertError(f"{src}: tensors do not match model {name}: {str(e).splitlines()[0]}")
    params = collections.OrderedDict(model.named_parameters())
    prunable = torch_models.prunable_weight_names(model)
    zeros = sum(int((params[n] == 0).sum()) for n in prunable)
    sparse = zeros > 0
    masks = {n: (params[n] != 0) for n in prunable} if sparse else {}
    kept = sum(int(m.sum()) for m in masks.values()) if sparse else 0
    total = sum(params[n].numel() for n in prunable)

    args = collections.OrderedDict(DEFAULT_ARGS)
    data = opts.data or ("cifar100" if num_classes == 100 else "cifar10")
    args.update(model=name, data=data, sparse=int(sparse), fix=1, density=kept / total if sparse else 1.0)
    optim_state, optimizer_meta = {}, "sgd"
    opt = ckpt.get("optimizer") if isinstance(ckpt.get("optimizer"), dict) else None
    if opt and opt.get("param_groups"):
        group = opt["param_groups"][0]
        args["lr"] = float(group.get("initial_lr", group.get("lr", args["lr"])))
        args["l2"] = float(group.get("weight_decay", args["l2"]))
        if "momentum" in group:
            args["momentum"] = float(group["momentum"])
        else:
            optimizer_meta = args["optimizer"] = "adam"
        names = list(params)
        for index, st in (opt.get("state") or {}).items():
            if not isinstance(index, int) or not 0 <= index < len(names) or not isinstance(st, dict):
                raise ConvertError(f"{src}: optimizer state for parameter {index!r} matches no parameter")
            pname = names[index]
            for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                if isinstance(st.get(key), torch.Tensor):
                    value = st[key].float()
                    if pname in masks:
                        value = value * masks[pname]
                    optim_state[f"{pname}.{key}"] = value
    for item in opts.arg or []:
        key, _, value = item.partition("=")
        if key not in DEFAULT_ARGS:
            raise ConvertError(f"--arg {key}: not a run argument (known: {', '.join(DEFAULT_ARGS)})")
        try:
            args[key] = json.loads(value)
        except ValueError:
            args[key] = value
    completed = max(int(ckpt.get("epoch", 1)) - 1, 0) if "epoch" in ckpt else 0
    meta = {"model": name, "data": args["data"], "epoch": str(completed), "step": "0", "seed": str(args["seed"]),
            "best_val_acc": "-1", "best_epoch": "-1", "best_test_acc": "0", "batch_in_epoch": "0",
            "epoch_loss_sum": "0", "epoch_correct": "0", "epoch_seen": "0", "optimizer": optimizer_meta,
            "args": json.dumps(args), "converted_from": os.path.basename(src)}
    if sparse:
        meta["layer_densities"] = json.dumps({n: float(masks[n].float().mean()) for n in prunable})
    lc.save_checkpoint_like(dst, model, masks=masks, meta=meta, optim_state=optim_state)
    print(f"{src} -> {dst}: {name}, {num_classes} classes, epoch {completed}, "
          + (f"sparse (density {kept / total:.4f}, masks from the zeros)" if sparse else "dense")
          + (f", {len(optim_state)} optimiser state tensors" if optim_state else ""))


def safetensors_to_pth(src, dst, opts):
    import torch
    try:
        ck = lc.load_checkpoint(src, best=opts.best)
    except lc.SafetensorsError as e:
        raise ConvertError(str(e))
    model, meta = ck.model, ck.metadata
    args = json.loads(meta.get("args", "{}") or "{}")
    lr, momentum, l2 = float(args.get("lr", 0.1)), float(args.get("momentum", 0.9)), float(args.get("l2", 5e-4))
    if meta.get("optimizer", "sgd") == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=l2)
        keys = ("exp_avg", "exp_avg_sq")
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=l2, nesterov=True)
        keys = ("momentum_buffer",)
    for pname, p in model.named_parameters():
        found = {k: ck.tensors.get(f"{lc.OPTIM_PREFIX}{pname}.{k}") for k in keys}
        if all(v is not None for v in found.values()):
            st = {k: torch.from_numpy(v.copy()) for k, v in found.items()}
            if "exp_avg" in st:
                st["step"] = torch.tensor(float(meta.get("step", "0")))
            optimizer.state[p] = st
    tmp = f"{dst}.tmp.{os.getpid()}"  # atomic: an existing dst survives any failure
    try:
        torch.save({"epoch": int(meta.get("epoch", "0")) + 1, "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict()}, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"{src} -> {dst}: {meta.get('model')}, epoch {meta.get('epoch')}"
          + (f", {len(ck.masks)} masked weights" if ck.masks else ""))


def main(argv=None):
    p = argparse.ArgumentParser(prog="sparsetrain convert",
                                description="Converts the reference code's .pth checkpoints to sparsetrain's "
                                            ".safetensors and back.")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", help="model name (default: inferred from the tensor shapes)")
    p.add_argument("--data", help="data set of the run (default: cifar100 for 100 classes, else cifar10)")
    p.add_argument("--arg", action="append", help="KEY=VALUE: a run argument stored for --resume (JSON value)")
    p.add_argument("--best", action="store_true", help=".safetensors -> .pth: the best-on-validation weights")
    opts = p.parse_args(argv)
    src, dst = opts.input, opts.output
    try:
        if not os.path.isfile(src):
            raise ConvertError(f"cannot open {src}")
        if dst.endswith(".safetensors") and not src.endswith(".safetensors"):
            pth_to_safetensors(src, dst, opts)
        elif src.endswith(".safetensors") and not dst.endswith(".safetensors"):
            safetensors_to_pth(src, dst, opts)
        else:
            raise ConvertError("one side must be a .safetensors file and the other a .pth/.pt/.tar file")
    except ConvertError as e:
        print(f"sparsetrain convert: error: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"sparsetrain convert: error: needs PyTorch and numpy (Debian python3-torch, python3-numpy): {e}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
