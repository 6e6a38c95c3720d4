"""The import graph points one way: every module imports only modules of lower layers (at the
top of the file or inside a function), except the few crossings listed in :data:`CROSSINGS`,
each with its reason. The layers, low to high, are :data:`LAYERS`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dsr"
LAYERS = [
    {"errors"},
    {"schedules", "events"},
    {"config"},
    {"masks", "models"},
    {"methods"},
    {"data"},
    {"imagefolder"},
    {"provenance", "io", "distributed"},
    {"train"},
    {"flops"},
    {"runs", "gpu"},
    {"study"},
    {"tables", "verdicts"},
    {"claims"},
    {"density", "imagenet"},
    {"results", "kernels_bench", "bench", "browser"},
    {"plots"},
    {"book"},
    {"__main__", "__init__"},
]
# Known crossings, imported inside the function that needs them, each for a reason.
CROSSINGS = {
    # validating a config needs the registries of methods, models and data sets; imported when
    # a config is validated, so that the configs (and `python -m dsr --help`) load without torch
    ("config", "methods"),
    ("config", "models"),
    ("config", "data"),
    # the ImageNet folder reader is data's streaming part, imported only for `imagenet`
    # (it needs torchvision); it uses data's loaders in turn
    ("data", "imagefolder"),
}
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_of(path: Path) -> str:
    """``dsr/methods/dsr.py`` -> ``methods``; ``dsr/runs.py`` -> ``runs``."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported(path: Path) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (top level or in a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dsr"):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from dsr import io, flops
                found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("dsr.")}
    return found


FILES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer():
    assert sorted({module_of(p) for p in FILES} - set(LAYER)) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    me = module_of(path)
    up = sorted(
        m
        for m in imported(path) - {me}
        if m in LAYER and LAYER[m] >= LAYER[me] and (me, m) not in CROSSINGS
    )
    assert up == [], f"{me} (layer {LAYER[me]}) imports {up} of the same or a higher layer"


def test_every_crossing_still_exists():
    """A crossing that no module makes any more is removed from the list."""
    made = {(module_of(p), m) for p in FILES for m in imported(p)}
    assert sorted(CROSSINGS - made) == []
