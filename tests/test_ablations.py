"""The ablation options: where DSR regrows, top-K pruning, the exploration window, and the
official output-layer rule as an initial mask. Each default is the official behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsr.config import ConfigError, RunConfig, config_hash, preset
from dsr.masks import grouped_counts, protected_sparsities
from dsr.methods import sparsify
from dsr.models import create_model
from dsr.results import method_config
from tests.method_toys import toy, train_steps

LENET = [(300, 784), (100, 300), (10, 100)]
RUNS = Path(__file__).resolve().parent.parent / "data" / "runs"


def lenet():
    torch.manual_seed(0)
    return create_model("lenet300")  # all three layers sparse, as in the official code


# --- the official output-layer rule as an initial mask ----------------------------------------
def test_protected_sparsities_keep_the_output_layer_at_100_weights_and_the_total():
    numels = [a * b for a, b in LENET]
    for s in (0.95, 0.98, 0.99):
        counts = grouped_counts(numels, protected_sparsities(LENET, s))
        assert counts[2] == 100
        assert sum(counts) == round((1 - s) * sum(numels))
        assert counts[0] / numels[0] == pytest.approx(counts[1] / numels[1], abs=1e-4)
    assert protected_sparsities(LENET, 0.9) == [0.9] * 3  # at and below 0.9: uniform
    assert protected_sparsities([(64, 3, 3, 3), (64, 64, 3, 3)], 0.99) == [0.99] * 2


@pytest.mark.parametrize("method", ["static", "set", "deepr", "dsr"])
def test_protect_output_initial_masks(method):
    model = lenet()
    m = sparsify(model, method, sparsity=0.99, steps_per_epoch=10, sparse_init="protect_output")
    uniform = sparsify(lenet(), method, sparsity=0.99, steps_per_epoch=10)
    assert m.masks.active_counts()[2] == 100
    assert uniform.masks.active_counts()[2] == 10
    assert m.masks.total_active() == uniform.masks.total_active() == 2662
    for w, mask in zip(m.masks.weights, m.masks.masks):
        assert bool((w[~mask] == 0).all())


def test_protect_output_is_refused_where_there_is_no_such_layer():
    with pytest.raises(ConfigError, match="no such layer"):
        preset("wrn28_2-cifar10", "smoke", method="static", sparse_init="protect_output")


# --- where DSR regrows ------------------------------------------------------------------------
def grown_and_pruned(regrowth: str, steps: int = 120):
    model, opt, m = toy("dsr", np_target=300, realloc_schedule="0:20", regrowth=regrowth)
    initial = m.masks.active_counts()
    events = train_steps(model, opt, m, steps)
    assert events, "no reallocation happened"
    return m, initial, events


@pytest.mark.parametrize("regrowth", ["paper", "within", "anti", "uniform"])
def test_every_regrowth_conserves_the_total(regrowth):
    m, initial, events = grown_and_pruned(regrowth)
    for e in events:
        assert e["grown"] == e["pruned"] == sum(e["pruned_per_tensor"])
        assert sum(e["active"]) == sum(initial)
    assert m.masks.total_active() == sum(initial)


def test_within_regrowth_moves_nothing_across_tensors():
    m, initial, events = grown_and_pruned("within")
    assert any(e["pruned"] > 0 for e in events)
    for e in events:
        assert e["grown_per_tensor"] == e["pruned_per_tensor"]
        assert e["active"] == initial


def test_paper_regrowth_does_move_weights_across_tensors():
    """The contrast that makes ``within`` an ablation: the default changes per-tensor counts."""
    _, initial, events = grown_and_pruned("paper")
    assert events[-1]["active"] != initial


@pytest.mark.parametrize("regrowth", ["anti", "uniform"])
def test_anti_and_uniform_split_the_regrowth_by_their_weights(regrowth):
    model, opt, m = toy("dsr", np_target=300, realloc_schedule="0:20", regrowth=regrowth)
    numels = m.masks.numels
    # make the three tensors differ: empty most of the first one's active weights
    with torch.no_grad():
        t0 = m.masks.tensors[0]
        keep = t0.mask.view(-1).nonzero().view(-1)[:200]
        t0.mask.view(-1).zero_()
        t0.mask.view(-1)[keep] = True
        m.masks.apply_()
    pruned = m.prune()
    surviving = m.masks.active_counts()
    grown = m.regrow(pruned)
    total = sum(len(p) for p in pruned)
    assert sum(grown) == total > 0
    weights = [n - a for n, a in zip(numels, surviving)] if regrowth == "anti" else [1, 1, 1]
    for g, w in zip(grown, weights):
        assert abs(g - total * w / sum(weights)) < 1  # largest remainder: within one


# --- top-K pruning ----------------------------------------------------------------------------
def test_topk_prunes_exactly_the_np_smallest_active_weights():
    model, opt, m = toy("dsr", np_target=250, prune_rule="topk")
    w = torch.cat([t.weight.detach().view(-1) for t in m.masks.tensors]).abs()
    mask = torch.cat([t.mask.view(-1) for t in m.masks.tensors])
    cut = w[mask].sort().values[249]
    offsets = [0, *torch.tensor(m.masks.numels).cumsum(0).tolist()[:-1]]
    pruned = torch.cat([p + o for p, o in zip(m.prune(), offsets)])
    assert torch.equal(pruned.sort().values, ((w <= cut) & mask).nonzero().view(-1))
    assert m.last_cut == float(cut)


def test_topk_prunes_np_at_every_reallocation_and_logs_its_cut():
    model, opt, m = toy("dsr", np_target=250, realloc_schedule="0:20", prune_rule="topk")
    events = train_steps(model, opt, m, 100)
    assert [e["pruned"] for e in events] == [250] * 5
    assert [e["grown"] for e in events] == [250] * 5
    assert all(e["threshold"] == e["next_threshold"] > 0 for e in events)


# --- the exploration window -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["dsr", "set"])
def test_realloc_start_keeps_the_masks_static_before_it(method):
    model, opt, m = toy(method, realloc_schedule="0:10", realloc_start=2, realloc_stop=4)
    initial = [x.clone() for x in m.masks.masks]
    events = train_steps(model, opt, m, 250)  # 5 epochs of 50 steps
    assert events and {e["epoch"] for e in events} == {2, 3}
    assert min(e["step"] for e in events) == 110  # the first multiple of P in epoch 2
    assert len(events) == 10
    assert any(bool((a != b).any()) for a, b in zip(initial, m.masks.masks))


def test_realloc_start_must_lie_before_the_stop():
    with pytest.raises(ConfigError, match="realloc_start"):
        RunConfig(realloc_start=90, realloc_stop=90)
    with pytest.raises(ConfigError, match="realloc_start"):
        RunConfig(realloc_start=-1)


# --- configs, specs and hashes ----------------------------------------------------------------
@pytest.mark.parametrize(
    "field,value",
    [("regrowth", "within"), ("prune_rule", "topk"), ("realloc_start", 10)],
)
@pytest.mark.parametrize("method", ["static", "deepr", "pruning"])
def test_dsr_only_options_are_refused_elsewhere(method, field, value):
    with pytest.raises(ConfigError, match=f"{field} .* is not an option of {method}"):
        preset("lenet300-mnist", "smoke", method=method, sparsity=0.9, **{field: value})


def test_kernel_granularity_runs_only_the_papers_rule():
    with pytest.raises(ConfigError, match="granularity 'kernel'"):
        preset("wrn28_2-cifar10", "smoke", method="dsr", granularity="kernel", regrowth="within")


def test_a_spec_can_set_fields():
    base = {"protocol": "lenet300-mnist", "budget": "smoke", "fields": {}}
    cfg = method_config(base, "dsr:regrowth=within+realloc_stop=1", 0.99, 3)
    assert (cfg.regrowth, cfg.realloc_stop, cfg.sparsity, cfg.seed) == ("within", 1, 0.99, 3)
    cfg = method_config(base, "static:sparse_init=protect_output", 0.99, 0)
    assert cfg.sparse_init == "protect_output"
    with pytest.raises(ConfigError, match="unknown config field"):
        method_config(base, "dsr:regrowht=within", 0.9, 0)
    with pytest.raises(ConfigError, match="expected name:field=value"):
        method_config(base, "dsr:regrowth=within+sparsity=0.5", 0.9, 0)
    with pytest.raises(ConfigError, match="regrowth must be"):
        method_config(base, "dsr:regrowth=sideways", 0.9, 0)


def test_the_new_fields_leave_every_committed_hash_as_it_was():
    folders = sorted(p for p in RUNS.iterdir() if (p / "config.json").exists())
    assert len(folders) > 100
    for folder in folders:
        cfg = RunConfig(**json.loads((folder / "config.json").read_text()))
        assert config_hash(cfg) == folder.name
    defaults = RunConfig()
    assert (defaults.regrowth, defaults.prune_rule, defaults.realloc_start) == (
        "paper",
        "threshold",
        0,
    )
