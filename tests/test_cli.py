"""Bad input: one clear line, a non-zero exit, nothing written under the run cache."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from dsr.__main__ import main
from dsr.config import RunConfig

PROJECT = Path(__file__).resolve().parents[1]


def dsr(*args: str, env_extra: dict | None = None, runs: Path):
    import os

    env = {**os.environ, "DSR_RUNS": str(runs), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "dsr", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang: importing torch alone can take 30 s on a busy CPU
    )


BAD = [
    (["--sparsity", "1.0"], "sparsity must be in [0, 1)"),
    (["--sparsity", "-0.1"], "sparsity must be in [0, 1)"),
    (["--sparsity", "abc"], "sparsity: expected float"),
    (["--method", "magic"], "unknown method 'magic'"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--dataset", "svhn"], "unknown dataset 'svhn'"),
    (["--epochs", "-3"], "epochs must be at least 1"),
    (["--batch_size", "0"], "batch_size must be at least 1"),
    (["--lr_schedule", "5:0.1"], "lr_schedule: epochs must start at 0"),
    (["--nesterov", "maybe"], "nesterov: expected bool"),
    (["--method", "thin_dense", "--sparsity", "0"], "thin_dense needs sparsity > 0"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_config_gives_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    """In-process (the subprocess tests below cover the real entry point)."""
    runs = tmp_path / "runs"
    code = main(["train", "--dataset", "synthetic", "--runs-root", str(runs), *args])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert not runs.exists()


def test_missing_dataset_without_download_is_one_line_and_writes_nothing(tmp_path):
    runs = tmp_path / "runs"
    out = dsr(
        "train",
        "--epochs",
        "1",
        runs=runs,
        env_extra={"DSR_DATA_ROOT": str(tmp_path / "empty"), "DSR_CACHE": str(tmp_path)},
    )
    assert out.returncode == 2 and "MNIST not found" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not runs.exists()


def test_unreadable_yaml_and_unknown_yaml_field(tmp_path):
    runs = tmp_path / "runs"
    (tmp_path / "bad.yaml").write_text("sparsity: [0.9\n")
    (tmp_path / "odd.yaml").write_text("colour: blue\n")
    for name, message in (
        ("bad.yaml", "cannot read config file"),
        ("odd.yaml", "unknown config field"),
    ):
        out = dsr("train", "--config", str(tmp_path / name), runs=runs)
        assert out.returncode == 2 and message in out.stderr and not runs.exists()


def test_train_from_yaml_prints_accuracy_and_caches(tmp_path):
    runs = tmp_path / "runs"
    (tmp_path / "run.yaml").write_text(
        "protocol: lenet300-mnist\nbudget: smoke\ndataset: synthetic\nmethod: dsr\n"
    )
    out = dsr("train", "--config", str(tmp_path / "run.yaml"), "--no-progress", runs=runs)
    assert out.returncode == 0, out.stderr
    assert "test accuracy" in out.stdout and "(synthetic)" in out.stdout
    assert len(list(runs.glob("*/summary.json"))) == 1
    again = dsr("train", "--config", str(tmp_path / "run.yaml"), "--no-progress", runs=runs)
    assert "stored result, nothing trained: this run finished" in again.stdout


def test_help_lists_every_config_field(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert all(f"--{f.name}" in out for f in fields(RunConfig))


def test_runs_lists_finished_and_interrupted_runs_with_their_cost(tmp_path):
    """`dsr runs` shows a finished run (accuracy, CPU-hours = wall x threads) and one stopped
    after an epoch ("epoch 1 of n"), then totals that count each once."""
    import json

    runs = tmp_path / "runs"
    common = ["--protocol", "lenet300-mnist", "--budget", "smoke", "--dataset", "synthetic"]
    common += ["--no-progress", "--threads", "1"]
    assert dsr("train", *common, "--seed", "0", runs=runs).returncode == 0
    stopped = dsr("train", *common, "--seed", "1", "--epochs", "3", "--stop-after", "1", runs=runs)
    assert stopped.returncode == 0, stopped.stderr
    out = dsr("runs", runs=runs)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    summary = json.loads(next(runs.glob("*/summary.json")).read_text())
    done = next(line for line in lines if line.startswith(summary["hash"]))
    assert f"{summary['final_test_acc']:.2f}" in done.split()
    assert float(done.split()[-2]) == round(summary["wall_seconds"] / 3600, 2)  # 1 thread
    assert any(re.search(r"\sepoch 1 of 3\s", line) for line in lines)
    hours = summary["wall_seconds"] / 3600
    assert lines[-1] == (
        f"1 finished runs: {hours:.1f} CPU-hours (wall time x threads), 0.0 GPU-hours; "
        "1 in progress, 0 failed"
    )
    missing = dsr("runs", "--runs-root", str(tmp_path / "nothing"), runs=runs)
    assert (missing.returncode, missing.stderr.count("\n")) == (2, 1)


def test_help_does_not_import_torch():
    """``--help`` answers at once: the method registry (and torch) load only when a command
    runs. Checked in a fresh interpreter, where nothing has imported torch yet."""
    code = (
        "import sys\n"
        "from dsr.__main__ import main\n"
        "for cmd in (['--help'], ['train', '--help'], ['sweep', '--help'], ['runs', '--help']):\n"
        "    try:\n"
        "        main(cmd)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (cmd, e.code)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
    import dsr

    assert "dsr" in dsr.METHODS and callable(dsr.sparsify)  # still there when asked for


def test_options_are_spelled_with_dashes_and_the_underscore_form_is_an_alias():
    from dsr.__main__ import config_from_args, parser

    base = ["train", "--dataset", "synthetic"]
    dashed = config_from_args(parser().parse_args([*base, "--batch-size", "50"]))
    underscored = config_from_args(parser().parse_args([*base, "--batch_size", "50"]))
    assert dashed.batch_size == 50 and dashed.hash == underscored.hash


@pytest.mark.parametrize(
    "args,value",
    [
        ([], True),
        (["--nesterov"], True),
        (["--no-nesterov"], False),
        (["--nesterov", "false"], False),
    ],
)
def test_a_boolean_option_is_on_with_its_name_and_off_with_no(args, value):
    from dsr.__main__ import config_from_args, parser

    cfg = config_from_args(parser().parse_args(["train", "--dataset", "synthetic", *args]))
    assert cfg.nesterov is value


def test_every_options_help_says_what_it_does_not_its_name():
    from dsr.__main__ import FIELD_HELP

    assert set(FIELD_HELP) == {f.name for f in fields(RunConfig)}
    assert all(len(text.split()) >= 3 and text != name for name, text in FIELD_HELP.items())


def test_sigterm_stops_a_run_like_ctrl_c_and_the_next_start_says_where_it_resumes(tmp_path):
    import os
    import signal
    import time

    runs = tmp_path / "runs"
    args = ["train", "--budget", "smoke", "--dataset", "synthetic", "--epochs", "400"]
    args += ["--no-progress", "--threads", "1"]
    env = {**os.environ, "DSR_RUNS": str(runs)}
    proc = subprocess.Popen([sys.executable, "-m", "dsr", *args], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(runs.glob("*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert err.strip() == "dsr: interrupted; run the same command again to resume"
    again = dsr(*args, "--stop-after", "1", runs=runs)
    assert again.returncode == 0, again.stderr
    assert re.search(r"resuming from its epoch-\d+ checkpoint \(\d+ to go\)", again.stdout)
