"""DSR's rules one by one (official-code semantics, reference README)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsr.methods import sparsify, split_proportional


def toy(sparsity: float = 0.5, seed: int = 0, ones: bool = True, **hp):
    """Three sparse 100x100 layers; with ``ones`` every active weight is 1 (far above H)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(100, 100, bias=False),
        nn.Linear(100, 100, bias=False),
        nn.Linear(100, 100, bias=False),
        nn.Linear(100, 10),
    )
    hp = {"np_target": 100, "realloc_schedule": "0:10", "h0": 1e-3, **hp}
    method = sparsify(model, "dsr", sparsity=sparsity, steps_per_epoch=50, seed=seed, **hp)
    if ones:
        with torch.no_grad():
            for w, m in zip(method.masks.weights, method.masks.masks):
                w.copy_(m.float())
    return model, method


def make_small(method, per_tensor: list[int]) -> list[torch.Tensor]:
    """Set the first k active weights of each tensor below H; return their flat positions."""
    chosen = []
    with torch.no_grad():
        for w, m, k in zip(method.masks.weights, method.masks.masks, per_tensor):
            idx = m.view(-1).nonzero().view(-1)[:k]
            w.view(-1)[idx] = 1e-4
            chosen.append(idx)
    return chosen


@pytest.mark.parametrize("np_target,expected", [(40, 0.5e-3), (60, 2e-3), (50, 1e-3)])
def test_threshold_halves_above_and_doubles_below_the_np_band(np_target, expected):
    """H /= 2 if K > 1.1 Np, H *= 2 if K < 0.9 Np, unchanged inside the band (K = 50)."""
    _, m = toy(np_target=np_target)
    make_small(m, [20, 20, 10])
    event = m.update()
    assert event["pruned"] == 50 and event["threshold"] == 1e-3
    assert m.threshold == pytest.approx(expected)


def test_prunes_exactly_the_active_weights_below_the_global_threshold():
    """Only active weights with |w| < H are pruned, in every tensor, with one H."""
    _, m = toy()
    small = make_small(m, [5, 0, 30])
    event = m.update()
    assert event["pruned_per_tensor"] == [5, 0, 30]
    for mask, idx in zip(m.masks.masks, small):
        assert not mask.view(-1)[idx].any()


def test_regrowth_is_split_in_proportion_to_surviving_counts():
    """Surviving 4990 / 5000 / 4700 active weights share the K = 310 regrown ones."""
    _, m = toy()
    make_small(m, [10, 0, 300])
    event = m.update()
    surviving = [4990, 5000, 4700]
    expected = [310 * s / sum(surviving) for s in surviving]
    assert sum(event["grown_per_tensor"]) == 310
    assert all(abs(g - e) < 1 for g, e in zip(event["grown_per_tensor"], expected))


def test_just_pruned_positions_are_never_regrown_in_the_same_step():
    """Regrowth draws from positions that were inactive before the prune."""
    _, m = toy()
    small = make_small(m, [2000, 2000, 2000])
    m.update()
    for mask, idx in zip(m.masks.masks, small):
        assert not mask.view(-1)[idx].any()


@pytest.mark.parametrize("exclude", [False, True])
def test_regrowth_picks_the_official_positions_with_the_same_draws(exclude):
    """The official pick is ``free.nonzero()[randperm(#free)[:count]]``; ours, which never lists
    the free positions, picks the same positions and leaves the generator where it left it."""
    _, m = toy(sparsity=0.9)
    t = m.masks.tensors[0]
    dropped = t.mask.view(-1).nonzero().view(-1)[::3] if exclude else None
    free = ~t.mask.view(-1)
    if exclude:
        free[dropped] = False
    g = torch.Generator().manual_seed(7)
    official = free.nonzero().view(-1)[torch.randperm(int(free.sum()), generator=g)[:500]]
    m.generator.manual_seed(7)
    ours = m.grow_random(t, 500, dropped)
    assert torch.equal(ours, official)
    assert torch.equal(m.generator.get_state(), g.get_state())
    assert t.mask.view(-1)[ours].all()


def test_regrown_weights_start_at_zero_and_inactive_ones_are_zero():
    """Official code: regrown weights have value 0."""
    _, m = toy()
    before = [x.clone() for x in m.masks.masks]
    make_small(m, [100, 100, 100])
    m.update()
    for w, mask, old in zip(m.masks.weights, m.masks.masks, before):
        grown = mask & ~old
        assert grown.sum() > 0 and torch.all(w[grown] == 0) and torch.all(w[~mask] == 0)


def test_kaiming_grow_init_gives_nonzero_values():
    """The grow_init='kaiming' option draws regrown values from a Kaiming normal."""
    _, m = toy(grow_init="kaiming")
    before = [x.clone() for x in m.masks.masks]
    make_small(m, [100, 100, 100])
    m.update()
    w, mask, old = m.masks.weights[0], m.masks.masks[0], before[0]
    assert (w[mask & ~old] != 0).float().mean() > 0.99


def test_a_tensor_is_never_emptied():
    """If every active weight of a tensor is below H, its largest one survives."""
    _, m = toy()
    make_small(m, [5000, 0, 0])
    with torch.no_grad():
        w = m.masks.weights[0].view(-1)
        keep = m.masks.masks[0].view(-1).nonzero().view(-1)[7]
        w[keep] = 5e-4
    m.update()
    assert m.masks.masks[0].view(-1)[keep]
    assert m.masks.total_active() == 15000


def test_split_proportional_is_exact_and_respects_capacity():
    """The parts sum exactly; a full tensor's share goes to the others."""
    assert split_proportional(10, [1, 1, 1], [100, 100, 100]) == [4, 3, 3]
    assert split_proportional(10, [1, 1, 1], [0, 100, 100]) == [0, 5, 5]
    assert split_proportional(100, [90, 5, 5], [20, 100, 100]) == [20, 40, 40]
    assert split_proportional(0, [3, 4], [1, 1]) == [0, 0]
    with pytest.raises(ValueError):
        split_proportional(5, [1, 1], [2, 2])


def train_toy(m, model, steps: int) -> list[dict]:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    m.optimizer = opt
    g = torch.Generator().manual_seed(0)
    events, totals = [], []
    for _ in range(steps):
        x = torch.randn(32, 100, generator=g)
        y = torch.randint(0, 10, (32,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        m.before_step()
        opt.step()
        masks = [x.clone() for x in m.masks.masks]
        e = m.after_step()
        if e is None:  # no update: masks unchanged
            assert all(torch.equal(a, b) for a, b in zip(masks, m.masks.masks))
        else:
            events.append(e)
        totals.append(m.masks.total_active())
    return events, totals


def test_global_nonzero_count_is_conserved_over_many_reallocations():
    """sum(active) is constant across 30 reallocations; pruned == grown in each."""
    model, m = toy(sparsity=0.9, ones=False, h0=0.01, np_target=50)
    start = m.masks.total_active()
    events, totals = train_toy(m, model, 300)
    assert len(events) == 30
    assert all(t == start for t in totals)
    assert all(e["pruned"] == e["grown"] for e in events)
    assert sum(e["pruned"] for e in events) > 0
    assert len({tuple(e["active"]) for e in events}) > 1  # the allocation does move


def test_reallocations_follow_the_schedule_and_stop_at_the_stop_epoch():
    """First at step P; every P(epoch) steps; none from realloc_stop on."""
    model, m = toy(ones=False, realloc_schedule="0:10,2:25", realloc_stop=4)
    events, _ = train_toy(m, model, 300)  # 6 epochs of 50 steps
    steps = [e["step"] for e in events]
    assert steps[0] == 10
    expected = [
        s for s in range(1, 301) if (s - 1) // 50 < 4 and s % (10 if (s - 1) // 50 < 2 else 25) == 0
    ]
    assert steps == expected
    assert all(e["epoch"] < 4 for e in events)


def test_momentum_of_regrown_weights_is_kept_by_default_and_reset_as_an_option():
    """Official: momentum not reset; reset_momentum=True zeroes it at regrown positions."""
    for reset in (False, True):
        model, m = toy(reset_momentum=reset)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        m.optimizer = opt
        w = m.masks.weights[0]
        opt.state[w]["momentum_buffer"] = torch.ones_like(w)
        before = m.masks.masks[0].clone()
        make_small(m, [100, 100, 100])
        m.update()
        grown = m.masks.masks[0] & ~before
        buf = opt.state[w]["momentum_buffer"][grown]
        assert torch.all(buf == 0) if reset else torch.all(buf == 1)
