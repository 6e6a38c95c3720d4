"""Command line: ``python -m dsr {train,sweep,bench,book} ...``; ``--help`` on each explains it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from dsr.config import (
    BUDGETS,
    FIELD_HELP,
    PROTOCOLS,
    ConfigError,
    RunConfig,
    budget_runtime,
    coerce,
    preset,
)
from dsr.errors import CommandError


def terminated(signum: int, frame: object) -> None:
    """SIGTERM handler: stop as Ctrl-C does (the run keeps its last epoch checkpoint)."""
    raise KeyboardInterrupt


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
        names = dict.fromkeys([f"--{f.name.replace('_', '-')}", f"--{f.name}"])  # the dashed first
        text = f"{FIELD_HELP[f.name]} [{kind}, default {f.default}]"
        if kind == "bool":  # --nesterov / --no-nesterov, and the older --nesterov false
            text = text.replace("]", f"; --no-{f.name.replace('_', '-')} turns it off]")
            g.add_argument(*names, dest=f.name, nargs="?", const="true", default=None,
                           metavar="BOOL", help=text)  # fmt: skip
            no = dict.fromkeys([f"--no-{f.name.replace('_', '-')}", f"--no-{f.name}"])
            g.add_argument(*no, dest=f.name, action="store_const", const="false",
                           help=argparse.SUPPRESS)  # fmt: skip
        else:
            g.add_argument(*names, dest=f.name, metavar=kind.upper(), default=None, help=text)


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
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last activations (default: the budget's; on for WRN-28-2 at cpu)",
    )
    g.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (changes the numbers; recorded in the summary; default: the "
        "budget's: on for WRN-28-2 at cpu, fp32 elsewhere)",
    )
    g.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (bench: also time the bf16 + channels-last path compiled)",
    )
    g.add_argument(
        "--no-flush-denormal",
        action="store_true",
        help="keep denormal floats on the CPU (default: flushed to 0, 2-4x faster sparse runs)",
    )
    g.add_argument(
        "--loader-workers",
        type=int,
        default=None,
        help="DataLoader processes for streamed data (imagenet; default min(8, cores))",
    )


def runtime_from_args(args: argparse.Namespace, defaults: dict[str, bool] | None = None):
    """The runtime the options ask for; an option not given takes its value from ``defaults``
    (a budget's, :func:`dsr.config.budget_runtime`), else off."""
    from dsr.data_common import DataAccess
    from dsr.train import Runtime

    defaults = defaults or {}

    def flag(name: str) -> bool:
        given = getattr(args, name)
        return defaults.get(name, False) if given is None else given

    return Runtime(
        channels_last=flag("channels_last"),
        bf16=flag("bf16"),
        compile=args.compile,
        flush_denormal=not args.no_flush_denormal,
        data=DataAccess(download=args.download or None, loader_workers=args.loader_workers),
    )


def checked_runtime(args: argparse.Namespace):
    """The runtime of the options and the budget's defaults; refused when the budget's default
    bf16 would run on a device without bf16 hardware (an option that asks for bf16 insists)."""
    from dsr.train import slow_bf16

    runtime = runtime_from_args(args, budget_runtime_of(args))
    problem = slow_bf16(runtime, args.device) if args.bf16 is None else None
    if problem:
        raise CommandError(problem)
    return runtime


def describe(runtime) -> str:
    """``"bf16-autocast, channels-last"``: how a run executes, for its first line."""
    return ", ".join([runtime.precision] + ["channels-last"] * runtime.channels_last)


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


def protocol_budget(args: argparse.Namespace) -> tuple[dict[str, Any], str, str]:
    """The YAML file's other fields, and the protocol and budget (the file's, else the
    options')."""
    values: dict[str, Any] = read_yaml(args.config) if args.config else {}
    return values, values.pop("protocol", args.protocol), values.pop("budget", args.budget)


def budget_runtime_of(args: argparse.Namespace) -> dict[str, bool]:
    """The runtime defaults of the protocol and budget the options name."""
    _, protocol, budget = protocol_budget(args)
    return budget_runtime(protocol, budget)


def config_from_args(
    args: argparse.Namespace, extra_exclude: tuple[str, ...] = (), method: str | None = None
) -> RunConfig:
    """Protocol at budget, then YAML values, then command-line options (``method``, if given,
    replaces the method they name)."""
    values, protocol, budget = protocol_budget(args)
    for f in fields(RunConfig):
        if getattr(args, f.name) is not None and f.name not in extra_exclude:
            values[f.name] = getattr(args, f.name)
    if method is not None:
        values["method"] = method
    return preset(protocol, budget, **{k: coerce(k, v) for k, v in values.items()})


def setup_runtime(args: argparse.Namespace, default_threads: int | None) -> None:
    import torch

    if default_threads:  # processes started by torchrun share the cores
        default_threads = max(1, default_threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    threads = args.threads or default_threads
    if threads:
        torch.set_num_threads(threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fastest conv algorithms for fixed shapes


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run; under torchrun every process runs this and rank 0 reports."""
    cfg = config_from_args(args)
    setup_runtime(args, os.cpu_count())
    from dsr import distributed
    from dsr.runs import checkpoint_epoch, load_run, run, run_dir

    device = distributed.init_from_env(args.device)
    try:
        main_rank = distributed.context().is_main
        say = print if main_rank else (lambda *a, **k: None)
        runtime = checked_runtime(args)
        say(
            f"run {cfg.hash}: {cfg.method} {cfg.model}/{cfg.dataset} s={cfg.sparsity} "
            f"seed={cfg.seed}, {cfg.epochs} epochs, {describe(runtime)} "
            f"-> {run_dir(cfg, args.runs_root)}"
        )
        stored = load_run(cfg, args.runs_root)
        if stored is None:
            epoch = checkpoint_epoch(run_dir(cfg, args.runs_root))
            if epoch > 0:
                say(f"resuming from its epoch-{epoch} checkpoint ({cfg.epochs - epoch} to go)")
        record = stored or run(
            cfg,
            args.runs_root,
            device=device,
            progress=not args.no_progress and main_rank,
            stop_after=args.stop_after,
            runtime=runtime,
        )
    finally:
        distributed.shutdown()
    if record is None:
        say(f"stopped after {args.stop_after} epochs; run the same command again to resume")
        return 0
    s = record.summary
    if stored is not None:
        say(
            f"stored result, nothing trained: this run finished {s['finished']} on "
            f"{s['device']} ({s['precision']}) in {s['wall_seconds']:.0f} s"
        )
    say(
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


def sweep_configs(
    args: argparse.Namespace, methods: list[str], sparsities: list[float], seeds: list[int]
) -> list[RunConfig]:
    """The configs of a sweep, each once: a plain method name takes the command line's fields
    as they are; a notebook's method spec (``static_replica:fresh``, ``dsr:regrowth=within``,
    ``static_replica:source@2x``) sets its variant or fields and length on top of them, as the
    notebooks' studies do, so a sweep trains exactly the runs a page reads."""
    from dsr.runs import grid
    from dsr.study import method_config, method_name

    values, protocol, budget = protocol_budget(args)
    for f in fields(RunConfig):
        if getattr(args, f.name) is not None:
            values[f.name] = getattr(args, f.name)
    shared = {k: coerce(k, v) for k, v in values.items() if k not in ("method", "sparsity", "seed")}
    out: dict[str, RunConfig] = {}
    for m in methods:
        if ":" in m or "@" in m:
            base = {"protocol": protocol, "budget": budget, "fields": shared}
            found = [
                method_config(base, m, s, seed)
                for s in ([0.0] if method_name(m) == "dense" else sparsities)
                for seed in seeds
            ]
        else:  # each method's own protocol (pruning's epochs) from the options
            found = grid(config_from_args(args, method=m), [m], sparsities, seeds)
        for cfg in found:
            out.setdefault(cfg.hash, cfg)
    return list(out.values())


def cmd_sweep(args: argparse.Namespace) -> int:
    methods = parse_list(args.methods, str, "methods")
    sparsities = parse_list(args.sparsities, float, "sparsities")
    seeds = parse_list(args.seeds, int, "seeds")
    configs = sweep_configs(args, methods, sparsities, seeds)
    setup_runtime(args, None)
    from dsr.runs import sweep

    local = args.launcher == "pool"  # cluster jobs run on other machines: not checked here
    runtime = checked_runtime(args) if local else runtime_from_args(args, budget_runtime_of(args))
    how = f"{args.workers} workers" if args.launcher == "pool" else f"{args.launcher} jobs"
    print(f"sweep: {len(configs)} runs, {how} x {args.threads or 1} threads, {describe(runtime)}")
    status = sweep(
        configs,
        args.runs_root,
        workers=args.workers,
        threads=args.threads or 1,
        device=args.device,
        progress=not args.no_progress,
        runtime=runtime,
        launcher=args.launcher,
        cluster=cluster_options(args),
    )
    failed = {h: s for h, s in status.items() if s.startswith("failed")}
    for h, s in failed.items():
        print(f"{h}: {s}")
    print(f"sweep: {len(status) - len(failed)} finished, {len(failed)} failed")
    return 1 if failed else 0


def cluster_options(args: argparse.Namespace) -> dict[str, Any]:
    """submitit parameters from the --slurm-* options (those given)."""
    names = {
        "slurm_partition": "slurm_partition",
        "slurm_time": "timeout_min",
        "slurm_gpus": "gpus_per_node",
        "slurm_mem": "mem_gb",
    }
    return {key: getattr(args, a) for a, key in names.items() if getattr(args, a) is not None}


def cmd_bench(args: argparse.Namespace) -> int:
    if args.kernels is not None and args.prune_rules is not None:
        raise CommandError("--kernels and --prune-rules are two measurements: give one")
    if args.kernels is not None:
        from dsr import kernels_bench

        setup_runtime(args, 1)
        if args.device != "cpu":
            raise CommandError("--kernels measures CPU kernels: leave --device at cpu")
        result = kernels_bench.write(args.kernels, args.repeats)
        print(f"wrote {len(result['rows'])} rows to {args.kernels}")
        return 0
    if args.prune_rules is not None:
        setup_runtime(args, 1)
        if args.device != "cpu":
            raise CommandError("--prune-rules measures on the CPU: leave --device at cpu")
        from dsr.bench import write_prune_rules

        result = write_prune_rules(args.prune_rules, args.repeats)
        print(f"wrote {len(result['rows'])} rows to {args.prune_rules}")
        return 0
    setup_runtime(args, os.cpu_count())
    if args.images is None:
        args.images = 10_000 if args.device.startswith("cuda") else 0
    if args.images and args.epochs < 2:
        raise CommandError("--epochs must be at least 2 (the first one warms up)")
    from dsr.bench import main as bench_main

    return bench_main(args, runtime_from_args(args))


def cmd_book(args: argparse.Namespace) -> int:
    from dsr.book import build

    index = build(args.profile, args.out, args.runs_root, args.timeout)
    print(f"book: {index}")
    if not args.look:
        return 0
    from dsr import browser

    reason = browser.available()
    if reason:
        raise CommandError(f"--look: {reason}")
    return browser.look(index.parent, args.out / "screenshots")


def cmd_runs(args: argparse.Namespace) -> int:
    from dsr.runs import cache_report, import_runs

    if args.import_from:
        outcomes = import_runs(args.import_from, args.runs_root)
        for folder, outcome in outcomes:
            print(f"{folder}: {outcome}")
        refused = sum(o.startswith("refused") for _, o in outcomes)
        imported = sum(o == "imported" for _, o in outcomes)
        print(
            f"{imported} imported, {len(outcomes) - imported - refused} already there, "
            f"{refused} refused"
        )
        return 2 if refused else 0
    if args.runs_root is not None and not args.runs_root.is_dir():
        raise CommandError(f"no run cache at {args.runs_root}")
    print(cache_report(args.runs_root))
    return 0


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
    s.add_argument(
        "--methods",
        default="dsr,static,dense",
        help="comma-separated methods or the notebooks' method specs: name:variant "
        "(static_replica:fresh), name:field=value[+field=value] (dsr:regrowth=within), "
        "and @Nx for N times the epochs (static_replica:source@2x)",
    )
    s.add_argument("--sparsities", default="0.9", help="comma-separated sparsities")
    s.add_argument("--seeds", default="0", help="comma-separated seeds")
    s.add_argument("--workers", type=positive_int, default=2, help="worker processes (default 2)")
    c = s.add_argument_group("launcher (where the runs execute)")
    c.add_argument(
        "--launcher",
        default="pool",
        choices=["pool", "slurm", "local-submitit"],
        help="pool: local worker processes (default); slurm: one Slurm job per run through "
        "submitit; local-submitit: submitit's local executor (to try the Slurm path)",
    )
    c.add_argument("--slurm-partition", default=None, help="Slurm partition")
    c.add_argument("--slurm-time", type=int, default=None, help="time limit per job, minutes")
    c.add_argument("--slurm-gpus", type=int, default=None, help="GPUs per job")
    c.add_argument("--slurm-mem", type=int, default=None, help="memory per job, GB")
    add_config_options(s)
    add_runtime_options(s)
    s.set_defaults(func=cmd_sweep)
    b = sub.add_parser(
        "bench",
        allow_abbrev=False,
        help="speed ratios and WRN-28-2 throughput measured in one run",
        description="Measure masked-sparse vs dense step time and the cost of "
        "a DSR reallocation (ratios); on a GPU also WRN-28-2 training images/s, dense and "
        "DSR, and the projected wall time of the paper's 200-epoch run.",
    )
    b.add_argument("--repeats", type=positive_int, default=20, help="timed steps per measurement")
    b.add_argument(
        "--images",
        type=int,
        default=None,
        help="images per epoch of the throughput runs (default 10000 on CUDA, 0 = none on CPU)",
    )
    b.add_argument("--epochs", type=int, default=3, help="epochs per throughput run (>= 2)")
    b.add_argument("--no-ratios", action="store_true", help="skip the sparse/dense ratios")
    b.add_argument(
        "--sync-check", action="store_true", help="count host syncs of a training epoch (CUDA)"
    )
    b.add_argument(
        "--kernels",
        metavar="JSON",
        type=Path,
        help="instead: time masked dense against torch.sparse CSR kernels at the LeNet-300-100 "
        "and WRN-28-2 layer shapes, s = 0.5-0.99 (CPU, one thread unless --threads), and write "
        "them to JSON (the book reads data/bench/sparse_kernels.json)",
    )
    b.add_argument(
        "--prune-rules",
        metavar="JSON",
        type=Path,
        help="instead: time one DSR reallocation under the adaptive threshold against one "
        "under exact top-K, same weights and Np, on LeNet-300-100 (s = 0.9, 0.99), WRN-28-2 "
        "and ResNet-50 (s = 0.9), CPU, one thread unless --threads, and write them to JSON "
        "(the book reads data/bench/prune_rules.json)",
    )
    add_runtime_options(b)
    b.set_defaults(func=cmd_bench)
    k = sub.add_parser(
        "book",
        allow_abbrev=False,
        help="execute the notebooks and build the HTML book",
        description="Execute every notebook with papermill at a profile, then build the "
        "HTML with jupyter-book (warnings are errors). The default profile reads the "
        "committed results and trains nothing; smoke, cpu and paper train what is missing.",
    )
    k.add_argument(
        "--profile",
        default="default",
        choices=["default", "smoke", "cpu", "paper"],
        help="default: committed results, no training; smoke: seconds; cpu, paper: those "
        "budgets (default: %(default)s)",
    )
    k.add_argument(
        "--out", type=Path, default=Path("build/book"), help="build folder (default: %(default)s)"
    )
    k.add_argument(
        "--runs-root",
        type=Path,
        default=None,
        help="run cache folder (default: $DSR_RUNS or data/runs)",
    )
    k.add_argument(
        "--timeout", type=int, default=None, help="seconds a notebook cell may run (default: none)"
    )
    k.add_argument(
        "--look",
        action="store_true",
        help="then open every page in headless Chromium at 1400 and 400 px, save screenshots "
        "to OUT/screenshots and list what looks broken (needs chromium, chromium-driver, "
        "selenium); exit 1 if anything does",
    )
    k.set_defaults(func=cmd_book)
    r = sub.add_parser(
        "runs",
        allow_abbrev=False,
        help="list the run cache: each run's state, accuracy and cost",
        description="One line per run folder of the cache: model, data set, method, sparsity, "
        "seed, epochs, state (done, epoch k of n, failed), final test accuracy, wall seconds and "
        "cost (CPU-hours: wall time x torch threads x processes; GPU-hours: wall time x "
        "processes, so runs that shared one GPU each count their whole wall time), then the "
        "totals of the finished runs. With --import, copy finished runs trained elsewhere "
        "(a GPU campaign's output folder) into the cache instead, each after checking that "
        "its folder name is its config's hash, that its summary belongs to that config and "
        "records clean code at a commit of this repository, precision, device and a data "
        "checksum matching the cache's runs of that data variant, and that it has one metrics "
        "row per epoch; checkpoints are not copied.",
    )
    r.add_argument(
        "--import",
        dest="import_from",
        type=Path,
        nargs="+",
        default=None,
        metavar="FOLDER",
        help="run folders, or folders holding them (such as a campaign's output folder), to import",
    )
    r.add_argument(
        "--runs-root",
        type=Path,
        default=None,
        help="run cache folder (default: $DSR_RUNS or data/runs)",
    )
    r.set_defaults(func=cmd_runs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from dsr.book import BookError
    from dsr.data import DataError
    from dsr.io import CheckpointError
    from dsr.train import TrainingDiverged

    try:
        signal.signal(signal.SIGTERM, terminated)  # a SIGTERM ends a run like Ctrl-C does
    except ValueError:  # called from a thread other than the main one (tests)
        pass
    try:
        return args.func(args)
    except (
        ConfigError,
        CommandError,
        DataError,
        CheckpointError,
        TrainingDiverged,
        BookError,
        OSError,
    ) as e:
        print(f"dsr: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        trains = (
            args.func in (cmd_train, cmd_sweep) or getattr(args, "profile", "default") != "default"
        )
        again = "; run the same command again to resume" if trains else ""
        print(f"dsr: interrupted{again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
