"""The GPU campaign script end to end on the CPU at the smoke budget: a slot killed at a random
moment keeps its finished runs and resumes the rest in the next slot on a fresh machine; the
finished runs import into a run cache only when their provenance checks out."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsr import io
from dsr.config import RunConfig
from dsr.runs import code_version, import_runs, load_run
from tests.conftest import DATA_ROOT

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_campaign.py"
DATASET = "cifar10-jpeg" if (DATA_ROOT / "cifar10-jpeg").is_dir() else "synthetic"


def campaign(out: Path, work: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(SCRIPT), str(out), "--work", str(work), "--budget", "smoke",
        "--device", "cpu", "--dataset", DATASET, "--workers", "2", "--threads", "1",
        "--first", "4", "--sync-s", "0.5", "--slot-s", "900", "--check-timeout-s", "400",
        *extra,
    ]  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "DSR_DATA_ROOT": str(DATA_ROOT), "OMP_NUM_THREADS": "1"}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def epoch_of(checkpoint: Path) -> int:
    return int(io.load_checkpoint(checkpoint)["epoch"])


def partials(out: Path) -> list[Path]:
    """Checkpoints under OUT/partial, not counting a copy still being staged (hidden)."""
    return [p for p in out.glob("partial/*/checkpoint.pt") if not p.parent.name.startswith(".")]


def finished(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in out.glob("runs/*/summary.json")}


@pytest.fixture(scope="module")
def campaign_out(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Slot 1 killed (SIGKILL, the script alone) at a random moment once a run has finished
    and while a later one has a checkpoint in OUT/partial (the script is stopped with SIGSTOP
    to look, so the run cannot finish between the look and the kill); slot 2 on a fresh
    working folder, with only OUT kept."""
    tmp = tmp_path_factory.mktemp("campaign")
    out = tmp / "out"
    log = open(tmp / "slot1.log", "w")
    slot1 = subprocess.Popen(
        campaign(out, tmp / "work1"), env=env(), stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 600
    while not finished(out) and time.monotonic() < deadline and slot1.poll() is None:
        time.sleep(0.2)
    time.sleep(random.Random().uniform(0.0, 3.0))
    while time.monotonic() < deadline and slot1.poll() is None:
        if partials(out):  # some later run has a checkpoint too: both kinds of state
            time.sleep(random.Random().uniform(0.0, 1.0))
            slot1.send_signal(signal.SIGSTOP)  # OUT cannot change while we look
            if partials(out):
                break
            slot1.send_signal(signal.SIGCONT)  # that run finished meanwhile: wait for another
        time.sleep(0.1)
    slot1.send_signal(signal.SIGKILL)
    slot1.wait()
    log.close()
    text = (tmp / "slot1.log").read_text()
    kept = finished(out)
    partial = {p.parent.name: epoch_of(p) for p in partials(out)}
    workers = [int(p) for p in re.findall(r"pid (\d+)", text)]
    time.sleep(1.0)
    orphans = [p for p in workers if alive(p)]
    shutil.rmtree(tmp / "work1")  # the next slot is a fresh machine: only OUT comes back
    slot2 = subprocess.run(
        campaign(out, tmp / "work2"), env=env(), capture_output=True, text=True, timeout=900
    )
    return dict(out=out, kept=kept, partial=partial, orphans=orphans, slot1=text, slot2=slot2)


def test_a_killed_slot_keeps_finished_runs_and_the_next_one_completes_the_plan(campaign_out):
    out, slot2 = campaign_out["out"], campaign_out["slot2"]
    assert campaign_out["kept"], campaign_out["slot1"]
    assert campaign_out["orphans"] == [], "workers outlived the killed campaign"
    assert slot2.returncode == 0, slot2.stdout + slot2.stderr
    report = json.loads((out / "campaign.json").read_text())
    assert [r["state"] for r in report["runs"]] == ["done"] * 4, report
    assert report["stopped"] == "plan finished"
    after = finished(out)
    for h, summary in campaign_out["kept"].items():  # not trained again
        assert after[h] == summary
    assert "checks done in an earlier slot" in slot2.stdout
    assert not list(out.glob("runs/.*")) and not list(out.glob("partial/*"))
    for folder in out.glob("runs/*"):
        assert io.read_json(folder / "summary.json")["hash"] == folder.name
        assert not (folder / "checkpoint.pt").exists()


def test_the_slot_that_was_killed_ran_the_checks_first(campaign_out):
    checks = campaign_out["out"] / "checks"
    done = json.loads((checks / "done.json").read_text())
    assert done["gpu_check"]["returncode"] == 0, (checks / "gpu_check.txt").read_text()
    assert done["bench"]["returncode"] == 0, (checks / "bench.txt").read_text()
    assert '"passed": true' in (checks / "gpu_check.txt").read_text()
    assert "train images/s" in (checks / "bench.txt").read_text()
    projected = done["projected_200_epochs_min"]
    assert set(projected) == {"dense", "dsr"} and all(m > 0 for m in projected.values())


def test_a_run_unfinished_at_the_kill_resumes_from_its_copied_checkpoint(campaign_out):
    partial = campaign_out["partial"]
    assert partial and all(epoch >= 1 for epoch in partial.values())
    for h, epoch in partial.items():
        assert f"resuming {h} from its epoch-{epoch} checkpoint" in campaign_out["slot2"].stdout


def test_finished_runs_import_when_their_provenance_checks_out(campaign_out, tmp_path):
    out = campaign_out["out"]
    outcomes = dict(import_runs([out], tmp_path / "cache"))
    assert len(outcomes) == len(list(out.glob("runs/*")))
    if code_version()["code_dirty"] or code_version()["code_commit"] == "unknown":
        assert all(o.startswith("refused: trained from uncommitted code") or
                   "not in this repository" in o for o in outcomes.values()), outcomes  # fmt: skip
        return
    assert set(outcomes.values()) == {"imported"}, outcomes
    for folder in (tmp_path / "cache").iterdir():
        assert not (folder / "checkpoint.pt").exists()
    again = dict(import_runs([out], tmp_path / "cache"))
    assert set(again.values()) == {"already in the cache"}


def clean_copy(src: Path, dest: Path) -> Path:
    """A copy of run folder ``src``, its summary marked as from clean code at HEAD (the test
    suite may run on uncommitted code), so that only the tampering of a test is wrong."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    folder = dest / src.name
    shutil.copytree(src, folder)
    commit = head.stdout.strip()
    summary = io.read_json(folder / "summary.json")
    for stretch in summary["runtime"]:
        stretch.update(code_dirty=False, code_commit=commit)
    io.write_json(folder / "summary.json", summary)
    return edit_summary(code_dirty=False, code_commit=commit)(folder)


def first_run(campaign_out: dict) -> Path:
    return sorted(campaign_out["out"].glob("runs/*"))[0]


def tamper_name(f: Path) -> Path:
    return f.rename(f.with_name("0123456789ab"))


def edit_summary(**changes):
    def edit(f: Path) -> Path:
        s = io.read_json(f / "summary.json")
        s.update(changes)
        io.write_json(f / "summary.json", s)
        return f

    return edit


def edit_config(f: Path) -> Path:
    c = io.read_json(f / "config.json")
    c["seed"] += 1
    io.write_json(f / "config.json", c)
    return f


def drop_metrics_row(f: Path) -> Path:
    lines = (f / "metrics.csv").read_text().splitlines()
    (f / "metrics.csv").write_text("\n".join(lines[:-1]) + "\n")
    return f


def drop_key(key: str):
    def edit(f: Path) -> Path:
        s = io.read_json(f / "summary.json")
        del s[key]
        io.write_json(f / "summary.json", s)
        return f

    return edit


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (tamper_name, "disagree"),
        (edit_config, "disagree"),
        (edit_summary(code_dirty=True), "uncommitted code"),
        (edit_summary(code_commit="f" * 40), "not in this repository"),
        (drop_key("precision"), "provenance incomplete: no precision"),
        (drop_metrics_row, "metrics.csv has 1 rows for 2 epochs"),
    ],
)
def test_import_refuses_a_run_whose_identity_or_provenance_is_wrong(
    campaign_out, tmp_path, tamper, reason
):
    good = clean_copy(first_run(campaign_out), tmp_path / "src")
    assert dict(import_runs([good], tmp_path / "ok")) == {str(good): "imported"}
    bad = tamper(clean_copy(first_run(campaign_out), tmp_path / "bad"))
    [(folder, outcome)] = import_runs([bad], tmp_path / "cache")
    assert outcome.startswith("refused") and reason in outcome, outcome
    assert not (tmp_path / "cache" / bad.name).exists()


def test_import_refuses_other_data_than_the_cache_holds(campaign_out, tmp_path):
    first, second = sorted(campaign_out["out"].glob("runs/*"))[:2]
    good = clean_copy(first, tmp_path / "src")
    assert dict(import_runs([good], tmp_path / "cache"))[str(good)] == "imported"
    other = edit_summary(data_checksum="0" * 16)(clean_copy(second, tmp_path / "src"))
    [(_, outcome)] = import_runs([other], tmp_path / "cache")
    assert "data checksum 0000000000000000 differs" in outcome, outcome


def test_the_command_line_imports_and_says_what_it_refused(campaign_out, tmp_path):
    good = clean_copy(first_run(campaign_out), tmp_path / "src")
    bad = edit_summary(code_dirty=True)(clean_copy(first_run(campaign_out), tmp_path / "bad"))
    r = subprocess.run(
        [sys.executable, "-m", "dsr", "runs", "--import", str(good), str(bad),
         "--runs-root", str(tmp_path / "cache")],
        capture_output=True, text=True, env=env(), cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{good}: imported" in r.stdout
    assert f"{bad}: refused: trained from uncommitted code" in r.stdout
    assert "1 imported, 0 already there, 1 refused" in r.stdout
    folder = tmp_path / "cache" / good.name
    record = load_run(RunConfig(**io.read_json(folder / "config.json")), tmp_path / "cache")
    assert record is not None and record.summary["hash"] == good.name


@pytest.mark.parametrize(
    "args, message",
    [
        (["--slot-s", "30", "--margin-s", "45"], "--margin-s must be shorter than --slot-s"),
        (["--workers", "0"], "--workers must be positive"),
        (["--budget", "weekly"], "unknown budget 'weekly'"),
        (["--device", "cuda:7"], "CUDA is not available"),
        (["--resume-from", "/nonexistent"], "--resume-from /nonexistent: no such folder"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--device", "cpu", *args],
        capture_output=True, text=True, env=env(),
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not out.exists()


def test_export_skips_a_run_whose_checkpoint_vanishes_during_the_copy(tmp_path, monkeypatch):
    """The race CI met: a run finishes (and deletes its checkpoint) between export's glob and
    its copy. Export goes on, leaves no checkpoint-less folder under OUT/partial, and still
    copies the other runs' checkpoints."""
    mod = script_module(monkeypatch)
    work, out = tmp_path / "work", tmp_path / "out"
    for h in ("aaaa", "bbbb"):
        (work / h).mkdir(parents=True)
        (work / h / "config.json").write_text("{}")
        (work / h / "checkpoint.pt").write_bytes(h.encode())
    real = mod.copy_folder

    def finishing_copy(src, dst, files=None):
        if src.name == "aaaa":  # this run finishes right now
            (src / "checkpoint.pt").unlink()
        return real(src, dst, files)

    monkeypatch.setattr(mod, "copy_folder", finishing_copy)
    mod.export(work, out)
    assert not (out / "partial" / "aaaa").exists()
    assert (out / "partial" / "bbbb" / "checkpoint.pt").read_bytes() == b"bbbb"


def test_an_export_error_during_the_slot_is_reported_and_the_slot_goes_on(monkeypatch, capsys):
    mod = script_module(monkeypatch)

    def failing_export(work, out):
        raise FileNotFoundError(2, "No such file or directory", "x/checkpoint.pt")

    monkeypatch.setattr(mod, "export", failing_export)
    mod.export_or_say(Path("work"), Path("out"))  # must not raise
    said = capsys.readouterr()
    assert "x/checkpoint.pt" in said.out + said.err
    assert "trying again at the next sync" in said.out + said.err


def script_module(monkeypatch):
    """scripts/gpu_campaign.py imported as a module (it is a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_campaign", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_campaign", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod
