"""Every subset that a protocol x budget uses holds every class, balanced to one example.

CIFAR-10's test file (and the ImageNet file list) is grouped by class, so a subset taken as the
first n examples would hold only the first classes: the labels below are sorted by class on
purpose, with each data set's real class counts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dsr.config import BUDGETS, PROTOCOLS, preset
from dsr.data import Data, DataError, stratified_indices

MNIST_TRAIN = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
CIFAR_TRAIN, CIFAR_TEST = (5000,) * 10, (1000,) * 10

# the class counts of (train, test) of the data set each protocol runs on at each budget
COUNTS = {
    "lenet300-mnist": (MNIST_TRAIN, MNIST_TEST),
    "wrn28_2-cifar10": (CIFAR_TRAIN, CIFAR_TEST),
    "resnet50-imagenet": ((4,) * 10, (2,) * 10),  # the tests' folder (make_image_folder)
}


def sorted_labels(counts: tuple[int, ...]) -> torch.Tensor:
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


def assert_balanced(labels: torch.Tensor, n_classes: int, n: int) -> None:
    counts = torch.bincount(labels, minlength=n_classes)
    assert len(labels) == n
    assert int((counts > 0).sum()) == n_classes, f"classes missing: {counts.tolist()}"
    assert int(counts.max() - counts.min()) <= 1, f"unbalanced: {counts.tolist()}"


def offered():
    for protocol in PROTOCOLS:
        for budget, per in BUDGETS.items():
            if per.get(protocol, {}) is not None:
                yield protocol, budget


@pytest.mark.parametrize(("protocol", "budget"), list(offered()))
def test_every_subset_of_every_protocol_and_budget_holds_every_class(protocol, budget):
    cfg = preset(protocol, budget)
    train, test = (sorted_labels(c) for c in COUNTS[protocol])
    data = Data("sorted", train[:, None].float(), train, test[:, None].float(), test, "-")
    sub = data.subset(cfg.train_subset, cfg.test_subset)
    for n, full, part in (
        (cfg.train_subset, train, sub.train_y),
        (cfg.test_subset, test, sub.test_y),
    ):
        if n:
            assert_balanced(part, 10, n)
        else:  # no subset: the whole split, as it is
            assert torch.equal(part, full)
    # the images travel with their labels
    assert torch.equal(sub.train_x[:, 0].long(), sub.train_y)


def test_a_subset_is_the_same_for_every_call_and_keeps_the_data_order():
    labels = sorted_labels(MNIST_TEST)
    a, b = stratified_indices(labels, 1000), stratified_indices(labels, 1000)
    assert torch.equal(a, b)
    assert torch.equal(a, torch.sort(a).values) and len(torch.unique(a)) == 1000
    assert not torch.equal(a, torch.arange(1000))  # not the first 1000
    assert stratified_indices(labels, 0) is None and stratified_indices(labels, 10_000) is None


def test_a_remainder_goes_to_distinct_classes():
    idx = stratified_indices(sorted_labels(CIFAR_TEST), 1003)
    assert_balanced(sorted_labels(CIFAR_TEST)[idx], 10, 1003)


def test_a_class_too_small_for_its_share_is_a_data_error():
    with pytest.raises(DataError, match="class 1"):
        stratified_indices(sorted_labels((50, 3, 50)), 30)


CIFAR_JPEG = Path(os.environ.get("DSR_DATA_ROOT", "data")) / "cifar10-jpeg" / "test.npz"


@pytest.mark.skipif(not CIFAR_JPEG.exists(), reason="cifar10-jpeg not under $DSR_DATA_ROOT")
def test_the_real_cifar10_jpeg_test_file_is_grouped_by_class_and_a_subset_is_not():
    """The finding behind the stratified draw, on the file itself."""
    import numpy as np

    with np.load(CIFAR_JPEG) as f:
        labels = torch.as_tensor(f["labels"]).long()
    assert set(labels[:2000].tolist()) <= {0, 1}  # the first 2,000 are two classes
    assert_balanced(labels[stratified_indices(labels, 2000)], 10, 2000)
