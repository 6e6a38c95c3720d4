"""The contract every method keeps, checked for each one that draws its own masks: inactive
weights are exactly zero after every step and get a zero gradient before it, the masks change
only on a logged update (DeepR, which rewires at every step, logs one entry per epoch for all
the steps since the last, and keeps each tensor's count at every step), and every logged update
has the event schema the results read."""

from __future__ import annotations

import pytest
import torch

from dsr.events import active_before, grown_per_tensor
from tests.method_toys import backward, toy

# method -> options that make it update within the few steps a test takes
DYNAMIC = {
    "dsr": dict(np_target=300, realloc_schedule="0:10"),
    "set": dict(np_target=300, realloc_schedule="0:10"),
    "deepr": {},
    "rigl": dict(rigl_update_every=10, epochs=4),
    "snfs": dict(epochs=4),
    "pruning": dict(prune_every=1, prune_times=2),
    "static": {},
}
# What every event carries (dsr.events and the results code read these keys).
EVENT_KEYS = {"step", "epoch", "pruned", "grown", "pruned_per_tensor", "active"}


def drive(method: str, steps: int = 60):
    """Steps through the hooks, checking the invariants at every one; returns the events."""
    model, opt, m = toy(method, **DYNAMIC[method])
    g = torch.Generator().manual_seed(0)
    events = []
    for _ in range(steps):
        backward(model, opt, g)
        m.before_step()
        for w, mask in zip(m.masks.weights, m.masks.masks):
            assert bool((w.grad[~mask] == 0).all()), "an inactive weight has a gradient"
        opt.step()
        before = [x.clone() for x in m.masks.masks]
        event = m.after_step()
        for w, mask in zip(m.masks.weights, m.masks.masks):
            assert bool((w.detach()[~mask] == 0).all()), "an inactive weight is not zero"
        if method == "deepr":  # rewires at every step, logs once per epoch
            assert [int(x.sum()) for x in before] == m.masks.active_counts()
        elif event is None:
            assert all(torch.equal(a, b) for a, b in zip(before, m.masks.masks))
        if event is not None:
            events.append((event, [int(x.sum()) for x in before], m.masks.active_counts()))
    return m, events


@pytest.mark.parametrize("method", list(DYNAMIC))
def test_inactive_weights_stay_zero_and_masks_move_only_on_logged_updates(method):
    m, events = drive(method)
    if method == "static":
        assert events == []
    else:
        assert events, f"{method} made no update in the steps of the test"


@pytest.mark.parametrize("method", [m for m in DYNAMIC if m != "static"])
def test_every_event_has_the_schema_the_results_read(method):
    """Each event names its step and epoch, what it pruned and grew (in total and per tensor)
    and the active count of each tensor after it; the counts before it follow from those."""
    m, events = drive(method)
    n = len(m.masks)
    for event, before, after in events:
        assert EVENT_KEYS <= set(event), EVENT_KEYS - set(event)
        assert len(event["pruned_per_tensor"]) == len(event["active"]) == n
        assert sum(event["pruned_per_tensor"]) == event["pruned"]
        assert event["active"] == after
        assert active_before(event) == before
        assert sum(grown_per_tensor(event)) == event["grown"]


@pytest.mark.parametrize("method", list(DYNAMIC))
def test_a_method_that_keeps_counts_keeps_every_tensors_count(method):
    """``keeps_counts`` (which dsr.flops relies on to skip the log) is a promise kept at every
    update; the methods without it (dsr, snfs, pruning) do change some tensor's count here."""
    from dsr.methods import METHODS

    m, events = drive(method)
    start = m.masks.active_counts() if not events else events[0][1]
    changed = any(after != start for _, _, after in events)
    assert changed is not METHODS[method].keeps_counts


def test_constructor_defaults_are_the_config_defaults():
    """A setting is declared once, in RunConfig: a method's constructor, where it gives a
    default for one of the run config's fields (``dsr.sparsify`` users get it), gives
    RunConfig's, so a method built by hand and a configured run mean the same thing."""
    import inspect

    from dsr.config import RunConfig
    from dsr.methods import METHODS

    config = {k: f.default for k, f in RunConfig.__dataclass_fields__.items()}
    differ = {}
    for name, cls in METHODS.items():
        for klass in cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.default is not p.empty and p.name in config and p.default != config[p.name]:
                    differ[f"{name}.{p.name}"] = (p.default, config[p.name])
    assert differ == {}
