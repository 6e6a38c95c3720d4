"""The book end to end: every notebook executed at the smoke profile into a temporary folder
with a fresh run cache, then built by jupyter-book with warnings as errors.

The build runs once for this module (minutes: a kernel per notebook, the smoke runs, Sphinx);
``pytest -k "not book"`` leaves it out while working on something else.
"""

from __future__ import annotations

import ast
import html
import re
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from dsr import browser
from dsr.book import BookError, build, notebooks, render
from dsr.data import PROJECT

SUMMARY_KEYS = (
    "summary_paper", "summary_ours", "summary_scope", "summary_verdict", "summary_badge"
)  # fmt: skip


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
    """The values a notebook glued, by key: the strings their text/plain holds, or the HTML of
    an HTML value (a verdict badge)."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                prefix = o["metadata"]["scrapbook"].get("mime_prefix", "")
                data = o["data"]
                html = data.get("text/html", data.get(f"{prefix}text/html"))
                text = data.get("text/plain", data.get(f"{prefix}text/plain"))
                out[name] = html if html is not None else ast.literal_eval(text)
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


# A measurement of this machine, not a claim: no row in the summary table.
MEASUREMENT_PAGES = {"08_sparse_kernels.ipynb"}


@pytest.mark.parametrize(
    "name", [nb.name for nb in notebooks() if nb.name not in MEASUREMENT_PAGES]
)
def test_every_claim_glues_its_summary_row(book, name):
    """Each notebook glues the four non-empty cells of each of its rows of the summary table."""
    rows = summary_rows(glued(executed(book, name)))
    assert rows and [k for r in rows for k in SUMMARY_KEYS if not r[k]] == []


def test_the_wrn_page_glues_a_row_for_each_of_claims_1_to_3(book):
    values = glued(executed(book, "06_wrn28_2_cifar10.ipynb"))
    assert [k for k in values if k.endswith("_summary_verdict")] == [
        "c1_summary_verdict", "compression_summary_verdict", "c2_summary_verdict",
        "c3_summary_verdict",
    ]  # fmt: skip


def test_summary_table_shows_every_claims_verdict(book):
    """The introduction's table holds each row each notebook glued: its verdict badge (whose
    title is the verdict's full label), its scope, and the paper's and our numbers."""
    intro = (book["index"].parent / "book" / "intro.html").read_text()
    for nb in notebooks():
        for row in summary_rows(glued(executed(book, nb.name))):
            assert row["summary_badge"] in intro
            assert f'title="{html.escape(row["summary_verdict"])}"' in row["summary_badge"]
            for key in ("summary_scope", "summary_paper", "summary_ours"):
                assert html.escape(row[key], quote=False) in intro, (nb.name, key, row[key])


def test_summary_rows_never_set_another_networks_paper_numbers_beside_ours(book):
    """Claim 3's LeNet-300-100 row: the paper ran SET and DeepR on WRN-28-2 only, so its cell
    says so instead of showing WRN-28-2 numbers."""
    values = glued(executed(book, "03_prior_dynamic_methods.ipynb"))
    assert values["summary_paper"] == "not in the paper"  # no SET runs on LeNet in the paper


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


# --- the book in a real browser (headless Chromium) -------------------------------------------

needs_browser = pytest.mark.skipif(
    browser.available() is not None, reason=f"no browser here: {browser.available()}"
)


@needs_browser
def test_every_page_reads_in_a_browser_at_desktop_and_phone_width(book):
    """Each page at 1400 and 400 px: no sideways scrolling, no table wider than its column (on
    the phone a table may scroll in its own box), every image loaded, the intro's verdict
    column on screen; a screenshot of each page at each width is left in the build folder."""
    html = book["index"].parent
    views = browser.check_book(html, book["out"] / "screenshots")
    assert {v.width for v in views} == set(browser.WIDTHS)
    assert {v.page for v in views} >= {"book/intro.html", "notebooks/01_dynamic_vs_static.html"}
    assert [(v.width, v.page, v.problems) for v in views if v.problems] == []
    assert all(v.screenshot.stat().st_size > 10_000 for v in views)
    intro = [v for v in views if v.page == "book/intro.html"]
    assert all(v.verdict["cells"] >= 9 and v.verdict["shown"] == v.verdict["cells"] for v in intro)
    assert all(v.images >= 1 for v in views if v.page.startswith("notebooks/0"))


@needs_browser
def test_the_browser_check_flags_what_a_reader_would_see_as_broken(tmp_path):
    """A page with a 2000 px table outside any scroll box, a missing image and no summary
    table: each is reported; a plain page is not."""
    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    cells = "".join(f"<td>column {i}</td>" for i in range(40))
    (html / "book" / "intro.html").write_text(
        "<html><body><main><article><p>text</p>"
        f'<table style="width:2000px"><tr>{cells}</tr></table>'
        '<img src="missing.png" alt="missing"></article></main></body></html>'
    )
    (html / "plain.html").write_text(
        "<html><body><main><article><p>ok</p></article></main></body></html>"
    )
    views = {(v.width, v.page): v for v in browser.check_book(html, tmp_path / "shots")}
    bad = views[("desktop", "book/intro.html")].problems
    assert any(p.startswith("scrolls sideways") for p in bad)
    assert any(p.startswith("table wider than its column") for p in bad)
    assert any(p.startswith("image did not load") for p in bad)
    assert "no summary table with a Verdict column" in bad
    assert views[("desktop", "plain.html")].problems == []
    assert views[("phone", "plain.html")].problems == []
