"""Small models and loops shared by the per-method tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsr.methods import sparsify


def toy_model(seed: int = 0) -> nn.Module:
    """Three sparse 100x100 layers and a dense head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(100, 100, bias=False),
        nn.ReLU(),
        nn.Linear(100, 100, bias=False),
        nn.ReLU(),
        nn.Linear(100, 100, bias=False),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def toy(method: str, sparsity: float = 0.9, seed: int = 0, lr: float = 0.05, **hp):
    """(model, optimizer, method) on :func:`toy_model`, 50 steps per epoch."""
    model = toy_model(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    m = sparsify(
        model, method, sparsity=sparsity, steps_per_epoch=50, optimizer=opt, seed=seed, **hp
    )
    return model, opt, m


def batch(g: torch.Generator, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 100, generator=g)
    return x, (x[:, :10] * 3).argmax(1)  # a learnable rule


def backward(model: nn.Module, opt: torch.optim.Optimizer, g: torch.Generator) -> None:
    x, y = batch(g)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()


def train_steps(model, opt, m, steps: int, seed: int = 0, check=None) -> list[dict]:
    """``steps`` optimizer steps through the method's hooks; ``check(m, masks_before, event)``
    is called after each step. Returns the logged events."""
    g = torch.Generator().manual_seed(seed)
    events = []
    for _ in range(steps):
        backward(model, opt, g)
        m.before_step()
        opt.step()
        before = [x.clone() for x in m.masks.masks]
        event = m.after_step()
        if check is not None:
            check(m, before, event)
        if event is not None:
            events.append(event)
    return events


def masks_unchanged_between_updates(m, before, event) -> None:
    """A check for :func:`train_steps`: masks move only on logged update steps."""
    if event is None:
        assert all(torch.equal(a, b) for a, b in zip(before, m.masks.masks))


def per_tensor_counts_conserved(start: list[int]):
    """A check for :func:`train_steps`: every tensor keeps its active count."""

    def check(m, before, event) -> None:
        assert m.masks.active_counts() == start

    return check
