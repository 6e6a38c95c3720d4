"""Each method's checkpoint state: stop, save, load into fresh objects, continue == straight."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from tests.method_toys import batch, toy

CASES = {
    "set": dict(realloc_schedule="0:7"),
    "deepr": dict(deepr_temperature_schedule="0:0.01", lr=0.1),
    "deepr-stale": dict(deepr_sign_reference="stale_init"),
    "rigl": dict(epochs=2, rigl_update_every=7),
    "snfs": dict(epochs=3),
}


def steps(model, opt, m, first: int, last: int) -> None:
    """Steps first .. last - 1, each on its own seeded batch."""
    for step in range(first, last):
        x, y = batch(torch.Generator().manual_seed(1000 + step))
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        m.before_step()
        opt.step()
        m.after_step()


def make(case: str):
    hp = dict(CASES[case])
    lr = hp.pop("lr", 0.05)
    return toy(case.split("-")[0], lr=lr, **hp)


@pytest.mark.parametrize("case", list(CASES))
def test_stop_save_load_into_fresh_objects_and_continue_equals_straight(case):
    """60 steps straight (updates included) end bit for bit where 35 steps, a round trip of
    the model, optimizer and method state through torch.save / torch.load(weights_only=True),
    fresh objects and 25 more steps end."""
    model, opt, m = make(case)
    steps(model, opt, m, 0, 60)
    a_model, a_opt, a_m = make(case)
    steps(a_model, a_opt, a_m, 0, 35)
    buf = io.BytesIO()
    torch.save(
        {"model": a_model.state_dict(), "opt": a_opt.state_dict(), "m": a_m.state_dict()}, buf
    )
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    b_model, b_opt, b_m = make(case)
    b_model.load_state_dict(state["model"])
    b_opt.load_state_dict(state["opt"])
    b_m.load_state_dict(state["m"])
    steps(b_model, b_opt, b_m, 35, 60)
    straight, resumed = model.state_dict(), b_model.state_dict()
    assert all(torch.isfinite(v.float()).all() for v in straight.values())
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    for w, v in zip(m.masks.weights, b_m.masks.weights):
        assert torch.equal(opt.state[w]["momentum_buffer"], b_opt.state[v]["momentum_buffer"])
