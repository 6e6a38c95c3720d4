"""DeepR's rules (official DSR code's DeepR baseline, reference README)."""

from __future__ import annotations

import math

import torch

from tests.method_toys import per_tensor_counts_conserved, toy, train_steps

SCHEDULE = "0:1e-05,25:1e-08"


def noise_sample(m) -> torch.Tensor:
    """The gradients before_step() leaves on active weights when the loss gradient is 0."""
    for w in m.masks.weights:
        w.grad = torch.zeros_like(w)
    m.before_step()
    return torch.cat([w.grad[mask] for w, mask in zip(m.masks.weights, m.masks.masks)])


def test_gradient_noise_has_std_sqrt_2_eta_t_on_active_weights_only():
    """Active gradients get N(0, 2 eta T): the sample std of 15,000 draws is within 3 % of
    sqrt(2 * 0.01 * 1e-5) (8 standard errors) and the mean within 5 standard errors of 0;
    inactive gradients stay exactly 0."""
    _, _, m = toy("deepr", sparsity=0.5, deepr_temperature_schedule=SCHEDULE)
    z = noise_sample(m)
    std = math.sqrt(2 * 0.01 * 1e-5)
    assert len(z) == 15000
    assert abs(z.std().item() / std - 1) < 0.03
    assert abs(z.mean().item()) < 5 * std / math.sqrt(len(z))
    assert all(torch.all(w.grad[~mask] == 0) for w, mask in zip(m.masks.weights, m.masks.masks))


def test_noise_follows_the_temperature_schedule_per_epoch():
    """From epoch 25 the std is sqrt(2 eta 1e-8), within 3 %."""
    _, _, m = toy("deepr", sparsity=0.5, deepr_temperature_schedule=SCHEDULE)
    m.step = 25 * m.steps_per_epoch  # the next step is the first of epoch 25
    z = noise_sample(m)
    assert abs(z.std().item() / math.sqrt(2 * 0.01 * 1e-8) - 1) < 0.03


def flip(m, per_tensor: list[int]) -> list[torch.Tensor]:
    """Negate the first k active weights of each tensor; set the next 5 to exactly 0."""
    chosen = []
    with torch.no_grad():
        for w, mask, k in zip(m.masks.weights, m.masks.masks, per_tensor):
            idx = mask.view(-1).nonzero().view(-1)
            w.view(-1)[idx[:k]] *= -1
            w.view(-1)[idx[k : k + 5]] = 0.0
            chosen.append(idx[:k])
    return chosen


def test_prunes_exactly_the_sign_flips_and_regrows_as_many_elsewhere_at_zero():
    """A weight whose sign differs from the previous iteration's is pruned (a weight at 0 is
    not); as many regrow in the same tensor, not at the flipped positions, with value 0."""
    _, _, m = toy("deepr", sparsity=0.5)
    start = m.masks.active_counts()
    before = [x.clone() for x in m.masks.masks]
    flipped = flip(m, [3, 0, 40])
    m.after_step()
    assert m.pruned == [3, 0, 40] and m.masks.active_counts() == start
    for w, old, new, idx in zip(m.masks.weights, before, m.masks.masks, flipped):
        assert not new.view(-1)[idx].any()
        assert int((old & ~new).sum()) == len(idx)
        assert torch.all(w[new & ~old] == 0)


def test_counts_are_conserved_per_tensor_and_logged_once_per_epoch():
    """Through 100 noisy iterations every tensor keeps its count; the two log entries (one
    per epoch) sum the sign-flip prunes of their 50 iterations."""
    model, opt, m = toy("deepr", lr=0.1, deepr_temperature_schedule="0:0.01")
    start = m.masks.active_counts()
    events = train_steps(model, opt, m, 100, check=per_tensor_counts_conserved(start))
    assert [(e["step"], e["iterations"]) for e in events] == [(50, 50), (100, 50)]
    assert all(e["pruned"] == sum(e["pruned_per_tensor"]) for e in events)
    assert sum(e["pruned"] for e in events) > 0


def first_update_prunes(how: str) -> float:
    model, opt, m = toy("deepr", sparsity=0.5, deepr_sign_reference=how)
    train_steps(model, opt, m, 1)
    return sum(m.pruned) / m.masks.total_active()


def test_stale_sign_reference_prunes_about_half_at_the_first_update():
    """The official code's stale reference prunes 40-60 % of the active weights at the first
    iteration; the correct reference (previous signs) prunes under 1 %."""
    assert 0.4 < first_update_prunes("stale_init") < 0.6
    assert first_update_prunes("previous") < 0.01
