"""The import graph points one way: every module imports only modules of lower layers (at the
top of the file or inside a function), and no chain of imports (module- or function-level)
leads back to where it started. The layers, low to high, are :data:`LAYERS`. Imports under
``if TYPE_CHECKING:`` are annotations for the type checker, never executed, and not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dsr"
LAYERS = [
    {"errors"},
    {"schedules", "events"},
    {"masks", "models"},
    {"methods"},
    {"data_common"},
    {"imagefolder"},
    {"data"},
    # validating a config needs the registries of methods, models and data sets below it
    # (imported inside ``validate``, so that configs and `python -m dsr --help` load without
    # torch); nothing below imports the config module
    {"config"},
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
# What the methods may import: the masks they change, the models they are built for (a thin
# dense width, a replica's fresh init), schedules, the error types, and each other.
METHODS_IMPORT = {"masks", "models", "schedules", "errors", "methods"}
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_of(path: Path) -> str:
    """``dsr/methods/dsr.py`` -> ``methods``; ``dsr/runs.py`` -> ``runs``."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never executed)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    return skip


def imported(path: Path) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (top level or in a function),
    leaving out type-checking-only imports."""
    found = set()
    tree = ast.parse(path.read_text())
    skip = type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
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
    up = sorted(m for m in imported(path) - {me} if m in LAYER and LAYER[m] >= LAYER[me])
    assert up == [], f"{me} (layer {LAYER[me]}) imports {up} of the same or a higher layer"


def graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, over every file of the module."""
    edges: dict[str, set[str]] = {}
    for p in FILES:
        me = module_of(p)
        edges.setdefault(me, set()).update(m for m in imported(p) if m in LAYER and m != me)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import chain that leads back to its start, found by depth-first search."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return found


def test_no_import_cycle_at_module_or_function_level():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_cycles():
    """The check above can fail: a crafted graph with a loop through a function-level import."""
    assert cycles({"config": {"methods"}, "methods": {"masks", "config"}, "masks": set()}) == [
        ["config", "methods", "config"]
    ]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_methods_import_only_what_they_change():
    extra = {
        str(p.relative_to(PACKAGE)): sorted(imported(p) - METHODS_IMPORT)
        for p in FILES
        if module_of(p) == "methods"
    }
    assert {k: v for k, v in extra.items() if v} == {}


# The only imports of the package's own modules made inside functions, each for its reason.
DEFERRED = {
    "__init__": "`import dsr` loads the configs without torch; registry and runs on first use",
    "__main__": "`python -m dsr --help` answers without importing torch",
    "config": "configs load without torch; validating one needs the registries below it",
    "models": "ResNet-50 imports torchvision's model code, only when asked for",
    "book": "the tiny smoke image folder, where the package's image reading is installed",
}


def function_level(path: Path) -> set[str]:
    """The package's modules ``path`` imports inside a function (not at its top level)."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    skip = type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and id(node) not in top | skip:
            if node.module and node.module.startswith("dsr"):
                found.add(node.module)
    return found


def test_imports_inside_functions_are_only_the_deferred_ones():
    inside = {
        str(p.relative_to(PACKAGE)): sorted(function_level(p))
        for p in FILES
        if module_of(p) not in DEFERRED
    }
    assert {k: v for k, v in inside.items() if v} == {}
