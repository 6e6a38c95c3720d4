"""The notebook sources: parameters that match the run config, no outputs, all in the book."""

from __future__ import annotations

import ast
from dataclasses import fields

import nbformat
import papermill
import pytest
import yaml

from dsr.book import notebooks, parameters
from dsr.config import RunConfig
from dsr.data import PROJECT
from dsr.results import NOTEBOOK_ONLY

NOTEBOOKS = notebooks()


def test_there_is_one_notebook_per_claim():
    """Five claim pages, the WRN-28-2 check of claims 1 to 3, the ablations, the kernels."""
    names = ["01_", "02_", "03_", "04_", "05_", "06_", "07_", "08_"]
    assert [nb.name[:3] for nb in NOTEBOOKS] == names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_are_config_fields_or_documented(path):
    """Every parameter is a RunConfig field or one of the documented notebook-only names."""
    names = set(papermill.inspect_notebook(str(path)))
    allowed = {f.name for f in fields(RunConfig)} | set(NOTEBOOK_ONLY)
    assert names - allowed == set()
    assert "profile" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_holds_only_flat_literals(path):
    """Exactly one cell is tagged `parameters`, and it assigns only str / int / float literals."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    for stmt in ast.parse(cells[0].source).body:
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
        assert isinstance(stmt.value, ast.Constant)
        assert type(stmt.value.value) in (str, int, float)


def call_name(node: ast.expr) -> str:
    """``display`` for ``display(x)``, ``publish`` for ``results.publish(x)``, else ""."""
    if not isinstance(node, ast.Call):
        return ""
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def hidden_expressions(source: str) -> list[int]:
    """Line numbers of a cell's top-level bare expressions, other than display() and publish()
    calls (which show or glue on their own), that are not its last statement: IPython never
    shows them (``%...`` magics left out)."""
    code = "\n".join("" if line.startswith("%") else line for line in source.splitlines())
    body = ast.parse(code).body
    return [
        stmt.lineno
        for stmt in body[:-1]
        if isinstance(stmt, ast.Expr) and call_name(stmt.value) not in ("display", "publish")
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_hides_a_table_or_figure_behind_its_last_expression(path):
    """A cell shows only its last bare expression: every other table or figure of the cell
    goes through display(), so a bare expression may only be the cell's last statement."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            hidden = hidden_expressions(cell.source)
            assert not hidden, f"{path.name}: a bare expression at line {hidden[0]} is never shown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_sources_are_committed_without_outputs(path):
    """No code cell of a source notebook holds outputs or an execution count."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.outputs for c in code] == [[] for _ in code]
    assert {c.execution_count for c in code} == {None}


def test_every_notebook_is_in_the_table_of_contents():
    """The book's _toc.yml lists exactly the notebooks of notebooks/."""
    toc = yaml.safe_load((PROJECT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    listed = sorted(f for f in files if f.startswith("notebooks/"))
    assert listed == [f"notebooks/{nb.stem}" for nb in NOTEBOOKS]


def test_smoke_profile_injects_only_declared_parameters(tmp_path):
    """Notebook 4 declares `sparsity`, not `sparsities`: it gets the first, never the second;
    and its own `wrn_seeds` from the per-notebook values."""
    nb = next(p for p in NOTEBOOKS if p.name.startswith("04_"))
    values = parameters(nb, "smoke", tmp_path)
    assert values == {
        "profile": "smoke", "sparsity": 0.9, "seeds": "0,1", "wrn_seeds": "0",
        "runs_root": str(tmp_path),
    }  # fmt: skip


def test_smoke_profile_falls_back_to_synthetic_data_without_mnist(tmp_path, monkeypatch):
    """With no MNIST under the data root, the smoke profile runs on `synthetic`."""
    monkeypatch.setenv("DSR_DATA_ROOT", str(tmp_path))
    values = parameters(NOTEBOOKS[0], "smoke", None)
    assert values["dataset"] == "synthetic"


def test_default_profile_injects_nothing_but_the_profile():
    """The default profile keeps every other parameter of the notebook as committed."""
    assert parameters(NOTEBOOKS[0], "default", None) == {"profile": "default"}


@pytest.mark.parametrize("method", ["set", "deepr", "rigl", "snfs", "pruning"])
def test_notebook_4_runs_for_every_method_that_reallocates(method, tmp_path):
    """The density page draws any method's committed runs (dsr is the book's own page): each
    method's event log gives its densities over training, and the page executes to the end
    with no error and no warning printed."""
    from dsr.book import execute

    nb = next(p for p in NOTEBOOKS if p.name.startswith("04_"))
    target = tmp_path / "out.ipynb"
    execute(nb, target, {"method": method, "sparsity": 0.9}, 600)
    out = nbformat.read(target, as_version=4)
    printed = [
        o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.outputs
        if o.get("name") == "stderr" or o.output_type == "error"
    ]  # fmt: skip
    assert printed == []
    figures = [o for c in out.cells if c.cell_type == "code" for o in c.outputs
               if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(figures) >= 1  # the LeNet-300-100 run's densities over training
