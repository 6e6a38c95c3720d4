"""Static replicas of a DSR run's final structure."""

from __future__ import annotations

import pytest
import torch

from dsr.masks import MASK
from dsr.methods.replica import fresh_state
from dsr.runs import initial_state, load_run, run, sources_of
from dsr.train import build
from tests.conftest import tiny


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def source(root):
    """The tiny DSR run the replicas copy (it reallocates, so its final masks are its own)."""
    rec = run(tiny(), root, progress=False)
    assert rec.summary["reallocations"] > 0
    return rec


def sparse_weights(state: dict) -> dict[str, torch.Tensor]:
    return {
        k[: -len(MASK)] + "weight": state[k[: -len(MASK)] + "weight"]
        for k in state
        if k.endswith(MASK)
    }


def test_replica_masks_are_the_source_final_masks_and_never_change(root, source):
    """At the start and at the end the masks equal the DSR run's final masks; no update."""
    cfg = tiny(method="static_replica")
    start = build(cfg, sources=sources_of(cfg, root)).method.masks
    rec = run(cfg, root, progress=False)
    final, want = rec.final_masks(), source.final_masks()
    assert {t.name: t.mask for t in start.tensors}.keys() == want.keys()
    assert all(torch.equal(t.mask, want[t.name]) for t in start.tensors)
    assert all(torch.equal(final[n], want[n]) for n in want)
    assert rec.summary["reallocations"] == 0


def test_replica_b_starts_from_exactly_the_source_runs_initial_weights(root, source):
    """replica_init='source': every tensor is the DSR run's init.pt value, sparse weights
    masked by the final masks (a position inactive at the DSR start is 0 there too)."""
    replica = tiny(method="static_replica", replica_init="source")
    model = build(replica, sources=sources_of(replica, root)).model
    state = model.state_dict()
    init = torch.load(source.path / "init.pt", weights_only=True)["model"]
    final = source.final_masks()
    for key, value in state.items():
        if key.endswith(MASK):
            continue
        mask = final.get(key.removesuffix(".weight"))
        expected = init[key] if mask is None else init[key] * mask
        assert torch.equal(value, expected), key


def test_a_runs_initial_state_is_regenerated_exactly_from_its_config(source):
    """initial_state(cfg) equals the stored init.pt in every tensor, masks included."""
    init = torch.load(source.path / "init.pt", weights_only=True)["model"]
    again = initial_state(source.config)
    assert init.keys() == again.keys()
    assert all(torch.equal(init[k], again[k]) for k in init)


def test_replica_a_is_a_fresh_initialisation(root, source):
    """replica_init='fresh': the weights are the fresh seed's, masked, and none of the
    source's nonzero initial weights."""
    cfg = tiny(method="static_replica")
    state = build(cfg, sources=sources_of(cfg, root)).model.state_dict()
    fresh = fresh_state(cfg)
    init = torch.load(source.path / "init.pt", weights_only=True)["model"]
    for name, mask in source.final_masks().items():
        w = state[f"{name}.weight"]
        assert torch.equal(w, fresh[f"{name}.weight"] * mask)
        both = (w != 0) & (init[f"{name}.weight"] != 0)
        assert not torch.any(w[both] == init[f"{name}.weight"][both])


def test_the_source_is_the_dsr_run_of_replica_of_seed(root, source):
    """replica_of_seed names another seed's DSR run, trained first if missing."""
    cfg = tiny(method="static_replica", replica_of_seed=3)
    run(cfg, root, progress=False)
    other = load_run(tiny(seed=3), root)
    assert other is not None and other.path != source.path
