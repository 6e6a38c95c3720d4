"""The code a run was trained with: its git commit and whether the package differed from it."""

from __future__ import annotations

import subprocess
from functools import cache
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
