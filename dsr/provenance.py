"""The code a run was trained with (its git commit and whether the package differed from it),
and the machine a committed measurement was taken on."""

from __future__ import annotations

import platform
import subprocess
import time
from functools import cache
from pathlib import Path
from typing import Any

from dsr.data import PROJECT


@cache
def code_version() -> dict[str, Any]:
    """The git commit of the code and whether the package (dsr/, pyproject.toml) differs from
    it. Cached per process: call it before training so that it describes the code that ran."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD") or "unknown"
        dirty = bool(git("status", "--porcelain", "--", "dsr", "pyproject.toml"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", True
    return {"code_commit": commit, "code_dirty": dirty}


def machine() -> dict[str, Any]:
    """What a committed measurement (``data/bench``) was measured on: the CPU, torch's
    threads, version and CPU capability, the time and the code version."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **code_version(),
    }
