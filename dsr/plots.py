"""Seaborn figures for the book's notebooks, drawn from the tables of :mod:`dsr.results`.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so a notebook
shows it once, where the cell returns it. Our runs and the paper's numbers go in separate
panels, each titled with its data set and budget: the two are never drawn as one series.
"""

from __future__ import annotations

import html
import re

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dsr import results

STYLE = "whitegrid"


# One colour per method for the whole book (Okabe-Ito, colour-blind safe): a method keeps its
# colour from page to page, and static and compression are far apart.
COLOURS = {
    "dsr": "#0072B2",  # blue
    "static": "#D55E00",  # vermillion
    "pruning": "#009E73",  # bluish green
    "thin_dense": "#CC79A7",  # reddish purple
    "set": "#E69F00",  # orange
    "deepr": "#56B4E9",  # sky blue
    "rigl": "#000000",  # black
    "snfs": "#999999",  # grey
    "static_replica": "#8C510A",  # brown
    "dense": "#4D4D4D",  # dark grey
}
# A fixed marker per method too, so that methods stay apart in grey print and where their
# points coincide (the sparse methods' FLOPs at one sparsity).
MARKERS = {
    "dsr": "o", "static": "s", "pruning": "D", "thin_dense": "v", "set": "^", "deepr": "P",
    "rigl": "X", "snfs": "*", "static_replica": "h", "dense": "d",
}  # fmt: skip
# For a second label of the same method in one figure (static_replica:fresh and :source).
SPARE = ("#F0E442", "#882255", "#117733", "#44AA99", "#AA4499", "#332288")


def palette(labels: list[str]) -> dict[str, str]:
    """The colour of each method label: the method's own (:data:`COLOURS`) for the first label
    of that method in the figure, a spare one for a further variant of it."""
    out: dict[str, str] = {}
    spare = iter(SPARE * 4)
    for label in labels:
        own = COLOURS.get(results.method_name(label))
        out[label] = own if own and own not in out.values() else next(spare)
    return out


def empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def place_legend(ax: Axes, loc: str, **kw) -> None:
    """Put the axes' legend, if any, at ``loc``. Never matplotlib's default "best": it searches
    the data for an empty spot and warns on stderr when that takes over a second, which a busy
    machine turns into a warning on a page of the book."""
    if ax.get_legend() is not None:
        sns.move_legend(ax, loc, **kw)


def t_interval(values: pd.Series) -> tuple[float, float]:
    """The 95 % t-interval of the mean of ``values`` (the mean itself for a single run)."""
    from scipy.stats import t

    n, mean = len(values), float(values.mean())
    if n < 2:
        return mean, mean
    half = float(t.ppf(0.975, n - 1)) * float(values.std(ddof=1)) / n**0.5
    return mean - half, min(mean + half, 100.0)  # an accuracy interval ends at 100 %


ACCURACY_LABEL = "test accuracy (%): mean, 95 % interval, runs"


def points(ax: Axes, df: pd.DataFrame, x: str, y: str, hue: str, colours: dict) -> None:
    """Mean and its 95 % t-interval per (x, hue) as connected points with error bars, every run
    as a dot beside its mean."""
    order = sorted(df[x].unique())
    hues = [h for h in colours if h in set(df[hue])]
    kw = dict(data=df, x=x, y=y, hue=hue, order=order, hue_order=hues, palette=colours, ax=ax)
    # stripplot's dodge puts hue level i at (i + 1/2) / n of a 0.8-wide slot; pointplot spreads
    # its levels evenly over `dodge`: 0.8 (n - 1) / n puts both at the same places
    markers = [MARKERS.get(results.method_name(h), "o") for h in hues]
    sns.pointplot(**kw, errorbar=t_interval, dodge=0.8 * (len(hues) - 1) / len(hues), capsize=0.1,
                  markers=markers)  # fmt: skip
    sns.stripplot(**kw, dodge=True, size=5, alpha=0.7, legend=False, jitter=False,
                  edgecolor="black", linewidth=0.5)  # fmt: skip
    place_legend(ax, "upper left", title="method", bbox_to_anchor=(1.01, 1.0), frameon=False)


def accuracy_vs_sparsity(st: results.Study) -> Figure:
    """Test accuracy against sparsity: the paper's runs (left) and ours (right)."""
    paper = results.paper_for(st.model, st.dataset)
    paper = paper[paper.method.isin([results.method_name(m) for m in st.methods])]
    ours = st.done()
    ours = ours[ours.method != "dense"]
    colours = palette(st.methods)
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(10, 7.5), layout="constrained")
        (left, right), (zoom_left, zoom_right) = fig.subplots(2, 2)
    for ax, zoom, df, y, hue in (
        (left, zoom_left, paper, "test_accuracy", "method"),
        (right, zoom_right, ours, "test_acc", "label"),
    ):
        if df.empty:
            text = (
                "not run here"
                if ax is right
                else f"no per-run numbers in the paper\nfor {st.model} / {st.dataset}"
            )
            empty(ax, text)
            empty(zoom, text)
            continue
        for panel in (ax, zoom):
            points(panel, df, "sparsity", y, hue, colours)
            panel.set_xlabel("sparsity")
            panel.set_ylabel(ACCURACY_LABEL)
        zoom.set_ylim(*top_band(df, y, hue))
        if ax is right:
            dense_line(right, st.done())
            dense_line(zoom_right, st.done())
    left.set_title(f"paper ({results.PAPER_DATASET.get(st.dataset)}, 5 runs per point)")
    right.set_title(f"ours ({st.variant()}, {st.budget} budget, seeds {seed_text(st)})")
    zoom_left.set_title("paper, zoomed to the top band")
    zoom_right.set_title("ours, zoomed to the top band")
    one_legend(fig, [left, right, zoom_left, zoom_right])
    return fig


def top_band(df: pd.DataFrame, y: str, hue: str) -> tuple[float, float]:
    """The y range that shows the differences the verdicts rest on: from 1 point below the
    lowest mean of the best method at any sparsity up to 100 (or just above the highest
    run)."""
    means = df.groupby([hue, "sparsity"])[y].mean()
    best = means.groupby(level=0).mean().idxmax()
    low = float(means[best].min()) - 1.0
    return low, min(100.0, float(df[y].max()) + 0.3)


def one_legend(fig: Figure, axes: list[Axes]) -> None:
    """Replace the panels' legends by one for the figure, outside the data on the right, with
    each label once (a method's colour is the same in every panel)."""
    seen: dict[str, object] = {}
    for ax in axes:
        if ax.get_legend() is None:
            continue
        handles, labels = ax.get_legend_handles_labels()
        for h, label in zip(handles, labels):
            seen.setdefault(label, h)
        ax.get_legend().remove()
    if seen:
        fig.legend(list(seen.values()), list(seen), title="method", loc="outside right upper",
                   frameon=False)  # fmt: skip


def dense_line(ax: Axes, done: pd.DataFrame) -> None:
    """The dense runs' mean as a dashed line; its label joins the figure's legend."""
    dense = done[done.method == "dense"]
    if len(dense):
        ax.axhline(dense.test_acc.mean(), color="0.3", ls="--", lw=1, label="dense (mean)")


def seed_text(st: results.Study) -> str:
    """The seeds of the finished runs the figure draws (the study's seeds if none finished)."""
    done = st.done()
    seeds = sorted(set(done.seed)) if not done.empty else st.seeds
    return ",".join(str(s) for s in seeds)


def accuracy_by_method(st: results.Study) -> Figure:
    """Test accuracy of each method (our runs), one group of points per sparsity."""
    done = st.done()
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(8, 4), layout="constrained")
        ax = fig.subplots()
    if done.empty:
        empty(ax, "not run here")
        return fig
    colours = palette([m for m in st.methods if m in set(done.label)])
    points(ax, done, "sparsity", "test_acc", "label", colours)
    ax.set_title(f"ours ({st.variant()}, {st.budget} budget, seeds {seed_text(st)})")
    ax.set_xlabel("sparsity")
    ax.set_ylabel(ACCURACY_LABEL)
    return fig


def panels_by_sparsity(rows: pd.DataFrame, legend_width: float) -> tuple[Figure, list, list]:
    """A figure with one panel per sparsity of ``rows`` (4 inches each, plus room for the
    legend), its axes and the sparsities; with no rows, one panel that says "not run here"."""
    sparsities = sorted(set(rows.sparsity)) or [None]
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(4 * len(sparsities) + legend_width, 3.7), layout="constrained")
        axes = list(fig.subplots(1, len(sparsities), squeeze=False)[0])
    if rows.empty:
        empty(axes[0], "not run here")
    return fig, axes, sparsities


def exploration(st: results.Study) -> Figure:
    """Test accuracy against the epochs during which masks were reallocated (the window
    [realloc_start, realloc_stop) of each run's config), one panel per sparsity: a window that
    stops early (circles) or starts late (squares); the official window is among the circles.
    Only DSR's runs (``dsr`` and its ``dsr:...`` variants) are drawn."""
    done = results.exploration_windows(st)
    fig, axes, sparsities = panels_by_sparsity(done, 1.0)
    if done.empty:
        return fig
    for ax, s in zip(axes, sparsities):
        cell = done[done.sparsity == s]
        for late, marker, name in ((False, "o", "stops early"), (True, "s", "starts late")):
            part = cell[(cell.start > 0) == late]
            if part.empty:
                continue
            means = part.groupby("explored").test_acc.agg(list)
            lows, highs = zip(*(t_interval(pd.Series(v)) for v in means))
            mid = [float(pd.Series(v).mean()) for v in means]
            colour = COLOURS["dsr"] if not late else SPARE[1]
            ax.errorbar(means.index, mid, yerr=[[m - lo for m, lo in zip(mid, lows)],
                        [hi - m for m, hi in zip(mid, highs)]], color=colour, marker=marker,
                        capsize=3, label=f"window {name}")  # fmt: skip
            ax.scatter(part.explored, part.test_acc, color=colour, marker=marker, s=14,
                       alpha=0.6, edgecolor="black", linewidth=0.4)  # fmt: skip
        ax.set_title(f"s = {s:g}")
        ax.set_xlabel("epochs with reallocation")
        ax.set_ylabel(ACCURACY_LABEL)
    handles: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=2,
               frameon=False)  # fmt: skip
    fig.suptitle(f"ours ({st.variant()}, {st.budget} budget, seeds {seed_text(st)})")
    return fig


def accuracy_vs_flops(st: results.Study) -> Figure:
    """Test accuracy against training FLOPs (a multiple of the dense network's, log scale), one
    marker per run, a method's colour on every page, one panel per sparsity."""
    rows = results.flops_rows(st)
    rows = rows[rows.label != "dense"]
    fig, axes, sparsities = panels_by_sparsity(rows, 2.0)
    if rows.empty:
        return fig
    colours = palette([m for m in st.methods if m in set(rows.label)])
    for ax, s in zip(axes, sparsities):
        cell = rows[rows.sparsity == s]
        for label, colour in colours.items():
            part = cell[cell.label == label]
            if len(part):
                marker = MARKERS.get(results.method_name(label), "o")
                ax.scatter(part.train_x_dense, part.test_acc, color=colour, label=label, s=30,
                           marker=marker, edgecolor="black", linewidth=0.4, alpha=0.8)  # fmt: skip
        ax.set_xscale("log")
        ax.set_title(f"s = {s:g}")
        ax.set_xlabel("training FLOPs (x the dense network's)")
        ax.set_ylabel("test accuracy (%), each marker one run")
        ax.legend()
    one_legend(fig, axes)
    return fig


def kernel_speedups(rows: pd.DataFrame) -> Figure:
    """Masked dense time over CSR time against sparsity, one line per layer, one panel per
    network (log scale; above the dashed line at 1, CSR is faster)."""
    networks = list(dict.fromkeys(rows.network)) if len(rows) else [None]
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(5 * len(networks) + 2, 3.8), layout="constrained")
        axes = list(fig.subplots(1, len(networks), squeeze=False)[0])
    if rows.empty:
        empty(axes[0], "not measured here")
        return fig
    markers = iter("osD^vP" * 4)
    for ax, net in zip(axes, networks):
        part = rows[rows.network == net]
        for (layer, g), colour in zip(part.groupby("layer", sort=False), SPARE * 2):
            ax.plot(g.sparsity, g.speedup, marker=next(markers), color=colour, label=layer)
        ax.axhline(1.0, color="0.3", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_title(net)
        ax.set_xlabel("sparsity")
        ax.set_ylabel("masked dense time / CSR time")
        ax.legend(loc="upper left", frameon=False, fontsize="small")
    return fig


def cost(st: results.Study) -> Figure:
    """Mask updates per epoch of each method (log scale), from the runs' logs."""
    done = st.done().assign(per_epoch=lambda d: d.reallocations / d.epochs)
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(6, 3.5), layout="constrained")
        ax = fig.subplots()
    done = done[done.per_epoch > 0]
    if done.empty:
        empty(ax, "no mask updates logged")
        return fig
    colours = palette([m for m in st.methods if m in set(done.label)])
    sns.barplot(done, x="label", y="per_epoch", hue="label", palette=colours, ax=ax, legend=False)
    ax.set_yscale("log")
    ax.set_xlabel("method")
    ax.set_ylabel("mask updates per epoch")
    ax.set_title(f"{st.budget} budget, {st.variant()}")
    return fig


def density_over_training(over: pd.DataFrame, final: pd.DataFrame, title: str) -> Figure:
    """Left: density of each sparse tensor over training; right: final density against size."""
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(10, 4), layout="constrained")
        left, right = fig.subplots(1, 2)
    if over.empty:
        empty(left, "not run here")
        empty(right, "not run here")
        return fig
    # a few tensors are named; a deep network's are coloured by depth (0: the first sparse one)
    hue = dict(hue="tensor") if len(final) <= 6 else dict(hue="depth", palette="viridis")
    sns.lineplot(over, x="step", y="density", ax=left, drawstyle="steps-post", **hue)
    left.set_xlabel("optimizer step")
    left.set_ylabel("fraction of weights active")
    left.set_title(title)
    sns.scatterplot(final, x="numel", y="final density", s=80, ax=right, **hue)
    right.set_xscale("log")
    right.set_xlabel("tensor size (weights)")
    right.set_ylabel("final fraction active")
    right.set_title("end of training")
    place_legend(left, "upper right")
    place_legend(right, "upper right")
    return fig


def imagenet(table: pd.DataFrame) -> Figure:
    """The paper's ResNet-50 top-1 accuracy per method and sparsity: checked rows (left) and
    the UNVERIFIED ones (right), never in one panel."""
    sparse = table[table.sparsity > 0]
    colours = palette(list(dict.fromkeys(sparse.method)))
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(10, 4), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
    for ax, mark, title in zip(
        axes, ("yes", "UNVERIFIED"), ("checked (ICLR-2019 submission)", "UNVERIFIED (ICML-2019)")
    ):
        rows = sparse[sparse.checked == mark]
        sns.pointplot(
            rows, x="sparsity", y="top1", hue="method", palette=colours, ax=ax,
            linestyle="none", dodge=0.4, markers="o",
        )  # fmt: skip
        ax.set_title(f"paper, {title}")
        ax.set_xlabel("sparsity")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.legend(fontsize="small", loc="lower right")
    return fig


# A column whose every word is at most this long never breaks inside a word ("inconclusive"
# broke as "inconclusi / ve"); it still wraps between words ("10 per / method").
SHORT_WORD = 14
# Characters of method specs and other long tokens after which a line may break first
# ("static_replica:" / "fresh"), before the browser breaks a token anywhere to fit a column.
SOFT_BREAKS = re.compile(r"([:_=+/,])(?=\S)")


def cell_text(value) -> str:
    """A cell as it reads: floats in their shortest form."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def cell_html(value) -> str:
    """A cell's text, HTML-escaped, with a soft break opportunity (<wbr>) after each
    separator of a token longer than ``SHORT_WORD`` (a method spec; never inside an
    interval, which a browser would break at a <wbr> even when told not to wrap)."""
    return " ".join(
        SOFT_BREAKS.sub(r"\1<wbr>", html.escape(word)) if len(word) > SHORT_WORD
        else html.escape(word)
        for word in cell_text(value).split(" ")
    )  # fmt: skip


def table(df: pd.DataFrame):
    """A table for a page: no index column, floats in their shortest form, text uncut and
    HTML-escaped (a p-value reads "< 0.001"). Intervals ("[+0.11, +0.59]") stay on one line,
    columns of short words never break inside a word; long tokens break after a separator
    first (a method spec after its ":"). An empty table prints nothing."""
    if df.empty:
        return None
    style = df.style.hide(axis="index").format(cell_html, na_rep="-")
    rules = []  # by position: a table may repeat a column name
    for i, (name, column) in enumerate(df.items()):
        if "CI" in str(name):  # "[+0.11, +0.59]" reads whole
            rules.append((i, "white-space: nowrap; overflow-wrap: normal"))
        elif all(len(word) <= SHORT_WORD for v in column.dropna() for word in cell_text(v).split()):
            rules.append((i, "overflow-wrap: normal"))  # wraps between words, never inside
    return style.set_table_styles(
        [{"selector": f"td.col{i}", "props": props} for i, props in rules], overwrite=False
    )
