"""Bad input on the command line, in YAML configs, in notebook parameters and in data files.

Each case must give one line naming the problem and a non-zero exit, and leave the run cache
exactly as it was: the same files and folders with the same bytes and modification times.
The cache holds a finished run and an unfinished one (a checkpoint after 1 of 2 epochs).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dsr import io
from dsr.__main__ import main
from dsr.config import ConfigError, RunConfig, preset
from dsr.methods import METHODS
from dsr.runs import run
from tests.conftest import DATA_ROOT, tiny

# --stop-after 1: a case that slipped through would train one short epoch, not a whole run.
TRAIN = ["train", "--dataset", "synthetic", "--no-progress", "--stop-after", "1"]
FINISHED = [*TRAIN, "--epochs", "1"]
UNFINISHED = [*TRAIN, "--epochs", "2"]
JPEG = ["--model", "wrn16_2", "--dataset", "cifar10-jpeg"]
MNIST_RAW = DATA_ROOT / "MNIST" / "raw"


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("populated") / "runs"
    assert main([*FINISHED, "--runs-root", str(root)]) == 0
    assert main([*UNFINISHED, "--stop-after", "1", "--runs-root", str(root)]) == 0
    return root


@pytest.fixture
def cache(populated: Path, tmp_path: Path) -> Path:
    """A copy of the populated cache, for this test alone."""
    shutil.copytree(populated, tmp_path / "cache")
    return tmp_path / "cache"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: bytes' sha256 (files) and modification time."""
    return {
        str(p.relative_to(root)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
    }


def run_dir_of(cache: Path, args: list[str]) -> Path:
    """The folder of the run the command line ``args`` names."""
    (path,) = [p.parent for p in cache.glob("*/config.json") if args_match(p, args)]
    return path


def args_match(config: Path, args: list[str]) -> bool:
    epochs = int(args[args.index("--epochs") + 1])
    return json.loads(config.read_text())["epochs"] == epochs


def refused(argv: list[str], cache: Path, capsys) -> str:
    """Run the command line on ``cache``; assert exit 2, one line on stderr, cache unchanged.
    Returns the line."""
    before = snapshot(cache)
    try:
        code = main([*argv, "--runs-root", str(cache)])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("dsr: error: "), err
    assert snapshot(cache) == before
    return err[0]


# --- the command line --------------------------------------------------------------------------

COMMAND_LINE = {
    "int given a fraction": (["--epochs", "2.5"], "epochs: expected int, got '2.5'"),
    "nan sparsity": (["--sparsity", "nan"], "sparsity must be in [0, 1), got nan"),
    "unknown protocol": (["--protocol", "imagenet"], "invalid choice: 'imagenet'"),
    "misspelt option": (["--sparisty", "0.9"], "unrecognized arguments: --sparisty"),
    "zero threads": (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
    "stop after 0 epochs": (["--stop-after", "0"], "argument --stop-after: must be at least 1"),
    "unknown device": (["--device", "banana"], "unknown device 'banana'"),
    "model and data of different shapes": (
        ["--dataset", "cifar10-jpeg"],
        "model lenet300 takes inputs of shape (784,), dataset cifar10-jpeg gives (3, 32, 32)",
    ),
    "thin_dense with a width": (
        ["--method", "thin_dense", "--width", "0.5"],
        "thin_dense chooses its own width",
    ),
}


@pytest.mark.parametrize("case", COMMAND_LINE)
def test_command_line(case, cache, capsys):
    """A bad option of ``python -m dsr train``."""
    args, message = COMMAND_LINE[case]
    assert message in refused([*TRAIN, *args], cache, capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_on_a_machine_without_one(cache, capsys):
    """``--device cuda`` where there is none: refused before anything is written."""
    assert "CUDA is not available" in refused([*TRAIN, "--device", "cuda"], cache, capsys)


SWEEP = {
    "unknown method in a list": (["--methods", "dsr,magic"], "unknown method 'magic'"),
    "seed list with a word": (["--seeds", "0,x"], "--seeds: cannot read '0,x'"),
    "no workers": (["--workers", "0"], "argument --workers: must be at least 1"),
    "unknown method in a spec": (["--methods", "magic:fast"], "method 'magic' is not available"),
    "malformed length": (["--methods", "static@2y"], "length multiplier '@2y': expected @Nx"),
    "length of a method without one": (
        ["--methods", "dsr@2x"],
        "a length multiplier applies to static, static_replica, thin_dense, not dsr",
    ),
}


@pytest.mark.parametrize("case", SWEEP)
def test_sweep_command_line(case, cache, capsys):
    """A bad option of ``python -m dsr sweep``."""
    args, message = SWEEP[case]
    argv = ["sweep", "--dataset", "synthetic", "--no-progress", *args]
    assert message in refused(argv, cache, capsys)


def test_a_runs_root_that_is_a_file(cache, capsys):
    """``--runs-root`` naming a file: one line from the operating system's error."""
    file = next(cache.glob("*/summary.json"))
    before = snapshot(cache)
    code = main([*TRAIN, "--epochs", "3", "--runs-root", str(file)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Not a directory" in err[0], err
    assert snapshot(cache) == before


# --- YAML configs ------------------------------------------------------------------------------

YAML = {
    "not a mapping": ("- sparsity\n- 0.9\n", "must hold a mapping of field: value"),
    "sparsity 1.0": ("sparsity: 1.0\n", "sparsity must be in [0, 1), got 1.0"),
    "negative epochs": ("epochs: -5\n", "epochs must be at least 1, got -5"),
    "zero batch size": ("batch_size: 0\n", "batch_size must be at least 1, got 0"),
    "a list for a number": ("epochs: [1, 2]\n", "epochs: expected int, got ['1', '2']"),
    "unknown protocol": ("protocol: resnet\n", "unknown protocol 'resnet'"),
    "unknown budget": ("budget: huge\n", "unknown budget 'huge'"),
    "unknown grow_init": ("grow_init: ones\n", "grow_init must be 'zero' or 'kaiming'"),
    "thin_dense without sparsity": (
        "method: thin_dense\nsparsity: 0\n",
        "thin_dense needs sparsity > 0",
    ),
    "schedule not from epoch 0": ("lr_schedule: '10:0.1'\n", "epochs must start at 0"),
    "reallocation period 0": ("realloc_schedule: 0:0\n", "periods must be whole numbers >= 1"),
    "empty value": ("sparsity:\n", "sparsity: expected float, got ''"),
}


@pytest.mark.parametrize("case", YAML)
def test_yaml_config(case, cache, tmp_path, capsys):
    """A bad ``--config`` file."""
    text, message = YAML[case]
    (tmp_path / "run.yaml").write_text(text)
    assert message in refused([*TRAIN, "--config", str(tmp_path / "run.yaml")], cache, capsys)


def test_a_missing_yaml_file(cache, tmp_path, capsys):
    """``--config`` naming no file."""
    line = refused([*TRAIN, "--config", str(tmp_path / "none.yaml")], cache, capsys)
    assert "cannot read config file" in line and "FileNotFoundError" in line


def test_yaml_reads_an_unquoted_schedule_as_text(tmp_path):
    """YAML 1.1 reads ``0:0.05`` as the number 0.05 (base 60); the config reader keeps it text,
    so ``lr_schedule: 0:0.05`` means what it says."""
    from dsr.__main__ import config_from_args, parser

    path = tmp_path / "run.yaml"
    path.write_text("dataset: synthetic\nlr_schedule: 0:0.05\nepochs: 2\n")
    args = parser().parse_args(["train", "--config", str(path)])
    assert config_from_args(args).lr_schedule == "0:0.05"


# --- notebook parameters -----------------------------------------------------------------------

NOTEBOOK = {
    "sparsity 1.0": (dict(sparsity=1.0), "sparsity must be in [0, 1), got 1.0"),
    "negative epochs": (dict(epochs=-1), "epochs must be at least 1, got -1"),
    "zero batch size": (dict(batch_size=0), "batch_size must be at least 1, got 0"),
    "float for an int": (dict(epochs=10.0), "epochs: expected int, got 10.0"),
    "bool for an int": (dict(seed=True), "seed: expected int, got True"),
    "misspelt field": (dict(methdo="dsr"), "unknown config field: methdo"),
    "unknown method": (dict(method="Dsr"), "unknown method 'Dsr'"),
    "model and data of different shapes": (
        dict(model="wrn28_2"),
        "model wrn28_2 takes inputs of shape (3, 32, 32), dataset mnist gives (784,)",
    ),
    "thin_dense with a width": (
        dict(method="thin_dense", width=0.5),
        "thin_dense chooses its own width",
    ),
    "DSR with Np 0": (dict(np_target=0), "np_target must be at least 1 for dsr, got 0"),
    "SET matched to an Np of 0": (
        dict(method="set", np_target=0),
        "np_target must be at least 1 for set, got 0",
    ),
    "kernel granularity without kernels": (
        dict(granularity="kernel"),
        "granularity 'kernel' needs convolutions: lenet300 has none",
    ),
}


@pytest.mark.parametrize("case", NOTEBOOK)
def test_notebook_parameters(case):
    """A parameter cell's values passed to ``preset``: ConfigError with a one-line reason."""
    params, message = NOTEBOOK[case]
    with pytest.raises(ConfigError) as e:
        preset("lenet300-mnist", "smoke", **params)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_string_for_a_number_built_directly():
    """``RunConfig(sparsity="0.9")``: refused (only ``preset`` and the readers convert text)."""
    with pytest.raises(ConfigError, match=r"sparsity: expected float, got '0.9'"):
        RunConfig(sparsity="0.9")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(device="cuda:7"), "CUDA"),
        (dict(device="gpu"), "unknown device 'gpu'"),
        (dict(stop_after=0), "stop_after must be at least 1 epoch, got 0"),
    ],
    ids=["absent cuda device", "unknown device", "stop after 0 epochs"],
)
def test_run_refuses_bad_runtime_options_before_writing(cache, kwargs, message):
    """``dsr.run(cfg, ...)`` from a notebook with a bad device or stop_after."""
    if "cuda" in kwargs.get("device", "") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 CUDA devices")
    before = snapshot(cache)
    with pytest.raises(ConfigError, match=message):
        run(tiny(epochs=1), cache, **kwargs)
    assert snapshot(cache) == before


@pytest.mark.skipif("static_replica" not in METHODS, reason="no static_replica method")
def test_a_replica_of_a_run_that_failed(cache, capsys):
    """A static replica whose DSR source run is recorded as failed: refused with the source's
    reason; no replica folder appears. (A replica's source keeps the protocol's epochs and
    learning rates unless ``--source_epochs`` / ``--source_lr_schedule`` say otherwise.)"""
    args = [*TRAIN, "--epochs", "1", "--lr_schedule", "0:1e30"]
    assert main([*args, "--method", "dsr", "--runs-root", str(cache)]) == 2
    capsys.readouterr()
    source = ["--source_epochs", "1", "--source_lr_schedule", "0:1e30"]
    replica = [*args, *source, "--method", "static_replica"]
    assert "training diverged" in refused(replica, cache, capsys)


# --- data ------------------------------------------------------------------------------------


def test_a_data_root_without_mnist(cache, tmp_path, monkeypatch, capsys):
    """MNIST asked for where there is none, downloads not allowed."""
    monkeypatch.setenv("DSR_DATA_ROOT", str(tmp_path / "empty"))
    monkeypatch.setenv("DSR_CACHE", str(tmp_path / "dcache"))
    args = ["train", "--budget", "smoke", "--no-progress"]
    assert "MNIST not found under" in refused(args, cache, capsys)


def test_a_data_root_without_cifar10(cache, tmp_path, monkeypatch, capsys):
    """The real CIFAR-10 asked for where there is none, downloads not allowed."""
    monkeypatch.setenv("DSR_DATA_ROOT", str(tmp_path / "empty"))
    args = [*TRAIN, "--model", "wrn16_2", "--dataset", "cifar10"]
    assert "CIFAR-10 not usable under" in refused(args, cache, capsys)


def flip_a_bit(b: bytes, at: int = 100) -> bytes:
    return b[:at] + bytes([b[at] ^ 1]) + b[at + 1 :]


def altered_mnist(root: Path, name: str, change) -> Path:
    """A data root whose MNIST/raw has the official files, ``name`` changed by ``change``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for src in MNIST_RAW.glob("*.gz"):
        if src.name == name:
            (raw / name).write_bytes(change(src.read_bytes()))
        else:
            (raw / src.name).symlink_to(src)
    return root


needs_mnist = pytest.mark.skipif(not MNIST_RAW.exists(), reason=f"no MNIST under {DATA_ROOT}")


@needs_mnist
@pytest.mark.parametrize(
    "name,change",
    [
        ("t10k-labels-idx1-ubyte.gz", flip_a_bit),
        ("train-labels-idx1-ubyte.gz", lambda b: b[: len(b) // 2]),
    ],
    ids=["one bit flipped", "truncated"],
)
def test_an_altered_mnist_file(cache, tmp_path, monkeypatch, capsys, name, change):
    """An MNIST .gz whose md5 differs from torchvision's list: refused by name, no download."""
    monkeypatch.setenv("DSR_DATA_ROOT", str(altered_mnist(tmp_path / "data", name, change)))
    monkeypatch.setenv("DSR_CACHE", str(tmp_path / "dcache"))
    line = refused(["train", "--budget", "smoke", "--no-progress"], cache, capsys)
    assert f"MNIST file {tmp_path / 'data' / 'MNIST' / 'raw' / name}" in line
    assert "does not match its md5" in line


def fake_cifar10_jpeg(root: Path, matching: bool = True, images=None, key="images") -> Path:
    """``root/cifar10-jpeg``: the real manifest with its six files replaced by tiny ones (four
    images each) whose sha256 sums are written into it (``matching``) or left as they were."""
    folder = root / "cifar10-jpeg"
    folder.mkdir(parents=True)
    manifest = json.loads((DATA_ROOT / "cifar10-jpeg" / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    for name in [*manifest["train_files"], manifest["test_file"]]:
        x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8) if images is None else images
        np.savez(folder / name, **{key: x, "labels": np.arange(len(x)) % 10})
        if matching:
            manifest["sha256"][name] = file_sha256(folder / name)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return root


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


needs_jpeg = pytest.mark.skipif(
    not (DATA_ROOT / "cifar10-jpeg" / "manifest.json").exists(),
    reason=f"no cifar10-jpeg under {DATA_ROOT} (set DSR_DATA_ROOT)",
)


@needs_jpeg
def test_fake_cifar10_jpeg_with_matching_sums_loads(tmp_path, monkeypatch):
    """Control for the cases below: the tiny fake set, its sums in the manifest, loads, with
    the checksum of the manifest's sums as its provenance."""
    from dsr.data import load

    monkeypatch.setenv("DSR_DATA_ROOT", str(fake_cifar10_jpeg(tmp_path)))
    data = load("cifar10-jpeg", (3, 32, 32))
    manifest = json.loads((tmp_path / "cifar10-jpeg" / "manifest.json").read_text())
    sums = "".join(manifest["sha256"][n] for n in [*manifest["train_files"], "test.npz"])
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.checksum == hashlib.sha256(sums.encode()).hexdigest()[:16]


def altered(path: Path, change) -> None:
    path.write_bytes(change(path.read_bytes()))


JPEG_CASES = {
    "no cifar10-jpeg folder": (lambda root: None, "cifar10-jpeg not found: no"),
    "real sums, other files": (
        lambda root: shutil.copy(
            DATA_ROOT / "cifar10-jpeg" / "manifest.json", root / "cifar10-jpeg/manifest.json"
        ),
        "train_1.npz does not match its sha256 in manifest.json",
    ),
    "one byte changed": (
        lambda root: altered(root / "cifar10-jpeg/train_3.npz", flip_a_bit),
        "train_3.npz does not match its sha256",
    ),
    "truncated": (
        lambda root: altered(root / "cifar10-jpeg/test.npz", lambda b: b[:1000]),
        "test.npz does not match its sha256",
    ),
    "a file missing": (
        lambda root: (root / "cifar10-jpeg/train_5.npz").unlink(),
        "missing file",
    ),
    "manifest not JSON": (
        lambda root: altered(root / "cifar10-jpeg/manifest.json", lambda b: b[:50]),
        "manifest.json is unreadable or lacks",
    ),
}


@needs_jpeg
@pytest.mark.parametrize("case", JPEG_CASES)
def test_bad_cifar10_jpeg_files(case, cache, tmp_path, monkeypatch, capsys):
    """cifar10-jpeg files that do not match manifest.json, or a broken manifest."""
    change, message = JPEG_CASES[case]
    root = tmp_path / "data"
    if case == "no cifar10-jpeg folder":
        root.mkdir()
    else:
        fake_cifar10_jpeg(root)
    change(root)
    monkeypatch.setenv("DSR_DATA_ROOT", str(root))
    assert message in refused([*TRAIN, *JPEG], cache, capsys)


@needs_jpeg
@pytest.mark.parametrize(
    "fake,message",
    [
        (dict(key="pixels"), "cannot read"),
        (dict(images=np.zeros((4, 28, 28, 3), np.uint8)), "not uint8 (N, 32, 32, 3)"),
    ],
    ids=["no images array", "images of another size"],
)
def test_cifar10_jpeg_files_with_matching_sums_but_wrong_content(
    cache, tmp_path, monkeypatch, capsys, fake, message
):
    """Files whose sums match the manifest but that do not hold CIFAR images."""
    monkeypatch.setenv("DSR_DATA_ROOT", str(fake_cifar10_jpeg(tmp_path / "data", **fake)))
    assert message in refused([*TRAIN, *JPEG], cache, capsys)


# --- stored run files --------------------------------------------------------------------------


def test_a_corrupted_checkpoint(cache, capsys):
    """Garbage in the unfinished run's checkpoint.pt: refused by name, not retrained over."""
    ckpt = run_dir_of(cache, UNFINISHED) / "checkpoint.pt"
    ckpt.write_bytes(b"\x80\x02garbage" * 100)
    line = refused(UNFINISHED, cache, capsys)
    assert f"cannot read checkpoint {ckpt}" in line


def test_a_checkpoint_of_another_config(cache, capsys):
    """A checkpoint whose stored config is not the run's (copied from elsewhere): refused."""
    ckpt = run_dir_of(cache, UNFINISHED) / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["config"]["seed"] = 7
    io.save_torch(state, ckpt)
    assert f"checkpoint {ckpt} belongs to another config" in refused(UNFINISHED, cache, capsys)


def test_a_truncated_summary(cache, capsys):
    """A finished run whose summary.json was cut short: refused by name, not retrained."""
    summary = run_dir_of(cache, FINISHED) / "summary.json"
    summary.write_bytes(summary.read_bytes()[:40])
    line = refused(FINISHED, cache, capsys)
    assert f"cannot read {summary}: JSONDecodeError" in line


def test_a_run_folder_holding_another_config(cache, capsys):
    """An unfinished run whose config.json names another config: refused, nothing overwritten."""
    config = run_dir_of(cache, UNFINISHED) / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "seed": 3}))
    assert "holds a different config" in refused(UNFINISHED, cache, capsys)
