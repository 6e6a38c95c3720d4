"""The one training loop, with a checkpoint every epoch and bit-exact resume.

SGD with momentum and Nesterov, a per-epoch learning-rate schedule, an L1 penalty on the sparse
weights, test evaluation every epoch. The method (dsr, static, dense, ...) is driven through
``before_step`` / ``after_step`` around the optimizer step. Everything random is seeded from the
config: model init (global torch RNG, seeded before building), masks and regrowth (the method's
own generator, checkpointed), data order and augmentation (a generator per (seed, epoch)). So a
run stopped after any epoch and resumed in a fresh process ends bit for bit where an
uninterrupted run does (on CPU).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dsr import io
from dsr.config import RunConfig
from dsr.data import Data, load
from dsr.masks import count_parameters, default_sparse_names
from dsr.methods import METHODS, Method
from dsr.models import create_model
from dsr.schedules import Schedule

CHECKPOINT, INIT = "checkpoint.pt", "init.pt"


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Trainer:
    """Everything one run holds: built from a config by :func:`build`."""

    cfg: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    method: Method
    data: Data
    width: float
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)  # one row per epoch
    events: list[dict] = field(default_factory=list)  # one entry per reallocation

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "events": self.events,
            "torch_rng": torch.get_rng_state(),
            "config": self.cfg.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        self.epoch, self.history, self.events = state["epoch"], state["history"], state["events"]
        torch.set_rng_state(state["torch_rng"])


def build(cfg: RunConfig, device: str | torch.device = "cpu", data: Data | None = None) -> Trainer:
    """Model, optimizer, method and data of a run, initialised from ``cfg.seed``."""
    cls = METHODS[cfg.method]
    width = cls.model_width(cfg)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, width).to(device)
    if data is None:
        data = load(cfg.dataset, model.input_shape)
    data = data.subset(cfg.train_subset, cfg.test_subset).to(device)
    lr = Schedule.parse(cfg.lr_schedule)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=lr(0),
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )
    method = cls.from_config(cfg, model, data.steps_per_epoch(cfg.batch_size), optimizer)
    return Trainer(cfg, model, optimizer, method, data, width)


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, batch_size: int = 1000) -> tuple[float, float]:
    """Test loss and accuracy (percent)."""
    model.eval()
    loss = correct = 0.0
    for x, y in data.batches(batch_size, train=False):
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    n = len(data.test_y)
    return loss / n, 100.0 * correct / n


def l1_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors the L1 penalty applies to: the sparse (or would-be sparse) weights."""
    modules = dict(model.named_modules())
    return [modules[n].weight for n in default_sparse_names(model)]


def resume(t: Trainer, path: Path, device: str | torch.device) -> None:
    """Load the checkpoint at ``path`` into ``t``.

    Raises:
        CheckpointError: the file is unreadable, belongs to another config or does not fit.
    """
    state = io.load_checkpoint(path, device)
    config = state.get("config") if isinstance(state, dict) else None
    if not isinstance(config, dict) or {**RunConfig().to_dict(), **config} != t.cfg.to_dict():
        raise io.CheckpointError(f"checkpoint {path} belongs to another config: delete it")
    try:
        t.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise io.CheckpointError(
            f"checkpoint {path} does not fit this run ({type(e).__name__}): delete it"
        ) from None


def train(
    cfg: RunConfig,
    run_dir: Path | None = None,
    *,
    device: str = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
    data: Data | None = None,
) -> Trainer:
    """Train ``cfg`` to the end (or until ``stop_after`` epochs are done), resuming from
    ``run_dir/checkpoint.pt`` when it exists and checkpointing there after every epoch.

    Raises:
        TrainingDiverged: the loss of an epoch was not finite.
    """
    t = build(cfg, device, data)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / CHECKPOINT).exists():
            resume(t, run_dir / CHECKPOINT, device)
        elif not (run_dir / INIT).exists():
            io.save_torch({"model": t.model.state_dict()}, run_dir / INIT)  # replicas need it
    lr = Schedule.parse(cfg.lr_schedule)
    l1 = l1_weights(t.model) if cfg.l1 > 0 else []
    last = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    steps = t.data.steps_per_epoch(cfg.batch_size)
    bar = io.progress_bar(
        total=(cfg.epochs - t.epoch) * steps,
        enabled=progress,
        desc=f"{cfg.method} s={cfg.sparsity} seed={cfg.seed}",
    )
    while t.epoch < last:
        start = time.perf_counter()
        for group in t.optimizer.param_groups:
            group["lr"] = lr(t.epoch)
        t.model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for x, y in t.data.batches(cfg.batch_size, train=True, epoch=t.epoch, seed=cfg.seed):
            out = t.model(x)
            loss = F.cross_entropy(out, y)
            t.optimizer.zero_grad(set_to_none=False)
            loss.backward()
            for w in l1:  # L1 penalty l1 * sum|w| on the sparse weights, as a gradient term
                w.grad.add_(w.detach().sign(), alpha=cfg.l1)
            t.method.before_step()
            t.optimizer.step()
            io.fault_point("step")  # crash-safety tests kill the process here (dsr.io)
            event = t.method.after_step()
            if event is not None:
                t.events.append(event)
            loss_sum += loss.detach() * len(y)
            correct += (out.argmax(1) == y).sum()
            bar.update(1)
        n = len(t.data.train_y)
        train_loss = loss_sum.item() / n
        if not math.isfinite(train_loss):
            bar.close()
            raise TrainingDiverged(
                f"training diverged: the mean training loss of epoch {t.epoch} is {train_loss} "
                f"(learning rate {lr(t.epoch):g})"
            )
        test_loss, test_acc = evaluate(t.model, t.data)
        counts = count_parameters(t.model)
        t.history.append(
            {
                "epoch": t.epoch,
                "lr": lr(t.epoch),
                "train_loss": train_loss,
                "train_acc": 100.0 * correct.item() / n,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "active_params": counts["active"],
                "reallocations": sum(e["epoch"] == t.epoch for e in t.events),
                "seconds": time.perf_counter() - start,
            }
        )
        t.epoch += 1
        bar.set_postfix(epoch=t.epoch, test_acc=f"{test_acc:.2f}")
        if run_dir is not None:
            io.save_torch(t.state_dict(), run_dir / CHECKPOINT)
    bar.close()
    return t
