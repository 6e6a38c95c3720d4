"""Mask ownership: exact counts, the reference parameter counts, zeros that stay zero."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dsr.masks import Masks, count_parameters, exact_counts
from dsr.methods import sparsify
from dsr.models import create_model


def sparse_model(name: str, sparsity: float, method: str = "static"):
    torch.manual_seed(0)
    model = create_model(name)
    return model, sparsify(model, method, sparsity=sparsity, steps_per_epoch=10)


def test_wrn28_2_dense_parameter_count_matches_reference():
    """WRN-28-2 has 1,467,610 trainable parameters, 1,451,520 of them in sparse tensors."""
    counts = count_parameters(create_model("wrn28_2"))
    assert counts["total"] == 1_467_610
    model, m = sparse_model("wrn28_2", 0.9)
    assert sum(m.masks.numels) == 1_451_520
    assert count_parameters(model)["dense"] == 16_090


def test_wrn28_2_nonzero_counts_at_reference_sparsities():
    """Non-zero trainable parameters: 161,242 at s = 0.9 and 306,394 at s = 0.8."""
    for s, expected in ((0.9, 161_242), (0.8, 306_394)):
        model, _ = sparse_model("wrn28_2", s)
        assert count_parameters(model)["active"] == expected
        nonzero = sum(
            int((p != 0).sum())
            for n, p in model.named_parameters()
            if "conv" in n and n.startswith("blocks") and p.dim() == 4 and p.shape[-1] == 3
        )
        assert nonzero <= expected - 16_090  # inactive weights are stored as exact zeros


def test_wrn_sparse_tensors_are_the_block_3x3_convs_only():
    """Stem, 1x1 shortcuts, FC and BN stay dense (official code)."""
    model = create_model("wrn28_2")
    names = model.sparse_module_names()
    assert len(names) == 24 and all(n.startswith("blocks.") for n in names)
    assert all("shortcut" not in n for n in names)


def test_lenet_has_266200_sparse_weights():
    """LeNet-300-100: 784*300 + 300*100 + 100*10 weights, all sparse, no biases."""
    model, m = sparse_model("lenet300", 0.9)
    assert sum(m.masks.numels) == 266_200
    assert m.masks.total_active() == 26_620
    assert all(mod.bias is None for mod in (model.fc1, model.fc2, model.fc3))


def test_exact_counts_sum_and_per_tensor_rounding():
    """Each tensor is within 1 of density*numel; the total is exact."""
    numels = [4608, 9216, 18432, 36864, 73728, 147456, 7]
    for density in (0.1, 0.2, 0.01, 0.5, 0.33):
        counts = exact_counts(numels, density)
        assert sum(counts) == round(density * sum(numels))
        assert all(abs(c - density * n) < 1 for c, n in zip(counts, numels))


def test_initial_masks_have_the_same_sparsity_in_every_tensor_and_depend_on_seed():
    """Uniform initial sparsity, random positions drawn from the seed."""
    _, a = sparse_model("lenet300", 0.95)
    for t in a.masks.tensors:
        assert abs(t.mask.float().mean().item() - 0.05) < 1 / t.weight.numel() + 1e-9
    b = sparsify(create_model("lenet300"), "static", sparsity=0.95, steps_per_epoch=1, seed=1)
    c = sparsify(create_model("lenet300"), "static", sparsity=0.95, steps_per_epoch=1, seed=0)
    assert not torch.equal(a.masks.masks[0], b.masks.masks[0])
    assert torch.equal(a.masks.masks[0], c.masks.masks[0])


def test_masks_are_bool_buffers_in_state_dict_and_load_into_a_fresh_model():
    """A checkpoint carries the masks; loading it into a fresh model restores them."""
    model, m = sparse_model("lenet300", 0.9)
    state = model.state_dict()
    assert state["fc1.weight_mask"].dtype == torch.bool
    fresh = create_model("lenet300")
    fm = Masks(fresh)
    fresh.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(fm.masks, m.masks.masks))


def train_steps(model, method, steps: int = 5):
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    method.optimizer = opt
    x, y = torch.randn(16, 784), torch.randint(0, 10, (16,))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        method.before_step()
        for w, mask in zip(method.masks.weights, method.masks.masks):
            assert torch.all(w.grad[~mask] == 0)  # inactive weights get zero gradient
        opt.step()
        method.after_step()
        for w, mask in zip(method.masks.weights, method.masks.masks):
            assert torch.all(w[~mask] == 0)  # and are exactly zero after every step


def test_inactive_weights_are_zero_and_get_zero_gradient_after_every_step():
    """Inactive weights never move, even with momentum and weight decay."""
    model, m = sparse_model("lenet300", 0.9)
    train_steps(model, m)


def test_static_masks_never_change():
    """The static method keeps its initial mask through training."""
    model, m = sparse_model("lenet300", 0.9)
    before = [x.clone() for x in m.masks.masks]
    train_steps(model, m, steps=20)
    assert all(torch.equal(a, b) for a, b in zip(before, m.masks.masks))


def test_default_sparse_layers_for_a_user_model():
    """For a model not written here: convs with kernels > 1x1 and all linears but the last."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.Conv2d(8, 8, 1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 8),
        torch.nn.Linear(8, 2),
    )
    m = sparsify(net, "static", sparsity=0.5, steps_per_epoch=1)
    assert [t.name for t in m.masks.tensors] == ["0", "3"]


def test_the_float_masks_follow_every_change_of_the_bool_masks():
    """apply_ multiplies by a float copy of each mask, made again whenever a mask changes: an
    in-place write (a reallocation), a state_dict load, or a new buffer (model.to)."""
    torch.manual_seed(0)
    model = create_model("lenet300")
    method = sparsify(model, "static", sparsity=0.9, steps_per_epoch=10)
    masks = method.masks
    first = masks.float_masks()
    assert masks.float_masks() is first  # unchanged masks: the same copies
    fc1 = masks.tensors[0]
    on = fc1.mask.view(-1).nonzero()[0]
    fc1.mask.view(-1)[on] = False  # an in-place write, as a reallocation makes
    with torch.no_grad():
        model.fc1.weight.fill_(1.0)
    masks.apply_()
    assert model.fc1.weight.detach().view(-1)[on].item() == 0.0
    assert torch.equal(model.fc1.weight != 0, fc1.mask)
    other = create_model("lenet300")
    sparsify(other, "static", sparsity=0.5, steps_per_epoch=10)
    model.load_state_dict(other.state_dict())  # copies into the same buffers
    with torch.no_grad():
        model.fc2.weight.fill_(1.0)
    masks.apply_()
    assert torch.equal(model.fc2.weight != 0, masks.tensors[1].mask)
    model.to(torch.float64)  # new parameters and buffers of another dtype
    masks.apply_()
    assert all(m.dtype == torch.float64 for m in masks.float_masks())
