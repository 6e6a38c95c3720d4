"""Sparse Evolutionary Training, SET (Mocanu et al., Nature Communications 2018).

``set_variant="dsr"`` (default) is SET as the DSR paper ran it (official DSR code,
``prune_small_connections`` + ``grow_random``; reference README, "SET baseline as run"):

* on DSR's reallocation schedule (every P steps, P per epoch, none from ``realloc_stop``),
* each sparse tensor prunes its int(zeta * active) + 1 active weights of smallest |w|
  (a full sort of the active magnitudes, as the official code does),
* and regrows as many at uniformly random inactive positions of the same tensor, not those
  just pruned, with value 0 (``grow_init``); momentum is kept (``reset_momentum``).

zeta is matched to DSR's reallocation volume: ``set_zeta=0`` means zeta = Np / (active
weights), which gives the reference's zeta = 0.138, 0.07, 0.046, 0.034, 0.028 for
WRN-28-2 at s = 0.9 .. 0.5 (Np = 20,000).

``set_variant="original"`` is Mocanu et al.'s rule: once per epoch (at its end, until
``realloc_stop``), each tensor removes the fraction zeta of its positive weights closest to zero
and the fraction zeta of its negative weights closest to zero, then regrows as many at random
(zeta = 0.3 unless ``set_zeta`` is given). Differences from the paper in both variants:
regrown weights start at 0 rather than at a random value (``grow_init="kaiming"`` draws one),
and where a tensor has fewer free positions than it pruned (densities above 0.5) just-pruned
positions become candidates again, so that the count is conserved exactly (the official code
grows fewer instead). Active weights that are exactly 0 count as neither positive nor negative
in the original rule and are kept.
"""

from __future__ import annotations

import torch
from torch import nn

from dsr.errors import ConfigError
from dsr.methods.base import PAPER_PERIODS, PAPER_STOP, Reallocation, Scheduled, register

ORIGINAL_ZETA = 0.3  # Mocanu et al. 2018, the value used in all their experiments


@register("set")
class SET(Scheduled, Reallocation):
    """Per-tensor magnitude pruning of a fixed fraction, random regrowth in the same tensor."""

    keeps_counts = True
    variant_field = "set_variant"
    config_fields = (
        "np_target",
        "set_zeta",
        "set_variant",
        "realloc_schedule",
        "realloc_stop",
        "realloc_start",
        "grow_init",
        "reset_momentum",
    )

    def __init__(
        self,
        model: nn.Module,
        *,
        np_target: int = 600,
        set_zeta: float = 0.0,
        set_variant: str = "dsr",
        realloc_schedule: str = PAPER_PERIODS,
        realloc_stop: int = PAPER_STOP,
        grow_init: str = "zero",
        reset_momentum: bool = False,
        **kw,
    ):
        self.variant, self.grow_init, self.reset_momentum = set_variant, grow_init, reset_momentum
        super().__init__(model, realloc_schedule=realloc_schedule, realloc_stop=realloc_stop, **kw)
        self.zeta = set_zeta or self.default_zeta(np_target)

    @classmethod
    def check_config(cls, cfg) -> None:
        if not 0 <= cfg.set_zeta < 1:
            raise ConfigError(f"set_zeta must be in [0, 1), got {cfg.set_zeta}")

    def default_zeta(self, np_target: int) -> float:
        """DSR variant: Np / active, the fraction that prunes DSR's Np weights per update."""
        if self.variant == "original":
            return ORIGINAL_ZETA
        return np_target / max(1, self.masks.total_active())

    def is_update_step(self, step: int) -> bool:
        if self.variant == "dsr":
            return super().is_update_step(step)
        epoch = self.epoch_of(step)
        return step % self.steps_per_epoch == 0 and self.realloc_start <= epoch < self.realloc_stop

    @torch.no_grad()
    def drop_smallest(self, w: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Official DSR code: sort the active |w|, drop the first int(zeta * active) + 1."""
        active = m.nonzero().view(-1)
        order = torch.sort(w[active].abs(), stable=True).indices
        return active[order[: int(self.zeta * len(active)) + 1]]

    @torch.no_grad()
    def drop_signed(self, w: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Mocanu et al.: the fraction zeta of positive and of negative weights nearest 0."""
        drops = []
        for sign in (1.0, -1.0):
            idx = (m & (w * sign > 0)).nonzero().view(-1)
            order = torch.sort((w[idx] * sign), stable=True).indices
            drops.append(idx[order[: int(self.zeta * len(idx))]])
        return torch.cat(drops)

    @torch.no_grad()
    def drop(self, i: int, t) -> torch.Tensor:
        w, m = t.weight.view(-1), t.mask.view(-1)
        drop = self.drop_smallest(w, m) if self.variant == "dsr" else self.drop_signed(w, m)
        m[drop] = False
        w[drop] = 0.0
        return drop

    @torch.no_grad()
    def grow(self, i: int, t, count: int, dropped: torch.Tensor) -> int:
        """As many as dropped, in the same tensor, at random inactive positions other than the
        dropped ones (unless too few are free)."""
        m = t.mask.view(-1)
        exclude = dropped if int((~m).sum()) - len(dropped) >= len(dropped) else None
        pick = self.grow_random(t, count, exclude)
        self.grow_values(t.weight, pick, self.grow_init)
        if self.reset_momentum:
            self.reset_momentum_at(t.weight, pick)
        return len(pick)

    def begin(self) -> dict:
        return {"zeta": self.zeta}
