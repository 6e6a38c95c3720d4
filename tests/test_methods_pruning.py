"""Compressed sparse (Zhu & Gupta 2017) as the DSR paper ran it."""

from __future__ import annotations

import shutil
from unittest.mock import patch

import pytest
import torch

from dsr.config import ConfigError, preset
from dsr.masks import exact_counts
from dsr.methods import sparsify
from dsr.runs import final_weights, load_run, run
from dsr.train import build
from tests.conftest import tiny
from tests.method_toys import toy_model

PRUNING = dict(method="pruning", epochs=3, prune_every=1, prune_times=2, source_epochs=2)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """A pruning run at s = 0.9 and its dense source, in their own run cache."""
    root = tmp_path_factory.mktemp("runs")
    cfg = tiny(**PRUNING)
    rec = run(cfg, root, progress=False)
    source = load_run(tiny(method="dense", sparsity=0.0, epochs=2), root)
    return rec, source


def test_final_sparsity_is_exactly_s_in_every_tensor(pruned):
    """The final masks have exact_counts(numels, 1 - s) active weights per tensor."""
    rec, _ = pruned
    masks = list(rec.final_masks().values())
    expected = exact_counts([m.numel() for m in masks], 0.1)
    assert [int(m.sum()) for m in masks] == expected
    assert rec.summary["density"]["density"] == pytest.approx(0.1, abs=1e-5)


def test_prunes_at_the_end_of_the_scheduled_epochs_on_the_cubic_schedule(pruned):
    """Prune k at the last step of epoch (k - 1) * prune_every reaches s (1 - (1 - k/n)^3)
    with exact counts."""
    rec, _ = pruned
    events = rec.reallocations()
    steps = 16  # 512 synthetic examples, batch 32
    assert [e["step"] for e in events] == [steps, 2 * steps]
    numels = [m.numel() for m in rec.final_masks().values()]
    for k, e in enumerate(events, start=1):
        target = 0.9 * (1 - (1 - k / 2) ** 3)
        assert e["target_sparsity"] == pytest.approx(target)
        assert e["active"] == exact_counts(numels, 1 - target)


def test_starts_from_the_dense_runs_final_weights(pruned):
    """The cached dense run of the same protocol exists, and the pruning run's initial
    weights are its final weights exactly."""
    rec, source = pruned
    assert source is not None and source.config.epochs == 2
    init = torch.load(rec.path / "init.pt", weights_only=True)["model"]
    final = torch.load(source.path / "final.pt", weights_only=True)["model"]
    assert final.keys() <= init.keys()
    assert all(torch.equal(init[k], final[k]) for k in final)


def test_retraining_a_source_stored_without_weights_gives_the_same_weights(pruned, tmp_path):
    """Without final.pt the source is trained again in memory: same weights bit for bit; they
    are stored as its final.pt, which the next call reads instead of training again."""
    _, source = pruned
    copy = shutil.copytree(source.path, tmp_path / "copy")
    (copy / "final.pt").unlink()
    stored = torch.load(source.path / "final.pt", weights_only=True)["model"]
    record = type(source)(copy, source.config, source.summary)
    again = final_weights(record, torch.device("cpu"))
    assert stored.keys() == again.keys()
    assert all(torch.equal(stored[k], again[k]) for k in stored)
    saved = torch.load(copy / "final.pt", weights_only=True)["model"]
    assert all(torch.equal(stored[k], saved[k]) for k in stored)
    with patch("dsr.train.train", side_effect=AssertionError("trained again")):
        final_weights(record, torch.device("cpu"))


def test_each_prune_keeps_the_largest_magnitudes_of_each_tensor():
    """Per-tensor magnitude pruning: the kept weights are the top-|w| ones."""
    model = toy_model()
    m = sparsify(model, "pruning", sparsity=0.5, steps_per_epoch=10, prune_every=1, prune_times=1)
    assert m.masks.total_active() == 30000
    weights = [w.detach().clone().view(-1) for w in m.masks.weights]
    m.step = 10
    m.update()
    for w, mask in zip(weights, m.masks.masks):
        assert set(mask.view(-1).nonzero().view(-1).tolist()) == set(
            w.abs().topk(5000).indices.tolist()
        )


def test_a_prune_after_the_last_epoch_is_a_config_error():
    """prune_times prunes every prune_every epochs must fit in the run."""
    with pytest.raises(ConfigError, match="last prune"):
        tiny(method="pruning", epochs=3, prune_every=2, prune_times=3)


def test_global_scope_keeps_the_largest_magnitudes_of_all_tensors_together():
    """prune_scope=global: one magnitude ranking over every sparse tensor, exact total count;
    with one tensor's weights scaled up, that tensor keeps more than its uniform share."""
    model = toy_model()
    m = sparsify(
        model,
        "pruning",
        sparsity=0.5,
        steps_per_epoch=10,
        prune_every=1,
        prune_times=1,
        prune_scope="global",
    )
    with torch.no_grad():
        m.masks.weights[0].mul_(3.0)
    weights = torch.cat([w.detach().clone().view(-1) for w in m.masks.weights])
    m.step = 10
    m.update()
    kept = torch.cat([mask.view(-1) for mask in m.masks.masks])
    assert int(kept.sum()) == round(0.5 * weights.numel())
    assert set(kept.nonzero().view(-1).tolist()) == set(
        weights.abs().topk(round(0.5 * weights.numel())).indices.tolist()
    )
    uniform = exact_counts(m.masks.numels, 0.5)
    assert int(m.masks.masks[0].sum()) > uniform[0]


def test_global_scope_prunes_from_the_same_dense_source():
    """The scope belongs to the pruning run: its dense source is the tensor-scope one."""
    from dsr.methods.pruning import Pruning

    cfg = tiny(**PRUNING)
    assert Pruning.dependencies(cfg.replace(prune_scope="global")) == Pruning.dependencies(cfg)
    assert cfg.replace(prune_scope="tensor").hash == cfg.hash  # the default keeps old ids
    with pytest.raises(ConfigError, match="prune_scope"):
        cfg.replace(prune_scope="layer")


# --- the official code's exception for LeNet-300-100 (main.py, mnist_mlp, target above 0.9) ---


def lenet_pruning(sparsity: float, scope: str):
    from dsr.models import create_model

    torch.manual_seed(0)
    model = create_model("lenet300")
    return sparsify(model, "pruning", sparsity=sparsity, steps_per_epoch=10, prune_scope=scope)


@pytest.mark.parametrize("s", [0.95, 0.96, 0.97, 0.98, 0.99])
def test_official_scope_keeps_100_output_weights_and_the_total_above_s_09(s):
    """After the last prune: fc3 (10 x 100) holds exactly 100 weights, fc1 and fc2 share
    (1 - s) * 266,200 - 100 at one sparsity (each within a weight of its share), and the total
    is exactly (1 - s) * 266,200, as with per-tensor pruning."""
    method = lenet_pruning(s, "official")
    fc1, fc2, fc3 = method.official_counts(method.times)
    total = round((1 - s) * 266_200)
    assert fc3 == 100 and fc1 + fc2 + fc3 == total
    share = (total - 100) / 265_200
    assert abs(fc1 - share * 235_200) < 1 and abs(fc2 - share * 30_000) < 1
    assert sum(lenet_pruning(s, "tensor").official_counts(20)) == total  # same budget


def test_official_scope_follows_the_cubic_schedule_in_each_group():
    """Prune k keeps each group at its own s_k = s_f (1 - (1 - k/n)^3), s_f its final
    sparsity: 0.9 for the output layer."""
    method = lenet_pruning(0.99, "official")
    for k in (1, 5, 10, 19):
        fc3 = method.official_counts(k)[2]
        assert fc3 == round(1000 * (1 - method.target_sparsity(k, 0.9)))


def test_official_scope_is_the_pruning_protocols_and_per_tensor_where_no_exception_applies(
    tmp_path,
):
    """The protocol's pruning is 'official' at every sparsity and on every network; where the
    exception does not apply (s <= 0.9) it trains exactly what 'tensor' trains."""
    from dsr.config import preset

    for protocol, s in (
        ("lenet300-mnist", 0.9),
        ("lenet300-mnist", 0.99),
        ("wrn28_2-cifar10", 0.9),
    ):
        assert preset(protocol, "paper", method="pruning", sparsity=s).prune_scope == "official"
    assert lenet_pruning(0.9, "official").final_sparsities() == [0.9, 0.9, 0.9]
    a = run(tiny(**PRUNING, prune_scope="official"), tmp_path, progress=False)
    b = run(tiny(**PRUNING, prune_scope="tensor"), tmp_path, progress=False)
    assert a.config.hash != b.config.hash
    assert all(torch.equal(a.final_masks()[n], m) for n, m in b.final_masks().items())
    assert a.summary["final_test_acc"] == b.summary["final_test_acc"]


def test_official_scope_run_ends_with_the_output_layer_connected(tmp_path):
    """A short run at s = 0.99 on synthetic LeNet-300-100 data: every class keeps 10
    incoming weights on average, none is cut off (with per-tensor pruning: 10 in all)."""
    cfg = tiny(**PRUNING, sparsity=0.99, prune_scope="official")
    rec = run(cfg, tmp_path, progress=False)
    fc3 = rec.final_masks()["fc3"]
    assert int(fc3.sum()) == 100 and sum(int(m.sum()) for m in rec.final_masks().values()) == 2662
    assert int((fc3.sum(dim=1) > 0).sum()) == 10


def test_a_run_scaled_in_time_prunes_at_the_scaled_steps_with_step_wise_rates(tmp_path):
    """prune_time_scale 0.5 on 16 steps per epoch, a prune every epoch: prunes after steps 8
    and 16 (the official 16 and 32, halved); a learning-rate boundary at epoch 0.5 changes
    the rate between the 8th and the 9th step of epoch 0."""
    cfg = tiny(**PRUNING, prune_time_scale=0.5, lr_schedule="0:0.05,0.5:0.01")
    seen = []
    step = torch.optim.SGD.step

    def recording(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **kw)

    with patch.object(torch.optim.SGD, "step", recording):
        rec = run(cfg, tmp_path, progress=False)
    events = rec.reallocations()
    assert [e["step"] for e in events] == [8, 16]
    assert events[-1]["target_sparsity"] == pytest.approx(0.9)
    own = seen[-3 * 16 :]  # the pruning run's steps (its dense source trained first)
    assert own[:8] == [0.05] * 8 and own[8:] == [0.01] * (3 * 16 - 8)


def test_the_cpu_budget_scales_wrn_compression_with_the_protocol():
    """WRN-28-2 at the cpu budget (13 of 200 epochs): the compressed run is the official 48
    epochs times 13/200 (3), its rates and its prunes scaled the same way; LeNet-300-100 at
    the paper budget keeps the official run."""
    cpu = preset("wrn28_2-cifar10", "cpu", method="pruning", sparsity=0.9)
    assert (cpu.epochs, cpu.prune_time_scale) == (3, 13 / 200)
    assert cpu.lr_schedule == "0:0.0,0.065:0.02,1.625:0.004,2.275:0.0008"
    assert (cpu.source_epochs, cpu.weight_decay) == (13, 1e-4)
    paper = preset("lenet300-mnist", "paper", method="pruning", sparsity=0.9)
    assert (paper.epochs, paper.prune_time_scale) == (48, 1.0)
    method = sparsify(toy_model(), "pruning", sparsity=0.9, steps_per_epoch=500,
                      prune_time_scale=cpu.prune_time_scale)  # fmt: skip
    assert len(method.prune_steps) == 20 and method.prune_steps[-1] <= cpu.epochs * 500


def test_a_method_that_starts_from_another_run_is_refused_without_it():
    """Built without the run it starts from (dsr.runs hands that over), a one-line error."""
    with pytest.raises(ConfigError, match="starts from another run: train it with dsr.runs.run"):
        build(tiny(**PRUNING))
