"""The non-dynamic baselines of the DSR paper: full dense, thin dense and static sparse."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dsr.errors import ConfigError
from dsr.masks import default_sparse_names
from dsr.methods.base import Method, register
from dsr.models import create_model

if TYPE_CHECKING:  # annotations only: methods never import the config module
    from dsr.config import RunConfig


@register("dense")
class Dense(Method):
    """The full dense network: no masks, the sparsity field is ignored."""

    keeps_counts = True
    sparse = False


@register("static")
class Static(Method):
    """A random sparse network (uniform sparsity, exact counts) whose mask never changes."""

    keeps_counts = True


@register("thin_dense")
class ThinDense(Method):
    """A dense network made narrower to match the sparse network at ``sparsity`` (paper: 'thin
    dense'): in trainable parameters (``thin_match="params"``, the ICLR-2019 submission's
    sizing) or in memory, counting one bit per sparse position for the mask
    (``thin_match="memory"``, the ICML-2019 version's). The width multiplier is chosen by
    :func:`matched_width` and recorded in the run summary."""

    keeps_counts = True
    sparse = False
    variant_field = "thin_match"

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        if cfg.sparsity <= 0:
            raise ConfigError("thin_dense needs sparsity > 0 (the sparse network it matches)")
        if cfg.width != 1.0:
            raise ConfigError("thin_dense chooses its own width: leave width at 1.0")

    @classmethod
    def model_width(cls, cfg: RunConfig) -> float:
        return matched_width(cfg.model, cfg.sparsity, cfg.thin_match)


def model_counts(model_name: str, width: float) -> dict[str, int]:
    """Trainable parameters of a model (built on the meta device, no memory, no RNG use)."""
    with torch.device("meta"):
        model = create_model(model_name, width)
    names = set(default_sparse_names(model))
    sparse = sum(m.weight.numel() for n, m in model.named_modules() if n in names)
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "sparse_positions": sparse, "dense": total - sparse}


def matched_width(model_name: str, sparsity: float, match: str = "params") -> float:
    """Width multiplier whose dense parameter count is closest to the sparse network's size.

    ``params``: its non-zero count (sparse positions times density, plus the dense
    parameters). ``memory``: its memory in 32-bit words, the non-zero parameters plus one bit
    per sparse position for the mask (sparse positions / 32).
    """
    full = model_counts(model_name, 1.0)
    target: float = round((1 - sparsity) * full["sparse_positions"]) + full["dense"]
    if match == "memory":
        target += full["sparse_positions"] / 32
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if model_counts(model_name, mid)["total"] < target else (lo, mid)
    candidates = {round(w, 4) for w in (lo, hi)}
    return min(candidates, key=lambda w: abs(model_counts(model_name, w)["total"] - target))
