"""Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019, Algorithm 1).

Semantics of the official code (github.com/IntelAI/dynamic-reparameterization), which this
class reproduces by default:

* every P steps (P from a per-epoch schedule, first at step P, none from ``realloc_stop``):
* prune, in every sparse tensor, the active weights with |w| < H, one global threshold H
  (H0 = 1e-3); a tensor is never emptied: when all its active weights are below H, its
  largest |w| survives here, where the official code keeps its *first* active position (a
  deviation, on the differences page: it only matters for a tensor that would be emptied);
* regrow as many weights as were pruned in total (K), split across tensors in proportion to
  each tensor's surviving active count, at uniformly random inactive positions that were not
  pruned in this same step, with value 0; momentum is not reset;
* adapt H: halve it if K > (1 + delta) Np, double it if K < (1 - delta) Np.

Options that the paper leaves open: ``grow_init`` ("zero" | "kaiming") and ``reset_momentum``.

Ablations, none of them the paper's (each a named option; the default is the official rule):

* ``regrowth``: where the K regrown weights go. ``paper``: in proportion to each tensor's
  surviving active count (the official code); ``within``: each tensor regrows exactly what it
  pruned, so no parameter moves across tensors (the counts stay those of the initial masks,
  as in SET, but with DSR's global threshold choosing how many each tensor prunes); ``anti``:
  in proportion to each tensor's zeros after the prune; ``uniform``: equal shares (largest
  remainder, ties to the earlier tensor). Every mode keeps the total at exactly K.
* ``prune_rule``: ``threshold`` prunes |w| < H with the adaptive H (official); ``topk``
  prunes exactly the Np smallest active |w| of all sparse tensors (ties by position), a
  global sort the paper's threshold avoids; H is then not used, and the event logs the |w|
  of the largest weight pruned as its threshold.
* ``realloc_start`` (:class:`dsr.methods.base.Scheduled`): static masks before that epoch.
``granularity="kernel"`` prunes and regrows whole kxk kernels scored by their mean |w|, as in
the paper's extra runs with structured sparsity (:mod:`dsr.methods.kernels`).
"""

from __future__ import annotations

import torch
from torch import nn

from dsr.methods import kernels
from dsr.methods.base import (
    PAPER_PERIODS,
    PAPER_STOP,
    Reallocation,
    Scheduled,
    register,
    split_proportional,
)


@register("dsr")
class DSR(Scheduled, Reallocation):
    """Global magnitude threshold pruning, proportional random regrowth, adaptive threshold."""

    config_fields = (
        "np_target",
        "h0",
        "delta",
        "realloc_schedule",
        "realloc_stop",
        "grow_init",
        "reset_momentum",
        "granularity",
        "regrowth",
        "prune_rule",
        "realloc_start",
    )

    def __init__(
        self,
        model: nn.Module,
        *,
        np_target: int = 600,
        h0: float = 1e-3,
        delta: float = 0.1,
        realloc_schedule: str = PAPER_PERIODS,
        realloc_stop: int = PAPER_STOP,
        grow_init: str = "zero",
        reset_momentum: bool = False,
        granularity: str = "weight",
        regrowth: str = "paper",
        prune_rule: str = "threshold",
        **kw,
    ):
        self.np_target, self.threshold, self.delta = np_target, h0, delta
        self.grow_init, self.reset_momentum = grow_init, reset_momentum
        self.granularity, self.regrowth, self.prune_rule = granularity, regrowth, prune_rule
        super().__init__(model, realloc_schedule=realloc_schedule, realloc_stop=realloc_stop, **kw)

    def init_masks(self) -> None:
        if self.granularity == "kernel":
            kernels.init_masks(self.masks, self.sparsity, self.generator)
        else:
            super().init_masks()

    @torch.no_grad()
    def topk_drops(self) -> list[torch.Tensor]:
        """``prune_rule="topk"``: per tensor, a bool of the Np smallest active |w| of all
        sparse tensors together (ties broken by position)."""
        tensors = self.masks.tensors
        scores = torch.cat(
            [t.weight.abs().masked_fill(~t.mask, float("inf")).view(-1) for t in tensors]
        )
        k = min(self.np_target, self.masks.total_active())
        drop = torch.zeros_like(scores, dtype=torch.bool)
        drop[torch.topk(scores, k, largest=False, sorted=False).indices] = True
        return list(drop.split(self.masks.numels))

    @torch.no_grad()
    def begin(self) -> dict:
        """The threshold of this update; under ``topk``, the Np positions to drop."""
        self.drops = self.topk_drops() if self.prune_rule == "topk" else None
        if self.drops is not None:  # the threshold this prune implies, for the log
            w = torch.cat([t.weight.view(-1)[d] for t, d in zip(self.masks.tensors, self.drops)])
            self.last_cut = float(w.abs().max()) if len(w) else 0.0
        return {"threshold": self.threshold}

    @torch.no_grad()
    def drop(self, i: int, t) -> torch.Tensor:
        """Drop the active weights with |w| < H (or, under ``topk``, this tensor's share of the
        Np smallest), never all of them."""
        w, m = t.weight.view(-1), t.mask.view(-1)
        drop = self.drops[i] if self.drops is not None else m & (w.abs() < self.threshold)
        index = drop.nonzero().view(-1)  # ascending; positions index faster than a bool mask
        active = int(m.sum())
        if len(index) == active and active > 0:  # never empty a tensor (not the official
            # choice: it keeps the first active position, we the largest |w|)
            index = index[index != torch.where(m, w.abs(), -1.0).argmax()]
        m[index] = False
        w[index] = 0.0
        return index

    def counts(self, dropped: list[torch.Tensor]) -> list[int]:
        """Split the K dropped weights across tensors (``regrowth``), at positions not dropped
        in this update unless free positions run out."""
        surviving = self.masks.active_counts()
        total = sum(len(p) for p in dropped)
        capacity = [n - a - len(p) for n, a, p in zip(self.masks.numels, surviving, dropped)]
        # Only at densities above ~0.5 can the free positions run out; then (and only then)
        # just-pruned positions become candidates again, so the count stays conserved.
        self.exclude = total <= sum(capacity)
        if not self.exclude:
            capacity = [n - a for n, a in zip(self.masks.numels, surviving)]
        return self.split_regrowth(total, surviving, [len(p) for p in dropped], capacity)

    def split_regrowth(
        self, total: int, surviving: list[int], pruned: list[int], capacity: list[int]
    ) -> list[int]:
        """How many of the ``total`` regrown weights each tensor gets (``regrowth``)."""
        if self.regrowth == "within" and all(p <= c for p, c in zip(pruned, capacity)):
            return list(pruned)
        if self.regrowth == "within":  # not enough free positions: as close as capacity allows
            return split_proportional(total, pruned, capacity)
        weights = {
            "paper": surviving,
            "anti": [n - a for n, a in zip(self.masks.numels, surviving)],
            "uniform": [1] * len(surviving),
        }[self.regrowth]
        return split_proportional(total, weights, capacity)

    @torch.no_grad()
    def grow(self, i: int, t, count: int, dropped: torch.Tensor) -> int:
        """Uniformly random inactive positions, with value 0 (``grow_init``)."""
        if count == 0:
            return 0
        pick = self.grow_random(t, count, dropped if self.exclude else None)
        self.grow_values(t.weight, pick, self.grow_init)
        if self.reset_momentum:
            self.reset_momentum_at(t.weight, pick)
        return count

    def end(self, dropped, counts, new) -> dict:
        """Adapt H: halve it if K > (1 + delta) Np, double it if K < (1 - delta) Np."""
        k = sum(len(d) for d in dropped)
        self.adapt(k)
        return {"threshold": self.threshold_used, "next_threshold": self.threshold}

    def adapt(self, k: int) -> None:
        self.threshold_used = self.threshold
        if self.prune_rule == "topk":
            self.threshold_used = self.threshold = self.last_cut
        elif k > (1 + self.delta) * self.np_target:
            self.threshold /= 2
        elif k < (1 - self.delta) * self.np_target:
            self.threshold *= 2

    # the two halves of one reallocation, for a caller that looks between them
    def prune(self) -> list[torch.Tensor]:
        """Drop in every tensor (:meth:`drop`); the flat positions dropped per tensor."""
        self.begin()
        return [self.drop(i, t) for i, t in enumerate(self.masks.tensors)]

    def regrow(self, pruned: list[torch.Tensor]) -> list[int]:
        """Regrow what :meth:`prune` dropped; the count per tensor."""
        counts = self.counts(pruned)
        for i, (t, c, d) in enumerate(zip(self.masks.tensors, counts, pruned)):
            self.grow(i, t, c, d)
        return counts

    def update(self) -> dict:
        if self.granularity != "kernel":
            return super().update()
        units = kernels.prune(self.masks, self.threshold)
        grown = kernels.grow(self, units)
        sizes = [kernels.unit_size(w) for w in self.masks.weights]
        pruned_per_tensor = [len(u) * k for u, k in zip(units, sizes)]
        self.adapt(sum(pruned_per_tensor))
        return {
            "threshold": self.threshold_used,
            "next_threshold": self.threshold,
            "pruned": sum(pruned_per_tensor),
            "grown": sum(grown),
            "pruned_per_tensor": pruned_per_tensor,
            "grown_per_tensor": grown,
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "threshold": self.threshold}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.threshold = state["threshold"]
