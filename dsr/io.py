"""Files written so that a reader never sees half of one, and read without running code.

Every file goes to a temporary name in the same folder and is renamed into place; checkpoints
are loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read."""


def _replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    _replace(tmp, path)


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
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}") from None


class NoBar:
    """What training calls on a progress bar, doing nothing (no tqdm, or output off)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar, or a do-nothing stand-in when progress output is off or tqdm is missing
    (a GPU machine may have only torch and torchvision)."""
    try:
        if enabled:
            from tqdm.auto import tqdm
        else:  # tqdm.auto warns in a Jupyter kernel without ipywidgets, even when disabled
            from tqdm import tqdm
    except ImportError:
        return NoBar()
    return tqdm(
        total=total, disable=not enabled, desc=desc, unit="step", leave=False, mininterval=1.0
    )
