"""Every value the book's notebooks glue at the ``default`` profile (the committed runs), by
notebook and key: ``python scripts/glued_values.py OUT.json`` executes each notebook once with
papermill and writes them. ``tests/test_glued_values.py`` compares a fresh execution with the
committed ``tests/glued_default.json``: a refactor changes none of them; committing runs (or
changing a page on purpose) means writing the file again with this script, in the same commit.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat
import papermill

PROJECT = Path(__file__).resolve().parents[1]


def glued(path: Path) -> dict[str, str]:
    """The values an executed notebook glued: the HTML of an HTML value (a badge), else the
    text."""
    out = {}
    for cell in nbformat.read(path, as_version=4).cells:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook", {})
            if meta.get("name"):
                prefix, data = meta.get("mime_prefix", ""), o["data"]
                html = data.get("text/html", data.get(f"{prefix}text/html"))
                text = data.get("text/plain", data.get(f"{prefix}text/plain"))
                out[meta["name"]] = html if html is not None else text
    return out


def values(notebooks: list[Path] | None = None) -> dict[str, dict[str, str]]:
    """Each notebook's glued values, read from the committed run cache (``data/runs``,
    whatever ``DSR_RUNS`` says outside)."""
    notebooks = notebooks or sorted((PROJECT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    saved = os.environ.get("DSR_RUNS")
    os.environ["DSR_RUNS"] = str(PROJECT / "data" / "runs")  # the kernels inherit it
    try:
        return run_all(notebooks)
    finally:
        if saved is None:
            os.environ.pop("DSR_RUNS", None)
        else:
            os.environ["DSR_RUNS"] = saved


def run_all(notebooks: list[Path]) -> dict[str, dict[str, str]]:
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for nb in notebooks:
            target = Path(tmp) / nb.name
            papermill.execute_notebook(
                str(nb), str(target), parameters={"profile": "default"}, kernel_name="python3",
                cwd=str(PROJECT), progress_bar=False,
            )  # fmt: skip
            found[nb.name] = glued(target)
    return found


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/glued_values.py OUT.json")
    Path(sys.argv[1]).write_text(json.dumps(values(), indent=1, sort_keys=True) + "\n")
