"""Shared fixtures. Tests use synthetic data or the offline MNIST files, never the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dsr.config import RunConfig

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own run cache and one torch thread (a command-line call in an
    earlier test may have set more); the data root stays what the environment says."""
    torch.set_num_threads(1)
    runs = tmp_path / "runs"
    monkeypatch.setenv("DSR_RUNS", str(runs))
    monkeypatch.delenv("DSR_DOWNLOAD", raising=False)
    return runs


# The data root the suite reads: $DSR_DATA_ROOT, else this repository's data/ (which ships
# MNIST). Skip reasons name it.
DATA_ROOT = Path(os.environ.get("DSR_DATA_ROOT", Path(__file__).resolve().parents[1] / "data"))


def has_mnist() -> bool:
    return (DATA_ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()


needs_mnist = pytest.mark.skipif(not has_mnist(), reason=f"no MNIST under {DATA_ROOT}")


def tiny(**changes) -> RunConfig:
    """A LeNet run on synthetic data that takes well under a second per epoch."""
    base = dict(
        dataset="synthetic",
        epochs=3,
        batch_size=32,
        lr_schedule="0:0.05,2:0.01",
        np_target=50,
        realloc_schedule="0:4,1:8",
        realloc_stop=2,
        sparsity=0.9,
    )
    base.update(changes)
    return RunConfig(**base)
