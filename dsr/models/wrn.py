"""Pre-activation Wide ResNet (Zagoruyko & Komodakis 2016) as used by the DSR paper.

WRN-d-k: a 3x3 stem conv with 16 channels, three groups of (d - 4) / 6 basic blocks with
16k, 32k, 64k channels (strides 1, 2, 2), BN-ReLU, global average pool, FC. Conv layers have
no bias; the FC has one. Sparse (official code): every 3x3 conv inside the blocks. Dense: the
stem, the 1x1 shortcut convs, the FC, BN. ``widen`` may be fractional (thin dense baselines).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity or 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(F.relu(self.bn2(o)))
        return o + skip


class WideResNet(nn.Module):
    """WRN-depth-widen for 32x32 RGB inputs."""

    input_shape = (3, 32, 32)

    def __init__(self, depth: int = 28, widen: float = 2.0, num_classes: int = 10):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16] + [max(1, round(c * widen)) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for cout, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def sparse_module_names(self) -> list[str]:
        return [
            n
            for n, m in self.named_modules()
            if isinstance(m, nn.Conv2d) and n.startswith("blocks.") and m.kernel_size == (3, 3)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv1(x))  # (B, 64k, 8, 8)
        x = F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1).flatten(1)
        return self.fc(x)
