"""ImageNet (or any image folder) streamed from disk by DataLoader workers.

ImageNet does not fit in memory, so unlike :class:`dsr.data.Data` this reads JPEGs per batch
with torchvision's ``ImageFolder`` layout: ``<DSR_DATA_ROOT>/imagenet/{train,val}/<class>/*``
(the usual preparation of ILSVRC-2012, with the validation images moved into class folders).
It offers the same interface as ``Data`` (``n_train``, ``n_test``, ``subset``, ``to``,
``steps_per_epoch``, ``batches``), so the one training loop runs on both.

Augmentation is the standard ResNet recipe the paper's ImageNet runs used: for training a
random resized crop to ``size`` (scale 0.08-1, aspect 3/4-4/3) and a horizontal flip; for
validation a resize of the shorter side to ``size * 256 / 224`` and a centre crop to ``size``;
then ImageNet's channel means and stds, applied on the training device to uint8 batches (a
quarter of the bytes to copy). ``size`` is 224 unless the config's ``image_size`` says
otherwise.

Determinism: the order of an epoch comes from a generator seeded by (seed, epoch) as for
``Data``; every example's crop and flip draw from the torch RNG seeded by (seed, epoch,
example index), inside :func:`torch.random.fork_rng`. So an example is augmented the same way
whatever the number of loader workers or processes, and a resumed run sees the batches of an
uninterrupted one. Subsets (``train_subset``) are drawn stratified by class with a fixed seed
(:func:`dsr.data.stratified_indices`), as for ``Data``: never the first files of the sorted list,
which would all be of the first classes.

The checksum recorded with a run is that of the file list (relative paths and labels), not of
the 150 GB of image bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dsr.data_common import (
    FROM_ENV,
    DataAccess,
    data_root,
    epoch_order,
    normalise,
    shard_bounds,
    stratified_indices,
)
from dsr.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SeededImages(torch.utils.data.Dataset):
    """The images of a file list; item ``(index, seed)`` is image ``index`` transformed with
    the torch RNG seeded by ``seed`` (the caller's RNG state is left as it was)."""

    def __init__(self, samples: list[tuple[str, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import default_loader

        index, seed = key
        path, label = self.samples[index]
        image = default_loader(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image), label  # (3, size, size) uint8


def transforms(size: int, train: bool):
    """The paper's (standard ResNet) augmentation, ending in uint8 tensors."""
    from torchvision import transforms as T

    if train:
        return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.PILToTensor()])
    return T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.PILToTensor()])


def stratified(items: list[tuple[str, int]], k: int) -> list[tuple[str, int]]:
    """``k`` of the ``(path, label)`` items drawn stratified by label (all when ``k`` is 0 or
    too large), in the list's order."""
    idx = stratified_indices(torch.tensor([label for _, label in items]), k)
    return items if idx is None else [items[i] for i in idx.tolist()]


@dataclass
class ImageFolderData:
    """Train and validation file lists, streamed with augmentation; the ``Data`` interface."""

    variant: str
    train_samples: list[tuple[str, int]]
    test_samples: list[tuple[str, int]]
    checksum: str
    size: int = 224
    workers: int = 0
    device: torch.device = torch.device("cpu")
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def n_train(self) -> int:
        return len(self.train_samples)

    @property
    def n_test(self) -> int:
        return len(self.test_samples)

    def subset(self, train: int, test: int) -> ImageFolderData:
        """``train`` / ``test`` examples drawn stratified by class (0 keeps all)."""
        return replace(
            self,
            train_samples=stratified(self.train_samples, train),
            test_samples=stratified(self.test_samples, test),
        )

    def to(self, device: torch.device | str) -> ImageFolderData:
        return replace(self, device=torch.device(device))

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-self.n_train // batch_size)

    def batches(
        self,
        batch_size: int,
        *,
        train: bool,
        epoch: int = 0,
        seed: int = 0,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches, as :meth:`dsr.data.Data.batches` (same order rule, same sharding)."""
        samples = self.train_samples if train else self.test_samples
        n = len(samples)
        order = epoch_order(n, train, epoch, seed)[0].tolist()
        base = (1_000_003 * seed + epoch) * 4_000_037  # one seed per (seed, epoch, example)
        plan = []
        for i in range(0, n, batch_size):
            lo, hi = shard_bounds(min(batch_size, n - i), *shard)
            plan.append([(j, base + j) for j in order[i + lo : i + hi]])
        loader = torch.utils.data.DataLoader(
            SeededImages(samples, transforms(self.size, train)),
            batch_sampler=plan,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # leaves the global RNG alone
        )
        for xb, yb in loader:  # (B, 3, size, size) uint8, (B,)
            xb = xb.to(self.device, non_blocking=True)
            yield normalise(xb, self.mean, self.std), yb.to(self.device, non_blocking=True)


def file_list_checksum(*lists: list[tuple[str, int]], root: Path) -> str:
    h = hashlib.sha256()
    for samples in lists:
        for path, label in samples:
            h.update(f"{os.path.relpath(path, root)}\t{label}\n".encode())
        h.update(b"--\n")
    return h.hexdigest()[:16]


def load_imagenet(model_input: tuple[int, ...], access: DataAccess = FROM_ENV) -> ImageFolderData:
    """ImageNet from ``<DSR_DATA_ROOT>/imagenet/{train,val}``, cropped to the model's input size
    (``model_input``, e.g. ``(3, 224, 224)``)."""
    from torchvision.datasets import ImageFolder

    root = data_root() / "imagenet"
    missing = [s for s in ("train", "val") if not (root / s).is_dir()]
    if missing:
        raise DataError(
            f"ImageNet not found: no {root}/{missing[0]} folder "
            "(set DSR_DATA_ROOT to a folder holding imagenet/train and imagenet/val)"
        )
    try:
        train, val = ImageFolder(str(root / "train")), ImageFolder(str(root / "val"))
    except (OSError, RuntimeError) as e:
        reason = " ".join(str(e).split())
        raise DataError(f"ImageNet under {root} is not usable: {reason}") from None
    if train.classes != val.classes:
        raise DataError(f"ImageNet under {root}: train and val have different class folders")
    return ImageFolderData(
        "imagenet",
        train.samples,
        val.samples,
        file_list_checksum(train.samples, val.samples, root=root),
        size=model_input[-1],
        workers=access.workers(),  # DSR_LOADER_WORKERS, else min(8, CPU cores)
    )


def make_image_folder(
    root: Path, classes: int = 10, train_per_class: int = 4, val_per_class: int = 2, size: int = 64
) -> Path:
    """Write a tiny ImageFolder data set ``root/{train,val}/<class>/<i>.png`` for tests: each
    class a colour with noise, so a model can learn it. Returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (classes, 3))
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"class{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.integers(-60, 61, (size, size, 3))
                pixels = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)  # (H, W, 3)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root
