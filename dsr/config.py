"""Run configuration: one flat, frozen dataclass, named protocols and budgets.

Every field is a scalar or a string, so the fields double as the parameters of the book's
papermill notebooks. A run is identified by :func:`config_hash` of its resolved config.

Protocols are the paper's setups read from the official code
(github.com/IntelAI/dynamic-reparameterization); budgets scale a protocol down for CI (``smoke``)
or for a 2-core CPU (``cpu``), keeping the shape of its schedules. ``paper`` is the protocol as is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from dsr.errors import ConfigError
from dsr.schedules import Schedule, ScheduleError


def setting(default: Any, help: str, choices: tuple[str, ...] = ()) -> Any:
    """A field of :class:`RunConfig`, declared once: its default, its help text (the command
    line's ``--help``) and, for a string with a fixed set of values, those values (checked by
    :func:`validate`)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines the result of one training run.

    Defaults are the LeNet-300-100 / MNIST protocol of the DSR paper with DSR at s = 0.9.
    Never change a default once runs exist: cached runs are matched by their full config.
    """

    # what is trained
    model: str = setting("lenet300", "model registry key (lenet300, wrn28_2, wrn16_2, resnet50)")
    dataset: str = setting("mnist", "mnist | cifar10 | cifar10-jpeg | synthetic | imagenet")
    method: str = setting(
        "dsr",
        "method registry key (dsr, static, dense, thin_dense, set, deepr, pruning, "
        "static_replica, rigl, snfs)",
    )
    sparsity: float = setting(0.9, "fraction of zeros in the sparse tensors, in [0, 1)")
    seed: int = setting(0, "random seed of the initialisation, masks and data order")
    width: float = setting(1.0, "width multiplier of the model")
    # optimisation (SGD, momentum 0.9, Nesterov, as in the official code)
    epochs: int = setting(100, "number of passes over the training set")
    batch_size: int = setting(100, "training examples per optimizer step")
    lr_schedule: str = setting(
        "0:0.1,25:0.02,50:0.004,75:0.0008", "learning rate per epoch, 'epoch:lr,...'"
    )
    momentum: float = setting(0.9, "SGD momentum coefficient")
    nesterov: bool = setting(True, "Nesterov momentum (official: on)")
    weight_decay: float = setting(0.0, "L2 coefficient on all weights (the paper's l1 is separate)")
    l1: float = setting(1e-4, "L1 coefficient on the sparse weights")
    train_subset: int = setting(0, "train on n examples drawn stratified by class (0: all)")
    test_subset: int = setting(0, "test on n examples drawn stratified by class (0: all)")
    # DSR (Mostafa & Wang 2019, Algorithm 1, and the official code)
    np_target: int = setting(
        600, "DSR's Np, the target number of weights pruned per reallocation (weights)"
    )
    h0: float = setting(1e-3, "DSR's initial threshold H")
    delta: float = setting(
        0.1, "DSR's threshold step: H is scaled by (1 +- delta) after each reallocation"
    )
    realloc_schedule: str = setting(
        "0:100,25:200,50:400,75:800",
        "reallocation period P (optimizer steps) per epoch, 'epoch:P,...'",
    )
    realloc_stop: int = setting(90, "epoch from which on no reallocation happens")
    grow_init: str = setting(
        "zero", "value of regrown weights: zero (official) or kaiming", ("zero", "kaiming")
    )
    reset_momentum: bool = setting(False, "zero the momentum of regrown weights (official: false)")
    # DSR ablations (not in the paper): where regrowth goes, how the pruned weights are chosen
    regrowth: str = setting(
        "paper",
        "ablation, where DSR regrows: paper (by surviving weights) | within (each tensor its own "
        "pruned count) | anti (by zeros) | uniform (equal shares)",
        ("paper", "within", "anti", "uniform"),
    )
    prune_rule: str = setting(
        "threshold",
        "ablation, what DSR prunes: threshold (|w| < adaptive H, official) | topk (exactly Np "
        "smallest |w|)",
        ("threshold", "topk"),
    )
    realloc_start: int = setting(
        0, "ablation: no reallocation before this epoch (DSR, SET; 0: official)"
    )
    # initial masks of the methods that draw them at random
    sparse_init: str = setting(
        "uniform",
        "initial masks: uniform (same sparsity per tensor), erk, or protect_output (uniform, "
        "LeNet-300-100's output layer kept at 100 weights above s = 0.9)",
        ("uniform", "erk", "protect_output"),
    )
    # runs that start from another cached run (pruning: a dense run; static_replica: a dsr run)
    source_epochs: int = setting(
        0, "pruning / static_replica: epochs of the run they start from (0: epochs)"
    )
    source_lr_schedule: str = setting(
        "", "pruning / static_replica: the source run's lr_schedule ('': same)"
    )
    source_weight_decay: float = setting(
        -1.0, "pruning / static_replica: the source run's weight_decay (-1: same)"
    )
    # SET (Mocanu et al. 2018) as the DSR paper ran it
    set_zeta: float = setting(
        0.0, "SET's pruned fraction per tensor (0: Np / active, DSR's volume)"
    )
    set_variant: str = setting(
        "dsr",
        "SET as the DSR paper ran it (dsr) or Mocanu et al.'s (original)",
        ("dsr", "original"),
    )
    # DeepR (Bellec et al. 2018) as the DSR paper ran it
    deepr_eta: float = setting(0.01, "DeepR: gradient noise std is sqrt(2 eta T)")
    deepr_temperature_schedule: str = setting(
        "0:1e-05,25:1e-08,80:1e-12,140:1e-15", "DeepR temperature T per epoch, 'epoch:T,...'"
    )
    deepr_sign_reference: str = setting(
        "previous",
        "DeepR sign reference: previous (correct) or stale_init (official)",
        ("previous", "stale_init"),
    )
    # compressed sparse (Zhu & Gupta 2017): prune at the end of epochs 0, k, 2k, ...
    prune_every: int = setting(2, "pruning: epochs between two prunes (epochs)")
    prune_times: int = setting(20, "pruning: number of prunes on the cubic schedule")
    # tensor: each tensor to the target | official: tensor, but LeNet-300-100's output layer
    # stops at 0.9 when the target is above (official main.py) | global: one |w| ranking
    prune_scope: str = setting(
        "tensor",
        "pruning: every tensor to the target sparsity (tensor); the official code's rule, the "
        "compressed baseline's (official: as tensor, but LeNet-300-100's output layer keeps 100 "
        "weights above s = 0.9); or one magnitude ranking over all sparse tensors (global)",
        ("tensor", "official", "global"),
    )
    prune_time_scale: float = setting(
        1.0,
        "compressed: each prune after its official step times this factor (a run scaled in time: "
        "WRN-28-2 at the cpu budget; 1: official)",
    )
    # static replica of a dsr run's final masks
    replica_of_seed: int = setting(
        -1, "static_replica: seed of the source dsr run (-1: this run's seed)"
    )
    replica_init: str = setting(
        "fresh",
        "static_replica weights: fresh (new seed) or source (the dsr run's init)",
        ("fresh", "source"),
    )
    # thin dense: match the sparse network's parameters or its memory (1 bit per mask position)
    thin_match: str = setting(
        "params",
        "thin_dense sized to the sparse network's params or memory (1 bit / mask)",
        ("params", "memory"),
    )
    # RigL (Evci et al. 2020) and sparse momentum, SNFS (Dettmers & Zettlemoyer 2019)
    rigl_drop_fraction: float = setting(0.3, "RigL's alpha, cosine-annealed to 0")
    rigl_update_every: int = setting(100, "RigL's Delta T, optimizer steps between mask updates")
    rigl_end: float = setting(0.75, "RigL: fraction of training after which masks are frozen")
    snfs_prune_rate: float = setting(0.5, "sparse momentum's prune rate p, cosine-annealed")
    # DSR at kernel granularity (the paper's extra runs)
    granularity: str = setting(
        "weight",
        "DSR prunes and regrows single weights or whole kxk kernels: weight | kernel",
        ("weight", "kernel"),
    )
    # data
    image_size: int = setting(
        0, "side of the square crops of streamed images (imagenet; 0: the model's 224)"
    )

    def __post_init__(self) -> None:
        if self.method == "dense" and self.sparsity != 0.0:
            # dense has no sparsity: one run per seed, whatever sparsity was asked for
            object.__setattr__(self, "sparsity", 0.0)
        validate(self)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (validated); the original stays as it is."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        return config_hash(self)


FIELD_TYPES: dict[str, type] = {f.name: type(f.default) for f in fields(RunConfig)}


def config_hash(cfg: RunConfig) -> str:
    """Stable 12-hex-digit id of a config: sha256 of the fields that differ from the defaults.

    Hashing only non-default fields keeps the ids of existing runs when a new field (with a
    default that reproduces the old behaviour) is added.
    """
    diff = {
        f.name: getattr(cfg, f.name)
        for f in fields(cfg)
        if getattr(cfg, f.name) != f.default or f.name in ("model", "dataset", "method")
    }
    text = json.dumps(diff, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def coerce(name: str, value: Any) -> Any:
    """Convert a value read from a command line, YAML or a notebook to the field's type."""
    if name not in FIELD_TYPES:
        raise ConfigError(f"unknown config field: {name}")
    kind = FIELD_TYPES[name]
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}")


# The values a string field allows (its metadata), checked by validate.
CHOICES: dict[str, tuple[str, ...]] = {
    f.name: f.metadata["choices"] for f in fields(RunConfig) if f.metadata["choices"]
}
# The help text of every field (its metadata): the command line's and the notebooks' own.
FIELD_HELP: dict[str, str] = {f.name: f.metadata["help"] for f in fields(RunConfig)}


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError with a one-line reason if ``cfg`` cannot be run."""
    from dsr.data import DATASETS
    from dsr.methods import METHODS
    from dsr.models import MODELS

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        kind = FIELD_TYPES[f.name]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(f"{f.name}: expected {kind.__name__}, got {value!r}")
    for name, registry in (("model", MODELS), ("dataset", DATASETS), ("method", METHODS)):
        if getattr(cfg, name) not in registry:
            known = ", ".join(sorted(registry))
            raise ConfigError(f"unknown {name} {getattr(cfg, name)!r} (known: {known})")
    check_input_shape(cfg.model, cfg.dataset)
    if not (0.0 <= cfg.sparsity < 1.0) or math.isnan(cfg.sparsity):
        raise ConfigError(f"sparsity must be in [0, 1), got {cfg.sparsity}")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("train_subset", "test_subset", "np_target", "realloc_stop", "seed"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be non-negative, got {getattr(cfg, name)}")
    for name in ("width", "h0"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{name} must be positive, got {getattr(cfg, name)}")
    for name in ("weight_decay", "l1", "momentum", "delta"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be non-negative, got {getattr(cfg, name)}")
    for name, choices in CHOICES.items():
        if getattr(cfg, name) not in choices:
            known = " or ".join(repr(c) for c in choices)
            raise ConfigError(f"{name} must be {known}, got {getattr(cfg, name)!r}")
    for name in ("source_epochs", "deepr_eta"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be non-negative, got {getattr(cfg, name)}")
    if cfg.source_weight_decay < 0 and cfg.source_weight_decay != -1:
        raise ConfigError(f"source_weight_decay must be -1 or >= 0, got {cfg.source_weight_decay}")
    if cfg.replica_of_seed < -1:
        raise ConfigError(f"replica_of_seed must be -1 or a seed, got {cfg.replica_of_seed}")
    for name in ("granularity", "regrowth", "prune_rule", "realloc_start"):
        default = RunConfig.__dataclass_fields__[name].default
        if getattr(cfg, name) != default and name not in METHODS[cfg.method].config_fields:
            raise ConfigError(f"{name} {getattr(cfg, name)!r} is not an option of {cfg.method}")
    if cfg.granularity == "kernel" and (cfg.regrowth != "paper" or cfg.prune_rule != "threshold"):
        raise ConfigError("granularity 'kernel' runs the paper's regrowth and threshold only")
    if cfg.realloc_start < 0 or cfg.realloc_start >= max(1, cfg.realloc_stop):
        raise ConfigError(
            f"realloc_start must be in [0, realloc_stop = {cfg.realloc_stop}), "
            f"got {cfg.realloc_start}"
        )
    if cfg.sparse_init == "protect_output" and cfg.model != "lenet300":
        raise ConfigError(
            "sparse_init 'protect_output' is the official rule for lenet300's 10 x 100 output "
            f"layer; {cfg.model} has no such layer"
        )
    if cfg.granularity == "kernel" and cfg.model == "lenet300":
        raise ConfigError("granularity 'kernel' needs convolutions: lenet300 has none")
    reads_np = "np_target" in METHODS[cfg.method].config_fields and not cfg.set_zeta > 0
    if cfg.np_target < 1 and reads_np:  # SET with its own zeta does not read Np
        raise ConfigError(f"np_target must be at least 1 for {cfg.method}, got {cfg.np_target}")
    if cfg.image_size and (cfg.dataset != "imagenet" or cfg.image_size < 8):
        raise ConfigError(
            f"image_size applies to imagenet only and must be at least 8, got {cfg.image_size}"
        )
    try:
        Schedule.parse(cfg.lr_schedule, "lr_schedule")
        periods = Schedule.parse(cfg.realloc_schedule, "realloc_schedule")
        Schedule.parse(cfg.deepr_temperature_schedule, "deepr_temperature_schedule")
        if cfg.source_lr_schedule:
            Schedule.parse(cfg.source_lr_schedule, "source_lr_schedule")
    except ScheduleError as e:
        raise ConfigError(str(e)) from None
    if min(periods.values) < 1 or any(not float(v).is_integer() for v in periods.values):
        raise ConfigError(f"realloc_schedule periods must be whole numbers >= 1: {periods}")
    METHODS[cfg.method].check_config(cfg)


def check_input_shape(model: str, dataset: str) -> None:
    """Raise ConfigError if ``dataset`` gives inputs of another shape than ``model`` takes."""
    from dsr.data import INPUT_SHAPES
    from dsr.models import input_shape

    given, taken = INPUT_SHAPES.get(dataset), input_shape(model)
    if given is not None and given != taken:
        raise ConfigError(
            f"model {model} takes inputs of shape {taken}, dataset {dataset} gives {given}"
        )


# --- protocols and budgets -------------------------------------------------------------------

PROTOCOLS: dict[str, dict[str, Any]] = {
    # ICLR-2019 submission, LeNet-300-100 on MNIST (reference README, "LeNet-300-100").
    "lenet300-mnist": dict(
        model="lenet300",
        dataset="mnist",
        epochs=100,
        batch_size=100,
        lr_schedule="0:0.1,25:0.02,50:0.004,75:0.0008",
        weight_decay=0.0,
        l1=1e-4,
        np_target=600,
        realloc_schedule="0:100,25:200,50:400,75:800",
        realloc_stop=90,
    ),
    # ICML-2019, WRN-28-2 on CIFAR-10 (reference README, "WRN-28-2 training").
    "wrn28_2-cifar10": dict(
        model="wrn28_2",
        dataset="cifar10",
        epochs=200,
        batch_size=100,
        lr_schedule="0:0.1,60:0.02,120:0.004,160:0.0008",
        weight_decay=5e-4,
        l1=0.0,
        np_target=20000,
        realloc_schedule="0:100,25:200,80:400,140:800",
        realloc_stop=190,
    ),
    # ICML-2019, ResNet-50 on ImageNet: DSR's schedule and Np from the reference README; the
    # optimisation is the standard ResNet-50 recipe (batch 256, LR 0.1 divided by 10 every 30
    # epochs, weight decay 1e-4), which the reference README does not list.
    "resnet50-imagenet": dict(
        model="resnet50",
        dataset="imagenet",
        epochs=100,
        batch_size=256,
        lr_schedule="0:0.1,30:0.01,60:0.001,90:0.0001",
        weight_decay=1e-4,
        l1=0.0,
        np_target=400_000,
        realloc_schedule="0:1000,25:2000,50:4000,75:8000",
        realloc_stop=95,
    ),
}

# A budget: total epochs (schedule boundaries scale with it), a divisor of the reallocation
# period (so that a short run still reallocates), and data subsets. None: not offered.
BUDGETS: dict[str, dict[str, dict[str, Any] | None]] = {
    "paper": {},
    "cpu": {
        "lenet300-mnist": {},  # the full protocol runs in minutes on a CPU
        # A reduced-budget run, not the paper's protocol: all 50,000 training images and the
        # whole 10,000-image test set, 13 epochs instead of 200. Sized for one CPU thread on the
        # bf16-autocast + channels-last path (--bf16 --channels-last), measured at 131 training
        # images/s on a quiet machine: 13 x (382 s of training + the test pass) is about 1.5 h.
        # Scaled by 13/200 as fractions of the run: the learning-rate drops (epochs 60, 120,
        # 160 -> 4, 8, 10), the reallocation-period boundaries (25, 80, 140 -> 2, 5, 9) and the
        # stop (190 -> 12). The periods themselves (100-800 steps) are the paper's: an epoch is
        # 500 steps of batch 100, as in the paper, so reallocations per epoch are unchanged.
        "wrn28_2-cifar10": dict(epochs=13),
        "resnet50-imagenet": None,  # weeks on a CPU
    },
    "smoke": {
        "lenet300-mnist": dict(epochs=2, train_subset=2000, test_subset=1000, period_divisor=20),
        "wrn28_2-cifar10": dict(
            epochs=2, train_subset=200, test_subset=200, batch_size=50, period_divisor=50
        ),
        # for a tiny image folder (dsr.imagefolder.make_image_folder): 32x32 crops
        "resnet50-imagenet": dict(
            epochs=2,
            train_subset=40,
            test_subset=20,
            batch_size=8,
            image_size=32,
            period_divisor=500,
        ),
    },
}


# How a protocol at a budget runs unless told otherwise: runtime options (dsr.train.Runtime),
# not part of a run's identity. A run's precision is recorded in its summary, and no verdict
# compares runs of different precision. WRN-28-2 at the cpu budget runs under bfloat16
# autocast with channels-last activations: on one thread of an AVX-512-BF16 CPU about 2-3x
# fp32 (python -m dsr bench prints the ratio); --no-bf16 --no-channels-last run it in fp32.
# On a CPU without bf16 hardware bf16 runs in fallback kernels: on an AVX2-only AMD EPYC one
# WRN-28-2 step measured 3 images/s per thread in bf16, 45 in fp32, 55 in fp32 channels-last
# (dsr.bench.bench_paths, one run); there the budget's default is refused (dsr.train.slow_bf16)
# rather than silently switched to fp32, which would split the runs into two precisions.
BUDGET_RUNTIMES: dict[str, dict[str, dict[str, bool]]] = {
    "cpu": {"wrn28_2-cifar10": dict(bf16=True, channels_last=True)},
}


def budget_runtime(protocol: str, budget: str) -> dict[str, Any]:
    """The runtime options a protocol at a budget runs with by default (empty: fp32, NCHW)."""
    return dict(BUDGET_RUNTIMES.get(budget, {}).get(protocol, {}))


def with_method(
    base: dict[str, Any], method: str, factor: float, protocol: str = "", budget: str = ""
) -> dict[str, Any]:
    """``base`` (a protocol at a budget, ``factor`` its length over the protocol's) with
    ``method``'s protocol changes applied: each method declares its own
    (:meth:`dsr.methods.Method.protocol_values`; e.g. DeepR's L1 and weight decay, the
    compressed run's 48 epochs, scaled in time at the ``cpu`` budget). An unknown method
    changes nothing here: validating the config names it."""
    from dsr.methods import METHODS  # torch: only once a config is built (see validate)

    cls = METHODS.get(method)
    if cls is None:
        return dict(base, method=method)
    return cls.protocol_values(base, factor, protocol, budget)


def normalise_source(values: dict[str, Any]) -> dict[str, Any]:
    """Drop source fields that equal the run's own (their defaults mean "the same"), so that
    one run has one config and one hash."""
    out = dict(values)
    if out.get("source_epochs") == out.get("epochs"):
        out.pop("source_epochs")
    if out.get("source_lr_schedule") == out.get("lr_schedule"):
        out.pop("source_lr_schedule")
    if out.get("source_weight_decay") == out.get("weight_decay", RunConfig.weight_decay):
        out.pop("source_weight_decay")
    return out


def preset(protocol: str = "lenet300-mnist", budget: str = "paper", **overrides: Any) -> RunConfig:
    """The resolved config of a protocol at a budget, with field overrides applied last.

    When ``overrides`` name a method, that method's protocol changes (:func:`with_method`)
    are applied before the other overrides.

    Raises:
        ConfigError: unknown protocol, budget or field, or an invalid value.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r} (known: {', '.join(BUDGETS)})")
    base = dict(PROTOCOLS[protocol])
    if BUDGETS[budget].get(protocol, {}) is None:
        raise ConfigError(f"budget {budget!r} is not offered for {protocol}")
    scale = dict(BUDGETS[budget].get(protocol) or {})
    divisor = scale.pop("period_divisor", 1)
    factor = scale.get("epochs", base["epochs"]) / base["epochs"]
    base.update(scale)
    if factor != 1 or divisor != 1:
        lr = Schedule.parse(base["lr_schedule"]).scaled(factor)
        periods = Schedule.parse(base["realloc_schedule"]).scaled(factor)
        periods = Schedule(
            periods.epochs, tuple(max(1, round(v / divisor)) for v in periods.values)
        )
        base["lr_schedule"] = lr.format()
        base["realloc_schedule"] = ",".join(
            f"{e}:{int(v)}" for e, v in zip(periods.epochs, periods.values)
        )
        base["realloc_stop"] = max(1, int(base["realloc_stop"] * factor))
    overrides = {k: coerce(k, v) for k, v in overrides.items()}
    if "method" in overrides:
        base = with_method(base, overrides["method"], factor, protocol, budget)
    base.update(overrides)
    try:
        return RunConfig(**normalise_source(base))
    except TypeError as e:
        raise ConfigError(str(e)) from None
