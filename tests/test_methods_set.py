"""SET's rules (official DSR code for the DSR variant, Mocanu et al. 2018 for the original)."""

from __future__ import annotations

import pytest
import torch

from dsr.methods import sparsify
from dsr.models import create_model
from tests.method_toys import (
    masks_unchanged_between_updates,
    per_tensor_counts_conserved,
    toy,
    train_steps,
)


def distinct_weights(m) -> None:
    """Give every active weight a distinct magnitude in [0.01, 1) and a random sign."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for w, mask in zip(m.masks.weights, m.masks.masks):
            n = int(mask.sum())
            mags = (torch.randperm(n, generator=g).float() + 1) / (n + 1)
            signs = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
            w.view(-1)[mask.view(-1)] = mags * signs


def test_each_tensor_keeps_its_active_count_through_30_updates():
    """Per-tensor conservation: every tensor's active count is constant after every step,
    and pruned == grown in every tensor at every update; masks move only on update steps."""
    model, opt, m = toy("set", realloc_schedule="0:5", np_target=100)
    start = m.masks.active_counts()
    conserved = per_tensor_counts_conserved(start)

    def check(m, before, event):
        conserved(m, before, event)
        masks_unchanged_between_updates(m, before, event)

    events = train_steps(model, opt, m, 150, check=check)
    assert len(events) == 30
    assert all(e["pruned_per_tensor"] == e["grown_per_tensor"] for e in events)


def test_prunes_int_zeta_active_plus_one_smallest_magnitudes_per_tensor():
    """Official prune_small_connections: per tensor, the int(zeta * active) + 1 smallest |w|."""
    _, _, m = toy("set", sparsity=0.5, set_zeta=0.1)
    distinct_weights(m)
    expected = []
    for w, mask in zip(m.masks.weights, m.masks.masks):
        active = mask.view(-1).nonzero().view(-1)
        k = int(0.1 * len(active)) + 1
        expected.append(set(active[w.view(-1)[active].abs().argsort()[:k]].tolist()))
    before = [x.clone() for x in m.masks.masks]
    event = m.update()
    for old, new, exp in zip(before, m.masks.masks, expected):
        dropped = set((old & ~new).view(-1).nonzero().view(-1).tolist())
        assert dropped == exp
    assert event["pruned_per_tensor"] == [len(e) for e in expected] == [501] * 3


def test_regrowth_avoids_just_pruned_positions_and_starts_at_zero():
    """Regrown positions were inactive before the prune; their weights are exactly 0."""
    _, _, m = toy("set", sparsity=0.5, set_zeta=0.2)
    distinct_weights(m)
    before = [x.clone() for x in m.masks.masks]
    m.update()
    for w, old, new in zip(m.masks.weights, before, m.masks.masks):
        grown = new & ~old
        assert int(grown.sum()) == 1001
        assert torch.all(w[grown] == 0) and torch.all(w[~new] == 0)


@pytest.mark.parametrize(
    "sparsity,reference", [(0.9, 0.138), (0.8, 0.07), (0.7, 0.046), (0.6, 0.034), (0.5, 0.028)]
)
def test_matched_zeta_reproduces_the_reference_values_on_wrn28_2(sparsity, reference):
    """set_zeta=0 gives Np / active, the reference's zeta for WRN-28-2 (Np = 20,000) to the
    precision it is quoted with (2 %)."""
    torch.manual_seed(0)
    model = create_model("wrn28_2")
    m = sparsify(model, "set", sparsity=sparsity, steps_per_epoch=500, np_target=20000)
    assert m.zeta == pytest.approx(reference, rel=0.02)


def test_original_variant_removes_the_fraction_zeta_of_each_sign_nearest_zero():
    """Mocanu et al.: int(zeta * n_pos) smallest positive and int(zeta * n_neg) negative
    weights closest to 0 go; the same number regrows in the tensor."""
    _, _, m = toy("set", sparsity=0.5, set_zeta=0.3, set_variant="original")
    distinct_weights(m)
    w, mask = m.masks.weights[0].view(-1), m.masks.masks[0].view(-1)
    pos = (mask & (w > 0)).nonzero().view(-1)
    neg = (mask & (w < 0)).nonzero().view(-1)
    expected = set(pos[w[pos].argsort()[: int(0.3 * len(pos))]].tolist())
    expected |= set(neg[(-w[neg]).argsort()[: int(0.3 * len(neg))]].tolist())
    before = mask.clone()
    m.update()
    assert set((before & ~mask).nonzero().view(-1).tolist()) == expected
    assert int(mask.sum()) == int(before.sum())


def test_original_variant_updates_once_per_epoch_at_its_end():
    """Original SET: one update at the last step of each epoch, none from realloc_stop."""
    model, opt, m = toy("set", set_variant="original", realloc_stop=3)
    events = train_steps(model, opt, m, 250, check=masks_unchanged_between_updates)
    assert [e["step"] for e in events] == [50, 100, 150]
