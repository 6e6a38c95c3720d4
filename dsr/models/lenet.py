"""LeNet-300-100 as in the DSR paper's MNIST experiments (ICLR-2019 submission).

784-300-100-10 fully connected, batch norm after each layer, no biases; all three weight
matrices are sparse (official code).
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet300(nn.Module):
    """784-300-100-10 MLP with BN after each FC; ``width`` scales the hidden layers."""

    input_shape = (784,)

    def __init__(self, width: float = 1.0, num_classes: int = 10):
        super().__init__()
        h1, h2 = max(1, round(300 * width)), max(1, round(100 * width))
        self.fc1, self.bn1 = nn.Linear(784, h1, bias=False), nn.BatchNorm1d(h1)
        self.fc2, self.bn2 = nn.Linear(h1, h2, bias=False), nn.BatchNorm1d(h2)
        self.fc3, self.bn3 = nn.Linear(h2, num_classes, bias=False), nn.BatchNorm1d(num_classes)

    def sparse_module_names(self) -> list[str]:
        return ["fc1", "fc2", "fc3"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, 784)
        x = torch.relu(self.bn1(self.fc1(x)))
        x = torch.relu(self.bn2(self.fc2(x)))
        return self.bn3(self.fc3(x))
