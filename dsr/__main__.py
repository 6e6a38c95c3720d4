"""Command line: ``python -m dsr {train,sweep,bench} ...``; ``--help`` on each explains it."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from dsr.config import BUDGETS, PROTOCOLS, ConfigError, RunConfig, coerce, preset

FIELD_HELP = {
    "model": "model registry key (lenet300, wrn28_2, wrn16_2)",
    "dataset": "mnist | cifar10 | cifar10-jpeg | synthetic",
    "method": "method registry key (dsr, static, dense, thin_dense, ...)",
    "sparsity": "fraction of zeros in the sparse tensors, in [0, 1)",
    "lr_schedule": "learning rate per epoch, 'epoch:lr,...'",
    "realloc_schedule": "reallocation period P per epoch, 'epoch:P,...'",
    "realloc_stop": "no reallocation from this epoch on",
    "np_target": "DSR's Np, the target number of pruned weights per reallocation",
    "h0": "DSR's initial threshold H",
    "l1": "L1 coefficient on the sparse weights",
    "train_subset": "train on the first n examples only (0: all)",
    "test_subset": "test on the first n examples only (0: all)",
    "width": "width multiplier of the model",
    "grow_init": "value of regrown weights: zero (official) or kaiming",
    "reset_momentum": "zero the momentum of regrown weights (official: false)",
}


class CommandError(Exception):
    """Bad input on the command line, reported as one line."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (``dsr: error: ...``) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"dsr: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_config_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run configuration (override the protocol's values)")
    g.add_argument(
        "--protocol",
        default="lenet300-mnist",
        choices=sorted(PROTOCOLS),
        help="the paper's setup to start from (default: %(default)s)",
    )
    g.add_argument(
        "--budget",
        default="paper",
        choices=sorted(BUDGETS),
        help="paper: full protocol; cpu: sized for a 2-core CPU; smoke: seconds "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--config",
        type=Path,
        metavar="YAML",
        help="YAML file of config fields (and optionally protocol, budget)",
    )
    for f in fields(RunConfig):
        kind = type(f.default).__name__
        g.add_argument(
            f"--{f.name}",
            metavar=kind.upper(),
            default=None,
            help=f"{FIELD_HELP.get(f.name, f.name)} [{kind}, default {f.default}]",
        )


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime (does not change the result's identity)")
    g.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    g.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads per process (default: all cores for train, 1 for sweep)",
    )
    g.add_argument(
        "--runs-root",
        type=Path,
        default=None,
        help="run cache folder (default: $DSR_RUNS or data/runs)",
    )
    g.add_argument(
        "--download",
        action="store_true",
        help="allow torchvision to download MNIST / CIFAR-10 if missing",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def read_yaml(path: Path) -> dict[str, Any]:
    """Fields from a YAML file, every value read as text and typed by :func:`coerce` as on the
    command line (YAML 1.1 would read ``lr_schedule: 0:0.1`` as the number 0.1)."""
    import yaml

    try:
        data = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
    except (OSError, yaml.YAMLError) as e:
        raise CommandError(f"cannot read config file {path}: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise CommandError(f"config file {path} must hold a mapping of field: value")
    return data


def config_from_args(args: argparse.Namespace, extra_exclude: tuple[str, ...] = ()) -> RunConfig:
    """Protocol at budget, then YAML values, then command-line options."""
    values: dict[str, Any] = read_yaml(args.config) if args.config else {}
    protocol = values.pop("protocol", args.protocol)
    budget = values.pop("budget", args.budget)
    for f in fields(RunConfig):
        if getattr(args, f.name) is not None and f.name not in extra_exclude:
            values[f.name] = getattr(args, f.name)
    return preset(protocol, budget, **{k: coerce(k, v) for k, v in values.items()})


def setup_runtime(args: argparse.Namespace, default_threads: int | None) -> None:
    import torch

    if args.download:
        os.environ["DSR_DOWNLOAD"] = "1"
    threads = args.threads or default_threads
    if threads:
        torch.set_num_threads(threads)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    setup_runtime(args, os.cpu_count())
    from dsr.runs import run, run_dir

    print(
        f"run {cfg.hash}: {cfg.method} {cfg.model}/{cfg.dataset} s={cfg.sparsity} "
        f"seed={cfg.seed}, {cfg.epochs} epochs -> {run_dir(cfg, args.runs_root)}"
    )
    record = run(
        cfg,
        args.runs_root,
        device=args.device,
        progress=not args.no_progress,
        stop_after=args.stop_after,
    )
    if record is None:
        print(f"stopped after {args.stop_after} epochs; run the same command again to resume")
        return 0
    s = record.summary
    print(
        f"test accuracy {s['final_test_acc']:.2f}% ({s['data_variant']}), "
        f"{s['params']['active']:,} of {s['params']['total']:,} parameters active, "
        f"{s['wall_seconds']:.0f} s"
    )
    return 0


def parse_list(text: str, kind: type, name: str) -> list:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CommandError(f"--{name}: cannot read {text!r} as a list of {kind.__name__}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    setup_runtime(args, None)
    from dsr.runs import grid, sweep

    methods = parse_list(args.methods, str, "methods")
    configs = grid(
        cfg,
        methods,
        parse_list(args.sparsities, float, "sparsities"),
        parse_list(args.seeds, int, "seeds"),
    )
    print(f"sweep: {len(configs)} runs, {args.workers} workers x {args.threads or 1} threads")
    status = sweep(
        configs,
        args.runs_root,
        workers=args.workers,
        threads=args.threads or 1,
        device=args.device,
        progress=not args.no_progress,
    )
    failed = {h: s for h, s in status.items() if s.startswith("failed")}
    for h, s in failed.items():
        print(f"{h}: {s}")
    print(f"sweep: {len(status) - len(failed)} finished, {len(failed)} failed")
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    setup_runtime(args, os.cpu_count())
    from dsr.bench import main as bench_main

    return bench_main(args)


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m dsr",
        allow_abbrev=False,
        description="Dynamic Sparse Reparameterization (Mostafa & Wang, ICML 2019): train, "
        "sweep and benchmark sparse networks. Runs are cached by config hash "
        "under data/runs/; asking for a finished run prints its result.",
        epilog="Data root: $DSR_DATA_ROOT (default data/). Example: python -m dsr train "
        "--protocol lenet300-mnist --budget paper --method dsr --sparsity 0.9",
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train",
        allow_abbrev=False,
        help="train one run (or print its cached result)",
        description="Train one configured run, resuming from its checkpoint.",
    )
    add_config_options(t)
    add_runtime_options(t)
    t.add_argument(
        "--stop-after",
        type=positive_int,
        default=None,
        metavar="EPOCHS",
        help="stop after this many epochs in all (resume later)",
    )
    t.set_defaults(func=cmd_train)
    s = sub.add_parser(
        "sweep",
        allow_abbrev=False,
        help="a grid of methods x sparsities x seeds",
        description="Train every run of a grid that is not cached yet, in "
        "parallel worker processes. Safe to stop and restart. A run that diverged "
        "(failed.json in its folder) is reported, not retried: delete that file to retry.",
    )
    s.add_argument("--methods", default="dsr,static,dense", help="comma-separated methods")
    s.add_argument("--sparsities", default="0.9", help="comma-separated sparsities")
    s.add_argument("--seeds", default="0", help="comma-separated seeds")
    s.add_argument("--workers", type=positive_int, default=2, help="worker processes (default 2)")
    add_config_options(s)
    add_runtime_options(s)
    s.set_defaults(func=cmd_sweep)
    b = sub.add_parser(
        "bench",
        allow_abbrev=False,
        help="speed ratios measured in one run",
        description="Measure masked-sparse vs dense step time and the cost of "
        "a DSR reallocation; prints ratios.",
    )
    b.add_argument("--repeats", type=positive_int, default=20, help="timed steps per measurement")
    add_runtime_options(b)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from dsr.data import DataError
    from dsr.io import CheckpointError
    from dsr.train import TrainingDiverged

    try:
        return args.func(args)
    except (ConfigError, CommandError, DataError, CheckpointError, TrainingDiverged, OSError) as e:
        print(f"dsr: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dsr: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
