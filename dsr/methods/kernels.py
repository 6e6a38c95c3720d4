"""DSR at kernel granularity: masks, pruning and regrowth of whole kxk kernels.

The DSR paper also ran DSR with structured sparsity at the level of 3x3 kernels. Here a unit is
one kxk slice ``weight[o, i]`` of a conv (a single weight of a linear layer or a 1x1 conv),
scored by its mean |w|. The official code's kernel variant is not part of the reference
README; what follows is the weight-level rule of :class:`dsr.methods.dsr.DSR` applied to units:

* initial masks: in every tensor the same fraction of units active, exact counts, random;
* prune the active units whose mean |w| is below the global threshold H (a tensor keeps its
  best unit); K, the pruned count compared with Np, counts parameters, not units;
* regrow K parameters as whole units at random inactive units not pruned in this step, split
  across tensors in proportion to their surviving active parameters. Kernels of different
  sizes cannot always share K exactly; 1-weight units (FC, 1x1 convs) take the remainder, so
  the total stays exactly conserved. A model whose sparse tensors mix kernel sizes without any
  1-weight units is refused.
"""

from __future__ import annotations

import torch

from dsr.masks import Masks, exact_counts, random_mask
from dsr.methods.base import split_proportional


def unit_size(weight: torch.Tensor) -> int:
    """Weights per unit: kh * kw for a conv weight ``(out, in, kh, kw)``, 1 otherwise."""
    return weight[0, 0].numel() if weight.dim() > 2 else 1


def check_sizes(masks: Masks) -> list[int]:
    """Unit sizes of the sparse tensors; raise ValueError where K could not be conserved."""
    sizes = [unit_size(w) for w in masks.weights]
    if len(set(sizes)) > 1 and 1 not in sizes:
        raise ValueError(f"kernel granularity needs one kernel size or 1-weight units: {sizes}")
    return sizes


def init_masks(masks: Masks, sparsity: float, generator: torch.Generator) -> None:
    """Uniform sparsity over units in every tensor, exact unit counts, random positions."""
    sizes = check_sizes(masks)
    units = [n // k for n, k in zip(masks.numels, sizes)]
    for t, k, n, c in zip(masks.tensors, sizes, units, exact_counts(units, 1.0 - sparsity)):
        unit_mask = random_mask(n, c, generator)  # (units,)
        t.set_mask(unit_mask[:, None].expand(n, k).reshape(t.weight.shape).to(t.mask.device))
    masks.apply_()


def split_units(total: int, weights: list[int], capacity: list[int], sizes: list[int]) -> list[int]:
    """Units per tensor holding exactly ``total`` parameters, in proportion to ``weights``
    (parameters), at most ``capacity`` units each (see the module docstring).

    One unit size: :func:`split_proportional` of ``total / size`` units. Mixed sizes: each
    kernel tensor takes its share rounded to whole kernels (rounded down where the kernels
    would exceed ``total``), the 1-weight tensors share the rest in proportion.
    """
    if len(set(sizes)) == 1:
        return split_proportional(total // sizes[0], weights, capacity)
    quotas = [total * w / max(1, sum(weights)) for w in weights]
    units = [min(c, round(q / k)) if k > 1 else 0 for q, c, k in zip(quotas, capacity, sizes)]
    while sum(u * k for u, k in zip(units, sizes)) > total:  # rounding up went too far
        i = max(
            (i for i, u in enumerate(units) if u > 0), key=lambda i: units[i] * sizes[i] - quotas[i]
        )
        units[i] -= 1
    ones = [i for i, k in enumerate(sizes) if k == 1]
    rest = total - sum(u * k for u, k in zip(units, sizes))
    extra = split_proportional(rest, [weights[i] for i in ones], [capacity[i] for i in ones])
    for i, e in zip(ones, extra):
        units[i] += e
    return units


@torch.no_grad()
def prune(masks: Masks, threshold: float) -> list[torch.Tensor]:
    """Drop active units with mean |w| < ``threshold``; return the pruned unit indices."""
    pruned = []
    for t in masks.tensors:
        k = unit_size(t.weight)
        w, m = t.weight.view(-1, k), t.mask.view(-1, k)  # (units, k)
        active = m[:, 0].clone()  # (units,)
        score = w.abs().mean(1)  # (units,) mean |w| of each kernel
        drop = active & (score < threshold)
        if bool(drop.sum() == active.sum()) and bool(active.any()):  # never empty a tensor
            drop[torch.where(active, score, -1.0).argmax()] = False
        m[drop] = False
        w[drop] = 0.0
        pruned.append(drop.nonzero().view(-1))
    return pruned


@torch.no_grad()
def grow(method, pruned: list[torch.Tensor]) -> list[int]:
    """Regrow as many parameters as were pruned, as whole units; return parameters per tensor."""
    masks = method.masks
    sizes = [unit_size(w) for w in masks.weights]
    surviving = masks.active_counts()
    total = sum(len(p) * k for p, k in zip(pruned, sizes))
    units = [n // k for n, k in zip(masks.numels, sizes)]
    free = [u - a // k for u, a, k in zip(units, surviving, sizes)]
    capacity = [f - len(p) for f, p in zip(free, pruned)]
    exclude = total <= sum(c * k for c, k in zip(capacity, sizes))
    counts = split_units(total, surviving, capacity if exclude else free, sizes)
    for t, p, g, k in zip(masks.tensors, pruned, counts, sizes):
        if g == 0:
            continue
        m = t.mask.view(-1, k)  # (units, k)
        candidates = ~m[:, 0]
        if exclude:
            candidates[p] = False  # not where we just pruned
        candidates = candidates.nonzero().view(-1)
        pick = candidates[torch.randperm(len(candidates), generator=method.generator)[:g]]
        m[pick] = True
        flat = (pick[:, None] * k + torch.arange(k, device=pick.device)).view(-1)
        method.grow_values(t.weight, flat, method.grow_init)
        if method.reset_momentum:
            method.reset_momentum_at(t.weight, flat)
    return [g * k for g, k in zip(counts, sizes)]
