"""The networks analysed in the papers pyfastent implements, and a ResNet-18,
defined here so nothing is downloaded and torchvision is not needed.
``width`` multiplies every hidden width (at least 1 unit each), so tests and
CPU demos can build small versions.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from pyfastent import _checks

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _scaled(units: int, width: float) -> int:
    return max(1, round(units * width))


def mlp(width: float = 1.0, in_features: int = 784, classes: int = 10, activation: str = "relu") -> nn.Sequential:
    """The 784-1024-20-20-20-10 MLP of the information-plane literature.

    Args:
        width: multiplier of the hidden widths (1024, 20, 20, 20).
        in_features: input size (784 for flattened MNIST, 64 for digits).
        classes: output size.
        activation: ``"relu"`` or ``"tanh"``.
    """
    width = _checks.positive_number("width", width)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[_checks.choice("activation", activation, ("relu", "tanh"))]
    sizes = [in_features] + [_scaled(u, width) for u in (1024, 20, 20, 20)]
    layers: list = [("flatten", nn.Flatten())]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers += [(f"fc{i}", nn.Linear(a, b)), (f"act{i}", act())]
    layers.append(("out", nn.Linear(sizes[-1], classes)))
    return nn.Sequential(OrderedDict(layers))


def mnist_cnn(width: float = 1.0, in_size: int = 28, in_channels: int = 1, classes: int = 10) -> nn.Sequential:
    """Small CNN in the style of Wickstrøm et al. (2019): two conv blocks
    (4 and 8 filters, 3×3, ReLU, 2×2 max-pool), a 256-unit dense layer and the
    classifier.

    Args:
        width: multiplier of the filter counts and dense width.
        in_size: input height = width (28 for MNIST, 8 for digits); a
            multiple of 4.
        in_channels: input channels.
        classes: output size.
    """
    width = _checks.positive_number("width", width)
    if in_size % 4 or in_size < 4:
        raise ValueError(f"in_size must be a positive multiple of 4, got {in_size}")
    c1, c2, dense = _scaled(4, width), _scaled(8, width), _scaled(256, width)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(in_channels, c1, 3, padding=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(c1, c2, 3, padding=1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(c2 * (in_size // 4) ** 2, dense)), ("relu3", nn.ReLU()),
        ("out", nn.Linear(dense, classes)),
    ]))


def vgg16_bn(width: float = 1.0, classes: int = 10, in_size: int = 32, in_channels: int = 3) -> nn.Sequential:
    """VGG-16 with batch norm for CIFAR-sized input (Simonyan & Zisserman;
    the CIFAR variant analysed by Yu et al. 2020): 13 conv-BN-ReLU layers in
    five pooled blocks, then a 512-unit dense layer and the classifier.

    Args:
        width: multiplier of every channel count and the dense width.
        classes: output size.
        in_size: input height = width, a multiple of 32.
        in_channels: input channels.
    """
    width = _checks.positive_number("width", width)
    if in_size % 32 or in_size < 32:
        raise ValueError(f"in_size must be a positive multiple of 32, got {in_size}")
    layers: list = []
    channels, block, conv = in_channels, 1, 1
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append((f"pool{block}", nn.MaxPool2d(2)))
            block, conv = block + 1, 1
            continue
        out = _scaled(item, width)
        name = f"{block}_{conv}"
        layers += [(f"conv{name}", nn.Conv2d(channels, out, 3, padding=1)), (f"bn{name}", nn.BatchNorm2d(out)),
                   (f"relu{name}", nn.ReLU())]
        channels, conv = out, conv + 1
    spatial = (in_size // 32) ** 2
    dense = _scaled(512, width)
    layers += [("flatten", nn.Flatten()), ("fc1", nn.Linear(channels * spatial, dense)), ("relu_fc1", nn.ReLU()),
               ("out", nn.Linear(dense, classes))]
    return nn.Sequential(OrderedDict(layers))


class BasicBlock(nn.Module):
    """The two-convolution residual block of ResNet-18 (He et al. 2016), laid
    out as torchvision's: ``conv1``, ``bn1``, ``relu``, ``conv2``, ``bn2``, the
    residual add, then ``relu`` again (its second call), with a 1×1
    ``downsample`` convolution and batch norm when the shape changes."""

    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.downsample = None
        if stride != 1 or channels_in != channels_out:
            self.downsample = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(channels_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """ResNet-18 (He et al., "Deep Residual Learning for Image Recognition",
    2016) with torchvision's module names: ``conv1``, ``bn1``, ``relu``,
    (``maxpool``), ``layer1`` … ``layer4`` of two ``BasicBlock`` modules each,
    ``avgpool``, ``fc``. See ``resnet18``."""

    def __init__(self, width: float, classes: int, stem: str, in_channels: int):
        super().__init__()
        widths = [_scaled(c, width) for c in (64, 128, 256, 512)]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else None
        channels = widths[0]
        for i, out in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(channels, out, stride), BasicBlock(out, out, 1)))
            channels = out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(width: float = 1.0, classes: int = 10, stem: str = "cifar", in_channels: int = 3) -> ResNet18:
    """ResNet-18 with torchvision's layout and names, written here.

    Args:
        width: multiplier of every channel count (64, 128, 256, 512).
        classes: output size.
        stem: ``"cifar"``: a 3×3 stride-1 convolution and no max-pool, for
            32×32 inputs (59 layers in a default sweep); ``"imagenet"``:
            torchvision's 7×7 stride-2 convolution and 3×3 max-pool, for
            224×224 inputs (60 layers).
        in_channels: input channels.
    """
    width = _checks.positive_number("width", width)
    _checks.choice("stem", stem, ("cifar", "imagenet"))
    classes = _checks.positive_int("classes", classes)
    return ResNet18(width, classes, stem, _checks.positive_int("in_channels", in_channels))
