"""The FLOPs ledger of a run: training FLOPs and inference FLOPs, computed from its record.

The accounting is the RigL paper's (Evci et al. 2020, "Rigging the Lottery", Sec. 4 and its
appendix on FLOPs): only the multiply-adds of convolutions and linear layers are counted, each
as 2 FLOPs (batch norm, activations, pooling and the optimizer are left out); a forward pass of
one example at the masks of that moment costs f = sum over layers of 2 x active weights x output
positions (a dense layer: all its weights); the backward pass costs 2 f (the gradients of the
inputs and of the active weights), so an ordinary training step costs 3 f per example.
On top of that, each method's own extra:

* RigL: at each mask update the dense gradient of the sparse weights, f_D - f instead of the
  sparse weight gradient (f_D: the forward cost of the dense network);
* SNFS: the dense gradient at every step (its momentum is dense);
* DeepR: at every step, the noise draw and the sign test over the active weights, counted as
  2 FLOPs per active weight (not per example);
* compressed (``pruning``): the dense run it starts from (its source's epochs at 3 f_D per
  example);
* DSR, SET and the static methods: nothing (a reallocation every hundreds of steps touches each
  weight a few times: below 0.01 % of the training FLOPs at these periods).

The active counts over training come from the run's reallocation log (each tensor's count after
every logged update; before the first, that update's count less what it grew plus what it
pruned), or, for runs without updates, from the final masks. Inference FLOPs are those of one
forward pass at the final masks.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from torch import nn

from dsr.events import active_before
from dsr.methods import METHODS
from dsr.models import create_model, input_shape


@cache
def layer_positions(model: str, width: float, image_size: int = 0) -> tuple[tuple[str, int, int]]:
    """(module name, weight count, output positions per example) of every convolution and
    linear layer, measured by one forward pass of a meta tensor (no memory, no arithmetic)."""
    with torch.device("meta"):
        net = create_model(model, width)
        shape = input_shape(model)
        if image_size and len(shape) == 3:
            shape = (shape[0], image_size, image_size)
        found: list[tuple[str, int, int]] = []
        hooks = []
        for name, m in net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):

                def hook(module, _inputs, output, name=name):
                    positions = output[0].numel() // output.shape[1]
                    found.append((name, module.weight.numel(), positions))

                hooks.append(m.register_forward_hook(hook))
        net.eval()
        net(torch.zeros(1, *shape))
        for h in hooks:
            h.remove()
    return tuple(found)


def forward_flops(layers: tuple, active: dict[str, int] | None = None) -> float:
    """FLOPs of one example's forward pass; ``active``: the active weights of the sparse layers
    by module name (the others count all their weights; None: the dense network)."""
    active = active or {}
    return float(sum(2 * active.get(name, numel) * pos for name, numel, pos in layers))


def timeline(record: Any) -> list[tuple[int, list[int]]]:
    """(first step, active count per sparse tensor) for each stretch of training with one set of
    counts, from step 0: from the reallocation log, else the final masks for the whole run."""
    tensors = record.summary["density"]["tensors"]
    if METHODS[record.config.method].keeps_counts:  # DeepR's log need not be read
        return [(0, [t["active"] for t in tensors])]
    events = record.reallocations() if (record.path / "reallocations.jsonl").exists() else []
    if not events:
        return [(0, [t["active"] for t in tensors])]
    out = [(0, active_before(events[0]))]
    for e in events:
        if e["active"] != out[-1][1]:
            out.append((e["step"], list(e["active"])))
    return out


def ledger(record: Any) -> dict[str, float]:
    """A finished run's training FLOPs (all its steps, with its method's extra, and for
    ``pruning`` its dense source), those of the reference (the full-width dense network
    trained for the protocol's epochs), and the inference FLOPs of one example at its final
    masks and of that full-width dense network."""
    cfg = record.config
    steps = int(record.summary["method_state"]["step"])
    width = float(record.summary.get("width", cfg.width))
    layers = layer_positions(cfg.model, width, cfg.image_size)
    dense_f = forward_flops(layers)
    tensors = (record.summary.get("density") or {}).get("tensors", [])  # none: a dense run
    names = [t["name"] for t in tensors]
    stretches = timeline(record) if tensors else [(0, [])]
    bounds = [s for s, _ in stretches[1:]] + [steps]
    train = 0.0
    dense_grad = 0.0  # sum over steps of f_D - f (SNFS's extra: a dense gradient every step)
    active_steps = 0.0  # sum over steps of the active sparse weights (DeepR's extra)
    for (begin, counts), end in zip(stretches, bounds):
        f = forward_flops(layers, dict(zip(names, counts)))
        train += 3 * f * cfg.batch_size * (end - begin)
        dense_grad += (dense_f - f) * cfg.batch_size * (end - begin)
        active_steps += sum(counts) * (end - begin)
    final = {t["name"]: t["active"] for t in tensors}
    inference = forward_flops(layers, final)
    if cfg.method == "rigl":  # its counts per tensor never change: f is the final one
        train += record.summary.get("reallocations", 0) * (dense_f - inference) * cfg.batch_size
    elif cfg.method == "snfs":
        train += dense_grad
    elif cfg.method == "deepr":
        train += 2 * active_steps
    source = 0.0
    if cfg.method == "pruning":
        per_epoch = steps / cfg.epochs
        source = 3 * dense_f * cfg.batch_size * per_epoch * (cfg.source_epochs or cfg.epochs)
    # the reference: the full-width dense network trained for the protocol's epochs (a run
    # that starts from another counts that one's epochs, the source_epochs of its config)
    full = forward_flops(layer_positions(cfg.model, cfg.width, cfg.image_size))
    reference = 3 * full * cfg.batch_size * steps / cfg.epochs * (cfg.source_epochs or cfg.epochs)
    return {
        "train_flops": train + source,
        "source_flops": source,
        "dense_train_flops": reference,
        "inference_flops": inference,
        "dense_inference_flops": full,
    }
