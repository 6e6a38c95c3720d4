"""The one training loop, with a checkpoint every epoch and bit-exact resume.

SGD with momentum and Nesterov, a per-epoch learning-rate schedule, an L1 penalty on the sparse
weights, test evaluation every epoch. The method (dsr, static, dense, ...) is driven through
``before_step`` / ``after_step`` around the optimizer step. Everything random is seeded from the
config: model init (global torch RNG, seeded before building), masks and regrowth (the method's
own generator, checkpointed), data order and augmentation (a generator per (seed, epoch)). So a
run stopped after any epoch and resumed in a fresh process ends bit for bit where an
uninterrupted run does (on CPU).

The same loop runs data-parallel under torchrun (:mod:`dsr.distributed`: each process a shard
of every batch, synchronised batch norm, identical masks) and on GPUs with the options of
:class:`Runtime` (channels-last, bf16 autocast, ``torch.compile``). A step never waits for the
host: data and its augmentation stay on the device, masks are applied there, and losses are
summed there until the epoch ends; only a mask update (every P steps) reads values back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dsr import distributed, io
from dsr.config import ConfigError, RunConfig, budget_runtime
from dsr.data import FROM_ENV, Data, DataAccess, load
from dsr.errors import TrainingDiverged
from dsr.masks import count_parameters, default_sparse_names
from dsr.methods import METHODS, Method
from dsr.models import create_model, input_shape
from dsr.provenance import code_version
from dsr.schedules import Schedule

CHECKPOINT, INIT = "checkpoint.pt", "init.pt"


@dataclass(frozen=True)
class Runtime:
    """How a run is executed rather than what it computes, so not part of its config.

    bf16 does change the numbers (float32 is the default, as in the paper); the precision of
    every stretch of a run is recorded in its summary.
    """

    channels_last: bool = False  # 4-D inputs, and so activations, in NHWC; weights stay NCHW
    bf16: bool = False  # forward pass and loss under bfloat16 autocast (CUDA or CPU)
    compile: bool = False  # torch.compile the model
    sync_debug: bool = False  # CUDA: warn at every host synchronisation inside the step loop
    # CPU: compute with floats below 1.2e-38 (denormals) as 0. The momentum of pruned weights
    # decays into denormals, which x86 arithmetic handles up to 100x slower: a sparse LeNet
    # step is 2-4x faster late in a run with this on. Changes the numbers only below 1.2e-38.
    flush_denormal: bool = True
    # Whether a missing data set may be downloaded, how many workers stream one: handed to
    # the data loaders (not recorded: it does not change what is computed).
    data: DataAccess = FROM_ENV

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.bf16 else "fp32"


DEFAULT_RUNTIME = Runtime()


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU with bf16 support, or a CPU
    whose oneDNN has bf16 kernels (AVX-512 BF16 or AMX). Elsewhere a CPU runs bf16 autocast in
    fallback kernels: on an AVX2-only AMD EPYC, WRN-28-2 trained at 3 images/s per thread in
    bf16 against 45 in fp32 (``python -m dsr bench`` prints the ratio on any machine)."""
    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if str(device) == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return True  # mps and others: left to the user


def slow_bf16(runtime: Runtime, device: str = "cpu") -> str | None:
    """Why ``runtime`` should not train on ``device`` by default, or None: bf16 autocast on a
    device without bf16 hardware."""
    if not runtime.bf16 or native_bf16(device):
        return None
    capability = torch.backends.cpu.get_cpu_capability() if str(device) == "cpu" else device
    return (
        f"this budget runs bf16 autocast, but this {device} has no bf16 hardware "
        f"(torch reports {capability}), where bf16 trains tens of times slower than fp32; run "
        "it on a CPU with AVX-512 BF16 or AMX, pass --bf16 to insist, or --no-bf16 for fp32 "
        "runs (a different precision: never compared with the bf16 ones)"
    )


def default_runtime(protocol: str, budget: str) -> Runtime:
    """How ``protocol`` at ``budget`` runs unless told otherwise (``config.BUDGET_RUNTIMES``)."""
    return Runtime(**budget_runtime(protocol, budget))


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
    runtimes: list[dict] = field(default_factory=list)  # how each stretch of the run executed

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "events": self.events,
            "runtimes": self.runtimes,
            "torch_rng": torch.get_rng_state(),
            "config": self.cfg.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        self.epoch, self.history, self.events = state["epoch"], state["history"], state["events"]
        self.runtimes = state.get("runtimes", [])
        torch.set_rng_state(state["torch_rng"].cpu())  # mapped to a GPU on load


def data_shape(cfg: RunConfig) -> tuple[int, ...]:
    """The input shape the data is prepared for: the model's, with ``image_size`` (if set) as
    the side of the square crops."""
    shape = input_shape(cfg.model)
    return (*shape[:-2], cfg.image_size, cfg.image_size) if cfg.image_size else shape


def build(
    cfg: RunConfig,
    device: str | torch.device = "cpu",
    data: Data | None = None,
    sources: Sequence[dict[str, Any]] = (),
    access: DataAccess = FROM_ENV,
) -> Trainer:
    """Model, optimizer, method and data of a run, initialised from ``cfg.seed``; a method that
    starts from another run (pruning, static_replica) takes what it needs of that run from
    ``sources`` (:func:`dsr.runs.sources_of`); ``access``: how the data is loaded when
    ``data`` is not given.

    Seeds torch's global RNG with ``cfg.seed``: the run's own stream, which its training goes
    on drawing from (:func:`train` gives the caller's state back afterwards)."""
    cls = METHODS[cfg.method]
    width = cls.model_width(cfg)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, width).to(device)
    if data is None:
        data = load(cfg.dataset, data_shape(cfg), access)
    data = data.subset(cfg.train_subset, cfg.test_subset).to(device)
    lr = Schedule.parse(cfg.lr_schedule)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=lr(0),
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )
    method = cls.from_config(cfg, model, data.steps_per_epoch(cfg.batch_size), optimizer, sources)
    return Trainer(cfg, model, optimizer, method, data, width)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Data,
    batch_size: int = 1000,
    *,
    shard: tuple[int, int] = (0, 1),
    runtime: Runtime = DEFAULT_RUNTIME,
) -> tuple[float, float]:
    """Test loss and accuracy (percent) over the whole test set (each rank a shard)."""
    model.eval()
    device = next(model.parameters()).device
    losses, correct = [], torch.zeros((), dtype=torch.int64, device=device)
    for x, y in data.batches(batch_size, train=False, shard=shard):
        with autocast(device, runtime):
            out = model(memory_format(x, runtime))
            losses.append(F.cross_entropy(out.float(), y, reduction="sum"))
        correct += (out.argmax(1) == y).sum()
    loss = sum(torch.stack(losses).tolist()) if losses else 0.0  # float64 sum, in order
    where = device if distributed.context().world > 1 else "cpu"  # (no float64 on MPS)
    totals = torch.tensor([loss, float(correct)], dtype=torch.float64, device=where)
    loss, right = distributed.all_reduce_sum(totals).tolist()
    return loss / data.n_test, 100.0 * right / data.n_test


def autocast(device: torch.device | str, runtime: Runtime):
    """bf16 autocast when ``runtime.bf16``, else nothing."""
    if not runtime.bf16:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


@contextmanager
def sync_warnings(device: torch.device | str, runtime: Runtime):
    """With ``runtime.sync_debug`` on CUDA, a warning at every host synchronisation inside."""
    if not (runtime.sync_debug and torch.device(device).type == "cuda"):
        yield
        return
    torch.cuda.set_sync_debug_mode("warn")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@contextmanager
def denormals_flushed(on: bool):
    """With ``on``, CPU arithmetic treats denormal floats as 0 inside; the process default
    (keep them) afterwards. torch has no getter for the setting, so it is not restored."""
    torch.set_flush_denormal(on)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def memory_format(x: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """``x`` in channels-last layout when asked for and 4-D, else as it is."""
    if runtime.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def check_shards(n: int, batch_size: int, world: int) -> None:
    """Every rank needs at least one example of every global batch."""
    sizes = {min(batch_size, n - i) for i in range(0, n, batch_size)}
    if world > 1 and min(sizes) < world:
        raise ConfigError(
            f"a batch of {min(sizes)} examples cannot be shared by {world} processes "
            f"(batch_size {batch_size}, {n} training examples)"
        )


def prepare(t: Trainer, device: str, runtime: Runtime) -> tuple[nn.Module, nn.Module]:
    """The modules that run the training and the test forward passes: ``t.model`` itself, or
    wrapped in DistributedDataParallel (under torchrun) and compiled, as asked."""
    train_net: Any = t.model  # a module, or what torch.compile makes of it
    eval_net: Any = t.model
    if distributed.context().world > 1:
        train_net = distributed.wrap(t.model, device)
    if runtime.compile:
        eval_net = torch.compile(t.model)
        train_net = eval_net if train_net is t.model else torch.compile(train_net)
    return train_net, eval_net


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
    runtime: Runtime = DEFAULT_RUNTIME,
    sources: Sequence[dict[str, Any]] = (),
) -> Trainer:
    """Train ``cfg`` to the end (or until ``stop_after`` epochs are done), resuming from
    ``run_dir/checkpoint.pt`` when it exists and checkpointing there after every epoch.
    ``sources``: what a run that starts from other runs takes from them (:func:`build`).

    A run draws from torch's global RNG, seeded from ``cfg.seed`` by :func:`build`; the
    caller's global RNG state (CPU, and the run's CUDA device) is given back when it returns.
    Under torch.distributed every rank calls this; rank 0 alone writes to ``run_dir``.

    Raises:
        TrainingDiverged: the loss of an epoch was not finite.
    """
    cuda = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda):
        return train_seeded(cfg, run_dir, device, progress, stop_after, data, runtime, sources)


def train_seeded(
    cfg: RunConfig,
    run_dir: Path | None,
    device: str,
    progress: bool,
    stop_after: int | None,
    data: Data | None,
    runtime: Runtime,
    sources: Sequence[dict[str, Any]],
) -> Trainer:
    """:func:`train`'s body: leaves the global RNG where the run left it."""
    ctx = distributed.context()
    t = build(cfg, device, data, sources, runtime.data)
    check_shards(t.data.n_train, cfg.batch_size, ctx.world)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if distributed.broadcast_object((run_dir / CHECKPOINT).exists()):
            resume(t, run_dir / CHECKPOINT, device)
        elif ctx.is_main and not (run_dir / INIT).exists():
            io.save_torch({"model": t.model.state_dict()}, run_dir / INIT)  # replicas need it
    run_info = {
        **{k: v for k, v in asdict(runtime).items() if k != "data"},
        "processes": ctx.world,
        "device": str(device),
        "torch": str(torch.__version__),  # a plain str: checkpoints load with weights_only
        **code_version(),  # each stretch its own code: a resumed run may run newer code
        "from_epoch": t.epoch,
    }
    if not t.runtimes or {**t.runtimes[-1], "from_epoch": t.epoch} != run_info:
        t.runtimes.append(run_info)
    net, eval_net = prepare(t, device, runtime)
    l1 = l1_weights(t.model) if cfg.l1 > 0 else []
    last = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    steps = t.data.steps_per_epoch(cfg.batch_size)
    bar = io.progress_bar(
        total=(cfg.epochs - t.epoch) * steps,
        enabled=progress and ctx.is_main,
        desc=f"{cfg.method} s={cfg.sparsity} seed={cfg.seed}",
    )
    lr = Schedule.parse(cfg.lr_schedule)
    n = t.data.n_train
    with denormals_flushed(runtime.flush_denormal):
        while t.epoch < last:
            start = time.perf_counter()
            for group in t.optimizer.param_groups:
                group["lr"] = lr(t.epoch)
            t.model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            batches = t.data.batches(
                cfg.batch_size, train=True, epoch=t.epoch, seed=cfg.seed, shard=ctx.shard
            )
            with sync_warnings(device, runtime):  # no host sync per step (see the module doc)
                for i, (x, y) in enumerate(batches):
                    if lr.within_epochs:  # a boundary inside an epoch: the step's own rate
                        for group in t.optimizer.param_groups:
                            group["lr"] = lr(t.epoch + i / steps)
                    with autocast(device, runtime):
                        out = net(memory_format(x, runtime))
                        if ctx.world == 1:
                            loss = F.cross_entropy(out, y)
                            loss_sum += loss.detach() * len(y)
                        else:  # DDP averages over ranks: scale to the global batch's mean
                            total = F.cross_entropy(out, y, reduction="sum")
                            loss = total * (ctx.world / min(cfg.batch_size, n - i * cfg.batch_size))
                            loss_sum += total.detach()
                    t.optimizer.zero_grad(set_to_none=False)
                    loss.backward()
                    for w in l1:  # L1 penalty l1 * sum|w| on the sparse weights, as a gradient term
                        w.grad.add_(w.detach().sign(), alpha=cfg.l1)  # type: ignore[union-attr]
                    t.method.before_step()
                    t.optimizer.step()
                    io.fault_point("step")  # crash-safety tests kill the process here (dsr.io)
                    event = t.method.after_step()
                    if event is not None:
                        if ctx.world > 1:
                            agreed = distributed.sync_after_update(t.method, t.optimizer)
                            event["ranks_agreed"] = agreed
                        t.events.append(event)
                    correct += (out.argmax(1) == y).sum()
                    bar.update(1)
            train_loss = distributed.all_reduce_sum(loss_sum).item() / n
            if not math.isfinite(train_loss):
                bar.close()
                raise TrainingDiverged(
                    f"training diverged: the mean training loss of epoch {t.epoch} is {train_loss} "
                    f"(learning rate {lr(t.epoch):g})"
                )
            train_acc = 100.0 * distributed.all_reduce_sum(correct).item() / n
            test_loss, test_acc = evaluate(eval_net, t.data, shard=ctx.shard, runtime=runtime)
            counts = count_parameters(t.model)
            t.history.append(
                {
                    "epoch": t.epoch,
                    "lr": lr(t.epoch),
                    "train_loss": train_loss,
                    "train_acc": train_acc,
                    "test_loss": test_loss,
                    "test_acc": test_acc,
                    "active_params": counts["active"],
                    "reallocations": sum(e["epoch"] == t.epoch for e in t.events),
                    "seconds": time.perf_counter() - start,
                }
            )
            t.epoch += 1
            bar.set_postfix(epoch=t.epoch, test_acc=f"{test_acc:.2f}")
            if run_dir is not None and ctx.is_main:
                io.save_torch(t.state_dict(), run_dir / CHECKPOINT)
            distributed.barrier()
    bar.close()
    return t
