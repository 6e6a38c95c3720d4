"""Compressed sparse: gradual magnitude pruning (Zhu & Gupta 2017) from a trained dense network.

As the DSR paper ran it (reference README, "Compressed sparse"):

* the weights are those of the finished ``dense`` run of the same protocol (found in the run
  cache by its config, :func:`source_config`, and trained first if it is missing);
* 20 prunes, at the end of epochs 0, 2, .., 38 (``prune_every``, ``prune_times``); after prune
  k = 1 .. n each tensor keeps its largest-|w| weights down to sparsity
  s_k = s (1 - (1 - k / n)^3) (cubic schedule, Zhu & Gupta Eq. 1 with s_i = 0), so the last
  prune reaches exactly s, with exact counts (:func:`dsr.masks.exact_counts`);
* 48 epochs in all, LR 0 for epoch 0 (the first prune sees the dense weights), 0.02, 0.004
  from epoch 25, 0.0008 from 35 (:attr:`Pruning.protocol_defaults`).

``prune_scope="official"`` (the paper's baseline, :attr:`Pruning.protocol_defaults`) is the
official ``main.py`` for ``mnist_mlp``: when the target s is above 0.9, the 10 x 100 output layer
is pruned only to sparsity 0.9 (100 weights) and the other layers share the rest of the budget,
(1 - s) * total - 100 weights, at one common sparsity, each on its own cubic schedule. Without
it (``prune_scope="tensor"``, every tensor to s) s = 0.99 leaves the output layer 10 weights and
some classes unconnected. Elsewhere (WRN-28-2, s <= 0.9) ``official`` prunes as ``tensor`` does
(the same masks and weights), under its own config hash.

``prune_scope="global"`` (not the official baseline) ranks the weights of all sparse tensors
together instead: after prune k the network keeps its largest-|w| weights down to s_k overall,
so each tensor ends at whatever sparsity its magnitudes give it (as DSR's reallocation does).

On a run scaled in time (``prune_time_scale`` < 1: the ``cpu`` budget of WRN-28-2, whose
compressed run is the official 48 epochs times the budget's 13/200, so 3 epochs), each prune
happens after its official step times the scale (rounded), and the learning-rate boundaries are
scaled the same way, inside epochs (:meth:`Pruning.protocol_values`).

With the last prune at the end of epoch 38, the 48-epoch run leaves 9 epochs after it, not the
"10 more epochs" the reference states; we follow its epochs. Pruned weights stay at 0 with zero
gradient. If the source run was stored without its weights (``final.pt``), it is trained again
in memory (on a CPU that gives the same weights bit for bit, on a GPU nearly the same) and the
weights are stored as its ``final.pt`` for the next run from it (``dsr.runs.final_weights``,
which hands them over: the method never reads the run cache itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from dsr.errors import ConfigError
from dsr.masks import Masks, exact_counts, grouped_counts, protected_sparsities
from dsr.methods.base import Method, register, source_config, the_source
from dsr.schedules import Schedule

if TYPE_CHECKING:  # annotations only: methods never import the config module
    from dsr.config import RunConfig


@register("pruning")
class Pruning(Method):
    """Dense start, magnitude pruning (per tensor, or global) on the cubic schedule, then
    fine-tuning."""

    masks: Masks  # always sparse: never None
    config_fields = ("prune_every", "prune_times", "prune_scope", "prune_time_scale")
    needs = ("final_weights",)
    variant_field = "prune_scope"
    # Compressed sparse: 48 epochs from the protocol's trained dense network, LR 0 for epoch 0
    # (the first prune sees the dense weights), 0.02, 0.004 from 25, 0.0008 from 35; per-tensor
    # magnitude pruning with the official code's exception for LeNet-300-100 above s = 0.9.
    protocol_defaults = dict(
        epochs=48, lr_schedule="0:0,1:0.02,25:0.004,35:0.0008", prune_scope="official"
    )
    # WRN-28-2's compressed runs in the official experiments file
    # (experiments/wrnet_experiments.yaml, "Pruning from full model") do not pass
    # --weight-decay, so they ran at main.py's default 1e-4, not the dense runs' 5e-4.
    protocol_changes = {"wrn28_2-cifar10": dict(weight_decay=1e-4)}
    # Budgets whose compressed runs are scaled in time with the protocol (the others keep the
    # official 48 epochs whatever the budget).
    scaled_budgets = ("cpu",)

    @classmethod
    def protocol_values(cls, base, factor, protocol, budget):
        """At a budget of :attr:`scaled_budgets` that shortens the protocol (WRN-28-2 at
        ``cpu``: 13 of 200 epochs), the compressed run is shortened by the same factor: its 48
        epochs (rounded to whole epochs: 3), its learning-rate boundaries (not rounded: they
        fall inside epochs) and its 20 prunes (``prune_time_scale``)."""
        out = super().protocol_values(base, factor, protocol, budget)
        if factor != 1 and budget in cls.scaled_budgets:
            out.update(
                epochs=max(1, round(out["epochs"] * factor)),
                lr_schedule=Schedule.parse(out["lr_schedule"]).scaled_exactly(factor).format(),
                prune_time_scale=factor,
            )
        return out

    def __init__(
        self,
        model: nn.Module,
        *,
        prune_every: int = 2,
        prune_times: int = 20,
        prune_scope: str = "tensor",
        prune_time_scale: float = 1.0,
        **kw,
    ):
        self.every, self.times, self.scope = prune_every, prune_times, prune_scope
        super().__init__(model, **kw)
        # prune k (1-based) after this optimizer step: the end of epoch (k - 1) * every, or,
        # on a run scaled in time, that step times the scale, rounded
        self.prune_steps = [
            round(prune_time_scale * self.steps_per_epoch * (self.every * j + 1))
            for j in range(self.times)
        ]

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        if cfg.sparsity <= 0:
            raise ConfigError("pruning needs sparsity > 0 (its final sparsity)")
        if cfg.sparse_init != "uniform":
            raise ConfigError("pruning starts dense: leave sparse_init at 'uniform'")
        if cfg.prune_every < 1 or cfg.prune_times < 1:
            raise ConfigError("prune_every and prune_times must be at least 1")
        if not 0 < cfg.prune_time_scale <= 1:
            raise ConfigError(f"prune_time_scale must be in (0, 1], got {cfg.prune_time_scale}")
        last = cfg.prune_time_scale * ((cfg.prune_times - 1) * cfg.prune_every + 1)
        if last > cfg.epochs + 1e-9:
            raise ConfigError(
                f"the last prune (after {last:g} epochs) falls after the end of the run "
                f"({cfg.epochs} epochs)"
            )

    @classmethod
    def dependencies(cls, cfg: RunConfig) -> list[RunConfig]:
        return [source_config(cfg, "dense", cls.config_fields, sparsity=0.0)]

    @classmethod
    def from_config(cls, cfg, model, steps_per_epoch, optimizer, sources=()) -> Method:
        """Load the dense run's final weights into ``model``, then start pruning."""
        model.load_state_dict(the_source(cls, sources)["final_weights"])
        return super().from_config(cfg, model, steps_per_epoch, optimizer)

    def init_masks(self) -> None:
        """Dense start: every position active."""
        for t in self.masks.tensors:
            t.set_mask(torch.ones_like(t.mask))

    def is_update_step(self, step: int) -> bool:
        return step in self.prune_steps

    def target_sparsity(self, k: int, final: float | None = None) -> float:
        """s_k = s (1 - (1 - k / n)^3), k = 1 .. n (Zhu & Gupta 2017, Eq. 1, s_i = 0), for the
        final sparsity s (default: the run's)."""
        s = self.sparsity if final is None else final
        return s * (1 - (1 - k / self.times) ** 3)

    def final_sparsities(self) -> list[float]:
        """Each tensor's final sparsity: the run's, except under ``official`` above s = 0.9 for
        the 10 x 100 output layer (0.9) and the others (their common share of the rest)."""
        if self.scope != "official":
            return [self.sparsity] * len(self.masks.numels)
        return protected_sparsities([tuple(w.shape) for w in self.masks.weights], self.sparsity)

    def official_counts(self, k: int) -> list[int]:
        """Active counts after prune k under ``official``: per group of tensors with one final
        sparsity, exact counts at that group's s_k (so the last prune meets the total)."""
        targets = [self.target_sparsity(k, final) for final in self.final_sparsities()]
        return grouped_counts(self.masks.numels, targets)

    def global_counts(self, total: int) -> list[int]:
        """Active counts per tensor that keep the ``total`` largest |w| of all active weights
        (ties broken by position, as ``torch.topk`` breaks them)."""
        tensors = self.masks.tensors
        scores = torch.cat([t.weight.abs().masked_fill(~t.mask, -1.0).view(-1) for t in tensors])
        owner = torch.cat(
            [torch.full((n,), i, device=scores.device) for i, n in enumerate(self.masks.numels)]
        )
        top = torch.topk(scores, min(total, int((scores >= 0).sum()))).indices
        return torch.bincount(owner[top], minlength=len(tensors)).tolist()

    @torch.no_grad()
    def update(self) -> dict:
        k = self.prune_steps.index(self.step) + 1
        target = self.target_sparsity(k)
        if self.scope == "global":
            keep = self.global_counts(round((1.0 - target) * sum(self.masks.numels)))
        elif self.scope == "official":
            keep = self.official_counts(k)
        else:
            keep = exact_counts(self.masks.numels, 1.0 - target)
        pruned = []
        for t, n in zip(self.masks.tensors, keep):
            w, m = t.weight.view(-1), t.mask.view(-1)
            score = w.abs().masked_fill(~m, -1.0)  # inactive ones never come back
            before = int(m.sum())
            m.zero_()
            m[torch.topk(score, min(n, before)).indices] = True
            w.mul_(m)
            pruned.append(before - int(m.sum()))
        return {
            "prune": k,
            "target_sparsity": target,
            "pruned": sum(pruned),
            "grown": 0,
            "pruned_per_tensor": pruned,
        }
