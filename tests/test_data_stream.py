"""Batches: sharded for data parallelism, augmentation drawn as before, ImageNet streamed from an
image folder (a tiny generated one), and the ResNet-50 / ImageNet smoke profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsr.config import ConfigError, preset
from dsr.data import DataError, load, shard_bounds
from dsr.imagefolder import make_image_folder
from dsr.runs import run


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """10 classes x (4 train + 2 val) PNGs of 64x64 under <root>/imagenet."""
    root = tmp_path_factory.mktemp("data")
    make_image_folder(root / "imagenet")
    return root


@pytest.fixture
def imagenet(folder, monkeypatch):
    monkeypatch.setenv("DSR_DATA_ROOT", str(folder))
    monkeypatch.setenv("DSR_LOADER_WORKERS", "0")
    return load("imagenet", (3, 32, 32))


def collect(data, world: int, **kw) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """For each global batch, the list of the ``world`` ranks' parts."""
    parts = [list(data.batches(8, shard=(r, world), **kw)) for r in range(world)]
    return [list(p) for p in zip(*parts)]


def same_batch(whole: tuple, parts: list[tuple]) -> bool:
    """The parts' inputs and labels, concatenated, are the whole batch's."""
    return all(torch.equal(whole[i], torch.cat([p[i] for p in parts])) for i in (0, 1))


def test_shards_are_contiguous_and_differ_by_at_most_one():
    """Cutting 10 items in 3: [0, 4), [4, 7), [7, 10)."""
    assert [shard_bounds(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]


def test_shards_of_augmented_cifar_batches_make_up_the_global_batch():
    """Concatenated, the 2 ranks' parts of every training batch are the 1-process batch, crops
    and flips included."""
    data = load("synthetic", (3, 32, 32))
    whole = collect(data, 1, train=True, epoch=3, seed=1)
    halves = collect(data, 2, train=True, epoch=3, seed=1)
    assert len(whole) == len(halves) == 64
    for (w,), (a, b) in zip(whole, halves):
        assert torch.equal(w[0], torch.cat([a[0], b[0]])) and torch.equal(
            w[1], torch.cat([a[1], b[1]])
        )


def test_augmentation_is_drawn_in_the_order_of_earlier_versions():
    """Order, then per batch the crop offsets and the flips: the generator stream that runs
    cached before per-epoch drawing used, so their batches are unchanged."""
    from dsr.data import crop_flip, normalise

    data = load("synthetic", (3, 32, 32))
    g = torch.Generator().manual_seed(1_000_003 * 2 + 5)
    order = torch.randperm(512, generator=g)
    for i, (xb, _) in enumerate(data.batches(100, train=True, epoch=5, seed=2)):
        idx = order[i * 100 : (i + 1) * 100]
        dy, dx = torch.randint(0, 9, (2, len(idx)), generator=g)
        flip = (torch.rand(len(idx), generator=g) < 0.5).long()
        expected = normalise(crop_flip(data.train_x[idx], dy, dx, flip), data.mean, data.std)
        assert torch.equal(xb, expected)


def test_image_folder_gives_normalised_crops_of_the_asked_size(imagenet):
    """40 training and 20 validation images, 32x32 crops, ImageNet-normalised floats."""
    assert (imagenet.n_train, imagenet.n_test) == (40, 20)
    x, y = next(imagenet.batches(8, train=True, epoch=0))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert -3 < float(x.min()) and float(x.max()) < 3 and set(y.tolist()) <= set(range(10))
    vx, vy = next(imagenet.batches(20, train=False))
    assert vx.shape == (20, 3, 32, 32) and vy.tolist() == sorted(vy.tolist())


def test_image_folder_augmentation_does_not_depend_on_workers_or_ranks(imagenet):
    """An example's random crop and flip come from (seed, epoch, index): 2 loader workers and
    2 ranks give the batches of 0 workers and 1 rank; another epoch gives other crops."""
    from dataclasses import replace

    base = collect(imagenet, 1, train=True, epoch=1, seed=0)
    workers = collect(replace(imagenet, workers=2), 2, train=True, epoch=1, seed=0)
    for (w,), (a, b) in zip(base, workers):
        assert torch.equal(w[0], torch.cat([a[0], b[0]])) and torch.equal(
            w[1], torch.cat([a[1], b[1]])
        )
    other = collect(imagenet, 1, train=True, epoch=2, seed=0)
    assert not torch.equal(base[0][0][0], other[0][0][0])


def test_image_folder_subsets_are_stratified_over_classes(imagenet):
    """A subset of 10 of the 40 sorted training images holds one of each of the 10 classes."""
    sub = imagenet.subset(10, 0)
    assert sub.n_train == 10 and sub.n_test == 20
    assert sorted(label for _, label in sub.train_samples) == list(range(10))
    where = [imagenet.train_samples.index(item) for item in sub.train_samples]
    assert where == sorted(where)  # in the file list's order


def test_missing_image_folder_is_a_one_line_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DSR_DATA_ROOT", str(tmp_path))
    with pytest.raises(DataError, match="ImageNet not found"):
        load("imagenet", (3, 224, 224))


def test_resnet50_imagenet_protocol_is_the_papers():
    """100 epochs, Np = 400,000, P = 1000/2000/4000/8000 at 0/25/50/75, stop at 95."""
    cfg = preset("resnet50-imagenet", "paper")
    assert (cfg.model, cfg.dataset, cfg.epochs, cfg.np_target) == (
        "resnet50",
        "imagenet",
        100,
        400_000,
    )
    assert cfg.realloc_schedule == "0:1000,25:2000,50:4000,75:8000" and cfg.realloc_stop == 95
    with pytest.raises(ConfigError, match="not offered"):
        preset("resnet50-imagenet", "cpu")


def test_resnet50_smoke_profile_trains_on_the_image_folder(folder, monkeypatch, tmp_path):
    """The smoke profile (32x32 crops) runs DSR on ResNet-50 end to end: it reallocates and
    keeps the number of active parameters."""
    monkeypatch.setenv("DSR_DATA_ROOT", str(folder))
    monkeypatch.setenv("DSR_LOADER_WORKERS", "0")
    rec = run(
        preset("resnet50-imagenet", "smoke", method="dsr", sparsity=0.9), tmp_path, progress=False
    )
    assert rec.summary["data_variant"] == "imagenet" and rec.summary["reallocations"] == 2
    assert len({r["active_params"] for r in rec.metrics()}) == 1
    assert (
        rec.summary["params"]["active"]
        == rec.summary["params"]["dense"] + rec.summary["density"]["sparse_active"]
    )
