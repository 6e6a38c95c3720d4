"""ResNet-50 as in the paper's ImageNet runs, and DSR at kernel granularity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dsr.config import ConfigError
from dsr.masks import count_parameters
from dsr.methods import sparsify
from dsr.methods.kernels import split_units, unit_size
from dsr.models import create_model
from tests.conftest import tiny


def meta_resnet50() -> nn.Module:
    with torch.device("meta"):
        return create_model("resnet50")


def test_resnet50_has_torchvisions_25557032_parameters():
    """The dense network: 25,557,032 parameters (torchvision's resnet50, 1000 classes)."""
    model = meta_resnet50()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    assert model.fc.out_features == 1000 and tuple(model.input_shape) == (3, 224, 224)


def test_resnet50_sparse_layers_are_the_bottleneck_convs_and_the_fc():
    """Sparse: 16 blocks x 3 convs and the FC; dense: the 7x7 stem and the 4 downsample convs."""
    model = meta_resnet50()
    names = model.sparse_module_names()
    modules = dict(model.named_modules())
    assert len(names) == 49 and names[-1] == "fc"
    assert "conv1" not in names and not any("downsample" in n for n in names)
    assert sum(modules[n].weight.numel() for n in names) == 22_724_608
    strided = [n for n in names[:-1] if modules[n].stride == (2, 2)]
    assert all(n.endswith("conv2") for n in strided) and len(strided) == 3  # stride in the 3x3


def test_resnet50_nonzeros_match_the_papers_imagenet_table():
    """Exact-count masks (one total rounded once, FC bias dense) give the table's non-zero
    counts: 7,377,346 at s = 0.8 and 5,104,885 at s = 0.9."""
    torch.manual_seed(0)
    model = create_model("resnet50")
    counts = {}
    for sparsity in (0.8, 0.9):
        sparsify(model, "static", sparsity=sparsity, steps_per_epoch=1)
        counts[sparsity] = count_parameters(model)["active"]
    assert counts == {0.8: 7_377_346, 0.9: 5_104_885}


def conv_model() -> nn.Module:
    """Two 3x3 convs and an FC: kernels of 9 weights and 1-weight units together."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 20, bias=False),
        nn.Linear(20, 10),
    )


def kernel_dsr(sparsity: float = 0.5, **hp):
    model = conv_model()
    hp = {"np_target": 100, "realloc_schedule": "0:10", "h0": 1e-3, **hp}
    method = sparsify(
        model, "dsr", sparsity=sparsity, steps_per_epoch=50, granularity="kernel", **hp
    )
    return model, method


def units_are_whole(method) -> bool:
    for w, m in zip(method.masks.weights, method.masks.masks):
        rows = m.view(-1, unit_size(w))  # (units, k)
        if not bool((rows.all(1) | ~rows.any(1)).all()):
            return False
    return True


def test_kernel_granularity_initial_masks_are_whole_kernels_with_exact_counts():
    """Every 3x3 kernel is all on or all off; each tensor has exactly half its units active."""
    _, m = kernel_dsr(0.5)
    assert units_are_whole(m)
    assert m.masks.active_counts() == [12 * 9, 32 * 9, 1280]


def test_kernel_update_prunes_the_kernels_below_h_by_mean_abs_and_conserves_the_total():
    """A kernel goes when its mean |w| < H (not its max); regrowth is whole kernels and the
    number of active parameters is unchanged."""
    _, m = kernel_dsr(0.5)
    w, mask = m.masks.weights[1], m.masks.masks[1]
    active = mask.view(-1, 9)[:, 0].nonzero().view(-1)
    with torch.no_grad():
        for x in m.masks.weights:
            x.copy_(torch.where(x != 0, torch.ones_like(x), x))  # every active |w| = 1 >> H
        w.view(-1, 9)[active[:3]] = 1e-4  # mean 1e-4 < H: pruned
        w.view(-1, 9)[active[3], 0] = 5e-3  # mean (5e-3 + 8e-4) / 9 < H: pruned too
        w.view(-1, 9)[active[3], 1:] = 1e-4
        w.view(-1, 9)[active[4], 0] = 1.0  # one big weight, mean > H: kept
        w.view(-1, 9)[active[4], 1:] = 1e-4
    before = m.masks.total_active()
    event = m.update()
    assert event["pruned_per_tensor"] == [0, 4 * 9, 0] and event["pruned"] == 36
    assert not mask.view(-1, 9)[active[:4]].any()  # regrowth avoids what was just pruned
    assert bool(mask.view(-1, 9)[active[4]].all())
    assert m.masks.total_active() == before and event["grown"] == 36
    assert units_are_whole(m)


def test_split_units_places_exactly_the_total_with_mixed_kernel_sizes():
    """Kernel tensors take their share in whole kernels (45 of 100 each, so 5 kernels), the
    1-weight tensor the remainder; with one kernel size, whole kernels in proportion."""
    assert split_units(100, [900, 900, 200], [50, 50, 500], [9, 9, 1]) == [5, 5, 10]
    assert split_units(90, [20, 80], [100, 100], [9, 9]) == [2, 8]


def test_kernel_granularity_refuses_mixed_kernel_sizes_without_single_weights():
    """3x3 and 5x5 convs alone could not conserve the count exactly: refused at construction."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 5))
    with pytest.raises(ValueError, match="kernel granularity"):
        sparsify(model, "dsr", sparsity=0.5, steps_per_epoch=1, granularity="kernel")


def test_kernel_granularity_is_a_dsr_option_only():
    """Another method with granularity 'kernel' is a config error; an unknown value too."""
    with pytest.raises(ConfigError, match="not an option of static"):
        tiny(method="static", granularity="kernel")
    with pytest.raises(ConfigError, match="granularity must be"):
        tiny(granularity="filter")
