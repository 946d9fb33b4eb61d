"""The networks analysed in the papers pyfastent implements, defined here so
nothing is downloaded. ``width`` multiplies every hidden width (at least 1
unit each), so tests and CPU demos can build small versions.
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
