"""Files written so that a reader never sees half of one, and read without running code.

Every file goes to a temporary name in the same folder and is renamed into place; checkpoints
are loaded with ``torch.load(weights_only=True)``.

Fault injection, for tests of crash safety: with ``DSR_FAULT=<point>:<n>`` in the environment the
process kills itself with SIGKILL at the n-th time (counted from process start) it reaches
``<point>``. A point is the file name of a write (``checkpoint.pt``, ``summary.json``, ...), where
the kill comes after half the bytes are in the temporary file, or ``step``, reached in the training
loop between ``optimizer.step()`` and the method's ``after_step()``. Unset, it costs one
environment lookup per write or step.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
import signal
from pathlib import Path
from typing import Any

import torch

from dsr.errors import CheckpointError

_fault_counts: dict[str, int] = {}


def fault(point: str) -> bool:
    """Count a visit of ``point``; True if ``DSR_FAULT`` asks to be killed at this visit."""
    spec = os.environ.get("DSR_FAULT")
    if not spec:
        return False
    name, _, n = spec.rpartition(":")
    if name != point:
        return False
    _fault_counts[point] = _fault_counts.get(point, 0) + 1
    return _fault_counts[point] == int(n)


def die() -> None:
    """SIGKILL this process: no cleanup, no ``finally``, as if the machine pulled the plug."""
    os.kill(os.getpid(), signal.SIGKILL)


def fault_point(point: str) -> None:
    """Die here if ``DSR_FAULT`` names this visit of ``point`` (see the module docstring)."""
    if fault(point):
        die()


def _replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def temp_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place (``.<name>.<pid>.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes(path: Path, data: bytes) -> None:
    tmp = temp_name(path)
    if fault(path.name):
        tmp.write_bytes(data[: len(data) // 2])
        die()
    tmp.write_bytes(data)
    _replace(tmp, path)


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete what killed writers left behind in ``folder``; return the paths deleted.

    Call it only while holding the folder's lock, so that no live writer's file goes."""
    stale = sorted(folder.glob(".*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def read_json(path: Path) -> Any:
    """A JSON file written by :func:`write_json`; an unreadable one raises CheckpointError."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"cannot read {path}: {type(e).__name__} (delete the run folder to start it again)"
        ) from None


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = _io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, buf.getvalue())


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def save_torch(obj: Any, path: Path) -> None:
    buf = _io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; a corrupt file raises CheckpointError."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises several types for a damaged file
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(e).__name__} "
            "(delete it to start the run again from scratch)"
        ) from None


class NoBar:
    """What :func:`progress_bar` returns when progress output is off: does nothing.

    Not a disabled tqdm bar: creating any tqdm bar starts tqdm's monitor thread, which holds a
    lock now and then; a process forked at that moment deadlocks at its first bar."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar, or a do-nothing stand-in when progress output is off or tqdm is missing
    (a GPU machine may have only torch and torchvision)."""
    if not enabled:
        return NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return NoBar()
    return tqdm(total=total, desc=desc, unit="step", leave=False, mininterval=1.0)
