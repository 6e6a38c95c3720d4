"""The method interface: what to drop, what to grow, how many per tensor, and when.

A method wraps a model's sparse tensors (:class:`dsr.masks.Masks`) and is driven by two calls
around the optimizer step of any training loop::

    loss.backward()
    method.before_step()   # e.g. zero the gradients of inactive weights
    optimizer.step()
    event = method.after_step()   # re-zero inactive weights; reallocate when scheduled

``after_step`` returns a dict describing a reallocation when one happened, else None.
Methods are registered by name with :func:`register` and built from a run config with
:meth:`Method.from_config`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from dsr.errors import ConfigError
from dsr.masks import Masks, SparseTensor
from dsr.schedules import Schedule

if TYPE_CHECKING:  # annotations only: methods never import the config module
    from dsr.config import RunConfig

METHODS: dict[str, type[Method]] = {}


def register(name: str):
    """Class decorator adding a method to the registry under ``name``."""

    def add(cls: type[Method]) -> type[Method]:
        cls.name = name
        METHODS[name] = cls
        return cls

    return add


class Method:
    """Base class. Subclasses set ``sparse`` and ``config_fields`` and override ``update``."""

    name: ClassVar[str] = ""
    sparse: ClassVar[bool] = True  # False: a dense network, no masks
    config_fields: ClassVar[tuple[str, ...]] = ()  # RunConfig fields passed to __init__
    # What from_config takes from each run of dependencies(cfg), as plain tensors handed over
    # by dsr.runs (which alone finds and trains those runs): "final_weights" (a state_dict),
    # "final_masks" (bool masks by sparse module name), "init_weights" (the run's initial
    # state_dict, without masks).
    needs: ClassVar[tuple[str, ...]] = ()
    # True: every tensor keeps its active count through training (the method regrows where
    # it prunes, or never changes the masks), so the final counts hold from step 0
    # (dsr.flops reads them instead of the reallocation log).
    keeps_counts: ClassVar[bool] = False
    # The field a method spec's ``name:value`` sets (``static_replica:source``); "" if none.
    variant_field: ClassVar[str] = ""
    # What the method changes in every protocol, as the paper ran it (reference README,
    # "Protocol facts"), and in one protocol only (protocol -> changes): applied by
    # dsr.config.preset when a config names the method, before the caller's overrides.
    protocol_defaults: ClassVar[dict[str, Any]] = {}
    protocol_changes: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(
        self,
        model: nn.Module,
        *,
        sparsity: float,
        steps_per_epoch: int,
        optimizer: torch.optim.Optimizer | None = None,
        seed: int = 0,
        names: Sequence[str] | None = None,
        sparse_init: str = "uniform",
    ):
        self.model = model
        self.sparse_init = sparse_init
        self.sparsity = sparsity
        self.steps_per_epoch = steps_per_epoch
        self.optimizer = optimizer
        self.step = 0  # optimizer steps taken so far
        # The method's own RNG (mask positions, regrowth), independent of data and init RNGs.
        self.generator = torch.Generator().manual_seed(10_007 + seed)
        self.masks = Masks(model, names) if self.sparse else None
        if self.masks is not None:
            self.init_masks()

    # --- construction from a run config ---------------------------------------------------
    @classmethod
    def protocol_values(
        cls, base: dict[str, Any], factor: float, protocol: str, budget: str
    ) -> dict[str, Any]:
        """``base`` (the fields of ``protocol`` at ``budget``, ``factor`` its length over the
        protocol's) with this method's changes: a method that starts from another run records
        that run's epochs, learning rates and weight decay (the ``source_*`` fields), then its
        :attr:`protocol_defaults` and :attr:`protocol_changes` apply."""
        out = dict(base, method=cls.name)
        if cls.needs:
            out.update(
                source_epochs=base["epochs"],
                source_lr_schedule=base["lr_schedule"],
                source_weight_decay=base["weight_decay"],
            )
        out.update(cls.protocol_defaults)
        out.update(cls.protocol_changes.get(protocol, {}))
        return out

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """Raise dsr.config.ConfigError if ``cfg`` is incompatible with this method."""

    @classmethod
    def model_width(cls, cfg: RunConfig) -> float:
        """Width multiplier of the model this method trains (thin_dense overrides)."""
        return cfg.width

    @classmethod
    def dependencies(cls, cfg: RunConfig) -> list[RunConfig]:
        """Configs of the runs this method starts from (trained first by ``dsr.runs.run``)."""
        return []

    @classmethod
    def from_config(
        cls,
        cfg: RunConfig,
        model: nn.Module,
        steps_per_epoch: int,
        optimizer: torch.optim.Optimizer | None,
        sources: Sequence[dict[str, Any]] = (),
    ) -> Method:
        """The method of run ``cfg`` on ``model``; ``sources``: for each run of
        :meth:`dependencies`, what :attr:`needs` names (``dsr.runs.sources_of`` builds it)."""
        hp = {k: getattr(cfg, k) for k in cls.config_fields}
        return cls(
            model,
            sparsity=cfg.sparsity,
            steps_per_epoch=steps_per_epoch,
            optimizer=optimizer,
            seed=cfg.seed,
            sparse_init=cfg.sparse_init,
            **hp,
        )

    # --- the two hooks ----------------------------------------------------------------------
    def init_masks(self) -> None:
        """Initial masks, exact counts at random positions: the same sparsity in every tensor
        (``uniform``, official code), Erdos-Renyi-kernel densities (``erk``, RigL paper), or
        uniform with LeNet-300-100's output layer kept at 100 weights above s = 0.9
        (``protect_output``, the official compressed baseline's rule, an ablation here)."""
        if self.masks is None:  # a dense network
            return
        if self.sparse_init == "erk":
            self.masks.init_erk(self.sparsity, self.generator)
        elif self.sparse_init == "protect_output":
            self.masks.init_protected(self.sparsity, self.generator)
        else:
            self.masks.init_uniform(self.sparsity, self.generator)

    def before_step(self) -> None:
        if self.masks is not None:
            self.masks.mask_grads_()

    def after_step(self) -> dict | None:
        if self.masks is not None:
            self.masks.apply_()
        self.step += 1
        if self.masks is None or not self.is_update_step(self.step):
            return None
        event: dict[str, Any] = {"step": self.step, "epoch": self.epoch_of(self.step)}
        event.update(self.update())
        event["active"] = self.masks.active_counts()
        return event

    def epoch_of(self, step: int) -> int:
        """The epoch in which optimizer step number ``step`` (1-based) was taken."""
        return (step - 1) // self.steps_per_epoch

    def is_update_step(self, step: int) -> bool:
        return False

    def update(self) -> dict:
        """Change the masks; return what to log. Called only on update steps."""
        raise NotImplementedError

    # --- state for checkpoints ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.generator.set_state(state["generator"].cpu())  # a checkpoint may map it to a GPU

    # --- helpers for subclasses ---------------------------------------------------------------
    @torch.no_grad()
    def grow_values(self, weight: torch.Tensor, index: torch.Tensor, how: str) -> None:
        """Set newly grown weights (flat ``index``) to zero or a Kaiming-normal draw."""
        flat = weight.view(-1)
        if how == "zero":
            flat[index] = 0.0
        else:
            fan_in = weight[0].numel() if weight.dim() > 1 else weight.numel()
            std = (2.0 / fan_in) ** 0.5
            flat[index] = torch.randn(len(index), generator=self.generator).to(flat) * std

    @torch.no_grad()
    def grow_random(
        self, t: SparseTensor, count: int, exclude: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Activate ``count`` uniformly random inactive positions of tensor ``t``, none of the
        flat positions ``exclude``; return their flat positions (official DSR ``grow_random``)."""
        m = t.mask.view(-1)
        free = ~m
        if exclude is not None:
            free[exclude] = False
        # The official pick, free.nonzero()[randperm(#free)[:count]], without listing every
        # free position: the j-th free position is the first where the running count of free
        # positions reaches j + 1 (same positions, same draws: randperm's int32 and int64
        # permutations are equal)
        seen = free.cumsum(0, dtype=torch.int32)
        order = torch.randperm(int(seen[-1]), generator=self.generator, dtype=torch.int32)
        pick = torch.searchsorted(seen, order[:count].to(seen.device) + 1)
        m[pick] = True
        return pick

    def reset_momentum_at(self, weight: torch.Tensor, index: torch.Tensor) -> None:
        """Zero the optimizer's momentum of the flat positions ``index`` of ``weight``."""
        state = self.optimizer.state.get(weight, {}) if self.optimizer is not None else {}
        buf = state.get("momentum_buffer")
        if buf is not None:
            buf.view(-1)[index] = 0.0


class Reallocation(Method):
    """The reallocation template: at each update, every tensor :meth:`drop` s some active
    weights, :meth:`counts` says how many each tensor regrows, every tensor :meth:`grow` s
    them, and the update is logged as one event record (:meth:`update`). DSR, SET, RigL and
    SNFS are this template with their own three steps; :meth:`begin` computes what one update
    needs once (a fraction, shares, a threshold) and returns what the event logs of it,
    :meth:`end` what is left to do and log after the growth (DSR adapts its threshold).
    """

    masks: Masks  # always sparse: never None

    def begin(self) -> dict:
        return {}

    def drop(self, i: int, t: SparseTensor) -> torch.Tensor:
        """Deactivate some active weights of tensor ``t`` (number ``i``); their flat positions."""
        raise NotImplementedError

    def counts(self, dropped: list[torch.Tensor]) -> list[int]:
        """How many weights each tensor regrows: by default, as many as it dropped."""
        return [len(d) for d in dropped]

    def grow(self, i: int, t: SparseTensor, count: int, dropped: torch.Tensor) -> int:
        """Activate ``count`` weights of tensor ``t``; the number that were not active just
        before the update (a method may regrow a position it dropped)."""
        raise NotImplementedError

    def end(self, dropped: list[torch.Tensor], counts: list[int], new: list[int]) -> dict:
        return {}

    def update(self) -> dict:
        event = self.begin()
        dropped = [self.drop(i, t) for i, t in enumerate(self.masks.tensors)]
        counts = self.counts(dropped)
        new = [
            self.grow(i, t, c, d)
            for i, (t, c, d) in enumerate(zip(self.masks.tensors, counts, dropped))
        ]
        event.update(
            pruned=sum(len(d) for d in dropped),
            grown=sum(counts),
            pruned_per_tensor=[len(d) for d in dropped],
            grown_per_tensor=list(counts),
        )
        event.update(self.end(dropped, counts, new))
        return event


# DSR's and SET's reallocation schedule in the LeNet-300-100 paper protocol (RunConfig's
# defaults, which a test keeps equal): periods in steps from these epochs, none from the stop.
PAPER_PERIODS, PAPER_STOP = "0:100,25:200,50:400,75:800", 90


class Scheduled(Method):
    """A method that reallocates every P steps, P from a per-epoch schedule, until a stop epoch.

    Official DSR code: the first reallocation happens at step P (not 0), none from
    ``realloc_stop`` on. ``realloc_start`` (an ablation, 0 in the official code) keeps the
    masks static before that epoch: the steps counted from 0 as before, so the reallocations
    that happen are those of the official schedule from that epoch on.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        realloc_schedule: str,
        realloc_stop: int,
        realloc_start: int = 0,
        **kw,
    ):
        self.periods = Schedule.parse(realloc_schedule, "realloc_schedule")
        self.realloc_start, self.realloc_stop = realloc_start, realloc_stop
        super().__init__(model, **kw)

    def is_update_step(self, step: int) -> bool:
        epoch = self.epoch_of(step)
        in_window = self.realloc_start <= epoch < self.realloc_stop
        return in_window and step % int(self.periods(epoch)) == 0


def split_proportional(total: int, weights: Sequence[float], capacity: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights``, none above its ``capacity``.

    Largest-remainder rounding makes the parts sum exactly to ``total`` (which must not exceed
    ``sum(capacity)``); what a full tensor cannot take goes to the others, again in proportion.
    """
    if total > sum(capacity):
        raise ValueError(f"cannot place {total} in a capacity of {sum(capacity)}")
    parts = [0] * len(weights)
    open_ = [i for i in range(len(weights)) if capacity[i] > 0]
    left = total
    while left > 0:
        w = [weights[i] if sum(weights[j] for j in open_) > 0 else 1 for i in open_]
        quotas = [left * wi / sum(w) for wi in w]
        add = [int(q) for q in quotas]
        order = sorted(range(len(open_)), key=lambda k: (-(quotas[k] - add[k]), k))
        for k in order[: left - sum(add)]:
            add[k] += 1
        for k, i in enumerate(open_):
            take = min(add[k], capacity[i] - parts[i])
            parts[i] += take
            left -= take
        open_ = [i for i in open_ if parts[i] < capacity[i]]
    return parts


def source_config(
    cfg: RunConfig, method: str, owned: tuple[str, ...] = (), **changes: Any
) -> RunConfig:
    """The config of the run that ``cfg`` starts from (pruning, static_replica): the same
    protocol with ``method``, the source's epochs and learning rates, and the source fields
    and the fields ``owned`` by the dependent method back at their defaults."""
    defaults = {f.name: f.default for f in fields(cfg)}
    return cfg.replace(
        method=method,
        epochs=cfg.source_epochs or cfg.epochs,
        lr_schedule=cfg.source_lr_schedule or cfg.lr_schedule,
        weight_decay=cfg.weight_decay if cfg.source_weight_decay < 0 else cfg.source_weight_decay,
        source_epochs=0,
        source_lr_schedule="",
        source_weight_decay=-1.0,
        **{name: defaults[name] for name in owned},
        **changes,
    )


def the_source(cls: type[Method], sources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The one source of a method that starts from one run; a one-line error without it."""
    if len(sources) != 1 or set(sources[0]) != set(cls.needs):
        raise ConfigError(
            f"{cls.name} starts from another run: train it with dsr.runs.run, which finds that "
            f"run (training it first if needed) and hands over its {', '.join(cls.needs)}"
        )
    return sources[0]
