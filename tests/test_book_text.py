"""No result typed by hand into the book's prose: accuracies, differences in points, run times
and compute hours reach a page through glue (from a committed run or data/paper/), never as
text in a page or a notebook's markdown. Protocol settings (epochs, sparsities, batch sizes),
names (WRN-28-2) and the verdict rule's own constants are not results and are not matched."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from dsr.verdicts import MARGIN

ROOT = Path(__file__).resolve().parents[1]
# What a typed result looks like: "94.70 %", "+0.25 points", "140 s per run", "2.5 GPU-hours".
RESULT = re.compile(
    r"\d+\.\d+\s?%|[+-]?\d+(\.\d+)?\s?points?\b|\d+(\.\d+)?\s?s per (run|epoch)"
    r"|\d+(\.\d+)?\s?(CPU|GPU)-hours"
)
# Numbers that look like results but are settings: the verdict rule's margin.
ALLOWED = [f"-{MARGIN} points", f"{MARGIN} points"]
# A count computed from the code (initial masks, not a run's result), with its derivation on
# the differences page.
ALLOWED += ["0.009 %"]


def prose(text: str) -> str:
    """``text`` without code blocks, inline code, glue roles and link targets."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"\{glue[^`]*`[^`]*`", "", text)
    text = re.sub(r"`[^`]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def pages() -> list[tuple[str, str]]:
    out = [(p.name, p.read_text()) for p in sorted((ROOT / "book").glob("*.md"))]
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(nb, as_version=4).cells
        out += [(nb.name, c.source) for c in cells if c.cell_type == "markdown"]
    return out


def typed_results(text: str) -> list[str]:
    found = [m.group(0) for m in RESULT.finditer(prose(text))]
    return [f for f in found if not any(f in a or a in f for a in ALLOWED)]


@pytest.mark.parametrize("text,expected", [
    ("dense ends at 94.70 % on the test set", ["94.70 %"]),
    ("about 140 s per run on one GPU", ["140 s per run"]),
    ("DSR is +0.25 points above", ["+0.25 points"]),
    ("it took 2.5 GPU-hours", ["2.5 GPU-hours"]),
    ("accuracy {glue:text}`acc:s` %, lr 0.1 at epoch 25, s = 0.99, WRN-28-2", []),
    ("`94.70 %` as code, and within 0.3 points (the margin)", []),
])  # fmt: skip
def test_the_scan_finds_typed_results_and_leaves_settings_alone(text, expected):
    assert typed_results(text) == expected


def test_no_page_or_notebook_types_a_result_by_hand():
    found = [(name, hit) for name, text in pages() for hit in typed_results(text)]
    assert found == []
