"""The run cache: ``run(cfg)`` trains a config once and returns its stored record thereafter.

A run lives in ``<runs root>/<config hash>/`` (root: ``DSR_RUNS``, default the project's
``data/runs``):

* ``config.json``      the resolved config
* ``metrics.csv``      one row per epoch (losses, accuracies, active parameters, seconds)
* ``reallocations.jsonl``  one line per mask update (step, threshold, pruned, grown, per tensor)
* ``masks_final.npz``  the final masks, bit-packed (sparse methods)
* ``summary.json``     final accuracy, parameter counts, densities, wall time, provenance;
  written last, so its presence means the run is complete
* ``checkpoint.pt``, ``init.pt``, ``final.pt``  resume state and weights (not committed)
* ``failed.json``      why a run stopped (diverged), if it did

A lock file makes a second process asking for the same run wait and then read the result.
Every file is written atomically (:mod:`dsr.io`), so a run killed at any moment leaves only
complete files (and perhaps a temporary one, deleted when the run is started again) and resumes
from its last epoch checkpoint. A failed run is not retried: asking for it again raises
``TrainingDiverged`` with the recorded reason, without training (on CPU it would diverge at the
same step again). Delete its ``failed.json`` to try again.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass
from io import BytesIO
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsr import distributed, flops, io
from dsr.config import ConfigError, RunConfig
from dsr.data import PROJECT, Data, DataError, file_lock, load
from dsr.masks import MASK, count_parameters
from dsr.methods import METHODS
from dsr.models import create_model
from dsr.provenance import code_version
from dsr.train import DEFAULT_RUNTIME, Runtime, Trainer, TrainingDiverged, data_shape, train

SUMMARY, FAILED = "summary.json", "failed.json"


def runs_root() -> Path:
    return Path(os.environ.get("DSR_RUNS", PROJECT / "data" / "runs"))


@dataclass
class RunRecord:
    """A finished run as stored on disk."""

    path: Path
    config: RunConfig
    summary: dict

    def metrics(self) -> list[dict]:
        import csv

        with open(self.path / "metrics.csv") as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]

    def reallocations(self) -> list[dict]:
        lines = (self.path / "reallocations.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def final_masks(self) -> dict[str, torch.Tensor]:
        """The bool masks at the end of the run, by sparse module name."""
        packed = np.load(self.path / "masks_final.npz")
        shapes = json.loads(str(packed["__shapes__"]))
        return {
            n: torch.from_numpy(np.unpackbits(packed[n])[: int(np.prod(s))].astype(bool).reshape(s))
            for n, s in shapes.items()
        }


def run_dir(cfg: RunConfig, root: Path | None = None) -> Path:
    return (root or runs_root()) / cfg.hash


def load_run(cfg: RunConfig, root: Path | None = None) -> RunRecord | None:
    """The finished run of ``cfg``, or None. A stored config must equal ``cfg`` exactly."""
    path = run_dir(cfg, root)
    if not (path / SUMMARY).exists():
        return None
    if stored_config(path) != cfg.to_dict():
        return None
    return RunRecord(path, cfg, io.read_json(path / SUMMARY))


def stored_config(path: Path) -> dict[str, Any]:
    """The config stored in run folder ``path``, with defaults for fields added since."""
    return {**RunConfig().to_dict(), **io.read_json(path / "config.json")}


def recorded_failure(cfg: RunConfig, root: Path | None = None) -> str | None:
    """Why ``cfg`` failed before (from its ``failed.json``), or None."""
    path = run_dir(cfg, root) / FAILED
    return io.read_json(path)["reason"] if path.exists() else None


def check_device(device: str) -> None:
    """Raise ConfigError unless ``device`` names a torch device that this machine has."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r} (e.g. cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r} asked for, but there are only "
            f"{torch.cuda.device_count()} CUDA devices"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} asked for, but MPS is not available here")


def check_request(cfg: RunConfig, root: Path | None, device: str, stop_after: int | None) -> None:
    """Refuse, before anything is written, what cannot run: a bad device or ``stop_after``,
    a run that failed before, a run folder that holds another config."""
    check_device(device)
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop_after must be at least 1 epoch, got {stop_after}")
    reason = recorded_failure(cfg, root)
    if reason is not None:
        raise TrainingDiverged(
            f"{reason} (recorded before; delete {run_dir(cfg, root) / FAILED} to try again)"
        )
    path = run_dir(cfg, root)
    if (path / "config.json").exists() and stored_config(path) != cfg.to_dict():
        raise io.CheckpointError(f"run folder {path} holds a different config: delete it")


def run(
    cfg: RunConfig,
    root: Path | None = None,
    *,
    device: str = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
    data: Data | None = None,
    runtime: Runtime = DEFAULT_RUNTIME,
) -> RunRecord | None:
    """Return the finished run of ``cfg``, training (or resuming) it first if needed.

    With ``stop_after`` the run trains at most that many epochs and returns None if unfinished.
    Device, data and stored files are checked before anything is written, so bad input leaves
    the cache as it was; ``data`` (the full data set of ``cfg.dataset``, already loaded) skips
    the loading. Under torch.distributed (torchrun) every rank calls this: rank 0 takes the
    lock, decides whether to train and writes the files; every rank returns the record.

    Raises:
        ConfigError: a device this machine lacks, or ``stop_after`` < 1.
        DataError: the data set is missing or corrupt.
        CheckpointError: a stored file of this run cannot be read, or holds another config.
        TrainingDiverged: the loss became NaN or infinite, now (recorded in ``failed.json``)
            or in an earlier attempt.
    """
    ctx = distributed.context()
    record = load_run(cfg, root)
    if distributed.broadcast_object(record is not None):
        return record or load_run(cfg, root)
    check_request(cfg, root, device, stop_after)
    sources = sources_of(cfg, root, device, progress, data, runtime)  # e.g. pruning's dense run

    data = data if data is not None else load(cfg.dataset, data_shape(cfg), runtime.data)
    code_version()  # record the code as it is when training starts
    path = run_dir(cfg, root)
    path.mkdir(parents=True, exist_ok=True)
    with file_lock(path / ".lock") if ctx.is_main else nullcontext():
        record = load_run(cfg, root)  # another process may have finished it meanwhile
        if distributed.broadcast_object(record is not None):
            return record or load_run(cfg, root)
        check_request(cfg, root, device, stop_after)  # or failed meanwhile
        if ctx.is_main:
            io.remove_temp_files(path)  # left by a process killed while writing
            if not (path / "config.json").exists():
                io.write_json(path / "config.json", cfg.to_dict())
        distributed.barrier()
        t = train_or_record_failure(cfg, path, device, progress, stop_after, data, runtime, sources)
        if t.epoch < cfg.epochs:
            return None
        if ctx.is_main:
            write_results(t, path, device)
    distributed.barrier()
    return load_run(cfg, root)


def sources_of(
    cfg: RunConfig,
    root: Path | None = None,
    device: str = "cpu",
    progress: bool = False,
    data: Data | None = None,
    runtime: Runtime = DEFAULT_RUNTIME,
) -> list[dict[str, Any]]:
    """What a run of ``cfg`` takes from the runs it starts from (its method's
    ``dependencies``), as plain tensors: for each of those runs (trained first if missing),
    the items its method ``needs`` (final weights, final masks, initial weights). This module
    alone finds and trains such runs; the methods only receive their tensors."""
    cls = METHODS[cfg.method]
    out = []
    for source in cls.dependencies(cfg):
        record = run(source, root, device=device, progress=progress, data=data, runtime=runtime)
        dev = torch.device(device)
        out.append({need: ARTEFACTS[need](record, dev) for need in cls.needs})
    return out


def recorded_runtime(record: RunRecord) -> Runtime:
    """The runtime the first stretch of a finished run executed with (bf16 autocast,
    channels-last, ...), as its summary records it; the default runtime if none is recorded."""
    stretches = record.summary.get("runtime") or [{}]
    known = set(Runtime.__dataclass_fields__) - {"data"}
    return Runtime(**{k: v for k, v in stretches[0].items() if k in known})


def final_weights(record: RunRecord, device: torch.device) -> dict:
    """The final state_dict of a finished run; if not stored, retrained in memory in the
    precision and layout the run recorded (:func:`recorded_runtime`: a bf16 run is retrained
    in bf16) and then stored as the run's ``final.pt`` (atomically), so that the next run from
    the same source reads it instead of training it again."""
    path = record.path / "final.pt"
    if path.exists():
        return io.load_checkpoint(path, device)["model"]
    runtime = recorded_runtime(record)
    weights = train(
        record.config, None, device=str(device), progress=False, runtime=runtime
    ).model.state_dict()
    io.save_torch({"model": weights}, path)
    return weights


def initial_state(cfg: RunConfig) -> dict[str, torch.Tensor]:
    """The state_dict a run of ``cfg`` starts from (model init seeded by ``cfg.seed``, then its
    method's initial masks), computed without data; the global RNG is left as it was."""
    cls = METHODS[cfg.method]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, cls.model_width(cfg))
        cls.from_config(cfg, model, 1, None)
    return model.state_dict()


def initial_weights(record: RunRecord, device: torch.device) -> dict[str, torch.Tensor]:
    """A finished run's initial weights, its ``init.pt`` (regenerated by
    :func:`initial_state` if not stored), without its masks."""
    path = record.path / "init.pt"
    if path.exists():
        state = io.load_checkpoint(path, device)["model"]
    else:
        state = initial_state(record.config)
    return {k: v for k, v in state.items() if not k.endswith(MASK)}


ARTEFACTS = {
    "final_weights": final_weights,
    "final_masks": lambda record, device: record.final_masks(),
    "init_weights": initial_weights,
}


def train_or_record_failure(
    cfg: RunConfig,
    path: Path,
    device: str,
    progress: bool,
    stop_after: int | None,
    data: Data,
    runtime: Runtime = DEFAULT_RUNTIME,
    sources: Sequence[dict[str, Any]] = (),
) -> Trainer:
    """:func:`dsr.train.train`; a divergence is written to ``failed.json`` (by rank 0) and
    re-raised."""
    try:
        return train(
            cfg,
            path,
            device=device,
            progress=progress,
            stop_after=stop_after,
            data=data,
            runtime=runtime,
            sources=sources,
        )
    except TrainingDiverged as e:
        if distributed.context().is_main:
            io.write_json(
                path / FAILED, {"reason": str(e), "config": cfg.to_dict(), **provenance(device)}
            )
        raise TrainingDiverged(f"run {cfg.hash}: {e} (recorded in {path / FAILED})") from None


def write_results(t: Trainer, path: Path, device: str) -> None:
    """Metrics, reallocation log, final masks and weights, then the summary (last)."""
    io.write_csv(path / "metrics.csv", t.history)
    io.write_jsonl(path / "reallocations.jsonl", t.events)
    masks = t.method.masks
    if masks is not None:
        arrays = {x.name: np.packbits(x.mask.cpu().numpy().ravel()) for x in masks.tensors}
        shapes = {x.name: list(x.mask.shape) for x in masks.tensors}
        buf = BytesIO()
        np.savez_compressed(buf, __shapes__=np.array(json.dumps(shapes)), **arrays)  # type: ignore[arg-type]
        io.write_bytes(path / "masks_final.npz", buf.getvalue())
    io.save_torch({"model": t.model.state_dict()}, path / "final.pt")
    last = t.history[-1]
    runs = t.runtimes  # how each stretch ran (bf16 changes the numbers)
    summary = {
        "hash": t.cfg.hash,
        "config": t.cfg.to_dict(),
        "final_test_acc": last["test_acc"],
        "best_test_acc": max(r["test_acc"] for r in t.history),
        "final_train_loss": last["train_loss"],
        "params": count_parameters(t.model),
        "width": t.width,
        "density": masks.report() if masks is not None else None,
        "reallocations": len(t.events),
        "method_state": {
            k: v for k, v in t.method.state_dict().items() if isinstance(v, (int, float, str))
        },
        "wall_seconds": sum(r["seconds"] for r in t.history),
        "precision": "+".join(sorted({"bf16-autocast" if r["bf16"] else "fp32" for r in runs})),
        "runtime": runs,
        "data_variant": t.data.variant,
        "data_checksum": t.data.checksum,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **provenance(device),
    }
    io.write_json(path / SUMMARY, summary)
    (path / "checkpoint.pt").unlink(missing_ok=True)


def provenance(device: str) -> dict[str, Any]:
    dev = str(device)
    if dev.startswith("cuda") and torch.cuda.is_available():
        dev = f"{dev} ({torch.cuda.get_device_name(torch.device(dev))})"
    else:
        dev = (
            f"{dev} ({platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads)"
        )
    return {
        **code_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": dev,
        "python": platform.python_version(),
    }


# --- the cache as a table ---------------------------------------------------------------------


def threads_of(device: str) -> int:
    """The torch threads recorded in a CPU run's device string, "cpu (x86_64, 2 threads)"."""
    match = re.search(r"(\d+) threads", device)
    return int(match.group(1)) if match else 1


def run_hours(summary: dict[str, Any]) -> tuple[float, float]:
    """CPU-hours and GPU-hours of a finished run: wall time x torch threads x processes on a
    CPU, wall time x processes on CUDA (the other is 0)."""
    processes = max([r.get("processes", 1) for r in summary.get("runtime", [])] or [1])
    hours = summary["wall_seconds"] * processes / 3600
    if summary["device"].startswith("cuda"):
        return 0.0, hours
    return hours * threads_of(summary["device"]), 0.0


def checkpoint_epoch(folder: Path) -> int:
    """The epochs done by the checkpoint in run folder ``folder``; -1 when it has none or
    the checkpoint cannot be read."""
    try:
        return int(io.load_checkpoint(folder / "checkpoint.pt")["epoch"])
    except (io.CheckpointError, OSError, KeyError):
        return -1


def cache_rows(root: Path | None = None) -> list[dict[str, Any]]:
    """One row per run folder under ``root``: what it trains, how far it got, what it cost.

    ``cpu_hours`` is wall time x torch threads x processes of a finished CPU run, ``gpu_hours``
    wall time x processes of a finished CUDA run; a run in progress shows the seconds of its
    checkpointed epochs and no cost (its threads are recorded only when it finishes)."""
    rows = []
    for path in sorted((root or runs_root()).glob("*/config.json")):
        folder, cfg = path.parent, stored_config(path.parent)
        row = dict(
            hash=folder.name, model=cfg["model"], dataset=cfg["dataset"], method=cfg["method"],
            sparsity=cfg["sparsity"], seed=cfg["seed"], epochs=cfg["epochs"], status="not started",
            test_acc=float("nan"), seconds=0.0, cpu_hours=0.0, gpu_hours=0.0,
        )  # fmt: skip
        if (folder / SUMMARY).exists():
            summary = io.read_json(folder / SUMMARY)
            cpu_hours, gpu_hours = run_hours(summary)
            row.update(
                status="done",
                test_acc=summary["final_test_acc"],
                seconds=summary["wall_seconds"],
                cpu_hours=cpu_hours,
                gpu_hours=gpu_hours,
            )
        elif (folder / FAILED).exists():
            row["status"] = "failed"
        elif (folder / "checkpoint.pt").exists():
            state = io.load_checkpoint(folder / "checkpoint.pt")
            row["status"] = f"epoch {state['epoch']} of {cfg['epochs']}"
            row["seconds"] = sum(h["seconds"] for h in state["history"])
        rows.append(row)
    return rows


# Columns of the per-run CSV after the config's own fields.
CSV_RESULTS = (
    "final_test_acc", "best_test_acc", "params", "device", "precision", "torch", "code_commit",
    "data_variant", "data_checksum", "wall_seconds", "cpu_hours", "gpu_hours", "finished",
    "train_flops", "inference_flops",
)  # fmt: skip


def export_csv(path: Path, root: Path | None = None) -> list[dict[str, Any]]:
    """Write one CSV row per finished run under ``root``: its config hash, every config field,
    then :data:`CSV_RESULTS` (final and best test accuracy, device, precision, code commit,
    data, wall time, CPU- and GPU-hours as :func:`run_hours` counts them, training and
    inference FLOPs as :func:`dsr.flops.ledger` counts them). Returns the rows."""
    import csv

    fields = list(RunConfig.__dataclass_fields__)
    # a field added after a run was trained holds its default (which kept the run's hash)
    defaults = {k: f.default for k, f in RunConfig.__dataclass_fields__.items()}
    rows = []
    for done in sorted((root or runs_root()).glob(f"*/{SUMMARY}")):
        summary = io.read_json(done)
        values = {**defaults, **summary["config"], **{k: summary.get(k, "") for k in CSV_RESULTS}}
        cpu_hours, gpu_hours = run_hours(summary)
        values.update(cpu_hours=round(cpu_hours, 4), gpu_hours=round(gpu_hours, 4))
        config = RunConfig(**{**defaults, **summary["config"]})
        ledger = flops.ledger(RunRecord(done.parent, config, summary))
        values.update(train_flops=f"{ledger['train_flops']:.4g}",
                      inference_flops=f"{ledger['inference_flops']:.4g}")  # fmt: skip
        rows.append({"hash": done.parent.name, **{k: values[k] for k in [*fields, *CSV_RESULTS]}})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["hash", *fields, *CSV_RESULTS])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def cache_report(root: Path | None = None) -> str:
    """The run cache as a table (by network, data, method, sparsity, seed), then one line of
    totals."""
    import pandas as pd

    rows = cache_rows(root)
    if not rows:
        return f"no runs under {root or runs_root()}"
    table = pd.DataFrame(rows).sort_values(["model", "dataset", "method", "sparsity", "seed"])
    done = table[table.status == "done"]
    running = table.status.str.startswith("epoch")
    shown = table.assign(
        test_acc=table.test_acc.map(lambda a: "" if a != a else f"{a:.2f}"),
        seconds=table.seconds.round().astype(int),
        cpu_hours=table.cpu_hours.round(2),
        gpu_hours=table.gpu_hours.round(2),
    )
    totals = (
        f"{len(done)} finished runs: {done.cpu_hours.sum():.1f} CPU-hours (wall time x threads), "
        f"{done.gpu_hours.sum():.1f} GPU-hours; {int(running.sum())} in progress, "
        f"{int((table.status == 'failed').sum())} failed"
    )
    return shown.to_string(index=False) + "\n" + totals


# --- sweeps ------------------------------------------------------------------------------------


def grid(
    base: RunConfig, methods: Sequence[str], sparsities: Sequence[float], seeds: Sequence[int]
) -> list[RunConfig]:
    """Configs for methods x sparsities x seeds; dense is trained once per seed (sparsity 0)."""
    out: dict[str, RunConfig] = {}
    for method in methods:
        for s in [0.0] if method == "dense" else sparsities:
            for seed in seeds:
                cfg = base.replace(method=method, sparsity=s, seed=seed)
                out.setdefault(cfg.hash, cfg)
    return list(out.values())


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def _run_one(
    cfg: RunConfig, root: Path | None, device: str, runtime: Runtime = DEFAULT_RUNTIME
) -> tuple[str, str]:
    try:
        run(cfg, root, device=device, progress=False, runtime=runtime)
        return cfg.hash, "done"
    except (TrainingDiverged, DataError, io.CheckpointError, ConfigError) as e:
        return cfg.hash, f"failed: {e}"


def _run_job(
    cfg: RunConfig, root: Path, device: str, threads: int, runtime: Runtime
) -> tuple[str, str]:
    """One run as a submitit job."""
    _worker_init(threads)
    return _run_one(cfg, root, device, runtime)


# --launcher: the local process pool, or submitit's executor for a cluster ("slurm") or for
# local subprocesses ("local-submitit", to try a cluster sweep on one machine).
LAUNCHERS = {"pool": "", "slurm": "slurm", "local-submitit": "local"}


def _known_status(cfg: RunConfig, root: Path | None) -> str | None:
    """``cached``, ``failed: ...`` (recorded before, or unreadable files), or None: to run."""
    try:
        if load_run(cfg, root) is not None:
            return "cached"
        reason = recorded_failure(cfg, root)
    except io.CheckpointError as e:
        return f"failed: {e}"
    return None if reason is None else f"failed: {reason} (recorded before)"


def sweep(
    configs: Iterable[RunConfig],
    root: Path | None = None,
    *,
    workers: int = 1,
    threads: int = 1,
    device: str = "cpu",
    progress: bool = True,
    runtime: Runtime = DEFAULT_RUNTIME,
    launcher: str = "pool",
    cluster: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Run every config not yet cached, ``workers`` processes with ``threads`` threads each, or
    one submitit job per config (``launcher``, with submitit parameters ``cluster``).

    Interrupted runs resume from their checkpoints when the sweep is started again; a run that
    diverges, or whose data or stored files are bad, is reported as failed and the others go
    on. A run recorded as failed by an earlier sweep is reported again, not retried (see the
    module docstring). Returns hash -> status: ``cached``, ``done`` or ``failed: <reason>``.
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r} (known: {', '.join(LAUNCHERS)})")
    if workers < 1 or threads < 1:
        raise ConfigError(f"workers and threads must be at least 1, got {workers}, {threads}")
    check_device(device)
    configs = list(configs)
    known = {c.hash: _known_status(c, root) for c in configs}
    status = {h: s for h, s in known.items() if s is not None}
    todo = [c for c in configs if c.hash not in status]
    if not todo:
        return status
    if launcher != "pool":
        status.update(submit(todo, root, launcher, threads, device, runtime, cluster or {}))
        return status
    bar = io.progress_bar(len(todo), progress, f"sweep ({len(status)} cached or failed)")
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(threads,)
    ) as pool:
        futures = [pool.submit(_run_one, c, root, device, runtime) for c in todo]
        for f in as_completed(futures):
            h, s = f.result()
            status[h] = s
            bar.update(1)
    bar.close()
    return status


def submit(
    configs: list[RunConfig],
    root: Path | None,
    launcher: str,
    threads: int,
    device: str,
    runtime: Runtime,
    cluster: dict[str, Any],
) -> dict[str, str]:
    """Submit each config as one job of a submitit job array and wait for all of them.

    Jobs write into the run cache like local workers (its folder must be shared with the
    nodes); submitit's logs go to ``<runs root>/.submitit/<job id>/``. A job that the cluster
    kills is reported as failed; started again, the sweep resumes it from its checkpoint.
    """
    if not configs:
        return {}
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"launcher {launcher} needs submitit (pip install submitit)") from None
    folder = Path(root or runs_root()).resolve()
    logs = folder / ".submitit" / "%j"
    executor = submitit.AutoExecutor(folder=logs, cluster=LAUNCHERS[launcher])
    executor.update_parameters(name="dsr", cpus_per_task=threads, **cluster)
    n = len(configs)
    jobs = executor.map_array(
        _run_job, configs, [folder] * n, [device] * n, [threads] * n, [runtime] * n
    )
    status = {}
    for cfg, job in zip(configs, jobs):
        try:
            h, s = job.result()
        except Exception as e:  # submitit raises its own errors for failed or killed jobs
            h, s = cfg.hash, f"failed: job {job.job_id}: {' '.join(str(e).split())[:200]}"
        status[h] = s
    return status


# --- importing runs trained elsewhere (a GPU campaign's output folder) -----------------------

PROVENANCE_KEYS = (
    "code_commit", "code_dirty", "torch", "device", "precision", "data_variant", "data_checksum",
    "finished",
)  # fmt: skip
NOT_IMPORTED = ("checkpoint.pt", "*.tmp", "*.lock", ".lock")


def run_folders(source: Path) -> list[Path]:
    """The finished run folders in ``source``: itself, its children, or ``source/runs/*``."""
    if (source / SUMMARY).exists():
        return [source]
    found = [p.parent for p in sorted(source.glob(f"*/{SUMMARY}"))]
    found += [p.parent for p in sorted(source.glob(f"runs/*/{SUMMARY}"))]
    return [p for p in found if not p.name.startswith(".")]


def known_checksums(root: Path) -> dict[str, str]:
    """Data variant -> the data checksum its finished runs under ``root`` recorded."""
    out: dict[str, str] = {}
    for path in sorted(root.glob(f"*/{SUMMARY}")):
        s = io.read_json(path)
        if "data_variant" in s and "data_checksum" in s:
            out.setdefault(s["data_variant"], s["data_checksum"])
    return out


def import_problem(folder: Path, checksums: dict[str, str]) -> str | None:
    """Why run folder ``folder`` may not enter the cache, or None: its name is the hash of its
    config, its summary belongs to that config and carries full provenance (clean code at a
    commit of this repository, data checksum as the cache's runs of that variant recorded),
    and it has one metrics row per epoch."""
    try:
        config = stored_config(folder)
        cfg = RunConfig(**config)
        summary = io.read_json(folder / SUMMARY)
    except (ConfigError, TypeError, io.CheckpointError, OSError, ValueError) as e:
        return f"unreadable config or summary ({' '.join(str(e).split())[:120]})"
    if cfg.hash != folder.name or summary.get("hash") != folder.name:
        return f"folder name, config hash ({cfg.hash}) and summary hash disagree"
    if {**RunConfig().to_dict(), **summary.get("config", {})} != config:
        return "summary.json holds another config than config.json"
    missing = [k for k in PROVENANCE_KEYS if k not in summary]
    if missing:
        return f"provenance incomplete: no {', '.join(missing)} in summary.json"
    stretches = [summary, *summary.get("runtime", [])]  # each stretch records its own code
    dirty = [s["code_commit"][:12] for s in stretches if s.get("code_dirty")]
    if dirty:
        return f"trained from uncommitted code (at {dirty[0]} plus changes)"
    for commit in dict.fromkeys(s["code_commit"] for s in stretches if "code_commit" in s):
        known = subprocess.run(
            ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=PROJECT, capture_output=True
        )
        if known.returncode != 0:
            return f"code commit {commit[:12]} is not in this repository"
    want = checksums.get(summary["data_variant"])
    if want is not None and want != summary["data_checksum"]:
        return (
            f"data checksum {summary['data_checksum']} differs from the cache's "
            f"{summary['data_variant']} runs ({want})"
        )
    rows = len(RunRecord(folder, cfg, summary).metrics())
    if rows != cfg.epochs:
        return f"metrics.csv has {rows} rows for {cfg.epochs} epochs"
    return None


def import_runs(sources: Iterable[Path], root: Path | None = None) -> list[tuple[str, str]]:
    """Copy the finished runs found in ``sources`` (run folders, or folders holding them) into
    the cache, each after :func:`import_problem` found nothing wrong; checkpoints and lock
    files stay behind. Returns (folder, outcome) pairs: ``imported``, ``already in the cache``
    or ``refused: <why>``. A run already in the cache with another summary is refused."""
    import shutil

    root = Path(root or runs_root())
    root.mkdir(parents=True, exist_ok=True)
    out, checksums = [], known_checksums(root)  # read once; each import adds its own below
    for source in sources:
        folders = run_folders(Path(source))
        if not folders:
            out.append((str(source), "refused: no finished run folder (with summary.json) here"))
        for folder in folders:
            problem = import_problem(folder, checksums)
            target = root / folder.name
            if problem is None and (target / SUMMARY).exists():
                same = io.read_json(target / SUMMARY) == io.read_json(folder / SUMMARY)
                problem = None if same else "another finished run of this config is in the cache"
                if same:
                    out.append((str(folder), "already in the cache"))
                    continue
            if problem is not None:
                out.append((str(folder), f"refused: {problem}"))
                continue
            staging = root / f".import-{folder.name}"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(folder, staging, ignore=shutil.ignore_patterns(*NOT_IMPORTED))
            shutil.rmtree(target, ignore_errors=True)  # an unfinished attempt of the same run
            staging.rename(target)
            summary = io.read_json(target / SUMMARY)
            checksums.setdefault(summary["data_variant"], summary["data_checksum"])
            out.append((str(folder), "imported"))
    return out
