"""The book end to end: every notebook executed at the smoke profile into a temporary folder
with a fresh run cache, then built by jupyter-book with warnings as errors.

The build runs once for this module (minutes: a kernel per notebook, the smoke runs, Sphinx);
``pytest -k "not book"`` leaves it out while working on something else.
"""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from dsr.book import BookError, build, notebooks, render
from dsr.data import PROJECT

SUMMARY_KEYS = ("summary_paper", "summary_ours", "summary_budget", "summary_verdict")


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> dict:
    """Build the book at the smoke profile; fails (BookError) on any notebook error or warning."""
    tmp = tmp_path_factory.mktemp("book")
    start = time.time()
    index = build("smoke", tmp / "out", runs_root=tmp / "runs", timeout=1200, log=lambda _: None)
    return {"index": index, "out": tmp / "out", "runs": tmp / "runs", "start": start}


def executed(book: dict, name: str) -> nbformat.NotebookNode:
    return nbformat.read(book["out"] / "source" / "notebooks" / name, as_version=4)


def glued(nb: nbformat.NotebookNode) -> dict[str, str]:
    """The values a notebook glued, by key (the strings their text/plain holds)."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                prefix = o["metadata"]["scrapbook"].get("mime_prefix", "")
                data = o["data"]
                text = data.get("text/plain", data.get(f"{prefix}text/plain"))
                out[name] = ast.literal_eval(text)
    return out


def test_every_page_of_the_toc_is_rendered(book):
    """Each file of _toc.yml has its HTML page in the build."""
    toc = yaml.safe_load((PROJECT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for p in toc["parts"] for c in p["chapters"]]
    html = book["index"].parent
    assert [f for f in files if not (html / f"{f}.html").exists()] == []


@pytest.mark.parametrize("name", [nb.name for nb in notebooks()])
def test_notebook_ran_at_the_smoke_profile_without_errors(book, name):
    """The executed copy carries the injected profile and no error output."""
    nb = executed(book, name)
    assert nb.metadata.papermill.parameters["profile"] == "smoke"
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []


@pytest.mark.parametrize("name", [nb.name for nb in notebooks()])
def test_notebook_prints_nothing_to_stderr(book, name):
    """No warning or message on stderr reaches a page of the book."""
    nb = executed(book, name)
    streams = [o.text for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert streams == []


def summary_rows(values: dict[str, str]) -> list[dict[str, str]]:
    """The rows of the summary table a notebook glued: ``summary_*`` keys, or several rows as
    ``<row>_summary_*`` (a page that tests more than one claim)."""
    rows = {k[: -len("summary_verdict")] for k in values if k.endswith("summary_verdict")}
    return [{k: values.get(row + k) for k in SUMMARY_KEYS} for row in sorted(rows)]


@pytest.mark.parametrize("name", [nb.name for nb in notebooks()])
def test_every_claim_glues_its_summary_row(book, name):
    """Each notebook glues the four non-empty cells of each of its rows of the summary table."""
    rows = summary_rows(glued(executed(book, name)))
    assert rows and [k for r in rows for k in SUMMARY_KEYS if not r[k]] == []


def test_the_wrn_page_glues_a_row_for_each_of_claims_1_to_3(book):
    values = glued(executed(book, "06_wrn28_2_cifar10.ipynb"))
    assert [k for k in values if k.endswith("_summary_verdict")] == [
        "c1_summary_verdict", "c2_summary_verdict", "c3_summary_verdict",
    ]  # fmt: skip


def test_summary_table_shows_every_claims_verdict(book):
    """The introduction's table holds each notebook's glued verdicts and budgets."""
    intro = (book["index"].parent / "book" / "intro.html").read_text()
    for nb in notebooks():
        for row in summary_rows(glued(executed(book, nb.name))):
            assert row["summary_verdict"] in intro
            assert row["summary_budget"] in intro


def test_dynamic_vs_static_ran_and_says_its_budget(book):
    """Claim 1 trained its smoke runs: its verdict is computed and names the smoke budget."""
    verdict = glued(executed(book, "01_dynamic_vs_static.ipynb"))["summary_verdict"]
    qualifiers = r"\(smoke budget(, on synthetic)?\)"
    assert re.fullmatch(r"((not )?reproduced|inconclusive) " + qualifiers, verdict)


@pytest.mark.parametrize("name", [nb.stem for nb in notebooks()])
def test_claim_page_shows_a_figure(book, name):
    """Each claim page embeds at least one PNG figure that exists in the build."""
    page = book["index"].parent / "notebooks" / f"{name}.html"
    sources = re.findall(r'<img[^>]+src="([^"]+\.png)"', page.read_text())
    assert sources and all((page.parent / s).exists() for s in sources)


def test_smoke_runs_are_fresh(book):
    """Every run the notebooks read was trained by this build, into the temporary cache."""
    summaries = list(Path(book["runs"]).glob("*/summary.json"))
    assert summaries
    assert min(p.stat().st_mtime for p in summaries) >= book["start"]


def test_a_warning_fails_the_build(tmp_path):
    """A page with a broken cross-reference is an error (jupyter-book -W), in one line."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "_config.yml").write_text("title: t\nexecute:\n  execute_notebooks: 'off'\n")
    (src / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (src / "intro.md").write_text("# Intro\n\nSee {doc}`no_such_page`.\n")
    with pytest.raises(BookError, match="WARNING") as e:
        render(src, tmp_path / "out")
    assert "\n" not in str(e.value)


def test_executing_a_notebook_prints_no_kernel_warning(tmp_path, capfd):
    """The kernel that runs a notebook starts without ipykernel's warning about unencrypted TCP
    (where pyzmq and the kernel support encryption), so `dsr book` prints only its progress."""
    import zmq

    from dsr.book import execute

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "t.ipynb")
    execute(tmp_path / "t.ipynb", tmp_path / "out.ipynb", {}, timeout=120)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["text"] == "42\n"
    if zmq.has("curve"):
        assert "without encryption" not in capfd.readouterr().err
