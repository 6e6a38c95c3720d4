"""ResNet-50 as used in the DSR paper's ImageNet experiments.

The architecture is torchvision's ``resnet50`` (He et al. 2016, with the stride-2 of a
down-sampling bottleneck in its 3x3 conv, "v1.5"), built here from torchvision's classes with
random initialisation. Sparse (official code, reference README): every conv inside the
bottleneck blocks (1x1, 3x3, 1x1) and the FC weight. Dense: the 7x7 stem conv, the 1x1
down-sampling convs of the shortcuts, the FC bias and all batch norms.

Counts (1000 classes): 25,557,032 parameters, of which 22,724,608 are sparse positions (48
bottleneck convs and the 2048x1000 FC weight) and 2,832,424 dense. With the exact-count initial
masks (:func:`dsr.masks.exact_counts`: one total, rounded once, shared by largest remainder)
the network has 7,377,346 non-zeros at s = 0.8 and 5,104,885 at s = 0.9, the numbers of the
paper's ImageNet table. Rounding each tensor on its own (floor, ceil or nearest) does not give
both numbers; neither does a sparse FC bias.

``width`` scales the planes of every bottleneck (and so the FC input); the 7x7 stem keeps its
64 channels. It exists for the thin dense baseline, whose exact construction for ResNet-50 the
paper does not give.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet


class ResNet50(ResNet):
    """torchvision's ResNet-50 with the DSR paper's choice of sparse layers."""

    input_shape = (3, 224, 224)

    def __init__(self, width: float = 1.0, num_classes: int = 1000):
        self.width = width
        super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False):
        planes = max(1, round(planes * self.width))
        return super()._make_layer(block, planes, blocks, stride, dilate)

    def sparse_module_names(self) -> list[str]:
        convs = [
            n
            for n, m in self.named_modules()
            if isinstance(m, nn.Conv2d) and n.startswith("layer") and ".downsample." not in n
        ]
        return [*convs, "fc"]
