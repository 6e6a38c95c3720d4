"""Rigged Lottery, RigL (Evci et al., ICML 2020), with the paper's default hyperparameters.

Google's code (``rigl/sparse_optimizers.py``, ``SparseRigLOptimizer``):

* every Delta T = 100 steps until 75% of the training steps, each sparse tensor drops the
  fraction f of its active weights with the smallest |w| (a N(0, 1e-5) jitter breaks ties) and
  grows as many at the positions, inactive after the drop, where the dense gradient of this
  step's mini-batch is largest in magnitude;
* f = alpha / 2 (1 + cos(pi t / T_end)), alpha = 0.3 (cosine annealing);
* a grown connection that was inactive starts at 0 with its momentum reset to 0; a position
  dropped and grown again in the same update keeps its value and momentum;
* initial masks uniform (the DSR paper's setup, default here) or ERK (``sparse_init="erk"``,
  the RigL paper's best).

Differences from Google's code: the first update is at step Delta T, not step 0; the optimizer
step of an update iteration is taken before the masks change (RigL skips the weight update of
that iteration); and the sparse tensors are the DSR paper's (RigL's uniform variant keeps the
first layer dense). The optimizer and the rest of the protocol are the DSR protocol's, so that
every method is compared on the same footing.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dsr.errors import ConfigError
from dsr.masks import SparseTensor
from dsr.methods.base import Reallocation, register

DROP_JITTER = 1e-5  # std of the noise added to |w| before the drop (Google's code)


@register("rigl")
class RigL(Reallocation):
    """Magnitude drop, dense-gradient growth, per tensor, on a cosine-annealed fraction."""

    keeps_counts = True
    config_fields = ("epochs", "rigl_drop_fraction", "rigl_update_every", "rigl_end")

    def __init__(
        self,
        model: nn.Module,
        *,
        epochs: int,
        rigl_drop_fraction: float = 0.3,
        rigl_update_every: int = 100,
        rigl_end: float = 0.75,
        **kw,
    ):
        super().__init__(model, **kw)
        self.alpha, self.every = rigl_drop_fraction, rigl_update_every
        self.end_step = int(rigl_end * epochs * self.steps_per_epoch)
        self.dense_grads: list[torch.Tensor] | None = None
        self.before: list[Any] = []  # during an update: each tensor's mask before its drop

    @classmethod
    def check_config(cls, cfg) -> None:
        if not 0 < cfg.rigl_drop_fraction <= 1 or not 0 < cfg.rigl_end <= 1:
            raise ConfigError("rigl_drop_fraction and rigl_end must be in (0, 1]")
        if cfg.rigl_update_every < 1:
            raise ConfigError(f"rigl_update_every must be >= 1, got {cfg.rigl_update_every}")

    def is_update_step(self, step: int) -> bool:
        return step % self.every == 0 and step <= self.end_step

    def drop_fraction(self, step: int) -> float:
        """alpha / 2 (1 + cos(pi t / T_end)) (RigL paper, Eq. 1)."""
        return self.alpha / 2 * (1 + math.cos(math.pi * min(step, self.end_step) / self.end_step))

    @torch.no_grad()
    def before_step(self) -> None:
        """Keep this step's dense gradients when the masks change after it, then mask."""
        if self.is_update_step(self.step + 1):
            self.dense_grads = [
                torch.zeros_like(w) if w.grad is None else w.grad.detach().clone()
                for w in self.masks.weights
            ]
        self.masks.mask_grads_()

    def begin(self) -> dict:
        if self.dense_grads is None:
            raise RuntimeError("RigL.update needs the dense gradients kept by before_step()")
        self.fraction = self.drop_fraction(self.step)
        self.before = [None] * len(self.masks)
        return {"drop_fraction": self.fraction}

    @torch.no_grad()
    def drop(self, i: int, t: SparseTensor) -> torch.Tensor:
        """The n = int(fraction * active) active weights of smallest |w| (a tiny jitter breaks
        ties at random)."""
        w, m = t.weight.view(-1), t.mask.view(-1)
        active = m.nonzero().view(-1)
        n = int(len(active) * self.fraction)
        if n == 0:
            return active[:0]
        jitter = torch.randn(len(active), generator=self.generator).to(w) * DROP_JITTER
        drop = active[torch.topk(w[active].abs() + jitter, n, largest=False).indices]
        self.before[i] = m.clone()
        m[drop] = False
        return drop

    @torch.no_grad()
    def grow(self, i: int, t: SparseTensor, count: int, dropped: torch.Tensor) -> int:
        """The ``count`` positions of largest dense |gradient| among those inactive after the
        drop (a dropped one may come back), at 0 with zero momentum; returns the new ones."""
        if count == 0:
            return 0
        w, m = t.weight.view(-1), t.mask.view(-1)
        score = self.dense_grads[i].view(-1).abs().masked_fill(m, -1.0)  # type: ignore[index]
        grow = torch.topk(score, count).indices
        new = grow[~self.before[i][grow]]
        m[grow] = True
        w[~m] = 0.0
        w[new] = 0.0
        self.reset_momentum_at(t.weight, new)
        return len(new)

    def end(self, dropped, counts, new) -> dict:
        self.dense_grads, self.before = None, []
        return {"new_per_tensor": new}
