"""The threshold-against-top-K measurement (``python -m dsr bench --prune-rules``): both rules
start from the same state and prune the same weights, so the times compare one update with
another of the same volume; the file holds the machine and one row per case."""

from __future__ import annotations

import json

import pytest
import torch

from dsr import bench

LENET = (("LeNet-300-100", bench.lenet_weights, 0.9, 600),)


def test_both_rules_prune_the_same_np_weights_from_the_same_state():
    """Set up as the measurement sets them up, one update of each rule drops exactly the Np
    smallest active weights: the same positions, so the same masks after the prune."""
    rules = {
        r: bench.realloc_method(bench.lenet_weights, "dsr", 600, "cpu", 0.9, prune_rule=r)
        for r in ("threshold", "topk")
    }
    for m in rules.values():
        bench.Snapshot(m).restore()  # as before every timed update: H set from the weights
    before = [k.clone() for k in rules["topk"].masks.masks]
    for a, b in zip(rules["threshold"].masks.weights, rules["topk"].masks.weights):
        assert torch.equal(a, b)
    pruned = {r: m.prune() for r, m in rules.items()}
    for p, q in zip(pruned["threshold"], pruned["topk"]):
        assert torch.equal(p.sort().values, q.sort().values)
    assert sum(len(p) for p in pruned["topk"]) == 600
    active = torch.cat([w.detach()[k].abs() for w, k in zip(rules["topk"].masks.weights, before)])
    dropped = torch.cat(
        [w.detach().view(-1)[p].abs() for w, p in zip(rules["topk"].masks.weights, pruned["topk"])]
    )
    assert int((dropped == 0).sum()) == 600  # pruned weights are zeroed
    kept_min = torch.cat(
        [
            w.detach()[k].abs()
            for w, k in zip(rules["topk"].masks.weights, rules["topk"].masks.masks)
        ]
    ).min()
    assert float(kept_min) >= float(active.kthvalue(600).values)


def test_a_measurement_file_holds_the_machine_and_a_row_per_case(tmp_path):
    path = tmp_path / "rules.json"
    bench.write_prune_rules(path, repeats=1, cases=LENET, log=lambda _: None)
    data = json.loads(path.read_text())
    assert {"cpu", "threads", "torch", "code_commit", "measured"} <= set(data["machine"])
    (row,) = data["rows"]
    assert (row["network"], row["sparsity"], row["np"], row["moved"], row["moved_threshold"]) == (
        "LeNet-300-100", 0.9, 600, 600, 600,
    )  # fmt: skip
    assert row["sparse_positions"] == 784 * 300 + 300 * 100 + 100 * 10
    assert row["active"] == round(0.1 * row["sparse_positions"])
    assert row["topk_over_threshold"] == row["topk_ms"] / row["threshold_ms"] > 0
    assert bench.load_prune_rules(path) == data


def test_an_np_above_the_active_weights_is_refused(tmp_path):
    with pytest.raises(ValueError, match="s = 0.99: Np 30000 >= active weights"):
        bench.measure_prune_rules(
            1, cases=(("LeNet-300-100", bench.lenet_weights, 0.99, 30_000),), log=lambda _: None
        )
