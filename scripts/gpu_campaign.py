#!/usr/bin/env python
"""The WRN-28-2 / CIFAR-10 campaign at the paper's protocol, on one GPU, in time-limited slots.

GPU time comes in slots that end with a kill (a cluster's debug queue, a preemptible machine).
Each call of this script uses one slot and loses nothing at its end::

    DSR_DATA_ROOT=/path/to/data python scripts/gpu_campaign.py OUT --slot-s 600
    # the next slot, with OUT (or a copy of it) back in place:
    DSR_DATA_ROOT=/path/to/data python scripts/gpu_campaign.py OUT --slot-s 600
    # on a machine that keeps nothing: bring the last slot's folder along
    python scripts/gpu_campaign.py OUT --resume-from LAST_OUT
    # back home: check and import the finished runs into data/runs/
    make import-runs FROM=OUT

What a slot does:

1. unless an earlier slot did (``OUT/checks/``): ``scripts/gpu_check.py --no-compile`` and
   ``python -m dsr bench --device cuda``, their output in ``OUT/checks/`` (the bench's
   projected 200-epoch wall time is what the WRN-28-2 page quotes);
2. trains the plan below, ``--workers`` processes sharing the GPU, at ``--budget`` (default
   ``paper``: 200 epochs) on ``--dataset`` (default ``cifar10-jpeg``, whose pixels are lossy
   JPEG), skipping runs already finished in OUT or ``--resume-from`` and resuming unfinished
   ones from their latest checkpoint;
3. the moment a run finishes, copies its folder to ``OUT/runs/<hash>/`` (copy, then rename: a
   folder there is always complete); every ``--sync-s`` seconds, copies the latest checkpoint of
   each unfinished run to ``OUT/partial/<hash>/``;
4. ``--margin-s`` seconds before the slot ends, kills its workers (SIGKILL: a checkpoint is
   written atomically, so the last complete one stands), copies their checkpoints once more and
   writes ``OUT/campaign.json``: every planned run with its state (done, epoch k of n, failed,
   not started). Workers die with the script (``PR_SET_PDEATHSIG``), so killing the script
   itself at any moment loses at most the epochs since each run's last checkpoint copy.

The plan (the WRN issue's grid, s = 0.9 first): dense, static and dsr, seeds 0-2; compressed
(pruning), set and deepr, seeds 0-1; the static replica of DSR's final structure, fresh and the
DSR run's own initialisation, seeds 0-1; thin dense, seeds 0-1; dsr and static at s = 0.8 and
0.5, seeds 0-1. ``--first N`` trains only the first N.

``--budget smoke --device cpu`` runs the whole thing in about a minute on a CPU (the tests do).
Exit status 0 when the slot ended as planned (whatever was left to train), 2 on bad input.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsr import io  # noqa: E402
from dsr.runs import checkpoint_epoch  # noqa: E402

PROTOCOL = "wrn28_2-cifar10"
# (method, sparsity, seeds, extra config fields) in the order the runs are wanted
PLAN: list[tuple[str, float, tuple[int, ...], dict]] = [
    *[(m, s, (seed,), {}) for seed in (0, 1, 2) for m, s in
      (("dense", 0.0), ("static", 0.9), ("dsr", 0.9))],
    *[(m, 0.9, (seed,), {}) for seed in (0, 1) for m in ("pruning", "set", "deepr")],
    *[("static_replica", 0.9, (seed,), {"replica_init": init}) for seed in (0, 1)
      for init in ("fresh", "source")],
    ("thin_dense", 0.9, (0, 1), {}),
    *[(m, s, (0, 1), {}) for s in (0.8, 0.5) for m in ("dsr", "static")],
]  # fmt: skip


def now() -> float:
    return time.monotonic()


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass
class Job:
    """One planned run: its config and, while it trains, its worker process."""

    method: str
    sparsity: float
    seed: int
    extra: dict
    cfg: object = None
    proc: subprocess.Popen | None = None
    log: Path | None = None
    state: str = "not started"

    @property
    def name(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.extra.items())
        return f"{self.method} s={self.sparsity} seed={self.seed}{extra}"

    def argv(self, args: argparse.Namespace, work: Path) -> list[str]:
        out = [sys.executable, "-m", "dsr", "train", "--protocol", PROTOCOL]
        out += ["--budget", args.budget, "--dataset", args.dataset, "--method", self.method]
        out += ["--sparsity", str(self.sparsity), "--seed", str(self.seed)]
        for k, v in self.extra.items():
            out += [f"--{k}", str(v)]
        out += ["--device", args.device, "--runs-root", str(work), "--no-progress"]
        out += ["--threads", str(args.threads)] + (["--bf16"] if args.bf16 else [])
        return out


def plan(args: argparse.Namespace) -> list[Job]:
    from dsr.config import preset

    jobs = []
    for method, sparsity, seeds, extra in PLAN:
        for seed in seeds:
            job = Job(method, sparsity, seed, extra)
            job.cfg = preset(
                PROTOCOL, args.budget, dataset=args.dataset, method=method, sparsity=sparsity,
                seed=seed, **extra,
            )  # fmt: skip
            jobs.append(job)
    return jobs[: args.first] if args.first else jobs


# --- copying run folders: a folder under OUT/runs or OUT/partial is always complete ----------


def copy_folder(src: Path, dst: Path, files: list[str] | None = None) -> None:
    """Copy run folder ``src`` (or only ``files`` of it) to ``dst``: into a hidden sibling
    first, then renamed into place, so a kill leaves the old ``dst`` or the new one."""
    staging = dst.parent / f".tmp-{dst.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    if files is None:
        skip = shutil.ignore_patterns("checkpoint.pt", "*.tmp", "*.lock", ".lock")
        shutil.copytree(src, staging, ignore=skip)
    else:
        staging.mkdir(parents=True)
        try:
            for name in files:
                if (src / name).exists():
                    shutil.copy2(src / name, staging / name)
        except FileNotFoundError:
            shutil.rmtree(staging)
            raise
    old = dst.parent / f".old-{dst.name}-{os.getpid()}"
    if dst.exists():
        dst.rename(old)
    staging.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def restore(sources: list[Path], work: Path) -> None:
    """Bring finished runs and the most advanced checkpoints of unfinished ones from the
    campaign folders ``sources`` into the working run cache ``work``."""
    for source in sources:
        for tmp in list(source.glob("runs/.*")) + list(source.glob("partial/.*")):
            shutil.rmtree(tmp, ignore_errors=True)  # left by a kill during a copy
        for done in sorted(source.glob("runs/*/summary.json")):
            target = work / done.parent.name
            if not (target / "summary.json").exists():
                copy_folder(done.parent, target)
        for part in sorted(source.glob("partial/*/checkpoint.pt")):
            target = work / part.parent.name
            if (target / "summary.json").exists():
                continue
            epoch = checkpoint_epoch(part.parent)
            if epoch > checkpoint_epoch(target):
                copy_folder(part.parent, target, ["config.json", "init.pt", "checkpoint.pt"])
                say(f"resuming {target.name} from its epoch-{epoch} checkpoint in {source}")


def export(work: Path, out: Path) -> None:
    """Finished runs of ``work`` (the planned ones and their dependencies) to OUT/runs; newer
    checkpoints of unfinished ones to OUT/partial."""
    for done in sorted(work.glob("*/summary.json")):
        h = done.parent.name
        if not (out / "runs" / h / "summary.json").exists():
            copy_folder(done.parent, out / "runs" / h)
            say(f"saved finished run {h} -> {out / 'runs' / h}")
        shutil.rmtree(out / "partial" / h, ignore_errors=True)
    for ckpt in sorted(work.glob("*/checkpoint.pt")):
        folder, h = ckpt.parent, ckpt.parent.name
        if (folder / "summary.json").exists():
            continue
        saved = out / "partial" / h / "checkpoint.pt"
        try:
            stamp = ckpt.stat().st_mtime_ns
            if saved.exists() and saved.stat().st_mtime_ns >= stamp:
                continue
            copy_folder(folder, out / "partial" / h, ["config.json", "init.pt", "checkpoint.pt"])
            # The checkpoint can vanish between the glob and the copy (the run finished and
            # deleted it): copy_folder then leaves a folder without one, which is useless.
            os.utime(saved, ns=(stamp, stamp))
        except FileNotFoundError:  # the run finished meanwhile (its checkpoint is deleted last)
            shutil.rmtree(out / "partial" / h, ignore_errors=True)
            continue


def export_or_say(work: Path, out: Path) -> None:
    """``export`` during the slot: a file that changes under it (a run writing or finishing)
    must never stop the slot and its workers; what was not copied is copied at the next sync."""
    try:
        export(work, out)
    except OSError as e:
        say(f"export: {e}; trying again at the next sync")


# --- the slot --------------------------------------------------------------------------------


def die_with_parent() -> None:
    """In a worker, before exec: SIGKILL when the campaign process dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_checks(args: argparse.Namespace, out: Path, deadline: float) -> None:
    folder = out / "checks"
    if (folder / "done.json").exists():
        say(f"checks done in an earlier slot ({folder})")
        return
    folder.mkdir(parents=True, exist_ok=True)
    smoke = args.budget == "smoke"
    commands = {
        "gpu_check": [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--no-compile",
                      "--device", args.device] + (["--smoke"] if smoke else []),
        "bench": [sys.executable, "-m", "dsr", "bench", "--device", args.device]
        + (["--no-ratios", "--images", "100", "--epochs", "2", "--threads", "1"] if smoke else []),
    }  # fmt: skip
    results = {}
    for name, argv in commands.items():
        budget = min(args.check_timeout_s, deadline - now() - args.min_start_s)
        if budget < 10:
            say(f"no time left for {name}")
            return
        say(f"{name}: {' '.join(argv[1:])}")
        t0 = now()
        with open(folder / f"{name}.txt", "w") as log:
            try:
                rc = subprocess.run(
                    argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=budget,
                    preexec_fn=die_with_parent,
                ).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                rc = "timeout"
        results[name] = {"returncode": rc, "seconds": round(now() - t0, 1)}
        say(f"{name}: exit {rc} in {now() - t0:.0f} s -> {folder / (name + '.txt')}")
    bench = (folder / "bench.txt").read_text()
    results["projected_200_epochs_min"] = {
        m: float(t)
        for m, t in re.findall(r"^\s*(\w+) .* 200 epochs of CIFAR-10 in ([\d.]+) min", bench, re.M)
    }  # the bench's per-method projection of one paper-protocol run, alone on the device
    io.write_json(folder / "done.json", results)


def job_state(job: Job, work: Path, out: Path) -> str:
    if (out / "runs" / job.cfg.hash / "summary.json").exists():
        return "done"
    if (work / job.cfg.hash / "failed.json").exists():
        return "failed: " + io.read_json(work / job.cfg.hash / "failed.json")["reason"]
    if job.state.startswith("failed"):
        return job.state
    epoch = checkpoint_epoch(work / job.cfg.hash)
    return f"epoch {epoch} of {job.cfg.epochs}" if epoch >= 0 else "not started"


def report(jobs: list[Job], work: Path, out: Path, started: float, stopped: str) -> None:
    rows = [{"hash": j.cfg.hash, "run": j.name, "state": job_state(j, work, out)} for j in jobs]
    io.write_json(
        out / "campaign.json",
        {"stopped": stopped, "seconds": round(now() - started), "runs": rows},
    )
    done = sum(r["state"] == "done" for r in rows)
    say(f"{done} of {len(rows)} planned runs done ({stopped}); {out / 'campaign.json'}")
    for r in rows:
        say(f"  {r['hash']}  {r['state']:<22} {r['run']}")


def slot(args: argparse.Namespace) -> int:
    started = now()
    deadline = started + args.slot_s - args.margin_s
    out, work = args.out.resolve(), args.work.resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    jobs = plan(args)
    restore([*args.resume_from, out], work)
    export(work, out)
    stop = {"why": ""}

    def on_signal(signum, _frame):
        stop["why"] = f"signal {signal.Signals(signum).name}"

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not args.skip_checks:
        run_checks(args, out, deadline)
    todo = [j for j in jobs if not job_state(j, work, out).startswith(("done", "failed"))]
    running: list[Job] = []
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    until = args.slot_s - args.margin_s
    say(
        f"{len(jobs) - len(todo)} of {len(jobs)} planned runs done or failed; "
        f"{len(todo)} to train, {args.workers} at a time, until {until} s into the slot"
    )
    last_sync = now()
    while (todo or running) and not stop["why"]:
        for job in list(running):
            rc = job.proc.poll()
            if rc is None:
                continue
            running.remove(job)
            job.state = "done" if rc == 0 else f"failed: exit {rc} (log {job.log})"
            say(f"{job.name} ({job.cfg.hash}): {job.state}")
            export_or_say(work, out)
        while todo and len(running) < args.workers and deadline - now() > args.min_start_s:
            job = todo.pop(0)
            job.log = logs / f"{job.cfg.hash}.log"
            with open(job.log, "a") as log:
                job.proc = subprocess.Popen(
                    job.argv(args, work), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                )  # fmt: skip
            running.append(job)
            say(f"started {job.name} ({job.cfg.hash}), pid {job.proc.pid}")
        if not running and todo:
            stop["why"] = "too little time left to start a run"
            break
        if now() >= deadline:
            stop["why"] = "slot limit"
            break
        if now() - last_sync >= args.sync_s:
            export_or_say(work, out)
            last_sync = now()
        time.sleep(0.5)
    for job in running:  # SIGKILL: a worker's last complete checkpoint stands
        job.proc.kill()
    for job in running:
        job.proc.wait()
        say(f"stopped {job.name} ({job.cfg.hash})")
    export(work, out)
    report(jobs, work, out, started, stop["why"] or "plan finished")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/gpu_campaign.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", type=Path, help="campaign folder: finished runs, checkpoints, logs")
    p.add_argument("--slot-s", type=int, default=600, help="the slot's length (default 600)")
    p.add_argument(
        "--margin-s", type=int, default=45,
        help="stop the workers this long before the slot ends (default 45)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=4, help="processes sharing the GPU (default 4)")
    p.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads per worker (default 2)"
    )
    p.add_argument("--device", default="cuda", help="torch device (default cuda)")
    p.add_argument("--budget", default="paper", help="paper (default) or smoke (a test)")
    p.add_argument(
        "--dataset", default="cifar10-jpeg", help="cifar10-jpeg (default), cifar10, synthetic"
    )
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (default: fp32)")
    p.add_argument("--first", type=int, default=0, help="train only the first N planned runs")
    p.add_argument(
        "--resume-from", type=Path, nargs="*", default=[],
        help="earlier campaign folders whose runs and checkpoints to continue from",
    )  # fmt: skip
    p.add_argument(
        "--work", type=Path, default=None,
        help="working run cache (default: OUT/../<OUT name>.work, outside OUT)",
    )  # fmt: skip
    p.add_argument("--sync-s", type=float, default=20, help="checkpoint copy period (default 20)")
    p.add_argument(
        "--min-start-s", type=float, default=60,
        help="start no run with less time than this left (default 60)",
    )  # fmt: skip
    p.add_argument(
        "--check-timeout-s", type=float, default=90, help="time cap of each check (default 90)"
    )
    p.add_argument("--skip-checks", action="store_true", help="skip gpu_check and bench")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from dsr.config import ConfigError

    if args.work is None:
        args.work = args.out.resolve().parent / f"{args.out.resolve().name}.work"
    problems = [
        f"--{name.replace('_', '-')} must be positive"
        for name in ("slot_s", "workers", "threads", "sync_s")
        if getattr(args, name) <= 0
    ]
    if args.margin_s >= args.slot_s:
        problems.append("--margin-s must be shorter than --slot-s")
    problems += [f"--resume-from {p}: no such folder" for p in args.resume_from if not p.is_dir()]
    try:
        jobs = plan(args)
    except ConfigError as e:
        problems.append(str(e))
        jobs = []
    if not problems:
        from dsr.data import DataError, load
        from dsr.runs import check_device
        from dsr.train import data_shape

        try:
            check_device(args.device)
            load(args.dataset, data_shape(jobs[0].cfg))
        except (ConfigError, DataError) as e:
            problems.append(" ".join(str(e).split()))
    if problems:
        print(f"gpu_campaign: error: {problems[0]}", file=sys.stderr)
        return 2
    return slot(args)


if __name__ == "__main__":
    sys.exit(main())
