"""What the in-memory data sets (:mod:`dsr.data`) and the streamed image folders
(:mod:`dsr.imagefolder`) share: where data lives, whether it may be downloaded, the draw of
every subset and of each epoch's order, sharding, and normalisation. Both import it; neither
imports the other at module level.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from dsr.errors import DataError

PROJECT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("DSR_DATA_ROOT", PROJECT / "data"))


def cache_root() -> Path:
    return Path(os.environ.get("DSR_CACHE", PROJECT / "data" / "cache"))


def download_allowed() -> bool:
    return os.environ.get("DSR_DOWNLOAD", "0").lower() in ("1", "true", "yes")


def default_loader_workers() -> int:
    return int(os.environ.get("DSR_LOADER_WORKERS", min(8, os.cpu_count() or 1)))


@dataclass(frozen=True)
class DataAccess:
    """How data is reached, not what it is (so not part of a run's config), passed down to
    the loaders as an argument (``dsr.train.Runtime.data``; the command line's ``--download``
    and ``--loader-workers``). A field left at None takes the environment's value when the
    data is loaded: ``DSR_DOWNLOAD=1`` allows a download, ``DSR_LOADER_WORKERS`` sets the
    streaming workers (default min(8, CPU cores))."""

    download: bool | None = None  # may torchvision download a missing MNIST / CIFAR-10?
    loader_workers: int | None = None  # DataLoader processes for streamed data (imagenet)

    def may_download(self) -> bool:
        return download_allowed() if self.download is None else self.download

    def workers(self) -> int:
        return default_loader_workers() if self.loader_workers is None else self.loader_workers


SUBSET_SEED = 0  # the draw of every subset, the same for every run and seed


def stratified_indices(
    labels: torch.Tensor, n: int, seed: int = SUBSET_SEED
) -> torch.Tensor | None:
    """Indices of ``n`` examples, ``n // C`` of each of the C classes in ``labels`` and one more
    of ``n % C`` classes drawn at random, each class's examples drawn at random; in the data's
    order. ``None`` when ``n`` is 0 or not below ``len(labels)`` (everything is kept).

    The draw depends only on the labels, ``n`` and ``seed``, so every run of a budget sees the
    same subset. A class with fewer examples than its share is a :class:`DataError`.
    """
    if not n or n >= len(labels):
        return None
    labels = torch.as_tensor(labels).cpu()
    classes = torch.unique(labels)
    g = torch.Generator().manual_seed(seed)
    share = torch.full((len(classes),), n // len(classes), dtype=torch.long)
    share[torch.randperm(len(classes), generator=g)[: n % len(classes)]] += 1
    picked = []
    for c, k in zip(classes.tolist(), share.tolist()):
        members = torch.nonzero(labels == c).flatten()
        if k > len(members):
            raise DataError(
                f"a subset of {n} needs {k} examples of class {c}; it has {len(members)}"
            )
        picked.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.sort(torch.cat(picked)).values


def epoch_order(n: int, train: bool, epoch: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """The order of ``n`` examples in an epoch (random for training, from a generator seeded
    by (seed, epoch); as stored for testing) and that generator, for what else is drawn."""
    g = torch.Generator().manual_seed(1_000_003 * seed + epoch)
    return (torch.randperm(n, generator=g) if train else torch.arange(n)), g


def shard_bounds(size: int, rank: int, world: int) -> tuple[int, int]:
    """Start and end of part ``rank`` of ``size`` items cut into ``world`` contiguous parts
    whose lengths differ by at most one (the first ``size % world`` parts are longer)."""
    q, r = divmod(size, world)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (rank < r)


_STATS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 pixels ``(B, C, H, W)`` to floats with the given channel means and stds."""
    key = (mean, std, x.device)
    if key not in _STATS:  # made once per device: a new GPU tensor per batch would sync
        _STATS[key] = (
            torch.tensor(mean, device=x.device).view(1, -1, 1, 1),
            torch.tensor(std, device=x.device).view(1, -1, 1, 1),
        )
    m, s = _STATS[key]
    return (x.float() / 255.0 - m) / s


FROM_ENV = DataAccess()  # every field from the environment, when the data is loaded
