"""The FLOPs ledger (dsr.flops): layer sizes, the active counts over training, each method's
extra, and the ledger's place in the runs CSV."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from dsr import flops, results, runs
from dsr.config import RunConfig

LENET_DENSE = 2 * (784 * 300 + 300 * 100 + 100 * 10)


def test_layer_sizes_and_output_positions():
    assert flops.layer_positions("lenet300", 1.0) == (
        ("fc1", 235200, 1),
        ("fc2", 30000, 1),
        ("fc3", 1000, 1),
    )
    wrn = dict((n, p) for n, _, p in flops.layer_positions("wrn28_2", 1.0))
    assert (wrn["conv1"], wrn["blocks.4.conv2"], wrn["blocks.8.conv1"], wrn["fc"]) == (
        32 * 32, 16 * 16, 8 * 8, 1,
    )  # fmt: skip
    assert flops.forward_flops(flops.layer_positions("lenet300", 1.0)) == LENET_DENSE


def fake_record(tmp_path: Path, events: list[dict], steps: int = 1000, **config) -> SimpleNamespace:
    """A finished WRN-28-2 run with a crafted log: two sparse tensors, the others dense."""
    cfg = RunConfig(model="wrn28_2", dataset="cifar10", method="dsr", epochs=2, **config)
    (tmp_path / "reallocations.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    final = events[-1]["active"] if events else [100, 100]
    tensors = [
        {"name": "blocks.0.conv1", "numel": 4608, "active": final[0]},
        {"name": "blocks.8.conv1", "numel": 73728, "active": final[1]},
    ]
    summary = {"density": {"tensors": tensors}, "method_state": {"step": steps}}
    record = SimpleNamespace(path=tmp_path, config=cfg, summary=summary)
    record.reallocations = lambda: events
    return record


def test_the_counts_before_the_first_update_and_after_each(tmp_path):
    """Weights moved from the 8x8 layer to the 32x32 one at step 400: the stretch before costs
    less than the stretch after, each at its own counts."""
    events = [
        {"step": 400, "epoch": 0, "active": [150, 50], "pruned_per_tensor": [10, 60],
         "grown_per_tensor": [60, 10]},
        {"step": 800, "epoch": 1, "active": [150, 50], "pruned_per_tensor": [5, 5],
         "grown_per_tensor": [5, 5]},
    ]  # fmt: skip
    record = fake_record(tmp_path, events)
    assert flops.timeline(record) == [(0, [100, 100]), (400, [150, 50])]
    layers = flops.layer_positions("wrn28_2", 1.0)
    dense_rest = flops.forward_flops(layers) - 2 * (4608 * 1024 + 73728 * 64)
    before = dense_rest + 2 * (100 * 1024 + 100 * 64)
    after = dense_rest + 2 * (150 * 1024 + 50 * 64)
    ledger = flops.ledger(record)
    assert ledger["train_flops"] == pytest.approx(3 * 100 * (400 * before + 600 * after))
    assert ledger["inference_flops"] == pytest.approx(after)
    assert ledger["dense_train_flops"] == pytest.approx(
        3 * 100 * 1000 * flops.forward_flops(layers)
    )


COMMITTED = Path(__file__).resolve().parents[1] / "data" / "runs"


@pytest.fixture(scope="module")
def study():
    """Committed LeNet-300-100 runs at s = 0.9, seed 0."""
    methods = "dense,static,snfs,rigl,deepr,thin_dense,pruning"
    st = results.study("default", "lenet300", "mnist", methods, "0.9", "0", str(COMMITTED))
    assert len(st.done()) == 7, "a committed LeNet-300-100 run at s = 0.9, seed 0 is missing"
    return st


@pytest.fixture(scope="module")
def committed(study):
    return results.flops_rows(study).set_index("label")


def test_committed_runs_cost_what_their_method_says(committed):
    """On LeNet-300-100 every layer has one output position, so a sparse step costs its density
    times a dense one: static 0.1 exactly; SNFS (2 f + f_D) / 3 f_D = 0.4; RigL and DeepR a
    little above 0.1; compressed the dense source's 1 plus its own 48 epochs; thin dense as
    cheap as a sparse network in both columns."""
    x = committed.train_x_dense
    assert x["dense"] == 1.0 and committed.inference_x_dense["dense"] == 1.0
    assert x["static"] == pytest.approx(0.1, abs=1e-9)
    assert x["snfs"] == pytest.approx(0.4, abs=1e-9)
    assert 0.1 < x["rigl"] < 0.11 and 0.1 < x["deepr"] < 0.101
    assert 1 + 0.1 * 0.48 < x["pruning"] < 1.48
    assert committed.inference_x_dense["pruning"] == pytest.approx(0.1, abs=1e-9)
    assert 0.09 < committed.inference_x_dense["thin_dense"] < 0.11


def test_the_runs_csv_carries_each_runs_ledger(tmp_path, study, committed):
    record = study.record("static", 0.9, 0)
    shutil.copytree(record.path, tmp_path / "runs" / record.path.name)
    runs.export_csv(tmp_path / "runs.csv", tmp_path / "runs")
    (row,) = csv.DictReader(open(tmp_path / "runs.csv"))
    assert float(row["train_flops"]) == pytest.approx(committed.train_flops["static"], rel=1e-3)
    assert float(row["inference_flops"]) == pytest.approx(LENET_DENSE * 0.1, rel=1e-3)
