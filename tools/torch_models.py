"""PyTorch definitions of sparsetrain's models (SPEC.md section 2).

The reference implementation of every model the C library trains: the same
layers, the same state_dict names (so checkpoints are exchanged by name), the
same initialisation rules. Used by tools/load_checkpoint.py and by the PyTorch
parity tests (tests/torch_models.py re-exports this module).

Conventions
-----------
* ``forward`` returns raw logits (no log_softmax). The training loss is
  ``F.cross_entropy(logits, y)`` == log-softmax + NLL, as in the reference.
* Parameter order is module registration order, i.e. ``model.named_parameters()``
  order, which is also the order of ``state_dict()`` when buffers are skipped:

  cifar_resnet_N[_W]:
      conv.weight, bn.weight, bn.bias,
      then for each block i (stage by stage, D blocks per stage):
      blocks.{i}.conv1.weight, blocks.{i}.bn1.weight, blocks.{i}.bn1.bias,
      blocks.{i}.conv2.weight, blocks.{i}.bn2.weight, blocks.{i}.bn2.bias,
      [blocks.{i}.shortcut.0.weight, blocks.{i}.shortcut.1.weight, blocks.{i}.shortcut.1.bias]
      (shortcut only in blocks that change stride or width), fc.weight, fc.bias.
  vgg11/13/16/19:
      feature.{i}.weight (conv), feature.{i+1}.weight, feature.{i+1}.bias (BN)
      for each conv in the configuration (ReLU at i+2 has no parameters; an 'M'
      max pool takes one index), then classifier.weight, classifier.bias.
  lenet5:        conv1.weight, conv1.bias, conv2.*, fc3.*, fc4.*
  lenet300-100:  fc1.weight, fc1.bias, fc2.*, fc3.*
  ResNet18..152, WideResNet50_2/101_2: torchvision's names and order
      (conv1, bn1, layer{1..4}.{j}.conv1/bn1/conv2/bn2[/conv3/bn3][/downsample.0/.1], fc).

  ``state_dict()`` additionally holds each BatchNorm's buffers right after its
  weight and bias: ``running_mean``, ``running_var`` (float32) and
  ``num_batches_tracked`` (int64 scalar).
* Prunable (maskable) tensors are exactly the conv and linear weights
  (SPEC.md section 3); ``prunable_weight_names(model)`` lists them.

Inputs: CIFAR ResNets accept any channel count and spatial size (global average
pool); VGG needs a final feature map of 2x2 or 3x3 (32x32 inputs, as in the
reference); the LeNets take 28x28 inputs (lenet300-100 flattens
in_channels*28*28 features).
"""

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CifarResNet", "VGG", "LeNet5", "LeNet300_100", "ImageNetResNet",
    "VGG_CONFIGS", "build", "parse_cifar_resnet_name", "model_names",
    "prunable_weight_names", "count_parameters", "default_in_channels",
]


# ---- initialisation --------------------------------------------------------------

def _init_kaiming_fan_in(module):
    """CIFAR ResNets and LeNets: std = sqrt(2 / fan_in) for conv and linear
    weights (PyTorch's kaiming_normal_ defaults), BN weight 1 / bias 0; biases
    keep PyTorch's default uniform(+-1/sqrt(fan_in))."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _init_vgg(module):
    """VGG (as the reference's weights_init): conv Kaiming-normal with fan-out,
    linear normal(0, 0.01), all biases 0, BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---- CIFAR ResNet ----------------------------------------------------------------

class CifarBlock(nn.Module):
    """Basic block: conv3x3(stride)-BN-ReLU-conv3x3-BN, + shortcut, ReLU.
    The shortcut is conv1x1(stride, no bias)+BN when the stride is 2 or the
    width changes, otherwise identity (an empty nn.Sequential: no parameters,
    so no ``shortcut.*`` names)."""

    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """cifar_resnet_N[_W]: N = 6D + 2 layers, stage widths W, 2W, 4W, D blocks
    per stage; the first block of stages 2 and 3 has stride 2."""

    def __init__(self, depth=20, width=16, num_classes=10, in_channels=3):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"cifar_resnet depth must be 6D+2 with D >= 1, got {depth}")
        if width < 1:
            raise ValueError(f"cifar_resnet width must be positive, got {width}")
        blocks_per_stage = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks = []
        in_planes = width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks_per_stage):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(CifarBlock(in_planes, planes, stride))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(4 * width, num_classes)
        _init_kaiming_fan_in(self)

    def forward(self, x):
        out = F.relu(self.bn(self.conv(x)))
        out = self.blocks(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


# ---- VGG (CIFAR form) ------------------------------------------------------------

VGG_CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512],
}


class VGG(nn.Module):
    """vgg11/13/16/19: ``feature`` = [conv3x3 (no bias), BN, ReLU] per number
    and MaxPool2d(2) per 'M'; then AvgPool2d(2), flatten, ``classifier``
    Linear(512, classes)."""

    def __init__(self, depth=16, num_classes=10, in_channels=3):
        super().__init__()
        if depth not in VGG_CONFIGS:
            raise ValueError(f"vgg depth must be one of {sorted(VGG_CONFIGS)}, got {depth}")
        layers = []
        channels = in_channels
        for v in VGG_CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1, bias=False),
                           nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                channels = v
        self.feature = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        _init_vgg(self)

    def forward(self, x):
        x = self.feature(x)
        x = F.avg_pool2d(x, 2)
        return self.classifier(x.flatten(1))


# ---- LeNets ----------------------------------------------------------------------

class LeNet5(nn.Module):
    """lenet5, Caffe variant (no padding): conv1 5x5 -> 20, ReLU, maxpool 2,
    conv2 5x5 -> 50, ReLU, maxpool 2, fc3 800 -> 500, ReLU, fc4 500 -> classes.
    28x28 input: 28 -> 24 -> 12 -> 8 -> 4, so fc3 sees 50*4*4 = 800 features."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5, padding=0, bias=True)
        self.conv2 = nn.Conv2d(20, 50, 5, bias=True)
        self.fc3 = nn.Linear(50 * 4 * 4, 500)
        self.fc4 = nn.Linear(500, num_classes)
        _init_kaiming_fan_in(self)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc3(x.flatten(1)))
        return self.fc4(x)


class LeNet300_100(nn.Module):
    """lenet300-100: fc1 (in_channels*784) -> 300, ReLU, fc2 300 -> 100, ReLU,
    fc3 100 -> classes."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * 28 * 28, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        _init_kaiming_fan_in(self)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


# ---- ImageNet ResNets (torchvision architecture and names) -----------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, base_width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck: the stride sits on the 3x3 conv."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0))
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


IMAGENET_RESNETS = {
    "ResNet18": (BasicBlock, (2, 2, 2, 2), 64),
    "ResNet34": (BasicBlock, (3, 4, 6, 3), 64),
    "ResNet50": (Bottleneck, (3, 4, 6, 3), 64),
    "ResNet101": (Bottleneck, (3, 4, 23, 3), 64),
    "ResNet152": (Bottleneck, (3, 8, 36, 3), 64),
    "WideResNet50_2": (Bottleneck, (3, 4, 6, 3), 128),
    "WideResNet101_2": (Bottleneck, (3, 4, 23, 3), 128),
}


class ImageNetResNet(nn.Module):
    """torchvision.models.resnet re-stated (torchvision is not a dependency):
    conv1 7x7/2, bn1, ReLU, maxpool 3x3/2, layer1..layer4, global average
    pool, fc. Init as torchvision: conv Kaiming-normal fan-out, BN 1/0."""

    def __init__(self, block, layers, base_width=64, num_classes=1000, in_channels=3):
        super().__init__()
        self.inplanes = 64
        self.base_width = base_width
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.base_width)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, base_width=self.base_width))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


# ---- registry --------------------------------------------------------------------

_CIFAR_RESNET_RE = re.compile(r"^cifar_resnet_(\d+)(?:_(\d+))?$")


def parse_cifar_resnet_name(name):
    """'cifar_resnet_20' -> (20, 16); 'cifar_resnet_32_64' -> (32, 64); else None."""
    m = _CIFAR_RESNET_RE.match(name)
    if not m:
        return None
    depth = int(m.group(1))
    width = int(m.group(2)) if m.group(2) else 16
    return depth, width


def model_names():
    """Fixed model names (plus the cifar_resnet_N[_W] family)."""
    return ["cifar_resnet_N[_W]", "vgg11", "vgg13", "vgg16", "vgg19", "lenet5",
            "lenet300-100"] + list(IMAGENET_RESNETS)


def default_in_channels(name):
    """1 for the LeNets (MNIST), 3 for everything else."""
    return 1 if name in ("lenet5", "lenet300-100") else 3


def build(name, num_classes=10, in_channels=None):
    """Builds a model by its sparsetrain name. ``in_channels=None`` takes the
    model's natural input (1 for the LeNets, 3 otherwise)."""
    if in_channels is None:
        in_channels = default_in_channels(name)
    if num_classes < 1 or in_channels < 1:
        raise ValueError(f"{name}: num_classes and in_channels must be positive")
    parsed = parse_cifar_resnet_name(name)
    if parsed:
        depth, width = parsed
        return CifarResNet(depth, width, num_classes, in_channels)
    m = re.match(r"^vgg(\d+)$", name)
    if m and int(m.group(1)) in VGG_CONFIGS:
        return VGG(int(m.group(1)), num_classes, in_channels)
    if name == "lenet5":
        return LeNet5(num_classes, in_channels)
    if name == "lenet300-100":
        return LeNet300_100(num_classes, in_channels)
    if name in IMAGENET_RESNETS:
        block, layers, base_width = IMAGENET_RESNETS[name]
        return ImageNetResNet(block, layers, base_width, num_classes, in_channels)
    raise ValueError(f"unknown model '{name}' (known: {', '.join(model_names())})")


def prunable_weight_names(model):
    """Names of the maskable tensors: every conv and linear weight, in
    parameter order (SPEC.md section 3). Biases and BN parameters never are."""
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            names.append(f"{module_name}.weight" if module_name else "weight")
    order = {n: i for i, (n, _) in enumerate(model.named_parameters())}
    return sorted(names, key=lambda n: order[n])


def count_parameters(model):
    """Number of trainable parameters (buffers such as running means excluded)."""
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    import sys
    for n in sys.argv[1:] or ["cifar_resnet_20", "vgg16", "lenet5", "lenet300-100"]:
        net = build(n)
        print(f"{n}: {count_parameters(net):,} parameters, "
              f"{len(prunable_weight_names(net))} prunable weights")
