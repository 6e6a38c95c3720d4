"""Data sets as in-memory tensors: MNIST, CIFAR-10, cifar10-jpeg and a synthetic set; ImageNet
streamed from disk (:mod:`dsr.imagefolder`) behind the same interface.

* ``mnist`` and ``cifar10`` are read with torchvision's dataset classes. Files are looked up
  under the data root (environment variable ``DSR_DATA_ROOT``, default the project's ``data/``);
  torchvision downloads only when the user allows it (``DSR_DOWNLOAD=1`` or ``--download``).
  MNIST's four official ``.gz`` files are copied to a writable cache (``DSR_CACHE``, default
  ``data/cache``) where torchvision checks their md5 and unpacks them, offline.
* ``cifar10-jpeg`` is CIFAR-10 with exact labels but JPEG-degraded pixels, read from ``.npz``
  files checked against their ``manifest.json`` sha256 sums. Results on it are labelled
  ``cifar10-jpeg`` and are never comparable with published CIFAR-10 numbers.
* ``synthetic`` is a tiny, learnable set generated from a fixed seed, for tests.

CIFAR augmentation follows the paper: zero-pad 4, random 32x32 crop, horizontal flip, then
normalise; it runs on whole batches of tensors, so loading never dominates a step.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dsr.data_common import (  # noqa: F401  (re-exported: dsr.data.stratified_indices etc.)
    FROM_ENV,
    PROJECT,
    SUBSET_SEED,
    DataAccess,
    cache_root,
    data_root,
    download_allowed,
    epoch_order,
    normalise,
    shard_bounds,
    stratified_indices,
)
from dsr.errors import DataError
from dsr.imagefolder import load_imagenet  # streamed from <DSR_DATA_ROOT>/imagenet

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# Normalisation of the common PyTorch CIFAR-10 recipes (kuangliu/pytorch-cifar), which the
# official DSR code builds on.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


@dataclass
class Data:
    """Train and test tensors plus what is needed to iterate and to record provenance.

    Images are stored as uint8 (CIFAR, ``(N, 3, 32, 32)``) or float (MNIST, ``(N, 784)``,
    already normalised); labels as int64.
    """

    variant: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    checksum: str
    augment: bool = False
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def subset(self, train: int, test: int) -> Data:
        """``train`` / ``test`` examples drawn stratified by class (0 keeps all).

        Never the first n: CIFAR-10's test file is grouped by class, so its first 2,000 images
        are two classes. See :func:`stratified_indices`.
        """
        ti = stratified_indices(self.train_y, train)
        vi = stratified_indices(self.test_y, test)
        tx, ty = (
            (self.train_x, self.train_y) if ti is None else (self.train_x[ti], self.train_y[ti])
        )
        vx, vy = (self.test_x, self.test_y) if vi is None else (self.test_x[vi], self.test_y[vi])
        return Data(self.variant, tx, ty, vx, vy, self.checksum, self.augment, self.mean, self.std)

    def to(self, device: torch.device | str) -> Data:
        return Data(
            self.variant,
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.checksum,
            self.augment,
            self.mean,
            self.std,
        )

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    @property
    def n_test(self) -> int:
        return len(self.test_y)

    def batches(
        self,
        batch_size: int,
        *,
        train: bool,
        epoch: int = 0,
        seed: int = 0,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches; training order and augmentation depend only on (seed, epoch), so a
        run resumed at an epoch boundary sees exactly the batches of an uninterrupted one.

        With ``shard=(rank, world)`` each global batch of ``batch_size`` examples is cut into
        ``world`` contiguous parts and this yields part ``rank``; augmentation is drawn for the
        whole global batch first, so an example looks the same whatever ``world`` is. Order and
        augmentation are drawn on the CPU once per epoch and moved to the data's device in one
        copy: no step waits for the host.
        """
        x, y = (self.train_x, self.train_y) if train else (self.test_x, self.test_y)
        n = len(y)
        order, g = epoch_order(n, train, epoch, seed)
        augment = train and self.augment and bool(self.mean)
        sizes = [min(batch_size, n - i) for i in range(0, n, batch_size)]
        crops = draw_crop_flip(sizes, g) if augment else None  # (3, N): dy, dx, flip
        order = to_device(order, x.device)
        crops = to_device(crops, x.device) if crops is not None else None
        for i in range(0, n, batch_size):
            lo, hi = shard_bounds(min(batch_size, n - i), *shard)
            idx = order[i + lo : i + hi]
            xb = x[idx]
            if self.mean:
                if crops is not None:  # augment
                    xb = crop_flip(xb, *crops[:, i + lo : i + hi])
                xb = normalise(xb, self.mean, self.std)
            yield xb, y[idx]

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-self.n_train // batch_size)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; from the CPU to a GPU through pinned memory, without a host sync."""
    if t.device == device:
        return t
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def draw_crop_flip(sizes: list[int], g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Crop offsets and flips for consecutive batches of ``sizes`` examples: ``(3, N)`` int64
    rows dy, dx, flip. Drawn batch by batch (offsets, then flips), the order in which earlier
    versions drew them inside the loop, so the stream of ``g`` is unchanged."""
    parts = []
    for b in sizes:
        dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=g)
        flip = (torch.rand(b, generator=g) < 0.5).long()
        parts.append(torch.stack([dy, dx, flip]))
    return torch.cat(parts, 1) if parts else torch.zeros(3, 0, dtype=torch.long)


def crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = 4
) -> torch.Tensor:
    """Zero-pad by ``pad``, crop the original size at offsets (dy, dx), flip where ``flip``."""
    b, _, h, w = x.shape  # (B, C, H, W)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None].bool(), cols.flip(1), cols)[:, None, None, :]  # (B,1,1,W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing) for the block's duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def combined_checksum(paths: list[Path]) -> str:
    return hashlib.sha256("".join(sha256(p) for p in paths).encode()).hexdigest()[:16]


# --- the data sets ---------------------------------------------------------------------------


def load_mnist(model_input: tuple[int, ...], access: DataAccess = FROM_ENV) -> Data:
    """MNIST via torchvision, offline from the official .gz files when they are present."""
    from torchvision.datasets import MNIST

    raw = [data_root() / "MNIST" / "raw" / f for f in MNIST_FILES]
    cache = cache_root()
    if all(p.exists() for p in raw):
        copy_mnist(raw, cache / "MNIST" / "raw")
        download = True  # torchvision finds the files and unpacks them
    elif access.may_download():
        download = True
    else:
        raise DataError(
            f"MNIST not found under {data_root()}/MNIST/raw "
            "(set DSR_DATA_ROOT, or allow a download with --download)"
        )
    try:
        with file_lock(cache / "MNIST.lock"):  # concurrent workers unpack once
            train, test = (MNIST(str(cache), train=t, download=download) for t in (True, False))
    except RuntimeError as e:
        raise DataError(f"MNIST files under {cache}/MNIST are corrupt or unreadable: {e}") from None
    files = [cache / "MNIST" / "raw" / f for f in MNIST_FILES]

    def flat(ds) -> torch.Tensor:
        return ((ds.data.float() / 255.0 - MNIST_MEAN) / MNIST_STD).view(len(ds.data), -1)

    return Data(
        "mnist",
        flat(train),
        train.targets.long(),
        flat(test),
        test.targets.long(),
        combined_checksum(files),
    )


def copy_mnist(raw: list[Path], cache: Path) -> None:
    """Check the official .gz files against torchvision's md5s, then copy them to ``cache``
    (where torchvision unpacks them) unless an identical copy is there already.

    Checked here because torchvision, given a file with the wrong md5, would try to download it.
    """
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import check_integrity

    md5 = dict(MNIST.resources)
    for p in raw:
        if not check_integrity(str(p), md5[p.name]):
            raise DataError(f"MNIST file {p} does not match its md5 in torchvision's MNIST list")
    cache.mkdir(parents=True, exist_ok=True)
    for p in raw:
        target = cache / p.name
        if not check_integrity(str(target), md5[p.name]):
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(p, tmp)
            os.replace(tmp, target)


def load_cifar10(model_input: tuple[int, ...], access: DataAccess = FROM_ENV) -> Data:
    """The real CIFAR-10 via torchvision (downloads only when allowed)."""
    from torchvision.datasets import CIFAR10

    root = data_root()
    try:
        train, test = (
            CIFAR10(str(root), train=t, download=access.may_download()) for t in (True, False)
        )
    except (RuntimeError, OSError) as e:
        raise DataError(
            f"CIFAR-10 not usable under {root}: {' '.join(str(e).split())} "
            "(set DSR_DATA_ROOT, or allow a download with --download)"
        ) from None

    def chw(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32) uint8

    files = sorted((root / "cifar-10-batches-py").glob("*_batch*"))
    return Data(
        "cifar10",
        chw(train.data),
        torch.tensor(train.targets),
        chw(test.data),
        torch.tensor(test.targets),
        combined_checksum(files),
        True,
        CIFAR_MEAN,
        CIFAR_STD,
    )


def load_cifar10_jpeg(model_input: tuple[int, ...], access: DataAccess = FROM_ENV) -> Data:
    """CIFAR-10 with JPEG-degraded pixels from ``<root>/cifar10-jpeg``, checked by sha256."""
    folder = data_root() / "cifar10-jpeg"
    manifest = read_manifest(folder / "manifest.json")
    names = manifest["train_files"] + [manifest["test_file"]]
    for name in names:
        path = folder / name
        if not path.exists():
            raise DataError(f"cifar10-jpeg: missing file {path}")
        if sha256(path) != manifest["sha256"].get(name):
            raise DataError(f"cifar10-jpeg: {path} does not match its sha256 in manifest.json")
    train_x, train_y = read_npz_images(folder, names[:-1])
    test_x, test_y = read_npz_images(folder, names[-1:])
    checksum = hashlib.sha256("".join(manifest["sha256"][n] for n in names).encode()).hexdigest()
    return Data(
        "cifar10-jpeg", train_x, train_y, test_x, test_y, checksum[:16], True, CIFAR_MEAN, CIFAR_STD
    )


def read_manifest(path: Path) -> dict:
    """cifar10-jpeg's ``manifest.json``: file names and their sha256 sums."""
    if not path.exists():
        raise DataError(f"cifar10-jpeg not found: no {path} (set DSR_DATA_ROOT)")
    try:
        manifest = json.loads(path.read_text())
        names = [*manifest["train_files"], manifest["test_file"]]
        ok = all(isinstance(n, str) for n in names) and isinstance(manifest["sha256"], dict)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise DataError(f"cifar10-jpeg: {path} is unreadable or lacks train_files/test_file/sha256")
    return manifest


def read_npz_images(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 from cifar10-jpeg .npz files."""
    xs, ys = [], []
    for name in names:
        try:
            with np.load(folder / name) as a:
                x, y = a["images"], a["labels"]
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise DataError(
                f"cifar10-jpeg: cannot read {folder / name}: {type(e).__name__}"
            ) from None
        if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3) or y.shape != (len(x),):
            raise DataError(
                f"cifar10-jpeg: {folder / name} holds images {x.dtype} {x.shape} and labels "
                f"{y.shape}, not uint8 (N, 32, 32, 3) and (N,)"
            )
        if y.dtype.kind not in "iu" or len(y) and not (0 <= y.min() and y.max() < 10):
            raise DataError(f"cifar10-jpeg: {folder / name} holds labels outside 0..9")
        xs.append(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())  # (N, 3, 32, 32)
        ys.append(torch.from_numpy(y).long())
    return torch.cat(xs), torch.cat(ys)


def load_synthetic(model_input: tuple[int, ...], access: DataAccess = FROM_ENV) -> Data:
    """512 + 256 examples labelled by a fixed random linear teacher: learnable in seconds."""
    g = torch.Generator().manual_seed(1234)
    n, dim = 768, int(np.prod(model_input))
    teacher = torch.randn(dim, 10, generator=g)
    if len(model_input) == 3:  # images: uint8 pixels, normalised per batch like CIFAR
        x = torch.randint(0, 256, (n, *model_input), generator=g, dtype=torch.uint8)
        y = (normalise(x, CIFAR_MEAN, CIFAR_STD).view(n, -1) @ teacher).argmax(1)
        return Data(
            "synthetic",
            x[:512],
            y[:512],
            x[512:],
            y[512:],
            "synthetic-v1",
            True,
            CIFAR_MEAN,
            CIFAR_STD,
        )
    x = torch.randn(n, dim, generator=g)
    y = (x @ teacher).argmax(1)
    return Data("synthetic", x[:512], y[:512], x[512:], y[512:], "synthetic-v1")


DATASETS: dict[str, Callable[[tuple[int, ...], DataAccess], Data]] = {
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar10-jpeg": load_cifar10_jpeg,
    "synthetic": load_synthetic,
    # ImageFolderData: Data's interface, streamed from disk
    "imagenet": load_imagenet,  # type: ignore[dict-item]
}
# The input shape (without batch) each data set gives; a data set not listed here (synthetic)
# adapts to the model.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist": (784,),
    "cifar10": (3, 32, 32),
    "cifar10-jpeg": (3, 32, 32),
}


def load(name: str, model_input: tuple[int, ...], access: DataAccess = FROM_ENV) -> Data:
    """Load a data set by name for a model with input shape ``model_input``; ``access``: may
    it be downloaded, how many workers stream it."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})")
    return DATASETS[name](model_input, access)
