"""The code a run was trained with (its git commit and whether the package differed from it),
and the machine a committed measurement was taken on (with the file that holds it)."""

from __future__ import annotations

import json
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


def write_measurement(path: Path, repeats: int, rows: list[dict]) -> dict:
    """Write ``{"machine": ..., "repeats": ..., "rows": [...]}`` to ``path``; return it."""
    result = {"machine": machine(), "repeats": repeats, "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def read_measurement(path: Path) -> dict | None:
    """A measurement :func:`write_measurement` wrote, or None if ``path`` is absent."""
    return json.loads(path.read_text()) if path.exists() else None
