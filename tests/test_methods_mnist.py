"""A short real run of each method on MNIST learns (LeNet-300-100, s = 0.9)."""

from __future__ import annotations

import pytest

from dsr.config import preset
from dsr.runs import run
from tests.conftest import needs_mnist

SUBSET = dict(train_subset=3000, test_subset=1000, sparsity=0.9)
CASES = {
    "set": dict(epochs=1, realloc_schedule="0:10"),
    "deepr": dict(epochs=1),
    "rigl": dict(epochs=1, rigl_update_every=10),
    "snfs": dict(epochs=2),
    # 1-epoch dense source, prunes at the end of epochs 0 and 1, one epoch of fine-tuning
    "pruning": dict(
        epochs=3, prune_every=1, prune_times=2, source_epochs=1, source_lr_schedule="0:0.1"
    ),
    # the preset names the protocol's 100-epoch dsr run as the source: ask for a 1-epoch one
    "static_replica": dict(epochs=1, realloc_schedule="0:10", source_epochs=1),
}


@needs_mnist
@pytest.mark.parametrize("method", list(CASES))
def test_a_short_mnist_run_learns(method):
    """1-2 epochs on 3,000 MNIST images: test accuracy on 1,000 far above chance (> 75 %),
    and the run ends at sparsity 0.9."""
    cfg = preset("lenet300-mnist", "paper", method=method, **SUBSET, **CASES[method])
    rec = run(cfg, progress=False)
    assert rec.summary["final_test_acc"] > 75.0
    assert rec.summary["density"]["density"] == pytest.approx(0.1, abs=1e-4)
