"""Method registry. ``METHODS[name]`` is a :class:`Method` subclass; see ``base.py``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Importing a module registers its methods.
from dsr.methods import baselines, deepr, dsr, pruning, replica, rigl, snfs  # noqa: F401
from dsr.methods import set as set_  # noqa: F401  (not named set: the builtin)
from dsr.methods.base import METHODS, Method, Scheduled, register, split_proportional

__all__ = ["METHODS", "Method", "Scheduled", "register", "split_proportional", "sparsify"]


def sparsify(
    model: nn.Module,
    method: str = "dsr",
    *,
    sparsity: float,
    steps_per_epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    seed: int = 0,
    names: Sequence[str] | None = None,
    **hyperparameters,
) -> Method:
    """Make ``model`` sparse in place and return the method that keeps it so.

    Args:
        model: any PyTorch model; its sparse layers are ``names``, else the model's own
            ``sparse_module_names()``, else every conv with a kernel > 1x1 and every linear
            layer but the last.
        method: a registry key (``dsr``, ``static``, ``set``, ``deepr``, ``rigl``, ``snfs``,
            ``pruning``, ``static_replica``, ...).
        sparsity: fraction of zeros in every sparse tensor at the start.
        steps_per_epoch: optimizer steps per epoch (schedules are given in epochs).
        optimizer: needed by options that touch optimizer state (``reset_momentum``).
        seed: seed of the method's own RNG (initial masks, regrowth positions).
        **hyperparameters: the method's options, e.g. ``np_target=600`` for DSR,
            ``epochs=`` (the run's length) for RigL and SNFS, ``source_masks=`` for
            ``static_replica``. One not given takes ``RunConfig``'s default, the LeNet-300-100
            paper protocol's (DSR and SET: ``realloc_schedule="0:100,25:200,50:400,75:800"``,
            periods in steps from those epochs, and no reallocation from ``realloc_stop=90``).

    Call ``before_step()`` between ``backward()`` and ``optimizer.step()``, and
    ``after_step()`` right after it.
    """
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r} (known: {', '.join(sorted(METHODS))})")
    cls = METHODS[method]
    return cls(
        model,
        sparsity=sparsity,
        steps_per_epoch=steps_per_epoch,
        optimizer=optimizer,
        seed=seed,
        names=names,
        **hyperparameters,
    )
