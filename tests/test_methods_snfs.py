"""Sparse momentum's rules (Dettmers & Zettlemoyer 2019; ``sparselearning`` code)."""

from __future__ import annotations

import math

import torch

from dsr.methods import split_proportional
from tests.method_toys import backward, toy, train_steps


def test_keeps_sgds_momentum_of_the_dense_gradient():
    """After 5 steps the method's momentum equals sum_k 0.9^(4-k) g_k of the unmasked
    gradients at every position, and the optimizer's buffer at the active ones."""
    model, opt, m = toy("snfs", sparsity=0.5, epochs=10)
    g = torch.Generator().manual_seed(0)
    expected = [torch.zeros_like(w) for w in m.masks.weights]
    for _ in range(5):
        backward(model, opt, g)
        for e, w in zip(expected, m.masks.weights):
            e.mul_(0.9).add_(w.grad)
        m.before_step()
        opt.step()
        m.after_step()
    for buf, e, w, mask in zip(m.momentum, expected, m.masks.weights, m.masks.masks):
        assert torch.allclose(buf, e, rtol=1e-5, atol=1e-7)
        assert torch.allclose(opt.state[w]["momentum_buffer"][mask], e[mask], rtol=1e-5, atol=1e-7)


def set_momentum(m, opt) -> None:
    """Distinct momenta; tensor i's momenta scaled by (i + 1), so shares are unequal."""
    g = torch.Generator().manual_seed(9)
    for i, (buf, w) in enumerate(zip(m.momentum, m.masks.weights)):
        buf.copy_(torch.randn(buf.shape, generator=g) * (i + 1))
        opt.state[w]["momentum_buffer"] = buf.clone()


def test_prunes_by_magnitude_and_regrows_by_momentum_in_proportion_to_the_shares():
    """Each tensor prunes ceil(p * active) smallest |w|; the total regrows split (exactly) in
    proportion to the tensors' mean |momentum| of active weights, each at its inactive
    positions of largest |momentum|; the global count is conserved."""
    model, opt, m = toy("snfs", sparsity=0.8, epochs=10)
    set_momentum(m, opt)
    m.step = 50
    p = m.prune_rate(50)
    shares = [float(b[k].abs().mean()) for b, k in zip(m.momentum, m.masks.masks)]
    shares = [s / sum(shares) for s in shares]
    active = m.masks.active_counts()
    pruned = [math.ceil(p * a) for a in active]
    before = [x.clone() for x in m.masks.masks]
    drops = []
    for w, old, k in zip(m.masks.weights, before, pruned):
        idx = old.view(-1).nonzero().view(-1)
        drops.append(idx[w.view(-1)[idx].abs().argsort()[:k]])
    event = m.update()
    assert event["pruned_per_tensor"] == pruned
    free = [n - a + k for n, a, k in zip(m.masks.numels, active, pruned)]
    assert event["grown_per_tensor"] == split_proportional(sum(pruned), shares, free)
    assert m.masks.total_active() == sum(active)
    for buf, old, new, drop, g in zip(
        m.momentum, before, m.masks.masks, drops, event["grown_per_tensor"]
    ):
        old, new = old.view(-1), new.view(-1)
        kept = old.clone()
        kept[drop] = False
        grow = set(buf.view(-1).abs().masked_fill(kept, -1).topk(g).indices.tolist())
        assert set((new & ~old).nonzero().view(-1).tolist()) == grow - set(drop.tolist())
        assert set((old & ~new).nonzero().view(-1).tolist()) == set(drop.tolist()) - grow


def test_new_weights_start_at_zero_with_their_momentum_or_zero_as_an_option():
    """Official code: a newly grown weight is 0 and keeps the momentum it accumulated;
    reset_momentum=True zeroes that momentum."""
    for reset in (False, True):
        model, opt, m = toy("snfs", sparsity=0.8, epochs=10, reset_momentum=reset)
        set_momentum(m, opt)
        before = [x.clone() for x in m.masks.masks]
        m.step = 50
        m.update()
        for buf, w, old, new in zip(m.momentum, m.masks.weights, before, m.masks.masks):
            grown = new & ~old
            assert grown.sum() > 0 and torch.all(w[grown] == 0)
            expected = torch.zeros_like(buf[grown]) if reset else buf[grown]
            assert torch.equal(opt.state[w]["momentum_buffer"][grown], expected)


def test_updates_at_the_end_of_every_epoch_but_the_last_with_a_cosine_prune_rate():
    """Updates at steps 50, 100 of a 3-epoch run (not at 150); p(t) = 0.005 + (0.5 - 0.005)
    (1 + cos(pi t / T)) / 2."""
    model, opt, m = toy("snfs", epochs=3)
    events = train_steps(model, opt, m, 150)
    assert [e["step"] for e in events] == [50, 100]
    for e in events:
        expected = 0.005 + 0.495 * (1 + math.cos(math.pi * e["step"] / 150)) / 2
        assert e["prune_rate"] == expected
