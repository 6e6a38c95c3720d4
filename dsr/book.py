"""Build the book: execute every notebook with papermill, then render the HTML with Jupyter Book.

The notebook sources (``notebooks/*.ipynb``) are committed without outputs. :func:`build`
executes each of them at a profile (see :mod:`dsr.results`) into ``<out>/source/notebooks/``,
copies the book's pages and configuration (``_config.yml``, ``_toc.yml``, ``book/``) beside
them, and runs ``jupyter-book build -W`` (warnings are errors) on that folder. The executed
notebooks and the HTML (``<out>/_build/html``) are build products, never committed.

Every notebook is executed in a fresh ``python3`` kernel of the running interpreter's
environment, with the project on ``PYTHONPATH``, so that the kernel imports this package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from dsr.data import PROJECT, data_root
from dsr.errors import BookError
from dsr.results import MODEL_NAMES, PROFILES
from dsr.runs import export_csv

SOURCES = ("_config.yml", "_toc.yml", "_static", "book")
# Parameter values a profile sets in every notebook that declares them; the smoke profile
# keeps one sparsity and two seeds (shared by all notebooks, so later ones reuse the runs of
# earlier ones).
PROFILE_PARAMETERS: dict[str, dict[str, Any]] = {
    "smoke": {"sparsities": "0.9", "sparsity": 0.9, "seeds": "0,1", "scope_sparsities": "0.9"}
}
# ... and per notebook (by number): one ResNet-50 run, and two WRN-28-2 runs, are enough to
# check those code paths (notebooks 4 and 6 share their WRN-28-2 DSR run); notebook 7's part
# 1 keeps the smoke profile's two seeds.
NOTEBOOK_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "04": {"wrn_seeds": "0"},
        "05": {"methods": "dsr", "seeds": "0"},
        "06": {"methods": "dsr,static", "seeds": "0"},
        "07": {"regrowth_seeds": "0,1", "exploration_seeds": "0,1"},
    }
}


def notebooks() -> list[Path]:
    """The notebook sources, in the order of their number."""
    return sorted((PROJECT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def has_mnist() -> bool:
    return (data_root() / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()


def parameters(notebook: Path, profile: str, runs_root: Path | None) -> dict[str, Any]:
    """The values to inject into ``notebook``: the profile, its parameter values and the run
    cache, each only if the notebook declares it. Without MNIST the smoke profile uses the
    ``synthetic`` data set (its runs are labelled so)."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    own = NOTEBOOK_PARAMETERS.get(profile, {}).get(notebook.name[:2], {})
    values = {"profile": profile, **PROFILE_PARAMETERS.get(profile, {}), **own}
    if runs_root is not None:
        values["runs_root"] = str(runs_root)
    if (
        profile == "smoke"
        and not has_mnist()
        and declared.get("dataset", {}).get("default") == '"mnist"'
    ):
        values["dataset"] = "synthetic"
    return {k: v for k, v in values.items() if k in declared}


@contextmanager
def kernel_environment(extra: dict[str, str]) -> Iterator[None]:
    """While open, kernels started from here import this project with this environment's
    python and see ``extra`` environment variables; the environment is restored afterwards.
    Matplotlib's font cache is built here, so that no notebook prints that it is building it."""
    import matplotlib.font_manager  # noqa: F401  (builds the cache on first import)

    saved = dict(os.environ)
    path = os.environ.get("PYTHONPATH", "")
    if str(PROJECT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT), path) if p)
    os.environ["JUPYTER_PREFER_ENV_PATH"] = "1"  # the venv's kernel spec before a user's
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def smoke_data(out: Path) -> dict[str, str]:
    """Environment for the smoke profile: where the data root has no ImageNet folder and the
    package reads image folders, a data root in ``out`` holding links to the real root's data
    sets and a tiny generated ``imagenet/`` (10 classes of coloured noise), read without
    loader processes. Runs on it are checks of the code path, not ImageNet results."""
    try:
        from dsr.imagefolder import make_image_folder  # needs torchvision's image reading
    except ImportError:
        return {}
    real = data_root()
    if (real / "imagenet").exists():
        return {}
    root = out / "smoke-data"
    if not (root / "imagenet").exists():
        make_image_folder(root / "imagenet")
    for entry in real.iterdir() if real.is_dir() else []:
        if not (root / entry.name).exists():
            (root / entry.name).symlink_to(entry.resolve())
    return {"DSR_DATA_ROOT": str(root), "DSR_LOADER_WORKERS": "0"}


def kernel_manager_class() -> type:
    """nbclient's kernel manager, asking for CurveZMQ transport encryption where pyzmq and the
    kernel spec support it: without it ipykernel (7.4 on) prints a warning to the terminal on
    every kernel start, once per notebook."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    class KernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if zmq.has("curve") and self.has_trait("transport_encryption"):
                self.transport_encryption = "auto"  # only when the kernel spec declares curve

    return KernelManager


def execute(notebook: Path, target: Path, values: dict[str, Any], timeout: int | None) -> None:
    """Execute one notebook into ``target`` with papermill.

    Raises:
        BookError: a cell raised; the message names the notebook and the error.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(notebook),
            str(target),
            parameters=values,
            kernel_name="python3",
            cwd=str(PROJECT),
            progress_bar=False,
            execution_timeout=timeout,
            kernel_manager_class=kernel_manager_class(),
        )
    except PapermillExecutionError as e:
        raise BookError(f"{notebook.name}: cell {e.exec_count}: {e.ename}: {e.evalue}") from None
    hide_injected_parameters(target)


def hide_injected_parameters(path: Path) -> None:
    """Show a page's parameters once: the executed notebook's ``parameters`` cell (the
    defaults) and papermill's ``injected-parameters`` cell (the values of this build) become
    one collapsed cell holding both, defaults first (so it reads as what ran), and the
    notebook's own cell is removed from the page."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    own = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    if not (own and injected):
        return
    for cell in own:
        cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "hide-cell"]
        cell.metadata["tags"].append("remove-cell")
    cell = injected[0]
    cell.source = f"{own[0].source}\n\n{cell.source}"  # the build's values, after the defaults
    cell.metadata["tags"] = [*cell.metadata["tags"], "hide-cell"]
    nbformat.write(nb, path)


def stage(out: Path) -> Path:
    """A fresh folder with the book's pages and configuration, for the executed notebooks."""
    src = out / "source"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    for name in SOURCES:
        path = PROJECT / name
        if path.is_dir():
            shutil.copytree(path, src / name)
        else:
            shutil.copy2(path, src / name)
    return src


def jupyter_book() -> str:
    """The jupyter-book command of this environment."""
    local = Path(sys.executable).parent / "jupyter-book"
    found = str(local) if local.exists() else shutil.which("jupyter-book")
    if found is None:
        raise BookError("jupyter-book not found: install the book extra (pip install -e '.[book]')")
    return found


def render(src: Path, out: Path) -> Path:
    """Run ``jupyter-book build -W`` on ``src``; return the HTML's index page.

    Raises:
        BookError: the build failed or warned (the last lines of its output say why).
    """
    cmd = [jupyter_book(), "build", str(src), "--path-output", str(out), "--all", "-W"]
    cmd += ["--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (out / "jupyter-book.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln]
        why = lines[0] if lines else (proc.stdout + proc.stderr).strip().splitlines()[-1]
        raise BookError(f"jupyter-book build failed ({out / 'jupyter-book.log'}): {why}")
    return out / "_build" / "html" / "index.html"


def build(
    profile: str = "default",
    out: Path = PROJECT / "build" / "book",
    runs_root: Path | None = None,
    timeout: int | None = None,
    log=print,
) -> Path:
    """Execute every notebook at ``profile`` and build the HTML book; return its index page.

    Args:
        profile: ``default`` (committed results, never trains), ``smoke``, ``cpu`` or ``paper``.
        out: build folder (executed notebooks in ``source/``, HTML in ``_build/html``).
        runs_root: the run cache for every notebook (default: ``$DSR_RUNS`` or ``data/runs``).
        timeout: seconds a notebook cell may run (None: no limit).
    """
    if profile not in PROFILES:
        raise BookError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    out = out.resolve()
    src = stage(out)
    with kernel_environment(smoke_data(out) if profile == "smoke" else {}):
        for nb in notebooks():
            start = time.perf_counter()
            values = parameters(nb, profile, runs_root)
            execute(nb, src / "notebooks" / nb.name, values, timeout)
            log(f"executed {nb.name} ({time.perf_counter() - start:.0f} s) with {values}")
    generate(src, runs_root)
    return render(src, out)


def generate(src: Path, runs_root: Path | None) -> None:
    """Write the build's generated files into the staged book ``src``: the CSV of every finished
    run the notebooks read (``_static/runs.csv``, linked from the introduction), the compute
    table of the reproducibility summary (``book/_compute.md``), and the repository address in
    ``_config.yml`` where one is known."""
    runs = export_csv(src / "_static" / "runs.csv", runs_root)
    (src / "book" / "_compute.md").write_text(compute_table(runs))
    url = repository_url()
    if url:
        config = yaml.safe_load((src / "_config.yml").read_text())
        config["repository"]["url"] = url
        config["html"].update(use_repository_button=True, use_issues_button=True)
        (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def compute_table(runs: list[dict[str, Any]]) -> str:
    """Markdown: the compute the finished runs ``runs`` (rows of :func:`dsr.runs.export_csv`)
    took, per network, data and device kind (CPU-hours: wall time x threads x processes;
    GPU-hours: wall time x processes), and the total."""
    import pandas as pd

    if not runs:
        return "No finished run is in the run cache this build read.\n"
    done = pd.DataFrame(runs)
    done = done.assign(device=["GPU" if g > 0 else "CPU" for g in done.gpu_hours])
    lines = [
        "| network | data | device | runs | CPU-hours | GPU-hours |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (model, data, device), g in done.groupby(["model", "dataset", "device"]):
        name = MODEL_NAMES.get(model, model)
        hours = f"{g.cpu_hours.sum():.1f} | {g.gpu_hours.sum():.1f}"
        lines.append(f"| {name} | {data} | {device} | {len(g)} | {hours} |")
    lines.append(
        f"| **all** | | | **{len(done)}** | **{done.cpu_hours.sum():.1f}** | "
        f"**{done.gpu_hours.sum():.1f}** |"
    )
    return "\n".join(lines) + "\n"


def repository_url() -> str | None:
    """This repository's web address: $DSR_REPOSITORY_URL, else the git remote ``origin`` as an
    https address, else None (then the book shows no repository button)."""
    url = os.environ.get("DSR_REPOSITORY_URL", "").strip()
    if not url:
        found = subprocess.run(
            ["git", "-C", str(PROJECT), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
        )
        url = found.stdout.strip() if found.returncode == 0 else ""
    if url.startswith("git@"):
        host, _, path = url[4:].partition(":")
        url = f"https://{host}/{path}"
    url = url.removesuffix(".git")
    return url if url.startswith("https://") else None
