"""Runtime options (bf16, channels-last, torch.compile), the submitit launcher of ``sweep``, and
the GPU check script without the book's packages (all on the CPU here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dsr.__main__ import main
from dsr.runs import code_version, run
from dsr.train import Runtime, train
from tests.conftest import tiny

PROJECT = Path(__file__).resolve().parents[1]


def test_bf16_autocast_is_recorded_in_the_summary(tmp_path):
    """A bf16 run says so (precision and runtime); its active count is still conserved."""
    rec = run(tiny(epochs=1), tmp_path, progress=False, runtime=Runtime(bf16=True))
    assert rec.summary["precision"] == "bf16-autocast"
    assert rec.summary["runtime"] == [
        {"channels_last": False, "bf16": True, "compile": False, "sync_debug": False,
         "flush_denormal": True, "processes": 1, "device": "cpu", "torch": torch.__version__,
         **code_version(), "from_epoch": 0}
    ]  # fmt: skip
    assert rec.summary["reallocations"] > 0


def test_flush_denormal_is_on_during_training_only(monkeypatch):
    """Training flushes denormal floats to 0 (the default runtime) and leaves the process as it
    found it; with the option off, denormals survive during training too."""
    from dsr import io

    denormal = torch.tensor([1e-39])  # a float32 denormal
    survives = []  # at every step: does the denormal survive a multiplication?
    monkeypatch.setattr(
        io, "fault_point", lambda where: survives.append((denormal * 1.0).item() != 0)
    )
    cfg = tiny(epochs=1, train_subset=200, test_subset=100)
    for flush in (True, False):
        survives.clear()
        train(cfg, progress=False, runtime=Runtime(flush_denormal=flush))
        assert survives and set(survives) == {not flush}
        assert (denormal * 1.0).item() != 0  # the process default is back


def wrn16(**kw):
    return tiny(
        model="wrn16_2", epochs=1, train_subset=64, test_subset=64, realloc_schedule="0:1", **kw
    )


def test_channels_last_trains_the_same_network(tmp_path):
    """Channels-last inputs give the masks and (to float tolerance) the weights of the default
    layout, with reallocations on the way: mask indices keep their meaning. The convolutions
    of the two layouts round differently, so a weight within rounding of the threshold H may be
    pruned in one and kept in the other: at most 1 % of the positions may differ (a permuted
    layout would differ at most of the ~68,000 active positions), and the weights agree
    wherever the masks do."""
    a = train(wrn16(), progress=False)
    b = train(wrn16(), progress=False, runtime=Runtime(channels_last=True))
    assert len(a.events) == len(b.events) > 0
    pairs = list(zip(a.method.masks.masks, b.method.masks.masks))
    differ = sum(int((x != y).sum()) for x, y in pairs)
    assert differ <= 0.01 * sum(int(x.sum()) for x, _ in pairs)
    agree = {id(w): x == y for w, (x, y) in zip(a.method.masks.weights, pairs)}
    b_params = dict(b.model.named_parameters())
    for k, x in a.model.named_parameters():
        y = b_params[k]
        x, y = (x, y) if id(x) not in agree else (x[agree[id(x)]], y[agree[id(x)]])
        assert torch.allclose(x.detach(), y.detach(), rtol=1e-3, atol=1e-4), k


def test_compile_option_runs_the_model_through_torch_compile(monkeypatch):
    """With ``compile`` the loop trains through torch.compile's module (traced here by its
    eager backend, as inductor needs minutes on this CPU) and reaches the same weights."""
    calls = []
    original = torch.compile

    def eager(model, **kw):
        calls.append(type(model).__name__)
        return original(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager)
    a = train(tiny(epochs=1), progress=False)
    b = train(tiny(epochs=1), progress=False, runtime=Runtime(compile=True))
    assert calls == ["LeNet300"]
    assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters()))


def test_sweep_through_submitits_local_executor(tmp_path, monkeypatch, capsys):
    """``sweep --launcher local-submitit`` runs each config as a submitit job (a subprocess)
    and the results land in the run cache."""
    monkeypatch.setenv("PYTHONPATH", str(PROJECT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = tmp_path / "runs"
    code = main(
        ["sweep", "--protocol", "lenet300-mnist", "--budget", "smoke", "--dataset", "synthetic",
         "--epochs", "1", "--methods", "dsr,static", "--launcher", "local-submitit",
         "--runs-root", str(root), "--no-progress"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "2 finished, 0 failed" in out, out
    assert len(list(root.glob("*/summary.json"))) == 2
    jobs = [p for p in (root / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2  # one log folder per job, named by its job id


# As if only torch and torchvision were installed: importing these fails, and find_spec says
# they are absent (a None entry in sys.modules).
BLOCKER = """
import runpy, sys
for name in ("yaml", "tqdm", "seaborn", "papermill", "matplotlib", "pandas", "jupyter_book",
             "myst_nb", "submitit", "scipy", "nbformat", "IPython"):
    sys.modules[name] = None
sys.argv = ["scripts/gpu_check.py", "--smoke", "--device", "cpu"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_check_script_runs_with_only_torch_and_torchvision(tmp_path):
    """scripts/gpu_check.py (smoke sizes, CPU) passes with the book's packages, tqdm and yaml
    unimportable: the package imports them only where they are needed."""
    out = subprocess.run(
        [sys.executable, "-c", BLOCKER],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "DSR_RUNS": str(tmp_path)},
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert '{"passed": true}' in out.stdout
    assert "PASS  short WRN-28-2 DSR run" in out.stdout


def test_bf16_channels_last_path_resumes_bit_for_bit_and_keeps_masked_weights_zero(tmp_path):
    """The WRN-28-2 CPU fast path (bf16 autocast + channels-last): a run stopped after one epoch
    and resumed ends with the metrics, reallocations and masks of an uninterrupted one, and
    every masked weight is exactly 0 at the end of a run under autocast."""
    import numpy as np

    fast = Runtime(bf16=True, channels_last=True)
    cfg = wrn16().replace(epochs=2)
    whole = run(cfg, tmp_path / "a", progress=False, runtime=fast)
    assert run(cfg, tmp_path / "b", progress=False, runtime=fast, stop_after=1) is None
    resumed = run(cfg, tmp_path / "b", progress=False, runtime=fast)
    assert whole.summary["precision"] == resumed.summary["precision"] == "bf16-autocast"

    def numbers(rec):  # every column but the wall time
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rec.metrics()]

    assert numbers(whole) == numbers(resumed)
    assert (whole.path / "reallocations.jsonl").read_text() == (
        resumed.path / "reallocations.jsonl"
    ).read_text()
    a, b = np.load(whole.path / "masks_final.npz"), np.load(resumed.path / "masks_final.npz")
    assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)

    t = train(cfg, progress=False, runtime=fast)
    assert t.events  # reallocations happened under autocast
    for w, mask in zip(t.method.masks.weights, t.method.masks.masks):
        assert w.dtype == torch.float32  # autocast leaves the stored weights in fp32
        assert 0 < int(mask.sum()) < mask.numel()
        assert int((w.detach()[~mask] != 0).sum()) == 0


@pytest.mark.parametrize(
    "argv, precision, channels_last",
    [
        (["--protocol", "wrn28_2-cifar10", "--budget", "cpu"], "bf16-autocast", True),
        (["--protocol", "wrn28_2-cifar10", "--budget", "cpu", "--no-bf16"], "fp32", True),
        (["--protocol", "wrn28_2-cifar10", "--budget", "paper"], "fp32", False),
        (["--protocol", "wrn28_2-cifar10", "--budget", "smoke"], "fp32", False),
        (["--protocol", "lenet300-mnist", "--budget", "cpu"], "fp32", False),
        (["--protocol", "lenet300-mnist", "--bf16", "--channels-last"], "bf16-autocast", True),
    ],
)
def test_runtime_is_the_budgets_unless_an_option_says_otherwise(argv, precision, channels_last):
    """WRN-28-2 at the cpu budget runs bf16 + channels-last by default; every other protocol x
    budget fp32 / NCHW; --bf16 / --no-bf16 and --[no-]channels-last override either way."""
    from dsr.__main__ import budget_runtime_of, parser, runtime_from_args

    args = parser().parse_args(["train", *argv])
    rt = runtime_from_args(args, budget_runtime_of(args))
    assert (rt.precision, rt.channels_last) == (precision, channels_last)


def test_budget_named_in_a_yaml_file_sets_the_runtime(tmp_path):
    """The budget a config file names decides the default runtime, as it decides the config."""
    from dsr.__main__ import budget_runtime_of, parser, runtime_from_args

    f = tmp_path / "run.yaml"
    f.write_text("protocol: wrn28_2-cifar10\nbudget: cpu\nmethod: static\n")
    args = parser().parse_args(["train", "--config", str(f)])
    assert runtime_from_args(args, budget_runtime_of(args)).precision == "bf16-autocast"


def test_notebook_studies_train_at_their_budgets_runtime():
    """A notebook's study trains with its protocol x budget's runtime; the default profile
    states the precision of the committed budget it reads."""
    from dsr.results import Study

    def study(profile: str, model: str, committed: str = "paper") -> Study:
        return Study(profile, model, "cifar10-jpeg", [], [0.9], [0], committed_budget=committed)

    assert study("cpu", "wrn28_2").runtime().precision == "bf16-autocast"
    assert study("default", "wrn28_2", "cpu").runtime().channels_last
    assert study("smoke", "wrn28_2").runtime().precision == "fp32"
    assert study("cpu", "lenet300").runtime().precision == "fp32"


WRN_CPU = ["train", "--protocol", "wrn28_2-cifar10", "--budget", "cpu", "--dataset", "synthetic"]


def test_budget_bf16_is_refused_in_one_line_on_a_cpu_without_bf16_hardware(
    monkeypatch, capsys, isolated_cache
):
    """Where bf16 would run in fallback kernels (tens of times slower), the budget's default
    bf16 is refused before anything is written; the message names both ways out."""
    import dsr.train
    from dsr.__main__ import main

    monkeypatch.setattr(dsr.train, "native_bf16", lambda device="cpu": False)
    assert main([*WRN_CPU, "--method", "static"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no bf16 hardware" in err
    assert "--bf16 to insist" in err and "--no-bf16" in err
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())
    assert main(["sweep", *WRN_CPU[1:], "--methods", "static"]) == 2


@pytest.mark.parametrize("flag, precision", [("--bf16", "bf16-autocast"), ("--no-bf16", "fp32")])
def test_an_explicit_precision_option_is_never_refused(monkeypatch, flag, precision):
    import dsr.train
    from dsr.__main__ import checked_runtime, parser

    monkeypatch.setattr(dsr.train, "native_bf16", lambda device="cpu": False)
    args = parser().parse_args([*WRN_CPU, flag])
    assert checked_runtime(args).precision == precision


def test_a_cpu_profile_page_does_not_start_slow_bf16_runs(monkeypatch):
    """At the cpu profile a WRN-28-2 page on such a CPU lists its runs as not available, with
    the reason, instead of training them for days."""
    import dsr.train
    from dsr import results

    monkeypatch.setattr(dsr.train, "native_bf16", lambda device="cpu": False)
    st = results.study("cpu", "wrn28_2", "synthetic", "dsr,static", "0.9", "0")
    assert set(st.runs.status) == {"not available"}
    assert all("no bf16 hardware" in r for r in st.runs.reason)


def test_native_bf16_agrees_with_the_cpu_flags():
    """True where the CPU has AVX-512 BF16 or AMX-BF16, False where it has no AVX-512 at all
    (AVX-512 without BF16 is left out: oneDNN's answer there depends on its version)."""
    from dsr.train import native_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = set(cpuinfo.read_text().split())
    if flags & {"avx512_bf16", "amx_bf16"}:
        assert native_bf16("cpu")
    elif "avx512f" not in flags:
        assert not native_bf16("cpu")
    else:
        pytest.skip("AVX-512 without BF16")


def test_download_and_loader_workers_reach_the_loaders_as_arguments(monkeypatch):
    """``--download`` and ``--loader-workers`` travel in the Runtime (pickled to pool workers
    and cluster jobs), not through the environment; unset, the environment decides."""
    import os

    from dsr.__main__ import parser, runtime_from_args
    from dsr.data_common import DataAccess

    monkeypatch.delenv("DSR_DOWNLOAD", raising=False)
    monkeypatch.delenv("DSR_LOADER_WORKERS", raising=False)
    before = dict(os.environ)
    args = parser().parse_args(["train", "--download", "--loader-workers", "3"])
    rt = runtime_from_args(args)
    assert (rt.data.may_download(), rt.data.workers()) == (True, 3)
    assert dict(os.environ) == before
    plain = runtime_from_args(parser().parse_args(["train"])).data
    assert plain.may_download() is False
    monkeypatch.setenv("DSR_DOWNLOAD", "1")
    monkeypatch.setenv("DSR_LOADER_WORKERS", "0")
    assert (plain.may_download(), plain.workers()) == (True, 0)
    assert DataAccess(download=False).may_download() is False  # an argument beats the env


def test_a_source_is_retrained_in_the_precision_it_recorded(tmp_path):
    """A finished run without its final.pt is retrained in memory with the runtime its
    summary records (a bf16 dense source in bf16), and its weights then stored."""
    from dsr.runs import final_weights, recorded_runtime

    rec = run(
        tiny(method="dense", sparsity=0.0, epochs=1),
        tmp_path,
        progress=False,
        runtime=Runtime(bf16=True),
    )
    assert recorded_runtime(rec) == Runtime(bf16=True)
    stored = {k: v.clone() for k, v in final_weights(rec, torch.device("cpu")).items()}
    (rec.path / "final.pt").unlink()
    again = final_weights(rec, torch.device("cpu"))
    assert all(torch.equal(stored[k], again[k]) for k in stored)
    assert (rec.path / "final.pt").exists()
