"""Model registry: ``create_model(name, width)`` builds a model by its registry key."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from torch import nn

from dsr.models.lenet import LeNet300
from dsr.models.wrn import WideResNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300": lambda width=1.0, num_classes=10: LeNet300(width, num_classes),
    "wrn28_2": lambda width=1.0, num_classes=10: WideResNet(28, 2.0 * width, num_classes),
    "wrn16_2": lambda width=1.0, num_classes=10: WideResNet(16, 2.0 * width, num_classes),
    "resnet50": lambda width=1.0, num_classes=1000: _resnet50(width, num_classes),
}


def _resnet50(width: float, num_classes: int) -> nn.Module:
    from dsr.models.resnet import ResNet50  # imports torchvision: only when asked for

    return ResNet50(width, num_classes)


def create_model(name: str, width: float = 1.0, num_classes: int | None = None) -> nn.Module:
    """A freshly initialised model (uses the global torch RNG: seed it first). Without
    ``num_classes``, the model's own: 10 (MNIST, CIFAR-10), 1000 for resnet50 (ImageNet)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    if num_classes is None:
        return MODELS[name](width=width)
    return MODELS[name](width=width, num_classes=num_classes)


@cache
def input_shape(name: str) -> tuple[int, ...]:
    """The input shape (without batch) a model expects, e.g. ``(784,)`` or ``(3, 32, 32)``."""
    import torch

    with torch.device("meta"):
        return tuple(create_model(name).input_shape)
