#!/usr/bin/env python3
"""Open a sparsetrain checkpoint in PyTorch: module + command line.

A checkpoint is a safetensors file: the model's state_dict under its PyTorch
names, ``mask.<weight>`` (U8 or BOOL, 1 = kept) for every masked weight,
``optim.*`` optimiser state, optionally ``best.*`` (best-on-validation copy of
the state_dict), and string metadata: "format" = "sparsetrain-checkpoint-1",
"model", "num_classes", "in_channels", "in_height", "in_width", "epoch", "args"
(JSON of the run's arguments), ... The safetensors reader and writer here are
self-contained (struct + json + numpy; the ``safetensors`` package is not
needed) and as strict as the C reader in src/io/safetensors.c.

    python3 tools/load_checkpoint.py run/checkpoint.safetensors [--layers]
    python3 tools/load_checkpoint.py ckpt.safetensors \\
        --idx-images t10k-images-idx3-ubyte.gz --idx-labels t10k-labels-idx1-ubyte.gz \\
        --mean 0.1307 --std 0.3081

Library use: ``read_safetensors``, ``write_safetensors``, ``load_checkpoint``,
``save_checkpoint_like`` (lets tests produce a checkpoint from PyTorch),
``read_idx``, ``evaluate``.
"""

import argparse
import collections
import gzip
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402  (tools/torch_models.py, beside this file)

CHECKPOINT_FORMAT = "sparsetrain-checkpoint-1"
MASK_PREFIX = "mask."
OPTIM_PREFIX = "optim."
BEST_PREFIX = "best."
ITOP_PREFIX = "itop."  # dynamic sparse training: positions ever active (docs/FORMATS.md)
NON_MODEL_PREFIXES = (MASK_PREFIX, OPTIM_PREFIX, BEST_PREFIX, ITOP_PREFIX)
MAX_HEADER = 100_000_000

# safetensors dtype name -> little-endian numpy dtype ("BF16" is handled apart).
_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_ITEMSIZE = dict({k: v.itemsize for k, v in _DTYPES.items()}, BF16=2)


class SafetensorsError(ValueError):
    """A truncated or corrupt safetensors file (the message names the file)."""


# ---- safetensors ----------------------------------------------------------------

def _reject_duplicates(pairs):
    seen = collections.OrderedDict()
    for k, v in pairs:
        if k in seen:
            raise ValueError(f"duplicate key {k!r}")
        seen[k] = v
    return seen


def _reject_constant(name):
    raise ValueError(f"invalid JSON number {name}")


def _is_count(x):
    return type(x) is int and x >= 0   # bool is an int subclass: excluded


def parse_safetensors(data, source="<bytes>"):
    """Validates a whole safetensors image. Returns (tensors, metadata):
    an OrderedDict name -> numpy array (own, writable memory) in data order,
    and a dict of metadata strings. BF16 tensors come back as float32."""
    def fail(msg):
        raise SafetensorsError(f"{source}: {msg}")

    if len(data) < 8:
        fail(f"truncated: {len(data)} bytes, too short for the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER:
        fail(f"header length {n} exceeds the limit of {MAX_HEADER} bytes")
    if n > len(data) - 8:
        fail(f"truncated: header length {n} but only {len(data) - 8} bytes follow it")
    if n < 2 or data[8:9] != b"{":
        fail("header does not start with '{' (not a safetensors file?)")
    try:
        text = bytes(data[8:8 + n]).decode("utf-8", errors="strict")
        header = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        fail(f"invalid JSON header: {e}")
    if not isinstance(header, dict):
        fail("header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        fail("__metadata__ must be an object of strings")
    if any("\0" in k or "\0" in v for k, v in metadata.items()):
        fail("metadata contains a NUL character")

    entries = []
    for index, (name, info) in enumerate(header.items()):
        if not name or "\0" in name:
            fail(f"invalid tensor name {name!r}")
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            fail(f"tensor {name!r} must be described by exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _ITEMSIZE:
            fail(f"tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_is_count(d) for d in shape):
            fail(f"tensor {name!r}: shape must be a list of at most 8 non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
                or offsets[1] < offsets[0]):
            fail(f"tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end")
        nbytes = _ITEMSIZE[dtype]
        for d in shape:
            nbytes *= d
        if nbytes != offsets[1] - offsets[0]:
            fail(f"tensor {name!r}: shape needs {nbytes} bytes of {dtype} but data_offsets "
                 f"{offsets} span {offsets[1] - offsets[0]}")
        entries.append((offsets[0], offsets[1], index, name, dtype, shape))

    data_start, data_size = 8 + n, len(data) - 8 - n
    tensors = collections.OrderedDict()
    expected = 0
    for begin, end, _, name, dtype, shape in sorted(entries):
        if begin != expected:
            fail(f"tensor {name!r} starts at data offset {begin}, expected {expected} "
                 f"({'overlaps the previous tensor' if begin < expected else 'hole in the data'})")
        if end > data_size:
            fail(f"truncated: tensor {name!r} ends at data offset {end} but the data region has "
                 f"only {data_size} bytes")
        expected = end
        raw = bytes(data[data_start + begin:data_start + end])
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32).reshape(shape)
        else:
            if dtype == "BOOL" and raw and np.frombuffer(raw, dtype=np.uint8).max() > 1:
                fail(f"BOOL tensor {name!r} holds bytes other than 0 and 1")
            array = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(shape).copy()
        tensors[name] = array
    if expected != data_size:
        fail(f"{data_size - expected} bytes after the last tensor (file longer than its header says)")
    return tensors, dict(metadata)


def read_safetensors(path):
    """Reads and validates a file; see parse_safetensors."""
    with open(path, "rb") as f:
        data = f.read()
    return parse_safetensors(data, path)


def _to_numpy(name, value):
    """(safetensors dtype name, C-contiguous little-endian bytes, shape) of a tensor or array."""
    try:
        import torch
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().contiguous()
            if value.dtype == torch.bfloat16:
                return "BF16", value.view(torch.int16).numpy().astype("<i2").tobytes(), list(value.shape)
            value = value.numpy()
    except ImportError:
        pass
    array = np.asarray(value)   # (np.ascontiguousarray would turn a scalar into shape [1])
    for dtype_name, dtype in _DTYPES.items():
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
            return dtype_name, array.astype(dtype, copy=False).tobytes(order="C"), list(array.shape)
    raise TypeError(f"tensor {name!r}: dtype {array.dtype} has no safetensors equivalent")


def serialize_safetensors(tensors, metadata=None):
    """bytes of a safetensors file: tensors (mapping or (name, value) pairs of
    numpy arrays / torch tensors) laid out in the given order, header padded
    with spaces to a multiple of 8 (the same bytes the C writer produces)."""
    items = list(tensors.items()) if hasattr(tensors, "items") else list(tensors)
    header = collections.OrderedDict()
    if metadata:
        meta = collections.OrderedDict()
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata {k!r}: keys and values must be strings")
            meta[k] = v
        header["__metadata__"] = meta
    chunks, offset = [], 0
    for name, value in items:
        if not isinstance(name, str) or not name or name == "__metadata__" or name in header:
            raise ValueError(f"invalid or duplicate tensor name {name!r}")
        dtype, raw, shape = _to_numpy(name, value)
        if dtype == "BOOL" and raw and np.frombuffer(raw, dtype=np.uint8).max() > 1:
            raise ValueError(f"BOOL tensor {name!r} holds values other than 0 and 1")
        header[name] = collections.OrderedDict(
            [("dtype", dtype), ("shape", shape), ("data_offsets", [offset, offset + len(raw)])])
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write_safetensors(path, tensors, metadata=None):
    """Writes atomically: PATH.tmp.<pid>, fsync, rename over PATH, fsync the
    directory; an existing PATH survives any failure."""
    data = serialize_safetensors(tensors, metadata)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---- checkpoints -----------------------------------------------------------------

def default_input_size(model_name):
    """(height, width) the models are trained on: 28 for the LeNets (MNIST),
    224 for the ImageNet ResNets, 32 otherwise (CIFAR)."""
    if model_name in ("lenet5", "lenet300-100"):
        return 28, 28
    if model_name in torch_models.IMAGENET_RESNETS:
        return 224, 224
    return 32, 32


def save_checkpoint_like(path, model, masks=None, meta=None, optim_state=None):
    """Writes a checkpoint in sparsetrain's layout from a PyTorch model.

    masks: {weight name: 0/1 tensor of the weight's shape} stored as
    "mask.<name>" (U8); masked positions of the saved weights are written as
    exactly 0 (the model itself is not modified). optim_state: {name: tensor}
    stored as "optim.<name>". meta: must give "model"; "num_classes",
    "in_channels", "in_height", "in_width" default from the model, "epoch" to
    "0", "args" to "{}"; non-string values are JSON-encoded (strings kept)."""
    import torch
    meta = dict(meta or {})
    if "model" not in meta:
        raise ValueError("save_checkpoint_like: meta must name the 'model'")
    name = meta["model"]
    state = model.state_dict()
    masks = dict(masks or {})
    prunable = set(torch_models.prunable_weight_names(model))
    tensors = []
    for key, value in state.items():
        if key in masks:
            value = value * (torch.as_tensor(masks[key]) != 0).to(value.dtype)
        tensors.append((key, value))
    for key, mask in masks.items():
        if key not in prunable:
            raise ValueError(f"mask for {key!r}: not a prunable conv/linear weight of {name}")
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != tuple(state[key].shape):
            raise ValueError(f"mask for {key!r} has shape {tuple(mask.shape)}, weight {tuple(state[key].shape)}")
        tensors.append((MASK_PREFIX + key, (mask != 0).to(torch.uint8)))
    for key, value in (optim_state or {}).items():
        tensors.append((OPTIM_PREFIX + key, value))

    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    first = next(m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    height, width = default_input_size(name)
    in_channels = first.in_channels if isinstance(first, torch.nn.Conv2d) else first.in_features // (height * width)
    metadata = collections.OrderedDict([
        ("format", CHECKPOINT_FORMAT), ("model", name), ("num_classes", str(fc.out_features)),
        ("in_channels", str(in_channels)), ("in_height", str(height)), ("in_width", str(width)),
        ("epoch", "0"), ("args", "{}"),
    ])
    for k, v in meta.items():
        metadata[k] = v if isinstance(v, str) else json.dumps(v)
    write_safetensors(path, tensors, metadata)


Checkpoint = collections.namedtuple("Checkpoint", "model masks metadata tensors masked_nonzero")


def load_checkpoint(path, best=False):
    """Builds the checkpoint's model, loads its state_dict strictly and applies
    its masks. With best=True loads the "best.*" (best-on-validation) copy.
    Returns Checkpoint(model, masks {weight: bool tensor}, metadata, tensors
    {name: numpy}, masked_nonzero = weights that were nonzero at masked
    positions before masking (a well-formed checkpoint has 0))."""
    import torch
    tensors, metadata = read_safetensors(path)
    fmt = metadata.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise SafetensorsError(f"{path}: not a sparsetrain checkpoint (metadata 'format' is {fmt!r})")
    try:
        name = metadata["model"]
        num_classes = int(metadata["num_classes"])
        in_channels = int(metadata["in_channels"])
    except (KeyError, ValueError) as e:
        raise SafetensorsError(f"{path}: checkpoint metadata model/num_classes/in_channels missing or invalid ({e})")
    model = torch_models.build(name, num_classes, in_channels)

    if best:
        if not any(k.startswith(BEST_PREFIX) for k in tensors):
            raise SafetensorsError(f"{path}: no best-on-validation weights (best.*) in this checkpoint")
        state = {k[len(BEST_PREFIX):]: v for k, v in tensors.items() if k.startswith(BEST_PREFIX)}
    else:
        state = {k: v for k, v in tensors.items() if not k.startswith(NON_MODEL_PREFIXES)}
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise SafetensorsError(f"{path}: tensors do not match model {name}: {e}")

    params = dict(model.named_parameters())
    masks, masked_nonzero = {}, 0
    for key, value in tensors.items():
        if not key.startswith(MASK_PREFIX):
            continue
        target = key[len(MASK_PREFIX):]
        if target not in params or tuple(params[target].shape) != value.shape:
            raise SafetensorsError(f"{path}: mask {key!r} matches no weight of the same shape")
        if value.dtype != np.bool_ and not np.isin(value, (0, 1)).all():
            raise SafetensorsError(f"{path}: mask {key!r} holds values other than 0 and 1")
        mask = torch.from_numpy(value != 0)
        with torch.no_grad():
            masked_nonzero += int((params[target][~mask] != 0).sum())
            params[target].mul_(mask.to(params[target].dtype))
        masks[target] = mask
    return Checkpoint(model, masks, metadata, tensors, masked_nonzero)


def density_report(model, masks):
    """Rows (name, kept, total) per prunable weight (unmasked weights count
    as fully kept) and the totals."""
    params = dict(model.named_parameters())
    rows = []
    for name in torch_models.prunable_weight_names(model):
        total = params[name].numel()
        kept = int(masks[name].sum()) if name in masks else total
        rows.append((name, kept, total))
    return rows


# ---- IDX data and evaluation -----------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Reads an IDX file (MNIST format), gzip-compressed or plain."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    if ndim < 1 or len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    count = int(np.prod(shape, dtype=np.int64))
    expected = 4 + 4 * ndim + count * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: IDX file has {len(data)} bytes, its header says {expected}")
    return np.frombuffer(data, dtype=dtype, count=count, offset=4 + 4 * ndim).reshape(shape)


def evaluate(model, images, labels, mean, std, batch_size=500):
    """Accuracy and mean NLL of `model` on uint8 images (N,H,W) or (N,C,H,W),
    scaled to [0,1] and normalised per channel with mean/std (sequences)."""
    import torch
    import torch.nn.functional as F
    x = np.asarray(images, dtype=np.float32) / 255.0
    if x.ndim == 3:
        x = x[:, None]
    channels = x.shape[1]
    mean = np.resize(np.asarray(mean, dtype=np.float32), channels).reshape(1, channels, 1, 1)
    std = np.resize(np.asarray(std, dtype=np.float32), channels).reshape(1, channels, 1, 1)
    x = (x - mean) / std
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    if len(y) != len(x):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    model.eval()
    correct, nll = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(torch.from_numpy(x[start:start + batch_size]))
            target = y[start:start + batch_size]
            nll += float(F.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(1) == target).sum())
    n = max(len(x), 1)
    return correct / n, nll / n


# ---- command line ----------------------------------------------------------------

def _floats(text):
    return [float(v) for v in text.split(",")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="sparsetrain checkpoint (.safetensors)")
    parser.add_argument("--best", action="store_true", help="load the best-on-validation weights (best.*)")
    parser.add_argument("--layers", action="store_true", help="print the density of every prunable weight")
    parser.add_argument("--idx-images", help="IDX images to evaluate on (gz or plain)")
    parser.add_argument("--idx-labels", help="IDX labels matching --idx-images")
    parser.add_argument("--mean", type=_floats, default=[0.1307], help="per-channel mean, comma separated")
    parser.add_argument("--std", type=_floats, default=[0.3081], help="per-channel std, comma separated")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N images")
    args = parser.parse_args(argv)

    try:
        ckpt = load_checkpoint(args.checkpoint, best=args.best)
    except (OSError, SafetensorsError, ValueError) as e:
        print(f"load_checkpoint: {e}", file=sys.stderr)
        return 1
    m = ckpt.metadata
    total_params = torch_models.count_parameters(ckpt.model)
    rows = density_report(ckpt.model, ckpt.masks)
    kept = sum(r[1] for r in rows)
    prunable = sum(r[2] for r in rows)
    print(f"checkpoint: {args.checkpoint}")
    print(f"model: {m['model']} ({m['num_classes']} classes, {m['in_channels']} input channels), "
          f"epoch {m.get('epoch', '?')}{' (best-on-validation weights)' if args.best else ''}")
    print(f"parameters: {total_params:,} ({prunable:,} in {len(rows)} prunable weights, "
          f"{len(ckpt.masks)} masked)")
    print(f"masked density: {kept / max(prunable, 1):.6f} ({kept:,} of {prunable:,} prunable weights kept)")
    print(f"overall density: {(total_params - prunable + kept) / max(total_params, 1):.6f} "
          f"({total_params - prunable + kept:,} of {total_params:,} parameters)")
    if ckpt.masked_nonzero:
        print(f"warning: {ckpt.masked_nonzero} weights were nonzero at masked positions (zeroed on load)")
    if args.layers:
        for name, k, t in rows:
            print(f"  {name:40s} {k:>10,} / {t:<10,} {k / max(t, 1):.4f}")

    if args.idx_images or args.idx_labels:
        if not (args.idx_images and args.idx_labels):
            print("load_checkpoint: --idx-images and --idx-labels go together", file=sys.stderr)
            return 2
        try:
            images, labels = read_idx(args.idx_images), read_idx(args.idx_labels)
            if args.limit > 0:
                images, labels = images[:args.limit], labels[:args.limit]
            accuracy, nll = evaluate(ckpt.model, images, labels, args.mean, args.std, args.batch_size)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"load_checkpoint: {e}", file=sys.stderr)
            return 1
        print(f"accuracy: {accuracy:.4f} on {len(labels)} images (mean NLL {nll:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
