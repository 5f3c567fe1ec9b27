"""Networks for ``fggp run``, in plain ``torch.nn``.

- ``mlp``: LeNet-300-100 (flattened input -> 300 -> 100 -> classes), for any input shape;
- ``cnn``: a small CNN (conv 32, conv 64, max-pool, 4x4 average pool, linear), with batch norm;
- ``vgg19``: the CIFAR VGG-19 with batch norm used by GraNet and FGGP (16 conv layers, the
  last feature map average-pooled to 512 features, one linear layer; about 20.0 M weights);
- ``resnet50``: the CIFAR ResNet-50 (bottleneck blocks 3-4-6-3, a 3x3 stride-1 stem and no
  max-pool, 2048 features, one linear layer; about 23.5 M weights).

The prunable weights are those of every ``nn.Conv2d`` and ``nn.Linear``; ``first_conv`` names
the first convolution, which the papers' protocol keeps dense.
"""

from __future__ import annotations

import torch
from torch import nn

from fggp_core.errors import ConfigError

from .config import MODELS

__all__ = ["MODELS", "build_model", "prunable_names", "first_conv"]

VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialised network for inputs of ``input_shape`` (C x H x W, or D for mlp)."""
    if name not in MODELS:
        raise ConfigError("--model", name, f"must be one of {list(MODELS)}")
    if name == "mlp":
        return MLP(int(torch.tensor(input_shape).prod()), num_classes)
    if len(input_shape) != 3:
        raise ConfigError("--model", name, f"needs image inputs C x H x W, but the data has shape {input_shape}")
    channels = input_shape[0]
    if name == "cnn":
        return SmallCNN(channels, num_classes)
    if min(input_shape[1:]) < 32:
        raise ConfigError("--model", name, f"is the CIFAR variant for 32x32 images, the data is {input_shape}")
    if name == "vgg19":
        return VGG(VGG19, channels, num_classes)
    return ResNet((3, 4, 6, 3), channels, num_classes)


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the weights of every Conv2d and Linear, in ``named_parameters()`` order."""
    owners = {
        f"{m}.weight" if m else "weight" for m, mod in model.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))
    }
    return [n for n, _ in model.named_parameters() if n in owners]


def first_conv(model: nn.Module) -> str | None:
    """Name of the first convolution's weight, or None when the model has no convolution."""
    for m, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            return f"{m}.weight"
    return None


class MLP(nn.Module):
    """LeNet-300-100."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    """conv3x3(32)-BN-ReLU, conv3x3(64)-BN-ReLU, max-pool 2, average-pool to 4x4, linear (1024 -> classes)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Linear(64 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class VGG(nn.Module):
    """CIFAR VGG with batch norm (GraSP/GraNet layout): conv3x3-BN-ReLU stacks, 2x2 max-pools."""

    def __init__(self, config: tuple, channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in config:
            if width == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4 channels), batch norm, identity or 1x1 projection shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out),
        )  # fmt: skip
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet with bottleneck blocks: 3x3 stem (64), stages of width 64/128/256/512."""

    def __init__(self, blocks: tuple[int, ...], channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers: list[nn.Module] = []
        in_channels = 64
        for stage, count in enumerate(blocks):
            width = 64 * 2**stage
            for i in range(count):
                layers.append(Bottleneck(in_channels, width, 2 if stage > 0 and i == 0 else 1))
                in_channels = width * Bottleneck.expansion
        self.stages = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stages(self.stem(x)))
