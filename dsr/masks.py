"""Mask ownership for sparse weight tensors.

Each sparse weight owns a bool buffer ``weight_mask`` on its module, so masks travel with the
model's ``state_dict``. Inactive weights are kept exactly zero (after every optimizer step) and
receive zero gradient, so the forward pass uses only active weights and a checkpoint is truly
sparse. Which tensors are sparse follows the official DSR code
(github.com/IntelAI/dynamic-reparameterization): models say so through ``sparse_module_names()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dsr.errors import MaskError

MASK = "weight_mask"


def default_sparse_names(model: nn.Module) -> list[str]:
    """The sparse modules of ``model``: its own list, else every conv with a kernel > 1x1 and
    every linear layer except the last one (the usual choice for models not written here)."""
    if hasattr(model, "sparse_module_names"):
        return list(model.sparse_module_names())  # type: ignore[operator]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    names = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.weight.shape[2:].numel() > 1:
            names.append(name)
        elif isinstance(m, nn.Linear) and name != linears[-1]:
            names.append(name)
    return names


def exact_counts(numels: Sequence[int], density: float) -> list[int]:
    """Active counts per tensor: each within 1 of ``density * numel``, summing exactly to
    ``round(density * sum(numels))`` (largest-remainder rounding, ties to the earlier tensor)."""
    total = round(density * sum(numels))
    quotas = [density * n for n in numels]
    counts = [int(q) for q in quotas]
    order = sorted(range(len(numels)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def erk_densities(shapes: Sequence[Sequence[int]], density: float) -> list[float]:
    """Erdos-Renyi-kernel densities (Evci et al. 2020, RigL, Sec. 3; ``sparse_utils.py``).

    A tensor of shape (n_out, n_in, kh, kw) gets density eps * sum(shape) / prod(shape), with
    eps chosen so that the densities average to ``density`` over all weights; a tensor whose
    density would exceed 1 is made dense and eps is solved again for the others (the
    tensors with the largest ratio first, as in the RigL code).
    """
    numels = [math.prod(s) for s in shapes]
    raw = [sum(s) / n for s, n in zip(shapes, numels)]
    dense: set[int] = set()
    while True:
        sparse = [i for i in range(len(shapes)) if i not in dense]
        budget = density * sum(numels) - sum(numels[i] for i in dense)
        eps = budget / sum(raw[i] * numels[i] for i in sparse) if sparse else 0.0
        top = max((raw[i] for i in sparse), default=0.0)
        if eps * top <= 1:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        dense |= {i for i in sparse if raw[i] == top}


def erk_counts(shapes: Sequence[Sequence[int]], density: float) -> list[int]:
    """Active counts per tensor with ERK densities, summing exactly to
    ``round(density * total)`` (largest-remainder rounding, no tensor above its size)."""
    numels = [math.prod(s) for s in shapes]
    quotas = [d * n for d, n in zip(erk_densities(shapes, density), numels)]
    counts = [min(n, int(q)) for q, n in zip(quotas, numels)]
    order = sorted(range(len(numels)), key=lambda i: (-(quotas[i] - counts[i]), i))
    left = round(density * sum(numels)) - sum(counts)
    for i in order:
        if left <= 0:
            break
        if counts[i] < numels[i]:
            counts[i] += 1
            left -= 1
    return counts


# official main.py, mnist_mlp: LeNet-300-100's 10 x 100 output layer, and the sparsity that
# layer stops at when the target is above it (the official compressed baseline's rule)
OUTPUT_LAYER, OUTPUT_SPARSITY = (10, 100), 0.9


def protected_sparsities(shapes: Sequence[Sequence[int]], sparsity: float) -> list[float]:
    """Per-tensor sparsities with the official code's output-layer rule: above s = 0.9, the
    10 x 100 output layer (:data:`OUTPUT_LAYER`) keeps sparsity 0.9 (100 weights) and the other
    tensors share the rest of the budget, (1 - s) * total - 100 weights, at one common
    sparsity; otherwise (or without such a layer) every tensor at ``sparsity``."""
    numels = [math.prod(s) for s in shapes]
    top = [tuple(s) == OUTPUT_LAYER for s in shapes]
    if sparsity <= OUTPUT_SPARSITY or not any(top) or all(top):
        return [sparsity] * len(numels)
    top_n = sum(n for n, t in zip(numels, top) if t)
    available = (1 - sparsity) * sum(numels) - (1 - OUTPUT_SPARSITY) * top_n
    rest = 1 - available / (sum(numels) - top_n)
    return [OUTPUT_SPARSITY if t else rest for t in top]


def grouped_counts(numels: Sequence[int], sparsities: Sequence[float]) -> list[int]:
    """Exact active counts per tensor when tensors may have different sparsities: per group of
    tensors with one sparsity, :func:`exact_counts` at that group's density."""
    counts = [0] * len(numels)
    for s in dict.fromkeys(sparsities):
        group = [i for i, g in enumerate(sparsities) if g == s]
        for i, c in zip(group, exact_counts([numels[i] for i in group], 1.0 - s)):
            counts[i] = c
    return counts


def random_mask(numel: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """A flat bool mask with exactly ``count`` True entries at uniformly random positions."""
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[torch.randperm(numel, generator=generator)[:count]] = True
    return mask


@dataclass
class SparseTensor:
    """One sparse weight: its name, its module and (through the module) weight and mask."""

    name: str
    module: nn.Module

    @property
    def weight(self) -> nn.Parameter:
        weight = self.module.weight
        assert isinstance(weight, nn.Parameter)
        return weight

    @property
    def mask(self) -> torch.Tensor:
        return getattr(self.module, MASK)

    def set_mask(self, mask: torch.Tensor) -> None:
        """Replace the mask in place (keeping the buffer object) after checking it."""
        if mask.dtype != torch.bool or mask.shape != self.weight.shape:
            raise MaskError(f"{self.name}: mask must be bool of shape {tuple(self.weight.shape)}")
        self.mask.copy_(mask)


class Masks:
    """The sparse tensors of a model and the operations that keep them sparse."""

    def __init__(self, model: nn.Module, names: Iterable[str] | None = None):
        self.model = model
        modules = dict(model.named_modules())
        names = default_sparse_names(model) if names is None else list(names)
        missing = [n for n in names if n not in modules]
        if missing:
            raise MaskError(f"no such module(s): {', '.join(missing)}")
        self.tensors = [SparseTensor(n, modules[n]) for n in names]
        for t in self.tensors:
            if not hasattr(t.module, MASK):
                t.module.register_buffer(MASK, torch.ones_like(t.weight, dtype=torch.bool))
        # each mask as its weight's dtype, and what it was made from (see float_masks)
        self._float: list[torch.Tensor] = []
        self._float_from: list[tuple[torch.Tensor, int, torch.dtype]] = []

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def weights(self) -> list[nn.Parameter]:
        return [t.weight for t in self.tensors]

    @property
    def masks(self) -> list[torch.Tensor]:
        return [t.mask for t in self.tensors]

    @property
    def numels(self) -> list[int]:
        return [t.weight.numel() for t in self.tensors]

    def init_uniform(self, sparsity: float, generator: torch.Generator) -> None:
        """The same sparsity in every tensor, exact counts, random positions (official code)."""
        self.init_counts(exact_counts(self.numels, 1.0 - sparsity), generator)

    def init_erk(self, sparsity: float, generator: torch.Generator) -> None:
        """Erdos-Renyi-kernel densities (RigL paper), exact counts, random positions."""
        shapes = [tuple(w.shape) for w in self.weights]
        self.init_counts(erk_counts(shapes, 1.0 - sparsity), generator)

    def init_protected(self, sparsity: float, generator: torch.Generator) -> None:
        """Uniform, except the official output-layer rule (:func:`protected_sparsities`)."""
        shapes = [tuple(w.shape) for w in self.weights]
        self.init_counts(
            grouped_counts(self.numels, protected_sparsities(shapes, sparsity)), generator
        )

    def init_counts(self, counts: Sequence[int], generator: torch.Generator) -> None:
        """Random masks with the given active count per tensor; zero the inactive weights."""
        for t, k in zip(self.tensors, counts):
            t.set_mask(
                random_mask(t.weight.numel(), k, generator).view_as(t.weight).to(t.mask.device)
            )
        self.apply_()

    def float_masks(self) -> list[torch.Tensor]:
        """Each mask as a tensor of its weight's dtype (1.0 active, 0.0 inactive), made again
        only when a mask changed: another buffer, or an in-place write to it (torch counts
        those in the tensor's version). Multiplying by it is multiplying by the bool mask,
        bit for bit, without converting the mask at every step."""
        masks, weights = self.masks, self.weights
        now = [(m, m._version, w.dtype) for m, w in zip(masks, weights)]
        same = len(now) == len(self._float_from) and all(
            a is b and v == u and d == e for (a, v, d), (b, u, e) in zip(now, self._float_from)
        )
        if not same:
            self._float = [m.to(w.dtype) for m, w in zip(masks, weights)]
            self._float_from = now
        return self._float

    @torch.no_grad()
    def apply_(self) -> None:
        """Zero every inactive weight (call after each optimizer step)."""
        if self.tensors:
            torch._foreach_mul_(list(self.weights), self.float_masks())  # type: ignore[arg-type]

    @torch.no_grad()
    def mask_grads_(self) -> None:
        """Zero the gradients of inactive weights (call before each optimizer step)."""
        pairs = [
            (w.grad, m) for w, m in zip(self.weights, self.float_masks()) if w.grad is not None
        ]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    def active_counts(self) -> list[int]:
        return [int(m.sum()) for m in self.masks]

    def total_active(self) -> int:
        return sum(self.active_counts())

    def report(self) -> dict:
        """Per-tensor and global density of the sparse tensors."""
        counts, numels = self.active_counts(), self.numels
        return {
            "tensors": [
                {
                    "name": t.name,
                    "shape": list(t.weight.shape),
                    "numel": n,
                    "active": c,
                    "density": c / n,
                }
                for t, c, n in zip(self.tensors, counts, numels)
            ],
            "sparse_numel": sum(numels),
            "sparse_active": sum(counts),
            "density": sum(counts) / max(1, sum(numels)),
        }


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters of ``model``: all positions, and those that are non-zero capable
    (active): masked tensors count their active entries, every other trainable tensor in full."""
    masked = {id(m.weight): getattr(m, MASK) for m in model.modules() if hasattr(m, MASK)}
    total = active = sparse = 0
    for p in model.parameters():
        if not p.requires_grad:
            continue
        total += p.numel()
        if id(p) in masked:
            sparse += p.numel()
            active += int(masked[id(p)].sum())
        else:
            active += p.numel()
    return {"total": total, "active": active, "sparse_positions": sparse, "dense": total - sparse}
