"""Deep Rewiring, DeepR (Bellec et al., ICLR 2018), as the DSR paper ran it.

Official DSR code (``SparseTensor.prune_sign_change`` + ``grow_random``; reference README,
"DeepR baseline as run"):

* every iteration, after the optimizer step, each sparse tensor prunes the active weights whose
  sign flipped, and regrows as many at uniformly random inactive positions of the same tensor
  (not those just pruned), with value 0;
* before the step, Gaussian noise of standard deviation sqrt(2 eta T) is added to the gradients
  of the active weights, T from a per-epoch temperature schedule (eta = 0.01; T = 1e-5, 1e-8
  from epoch 25, 1e-12 from 80, 1e-15 from 140 on WRN-28-2);
* L1 coefficient 1e-5 and no weight decay (``DeepR.protocol_defaults``; the L1 term is the
  training loop's).

A sign flip is a product of the new and the reference sign below 0, so a weight at exactly 0
(regrown, never updated) is never pruned for it. The reference is the sign after the previous
iteration (``deepr_sign_reference="previous"``, the default). The official code takes the first
reference when the sparse tensor is built, before the model's weights are initialised again,
so its first comparison is with a stale initialisation and prunes about half of all active
weights; ``"stale_init"`` reproduces that with reference signs drawn at random (+/-1 with
equal probability) for the first iteration.

Differences from the DeepR paper: the noise enters through the gradient (so it is scaled by the
learning rate and passes through momentum) instead of being added to the parameter update,
connections have no fixed sign (a flipped weight is pruned, not kept at 0), and regrown weights
start at 0. One log entry per epoch sums the iterations' rewiring (not one per iteration).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dsr.masks import Masks
from dsr.methods.base import Method, register
from dsr.schedules import Schedule

# The temperature schedule of the paper's DeepR runs (RunConfig's default), in epochs of the
# 200-epoch protocols; a shorter budget shortens it like the other schedules.
TEMPERATURE = "0:1e-05,25:1e-08,80:1e-12,140:1e-15"


@register("deepr")
class DeepR(Method):
    """Sign-flip pruning and random regrowth every iteration, noisy gradients."""

    masks: Masks  # always sparse: never None
    keeps_counts = True
    config_fields = ("deepr_eta", "deepr_temperature_schedule", "deepr_sign_reference")
    variant_field = "deepr_sign_reference"
    # DeepR as the DSR paper ran it: L1 1e-5, no weight decay.
    protocol_defaults = dict(l1=1e-5, weight_decay=0.0)

    @classmethod
    def protocol_values(cls, base, factor, protocol, budget):
        out = super().protocol_values(base, factor, protocol, budget)
        if factor != 1:
            schedule = out.get("deepr_temperature_schedule", TEMPERATURE)
            out["deepr_temperature_schedule"] = Schedule.parse(schedule).scaled(factor).format()
        return out

    def __init__(
        self,
        model: nn.Module,
        *,
        deepr_eta: float = 0.01,
        deepr_temperature_schedule: str = TEMPERATURE,
        deepr_sign_reference: str = "previous",
        **kw,
    ):
        self.eta = deepr_eta
        self.temperature = Schedule.parse(deepr_temperature_schedule, "deepr_temperature_schedule")
        super().__init__(model, **kw)
        device = self.masks.weights[0].device if len(self.masks) else torch.device("cpu")
        seed = int(torch.randint(2**62, (1,), generator=self.generator))
        self.noise = torch.Generator(device=device).manual_seed(seed)
        self.reference = [self.initial_sign(w, m, deepr_sign_reference) for w, m in self.pairs()]
        self.pruned = [0] * len(self.masks)  # since the last log entry
        self.iterations = 0

    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(self.masks.weights, self.masks.masks))

    @torch.no_grad()
    def initial_sign(self, w: torch.Tensor, m: torch.Tensor, how: str) -> torch.Tensor:
        """Reference signs for the first iteration: the weights' own, or random +/-1."""
        if how == "stale_init":
            coin = torch.randint(0, 2, w.shape, generator=self.generator).to(w.device)
            return ((2 * coin - 1) * m).to(torch.int8)
        return torch.sign(w).to(torch.int8)

    def noise_std(self, epoch: int) -> float:
        return math.sqrt(2.0 * self.eta * self.temperature(epoch))

    @torch.no_grad()
    def before_step(self) -> None:
        """Zero inactive gradients; add N(0, 2 eta T) to the active ones."""
        self.masks.mask_grads_()
        std = self.noise_std(self.epoch_of(self.step + 1))
        if std == 0:
            return
        for w, m in self.pairs():
            if w.grad is not None:
                z = torch.randn(w.shape, generator=self.noise, device=w.device)
                w.grad.add_(z * m, alpha=std)

    @torch.no_grad()
    def after_step(self) -> dict | None:
        self.masks.apply_()
        self.step += 1
        flips = [
            (m & (torch.sign(w) * ref < 0)) for (w, m), ref in zip(self.pairs(), self.reference)
        ]
        counts = torch.stack([f.sum() for f in flips]).tolist()  # one sync per iteration
        for i, (t, f, k) in enumerate(zip(self.masks.tensors, flips, counts)):
            if k:
                self.rewire(t, f.view(-1).nonzero().view(-1))
                self.pruned[i] += k
            self.reference[i] = torch.sign(t.weight).to(torch.int8)
        self.iterations += 1
        if self.step % self.steps_per_epoch:
            return None
        return self.log_entry()

    @torch.no_grad()
    def rewire(self, t, flipped: torch.Tensor) -> None:
        """Prune the flipped positions of tensor ``t``; regrow as many elsewhere at 0."""
        t.mask.view(-1)[flipped] = False
        t.weight.view(-1)[flipped] = 0.0
        free = int((~t.mask).sum()) - len(flipped)
        self.grow_random(t, len(flipped), flipped if free >= len(flipped) else None)

    def log_entry(self) -> dict:
        """What the iterations since the last entry did (one entry per epoch)."""
        event = {
            "step": self.step,
            "epoch": self.epoch_of(self.step),
            "iterations": self.iterations,
            "temperature": self.temperature(self.epoch_of(self.step)),
            "pruned": sum(self.pruned),
            "grown": sum(self.pruned),
            "pruned_per_tensor": list(self.pruned),
            "active": self.masks.active_counts(),
        }
        self.pruned, self.iterations = [0] * len(self.masks), 0
        return event

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "noise": self.noise.get_state(),
            "reference": [r.clone() for r in self.reference],
            "pruned": list(self.pruned),
            "iterations": self.iterations,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.noise.set_state(state["noise"].cpu())
        self.reference = [r.to(w.device) for r, w in zip(state["reference"], self.masks.weights)]
        self.pruned, self.iterations = list(state["pruned"]), state["iterations"]
