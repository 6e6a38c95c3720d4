"""RigL's rules (Evci et al. 2020; Google's ``SparseRigLOptimizer``)."""

from __future__ import annotations

import math

import torch

from tests.method_toys import (
    backward,
    masks_unchanged_between_updates,
    per_tensor_counts_conserved,
    toy,
    train_steps,
)


def separated_weights(m) -> None:
    """Active weights with distinct magnitudes 0.01 apart (far above the 1e-5 jitter)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for w, mask in zip(m.masks.weights, m.masks.masks):
            n = int(mask.sum())
            w.view(-1)[mask.view(-1)] = (torch.randperm(n, generator=g).float() + 1) * 0.01


def update_with_gradients(m, grads: list[torch.Tensor]) -> dict:
    """Run before_step() on the step before an update with the given dense gradients."""
    m.step = m.every - 1
    for w, g in zip(m.masks.weights, grads):
        w.grad = g.clone()
    m.before_step()
    m.step += 1
    return m.update()


def test_grows_at_the_largest_dense_gradients_and_drops_the_smallest_weights():
    """Per tensor: the n = int(f * active) smallest |w| are dropped and n positions grow where
    the dense gradient (taken before masking) is largest among those inactive after the drop."""
    _, _, m = toy("rigl", sparsity=0.5, epochs=10, rigl_update_every=10)
    separated_weights(m)
    g = torch.Generator().manual_seed(4)
    grads = [torch.randn(w.shape, generator=g) for w in m.masks.weights]
    before = [x.clone().view(-1) for x in m.masks.masks]
    expected_drop, expected_grow = [], []
    f = m.drop_fraction(m.every)
    for w, old, gr in zip(m.masks.weights, before, grads):
        active = old.nonzero().view(-1)
        n = int(len(active) * f)
        drop = active[w.view(-1)[active].abs().argsort()[:n]]
        kept = old.clone()
        kept[drop] = False
        score = gr.view(-1).abs().masked_fill(kept, -1)
        expected_drop.append(set(drop.tolist()))
        expected_grow.append(set(score.argsort(descending=True)[:n].tolist()))
    update_with_gradients(m, grads)
    for old, new, drop, grow in zip(before, m.masks.masks, expected_drop, expected_grow):
        new = new.view(-1)
        assert set((old & ~new).nonzero().view(-1).tolist()) == drop - grow
        assert set((new & ~old).nonzero().view(-1).tolist()) == grow - drop
        assert int(new.sum()) == int(old.sum())


def test_newly_grown_weights_start_at_zero_with_zero_momentum():
    """A connection that was inactive and grows has weight 0 and momentum 0; every other
    active weight keeps its momentum."""
    model, opt, m = toy("rigl", sparsity=0.5, epochs=10, rigl_update_every=10)
    for w in m.masks.weights:
        opt.state[w]["momentum_buffer"] = torch.full_like(w, 7.0)
    g = torch.Generator().manual_seed(4)
    before = [x.clone() for x in m.masks.masks]
    update_with_gradients(m, [torch.randn(w.shape, generator=g) for w in m.masks.weights])
    for w, old, new in zip(m.masks.weights, before, m.masks.masks):
        buf, grown, stayed = opt.state[w]["momentum_buffer"], new & ~old, new & old
        assert grown.sum() > 0
        assert torch.all(buf[grown] == 0) and torch.all(w[grown] == 0)
        assert torch.all(buf[stayed] == 7.0)


def test_drop_fraction_follows_the_cosine_to_zero_at_t_end():
    """f(t) = alpha / 2 (1 + cos(pi t / T_end)): alpha at 0, alpha / 2 at T_end / 2, 0 at T_end."""
    _, _, m = toy("rigl", epochs=8, rigl_drop_fraction=0.3, rigl_end=0.75)
    assert m.end_step == 300
    assert [m.drop_fraction(t) for t in (0, 150)] == [0.3, 0.3 / 2 * (1 + math.cos(math.pi / 2))]
    assert abs(m.drop_fraction(300)) < 1e-12


def test_counts_are_conserved_per_tensor_and_updates_stop_at_t_end():
    """Every tensor keeps its count; updates every Delta T steps, none after T_end."""
    model, opt, m = toy("rigl", epochs=4, rigl_update_every=10, rigl_end=0.5)
    start = m.masks.active_counts()
    conserved = per_tensor_counts_conserved(start)

    def check(m, before, event):
        conserved(m, before, event)
        masks_unchanged_between_updates(m, before, event)

    events = train_steps(model, opt, m, 200, check=check)
    assert [e["step"] for e in events] == list(range(10, 101, 10))
    assert sum(e["pruned"] for e in events) > 0


def test_dense_gradients_are_kept_only_for_update_steps_and_grads_are_masked():
    """before_step() copies the dense gradients only before an update; it always leaves
    zero gradients on inactive weights."""
    model, opt, m = toy("rigl", epochs=4, rigl_update_every=10)
    g = torch.Generator().manual_seed(0)
    backward(model, opt, g)
    m.before_step()
    assert m.dense_grads is None
    assert all(torch.all(w.grad[~k] == 0) for w, k in zip(m.masks.weights, m.masks.masks))
    m.step = 9
    backward(model, opt, g)
    dense = [w.grad.clone() for w in m.masks.weights]
    m.before_step()
    assert all(torch.equal(a, b) for a, b in zip(m.dense_grads, dense))
