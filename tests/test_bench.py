"""``python -m dsr bench``'s WRN-28-2 CPU paths: every runtime path runs and is reported as a rate
per thread; with ``--compile`` the compiled bf16 + channels-last path too, its compile time
printed apart."""

from __future__ import annotations

import shutil

import pytest

from dsr import bench


def test_every_cpu_path_reports_a_rate(capsys):
    ips = bench.print_paths(1, "cpu")
    assert list(ips) == [name for name, _ in bench.CPU_PATHS]
    assert all(v > 0 for v in ips.values())
    out = capsys.readouterr().out
    assert all("x fp32" in line for line in out.splitlines()[1:])


@pytest.mark.skipif(
    shutil.which("g++") is None, reason="torch.compile on a CPU needs a C++ compiler"
)
def test_the_compiled_path_is_timed_beside_the_others_and_its_compile_time_apart(capsys):
    ips = bench.bench_paths(1, "cpu", batch=2, compile=True)
    assert list(ips) == [*(name for name, _ in bench.CPU_PATHS), bench.COMPILED]
    assert all(v > 0 for v in ips.values())
    assert "compiled in" in capsys.readouterr().out
