"""Faults survived: SIGKILL at any point, a killed sweep, divergence, two processes on one run,
a checkpoint that tries to run code.

Killed runs are children forked from a forkserver (no new ``import torch`` each); the kill points
come from the ``DSR_FAULT`` hook of :mod:`dsr.io`, so every kill lands exactly where asked. A run
resumed after any number of kills must end bit for bit where an uninterrupted run ends (CPU).
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dsr import io
from dsr.__main__ import main
from dsr.data import load
from dsr.methods import METHODS
from dsr.runs import FAILED, SUMMARY, code_version, grid, load_run, run, run_dir, sweep
from dsr.train import TrainingDiverged
from tests.conftest import tiny

PROJECT = Path(__file__).resolve().parents[1]
RESULT_FILES = ("metrics.csv", "reallocations.jsonl", "masks_final.npz", "final.pt", SUMMARY)
TIMING = {"seconds", "wall_seconds", "finished"}  # the only fields allowed to differ
EPOCHS = 2


@pytest.fixture(autouse=True, scope="module")
def no_tqdm_monitor():
    """Stop tqdm's monitor thread (started by any earlier progress bar) while this module
    forks: a child forked while the thread holds tqdm's lock would hang at its first bar."""
    from tqdm import tqdm
    from tqdm.auto import tqdm as tqdm_auto

    saved = {cls: cls.monitor_interval for cls in (tqdm, tqdm_auto)}
    for cls in saved:
        cls.monitor_interval = 0
        if cls.monitor is not None:
            cls.monitor.exit()
            cls.monitor = None
    yield
    for cls, interval in saved.items():
        cls.monitor_interval = interval


# What a method needs to fit in EPOCHS epochs: pruning prunes at the end of each epoch.
FITS = {"pruning": dict(prune_every=1, prune_times=EPOCHS)}


def cfg_for(method: str):
    return tiny(method=method, epochs=EPOCHS, realloc_stop=EPOCHS, **FITS.get(method, {}))


# Children are forked from a forkserver: a fresh single-threaded process that has imported torch
# and dsr once. Forking the test process itself can hang the child, since by now it may hold
# native threads (e.g. zmq's, from the notebook tests) whose locks a fork copies while held.
CHILDREN = multiprocessing.get_context("forkserver")
CHILDREN.set_forkserver_preload(["torch", "dsr.runs", "tests.test_faults"])


def _run_in_child(cfg, root: Path, env: dict[str, str]) -> None:
    torch.set_num_threads(1)
    io._fault_counts.clear()
    os.environ.update(env)
    run(cfg, root, progress=False)


def in_child(cfg, root: Path, env: dict[str, str] | None = None) -> int:
    """``run(cfg, root)`` in a child process; its exit code (0 done, 1 raised, -9 SIGKILL)."""
    p = CHILDREN.Process(target=_run_in_child, args=(cfg, root, env or {}))
    p.start()
    p.join(600)
    return p.exitcode


def assert_complete_files(root: Path) -> None:
    """Every file a reader can see (no leading dot) is whole: it parses or loads."""
    for p in root.glob("*/*"):
        if p.name.startswith("."):
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            [json.loads(line) for line in p.read_text().splitlines()]
        elif p.suffix == ".csv":
            list(csv.DictReader(p.open()))
        elif p.suffix == ".pt":
            io.load_checkpoint(p)
        elif p.suffix == ".npz":
            dict(np.load(p))
        else:
            raise AssertionError(f"unexpected file {p}")


def assert_same_results(a: Path, b: Path) -> None:
    """Two run caches hold the same runs with equal results, bit for bit, timings aside."""
    runs_a, runs_b = sorted(p.name for p in a.iterdir()), sorted(p.name for p in b.iterdir())
    assert runs_a == runs_b
    for name in runs_a:
        x, y = a / name, b / name
        assert sorted(p.name for p in x.iterdir()) == sorted(p.name for p in y.iterdir())
        for f in ("final.pt", "init.pt"):
            sx, sy = torch.load(x / f, weights_only=True), torch.load(y / f, weights_only=True)
            assert sx["model"].keys() == sy["model"].keys()
            assert all(torch.equal(sx["model"][k], sy["model"][k]) for k in sx["model"]), f
        sx, sy = (json.loads((p / SUMMARY).read_text()) for p in (x, y))
        assert {k: v for k, v in sx.items() if k not in TIMING} == {
            k: v for k, v in sy.items() if k not in TIMING
        }
        mx, my = (list(csv.DictReader((p / "metrics.csv").open())) for p in (x, y))
        assert [{k: v for k, v in r.items() if k not in TIMING} for r in mx] == [
            {k: v for k, v in r.items() if k not in TIMING} for r in my
        ]
        for f in ("reallocations.jsonl", "config.json"):
            assert (x / f).read_bytes() == (y / f).read_bytes(), f
        if (x / "masks_final.npz").exists():
            nx, ny = np.load(x / "masks_final.npz"), np.load(y / "masks_final.npz")
            assert sorted(nx.files) == sorted(ny.files)
            assert all(np.array_equal(nx[k], ny[k]) for k in nx.files)


def kill_chain(method: str, result_files: list[str]) -> list[str]:
    """Kill points for one method: during a random step, while writing the next checkpoint,
    while writing a random one of its result files (seeded: the same points on every run)."""
    rng = random.Random(f"faults-{method}")
    cfg = cfg_for(method)
    steps = EPOCHS * load("synthetic", (784,)).steps_per_epoch(cfg.batch_size)
    return [f"step:{rng.randint(1, steps)}", "checkpoint.pt:1", f"{rng.choice(result_files)}:1"]


# Every write of a run, in the order they happen, a kill at each (16 steps per epoch, so step
# 20 is in the second epoch, after the first checkpoint); each restart counts from 1 again.
EVERY_WRITE = ["config.json:1", "init.pt:1", "checkpoint.pt:1", "step:20", "checkpoint.pt:1"] + [
    f"{f}:1" for f in RESULT_FILES
]


def killed_and_resumed(cfg, root: Path, faults: list[str]) -> None:
    """Start ``cfg`` once per fault, each killed at its point; check after each kill that the
    process died there, left its half-written temp file and nothing half-written in view;
    then finish the run in this process."""
    for spec in faults:
        code = in_child(cfg, root, {"DSR_FAULT": spec})
        assert code == -signal.SIGKILL, f"{spec}: exit {code}, the fault did not fire"
        name = spec.rpartition(":")[0]
        if name != "step":
            assert list(root.glob(f"*/.{name}.*.tmp")), f"{spec}: no partial temp file"
        assert_complete_files(root)
    run(cfg, root, progress=False)
    assert not list(root.glob("*/.*.tmp")) and not list(root.glob("*/checkpoint.pt"))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path, method):
    """A run killed (SIGKILL) during a step, while writing a checkpoint and while writing a
    result file, started again after each kill, ends bit for bit equal to an uninterrupted run."""
    cfg = cfg_for(method)
    straight = run(cfg, tmp_path / "straight", progress=False).path
    files = [f for f in RESULT_FILES if (straight / f).exists()]
    killed_and_resumed(cfg, tmp_path / "killed", kill_chain(method, files))
    assert_same_results(tmp_path / "straight", tmp_path / "killed")


def test_sigkill_at_every_write_of_a_dsr_run_then_resume_equals_uninterrupted(tmp_path):
    """DSR killed at each of its writes in turn (config, initial weights, a step, two
    checkpoints, each result file) and restarted each time: equal to an uninterrupted run."""
    cfg = cfg_for("dsr")
    run(cfg, tmp_path / "straight", progress=False)
    killed_and_resumed(cfg, tmp_path / "killed", EVERY_WRITE)
    assert_same_results(tmp_path / "straight", tmp_path / "killed")


def test_the_fault_hook_kills_the_command_line_in_a_fresh_process(tmp_path):
    """``DSR_FAULT=checkpoint.pt:2 python -m dsr train`` dies (SIGKILL) while writing its second
    checkpoint; the same command without the fault resumes and ends equal to a straight run."""
    args = ["train", "--dataset", "synthetic", "--epochs", "3", "--batch_size", "64"]
    args += ["--realloc_schedule", "0:3", "--no-progress", "--threads", "1"]
    env = {**os.environ, "DSR_FAULT": "checkpoint.pt:2", "PYTHONPATH": str(PROJECT)}
    killed = subprocess.run(
        [sys.executable, "-m", "dsr", *args, "--runs-root", str(tmp_path / "killed")],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (ckpt,) = (tmp_path / "killed").glob("*/checkpoint.pt")
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    assert len(list((tmp_path / "killed").glob("*/.checkpoint.pt.*.tmp"))) == 1
    assert main([*args, "--runs-root", str(tmp_path / "killed")]) == 0
    assert main([*args, "--runs-root", str(tmp_path / "straight")]) == 0
    assert_same_results(tmp_path / "straight", tmp_path / "killed")


def test_no_run_file_is_written_in_place(tmp_path, monkeypatch):
    """Every file of a run reaches its folder by a rename from a temporary name (so a reader
    never sees half of one): no file of the run folder is ever opened for writing in place."""
    opened: list[str] = []
    real_open = open

    def spy(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and isinstance(file, str | Path):
            opened.append(Path(file).name)
        return real_open(file, mode, *a, **k)

    for module in ("builtins.open", "pathlib.io.open"):
        monkeypatch.setattr(module, spy, raising=False)
    saved_replace, renamed = os.replace, []
    monkeypatch.setattr(
        os, "replace", lambda a, b: (renamed.append(Path(b).name), saved_replace(a, b))
    )
    rec = run(cfg_for("dsr"), tmp_path, progress=False)
    visible = {p.name for p in rec.path.iterdir() if not p.name.startswith(".")}
    in_place = [n for n in opened if not n.startswith(".")]
    assert in_place == [] and visible <= set(renamed), (in_place, visible - set(renamed))
    assert {"checkpoint.pt", "final.pt", "masks_final.npz", SUMMARY} <= set(renamed)


def test_training_without_progress_output_starts_no_thread(tmp_path, monkeypatch):
    """``progress=False`` creates no tqdm bar, so no monitor thread: the process stays safe to
    fork (a fork while tqdm's monitor holds its lock hangs the child)."""
    import threading

    from tqdm import tqdm
    from tqdm.auto import tqdm as tqdm_auto

    for cls in (tqdm, tqdm_auto):
        monkeypatch.setattr(cls, "monitor_interval", 10)  # tqdm's default: bars start it
    before = threading.active_count()
    run(cfg_for("static"), tmp_path, progress=False)
    assert threading.active_count() == before


# --- sweeps ------------------------------------------------------------------------------------

DIVERGES = dict(lr_schedule="0:1e30")  # weights overflow in the first epoch: the loss is nan


def _sweep_in_child(configs, root: Path) -> None:
    os.setpgrp()  # its own process group, so that the sweep and its workers can be killed
    torch.set_num_threads(1)
    sweep(configs, root, workers=1, progress=False)


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """A sweep of a diverging run and three sound ones (in that order, one worker), killed with
    SIGKILL (its whole process group) as soon as its first sound run has finished, then
    started again. Returns the root, the configs, the summaries present at the kill, and the
    statuses of the restarted sweep."""
    root = tmp_path_factory.mktemp("sweep") / "runs"
    configs = [cfg_for("dsr").replace(**DIVERGES), *grid(cfg_for("dsr"), SWEPT, [0.9], [0])]
    child = CHILDREN.Process(target=_sweep_in_child, args=(configs, root))
    child.start()
    deadline = time.monotonic() + 900
    while not list(root.glob(f"*/{SUMMARY}")) and time.monotonic() < deadline:
        assert child.is_alive(), f"the sweep ended by itself: {child.exitcode}"
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL
    at_kill = {p.parent.name: p.read_bytes() for p in root.glob(f"*/{SUMMARY}")}
    return root, configs, at_kill, sweep(configs, root, workers=1, progress=False)


SWEPT = ["dsr", "static", "dense"]


def test_a_killed_sweep_started_again_completes_every_run_exactly_once(killed_sweep):
    """The restarted sweep trains exactly the sound runs unfinished at the kill, leaves the
    finished ones untouched, and ends with every sound run complete."""
    root, (_, *sound), at_kill, status = killed_sweep
    assert 1 <= len(at_kill) < len(sound)
    assert {c.hash: status[c.hash] for c in sound} == {
        c.hash: "cached" if c.hash in at_kill else "done" for c in sound
    }
    assert all((root / h / SUMMARY).read_bytes() == b for h, b in at_kill.items())
    assert all(load_run(c, root) is not None for c in sound)
    assert not list(root.glob("*/.*.tmp"))


def test_a_diverging_run_is_recorded_as_failed_and_the_sweep_carries_on(killed_sweep):
    """The diverging run (first in the sweep) is recorded in failed.json with a one-line reason
    naming the epoch and the loss, and no summary; the sweep went on to finish the next run."""
    root, (bad, *_), at_kill, status = killed_sweep
    failed = json.loads((run_dir(bad, root) / FAILED).read_text())
    assert failed["reason"].startswith("training diverged: the mean training loss of epoch 0")
    assert "is nan" in failed["reason"] and "\n" not in failed["reason"]
    assert failed["config"] == bad.to_dict() and load_run(bad, root) is None
    assert len(at_kill) >= 1  # finished after the divergence, by the same sweep
    assert status[bad.hash] == f"failed: {failed['reason']} (recorded before)"


def test_a_failed_run_is_not_retried(killed_sweep):
    """Asked again, by a sweep or by ``run``, a failed run reports its recorded reason without
    training: no file of its folder changes."""
    root, (bad, *_), _, _ = killed_sweep
    folder = run_dir(bad, root)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    status = sweep([bad], root, workers=1, progress=False)
    assert status[bad.hash].endswith("(recorded before)")
    with pytest.raises(TrainingDiverged, match="recorded before; delete .*failed.json"):
        run(bad, root, progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_the_command_line_reports_divergence_in_one_line(tmp_path, capsys):
    """``python -m dsr train`` on a diverging config: exit 2, one line naming the problem."""
    code = main(
        ["train", "--dataset", "synthetic", "--epochs", "1", "--lr_schedule", "0:1e30"]
        + ["--no-progress", "--runs-root", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("dsr: error: run ") and "training diverged" in err[0]
    assert "recorded in" in err[0] and "failed.json" in err[0]


# --- two processes, one run ----------------------------------------------------------------


def ask_for_run(cfg, root: Path, log: Path, started: Path, out: Path, wait: bool) -> None:
    """In a spawned process: ``run(cfg)``, logging each training start to ``log``; with
    ``wait``, only once another process has started training."""
    import dsr.runs

    torch.set_num_threads(1)
    real_train = dsr.runs.train

    def counting_train(*args, **kw):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        started.touch()
        return real_train(*args, **kw)

    dsr.runs.train = counting_train
    while wait and not started.exists():
        time.sleep(0.01)
    out.write_text(json.dumps(run(cfg, root, progress=False).summary))


def test_two_processes_asking_for_one_run_train_it_once(tmp_path):
    """A second process asking for a run that a first one is training waits for the lock and
    returns the first one's result; training happened once. (Fresh processes, not forks: the
    test process may hold threads by now.)"""
    import multiprocessing

    cfg, root, log = cfg_for("dsr"), tmp_path / "runs", tmp_path / "trained.log"
    started = tmp_path / "started"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=ask_for_run,
            args=(cfg, root, log, started, tmp_path / f"summary{i}.json", i == 1),
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(log.read_text().splitlines()) == 1
    a, b = (json.loads((tmp_path / f"summary{i}.json").read_text()) for i in range(2))
    assert a == b == load_run(cfg, root).summary


# --- loading never runs code ---------------------------------------------------------------


def touch(path: str) -> None:
    Path(path).touch()


class Payload:
    """Unpickling this runs ``touch(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return touch, (self.marker,)


def test_a_checkpoint_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    """A checkpoint whose unpickling calls a function is refused with CheckpointError and the
    function never runs; the same file loaded without weights_only does run it (control)."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "x": Payload(marker)}, evil)
    with pytest.raises(io.CheckpointError, match="cannot read checkpoint"):
        io.load_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_a_run_resuming_from_a_malicious_checkpoint_refuses_it(tmp_path):
    """Resuming a run whose checkpoint.pt carries code: CheckpointError, nothing runs, and no
    file of the run folder changes."""
    cfg, marker = cfg_for("dsr"), tmp_path / "pwned"
    assert run(cfg, tmp_path / "runs", progress=False, stop_after=1) is None
    folder = run_dir(cfg, tmp_path / "runs")
    torch.save({"config": cfg.to_dict(), "x": Payload(marker)}, folder / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(io.CheckpointError, match="cannot read checkpoint"):
        run(cfg, tmp_path / "runs", progress=False)
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# --- provenance ------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_every_summary_records_its_provenance(tmp_path):
    """A summary names the code commit and whether the package differed from it, the torch and
    CUDA versions, the device, the data variant and the data checksum."""
    code_version.cache_clear()  # computed once per process: now, to compare with git now
    s = run(cfg_for("static"), tmp_path, progress=False).summary
    assert s["code_commit"] == git("rev-parse", "HEAD")
    assert s["code_dirty"] == bool(git("status", "--porcelain", "--", "dsr", "pyproject.toml"))
    assert s["torch"] == torch.__version__ and s["cuda"] == torch.version.cuda
    assert s["device"].startswith("cpu (") and f"{torch.get_num_threads()} threads" in s["device"]
    assert (s["data_variant"], s["data_checksum"]) == ("synthetic", "synthetic-v1")


def test_each_stretch_of_a_resumed_run_records_its_own_code(tmp_path, monkeypatch):
    """A run stopped at commit a and resumed from uncommitted code at commit b records both
    stretches, each with its commit and dirty flag; the import check refuses it."""
    import dsr.train
    from dsr.runs import import_problem

    cfg = cfg_for("static")

    def at(commit: str, dirty: bool):
        monkeypatch.setattr(
            dsr.train, "code_version", lambda: dict(code_commit=commit * 40, code_dirty=dirty)
        )

    at("a", False)
    assert run(cfg, tmp_path, progress=False, stop_after=1) is None
    at("b", True)
    record = run(cfg, tmp_path, progress=False)
    stretches = [
        (r["code_commit"][0], r["code_dirty"], r["from_epoch"]) for r in record.summary["runtime"]
    ]
    assert stretches == [("a", False, 0), ("b", True, 1)]
    summary = json.loads((record.path / SUMMARY).read_text())
    summary.update(code_dirty=False, code_commit=git("rev-parse", "HEAD"))  # only b is dirty
    (record.path / SUMMARY).write_text(json.dumps(summary))
    assert "uncommitted code (at bbbbbbbbbbbb" in import_problem(record.path, {})


def test_a_failure_record_carries_the_same_provenance(tmp_path):
    """failed.json records the reason, the config and the same provenance as a summary."""
    cfg = cfg_for("dsr").replace(**DIVERGES)
    code_version.cache_clear()
    with pytest.raises(TrainingDiverged):
        run(cfg, tmp_path, progress=False)
    failed = json.loads((run_dir(cfg, tmp_path) / FAILED).read_text())
    assert failed["code_commit"] == git("rev-parse", "HEAD")
    assert {"code_dirty", "torch", "cuda", "device", "python"} <= failed.keys()
