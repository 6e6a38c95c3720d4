"""The training loop: resume equals uninterrupted bit for bit, the cache, a real MNIST run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from dsr.config import preset
from dsr.runs import load_run, run, run_dir
from dsr.train import train
from tests.conftest import needs_mnist, tiny

PROJECT = Path(__file__).resolve().parents[1]


def final_state(path: Path) -> dict:
    return torch.load(path / "final.pt", weights_only=True)["model"]


def test_resume_in_a_fresh_process_equals_an_uninterrupted_run(tmp_path):
    """k epochs, stop, a new process resumes from the checkpoint: same weights, masks,
    metrics and reallocation log as a straight run, bit for bit (CPU)."""
    cfg = tiny(epochs=4, realloc_stop=3)
    straight = run(cfg, tmp_path / "a", progress=False)
    code = (
        "import sys, torch; torch.set_num_threads(1); from pathlib import Path; "
        "from dsr.runs import run; from tests.conftest import tiny; "
        "cfg = tiny(epochs=4, realloc_stop=3); "
        "r = run(cfg, Path(sys.argv[1]), progress=False, stop_after=int(sys.argv[2])); "
        "print('done' if r else 'stopped')"
    )
    for stop in ("2", "4"):
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "b"), stop],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == ("stopped" if stop == "2" else "done")
    resumed = load_run(cfg, tmp_path / "b")
    a, b = final_state(straight.path), final_state(resumed.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight.metrics() == [
        {**r, "seconds": s["seconds"]} for r, s in zip(resumed.metrics(), straight.metrics())
    ]
    assert straight.reallocations() == resumed.reallocations()
    assert len(straight.reallocations()) > 0


def test_a_cached_run_is_returned_without_training(tmp_path):
    """Asking again for a finished run reads it from disk (no new files, same summary)."""
    cfg = tiny(epochs=1)
    first = run(cfg, tmp_path, progress=False)
    mtime = (first.path / "summary.json").stat().st_mtime_ns
    second = run(cfg, tmp_path, progress=False)
    assert second.summary == first.summary
    assert (second.path / "summary.json").stat().st_mtime_ns == mtime
    assert first.path == run_dir(cfg, tmp_path) and first.path.name == cfg.hash


def test_results_record_config_provenance_and_data_variant(tmp_path):
    """The summary carries config, data variant, code commit, torch version and densities."""
    rec = run(tiny(epochs=1), tmp_path, progress=False)
    s = rec.summary
    assert s["config"] == json.loads((rec.path / "config.json").read_text())
    assert s["data_variant"] == "synthetic" and s["torch"] == torch.__version__
    assert {"code_commit", "code_dirty", "device", "data_checksum"} <= s.keys()
    assert s["params"]["active"] == s["params"]["dense"] + s["density"]["sparse_active"]
    masks = rec.final_masks()
    assert sum(int(m.sum()) for m in masks.values()) == s["density"]["sparse_active"]


def test_dsr_conserves_active_parameters_through_a_whole_run(tmp_path):
    """Every epoch of a DSR run has the same number of active parameters."""
    rec = run(tiny(epochs=3), tmp_path, progress=False)
    actives = {r["active_params"] for r in rec.metrics()}
    assert len(actives) == 1 and rec.summary["reallocations"] > 0


def test_thin_dense_matches_the_sparse_parameter_count(tmp_path):
    """thin_dense picks a width whose dense count is within 1% of the sparse non-zeros."""
    rec = run(tiny(method="thin_dense", epochs=1, sparsity=0.9), tmp_path, progress=False)
    sparse = run(tiny(method="static", epochs=1, sparsity=0.9), tmp_path, progress=False)
    thin, target = rec.summary["params"]["total"], sparse.summary["params"]["active"]
    assert abs(thin - target) / target < 0.01 and rec.summary["width"] < 1


@needs_mnist
def test_a_short_real_mnist_run_learns(tmp_path):
    """LeNet-300-100 with DSR, one epoch on 6,000 MNIST images: test accuracy far above 10%."""
    cfg = preset(
        "lenet300-mnist",
        "paper",
        epochs=1,
        train_subset=6000,
        test_subset=2000,
        realloc_schedule="0:20",
    )
    rec = run(cfg, tmp_path, progress=False)
    assert rec.summary["final_test_acc"] > 85.0
    assert rec.summary["data_variant"] == "mnist" and rec.summary["reallocations"] == 3


def test_training_gives_the_caller_its_global_rng_back(tmp_path):
    """A run seeds and draws from torch's global RNG; the caller's stream goes on as if the run
    had not happened, and the run is the same whatever the caller's state was."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = train(tiny(epochs=1), tmp_path / "a", progress=False)
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(7)
    second = train(tiny(epochs=1), tmp_path / "b", progress=False)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
