"""Sparse momentum, SNFS (Dettmers & Zettlemoyer 2019), with the paper's defaults.

The official code (github.com/TimDettmers/sparse_learning, ``sparselearning/core.py`` and
``funcs.py``), at the end of every epoch but the last:

* prune rate p annealed with a cosine over all training steps, from p0 = 0.5 to 0.005;
* each tensor's share of the regrowth is the mean |momentum| of its active weights,
  normalised over tensors (taken before pruning); a tensor denser than 0.8 whose share is
  above average prunes at most its own sparsity;
* each tensor prunes ceil(p * active) active weights of smallest |w|;
* the total pruned is regrown, split by the shares, each tensor at its inactive positions
  (just-pruned ones included) where |momentum| is largest, with value 0.

The momentum is SGD's, of the dense gradient (the official code does not mask gradients, so the
optimizer's buffer accumulates the gradients of inactive weights too). Here gradients are
masked like every other method's, and the method keeps that dense momentum itself, with the
optimizer's momentum and weight decay (dampening 0). A newly grown weight gets it as its
optimizer momentum, as in the official code; ``reset_momentum=True`` zeroes it instead (as
Google's re-implementation in the RigL code does). Differences from the official code: the
regrown count equals the pruned count exactly (largest-remainder split, no tensor above its free
positions) instead of rounding down and correcting later with a smoothed residual; the initial
masks have exact counts (uniform or ERK) instead of Bernoulli draws.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dsr.errors import ConfigError
from dsr.masks import SparseTensor
from dsr.methods.base import Reallocation, register, split_proportional

MIN_PRUNE_RATE = 0.005  # eta_min of the official CosineDecay
DENSE_LAYER = 0.2  # sparsity below which a tensor prunes at most its own sparsity


@register("snfs")
class SNFS(Reallocation):
    """Magnitude pruning, momentum-proportional redistribution, momentum growth."""

    config_fields = ("epochs", "snfs_prune_rate", "reset_momentum")

    def __init__(
        self,
        model: nn.Module,
        *,
        epochs: int,
        snfs_prune_rate: float = 0.5,
        reset_momentum: bool = False,
        **kw,
    ):
        super().__init__(model, **kw)
        if self.optimizer is None:
            raise ValueError("snfs needs the optimizer: it follows its momentum")
        self.p0, self.reset_momentum, self.epochs = snfs_prune_rate, reset_momentum, epochs
        self.groups = {id(p): g for g in self.optimizer.param_groups for p in g["params"]}
        self.momentum = [torch.zeros_like(w) for w in self.masks.weights]  # dense

    @classmethod
    def check_config(cls, cfg) -> None:
        if not 0 < cfg.snfs_prune_rate < 1:
            raise ConfigError(f"snfs_prune_rate must be in (0, 1), got {cfg.snfs_prune_rate}")
        if cfg.momentum == 0:
            raise ConfigError("snfs follows the momentum: it needs momentum > 0")

    def is_update_step(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0 and self.epoch_of(step) < self.epochs - 1

    def prune_rate(self, step: int) -> float:
        """Cosine from p0 to MIN_PRUNE_RATE over all steps (official CosineDecay)."""
        total = self.epochs * self.steps_per_epoch
        return (
            MIN_PRUNE_RATE + (self.p0 - MIN_PRUNE_RATE) * (1 + math.cos(math.pi * step / total)) / 2
        )

    @torch.no_grad()
    def before_step(self) -> None:
        """Accumulate SGD's momentum of the dense gradient, then mask the gradients."""
        for w, buf in zip(self.masks.weights, self.momentum):
            if w.grad is None:
                continue
            group = self.groups[id(w)]
            buf.mul_(group["momentum"]).add_(w.grad).add_(w, alpha=group["weight_decay"])
        self.masks.mask_grads_()

    def shares(self) -> list[float]:
        """Mean |momentum| of each tensor's active weights, normalised to sum 1."""
        means = [
            float(b[m].abs().mean()) if m.any() else 0.0
            for b, m in zip(self.momentum, self.masks.masks)
        ]
        total = sum(means)
        return [x / total if total > 0 else 1 / len(means) for x in means]

    def rates(self, p: float, shares: list[float]) -> list[float]:
        """Official ``adjust_prune_rate``: a dense, growing tensor prunes at most its sparsity."""
        out = []
        for share, n, a in zip(shares, self.masks.numels, self.masks.active_counts()):
            sparsity = 1 - a / n
            grows = sparsity < DENSE_LAYER and share > 1 / len(shares)
            out.append(min(sparsity, p) if grows else p)
        return out

    def begin(self) -> dict:
        p = self.prune_rate(self.step)
        self.share = self.shares()
        self.before = [m.clone() for m in self.masks.masks]
        self.rate = self.rates(p, self.share)
        return {"prune_rate": p}

    @torch.no_grad()
    def drop(self, i: int, t: SparseTensor) -> torch.Tensor:
        """Drop ceil(rate * active) active weights of smallest |w| (mask only: the weights
        are zeroed when the tensor regrows)."""
        w, m = t.weight.view(-1), t.mask.view(-1)
        active = m.nonzero().view(-1)
        k = math.ceil(self.rate[i] * len(active))
        drop = active[torch.topk(w[active].abs(), k, largest=False).indices]
        m[drop] = False
        return drop

    def counts(self, dropped: list[torch.Tensor]) -> list[int]:
        """All the dropped weights, split in proportion to each tensor's momentum share."""
        free = [n - a for n, a in zip(self.masks.numels, self.masks.active_counts())]
        return split_proportional(sum(len(d) for d in dropped), self.share, free)

    @torch.no_grad()
    def grow(self, i: int, t: SparseTensor, count: int, dropped: torch.Tensor) -> int:
        """Activate the ``count`` inactive positions of largest |momentum|; zero dropped
        weights; give new weights momentum (or 0); return the number of new ones."""
        w, m = t.weight.view(-1), t.mask.view(-1)
        buf = self.momentum[i]
        score = buf.view(-1).abs().masked_fill(m, -1.0)
        grow = torch.topk(score, count).indices
        m[grow] = True
        w[~m] = 0.0
        new = grow[~self.before[i].view(-1)[grow]]
        w[new] = 0.0
        state = self.optimizer.state.get(t.weight, {}).get("momentum_buffer")  # type: ignore[union-attr]
        if state is not None:
            state.view(-1)[new] = 0.0 if self.reset_momentum else buf.view(-1)[new]
        return len(new)

    def end(self, dropped, counts, new) -> dict:
        self.before = []
        return {"new_per_tensor": new, "shares": self.share}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "momentum": [b.clone() for b in self.momentum]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for buf, saved in zip(self.momentum, state["momentum"]):
            buf.copy_(saved)
