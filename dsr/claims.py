"""A claim's verdict from a study (every comparison in the rule of :mod:`dsr.verdicts`), and
what a page publishes of it: glued values, the verdict badge, its row of the book's summary
table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from dsr import verdicts
from dsr.events import active_before, grown_per_tensor  # noqa: F401  (grown_per_tensor: API)
from dsr.study import MODEL_NAMES, PAPER_DATASET, PAPER_VERSIONS, Study
from dsr.tables import (
    SPARSE_CLASSIFIER,
    classes_connected,
    exploration_windows,
    interval_text,
    p_text,
    pair_text,
    paper_means,
    summarize,
)


@dataclass
class Verdict:
    """A claim's verdict computed from our means, with the comparisons it rests on."""

    label: str
    detail: str
    pairs: pd.DataFrame


def qualifier(st: Study, *more: str) -> str:
    """How the runs differ from the paper's setting, e.g. " (smoke budget, on cifar10-jpeg)";
    ``more`` adds notes such as "single runs"."""
    notes = [] if st.budget == "paper" else [f"{st.budget} budget"]
    variant = st.variant()
    if variant != PAPER_DATASET.get(variant):
        notes.append(f"on {variant}")
    notes += [m for m in more if m]
    return f" ({', '.join(notes)})" if notes else ""


def verdict_beats(st: Study, winner: str, losers: list[str], matching: bool = False) -> Verdict:
    """Does ``winner`` reach a higher mean accuracy than each of ``losers`` at every sparsity
    (``matching``: at least as high, within :data:`dsr.verdicts.MARGIN`)?

    Every comparison made (both methods with finished runs at a sparsity) follows the rule of
    :mod:`dsr.verdicts`: the difference of the means with its 95 % Welch interval, p-values
    Holm-corrected over the comparisons of this verdict, and one of better (or at or above),
    worse, inconclusive; the label is reproduced, not reproduced, inconclusive, or "not run
    here" when no comparison could be made, with the budget and data in brackets where they
    are not the paper's. A claim against several baselines is never "reproduced" while one of
    them has no finished run to compare with: it is then inconclusive, and the detail names
    the baselines not run.
    """
    st.variant()  # one data variant and one precision, or a one-line ResultsError
    done = st.done()
    margin = verdicts.MARGIN if matching else None
    found = []
    for s in st.sparsities:
        cell = done[done.sparsity.round(6) == round(s, 6)]
        for loser in losers:
            a = list(cell[cell.label == winner].test_acc)
            b = list(cell[cell.label == loser].test_acc)
            if a and b:
                found.append((s, loser, verdicts.compare(a, b, margin)))
    decided = verdicts.outcomes([c for _, _, c in found], matching)
    rows = []
    for (s, loser, c), (result, p2, p1) in zip(found, decided):
        row = {
            "sparsity": s,
            "versus": loser,
            "runs": f"{c.runs[0]} vs {c.runs[1]}",
            "difference": round(c.difference, 3),
            "95 % CI": interval_text(c.low, c.high),
            "p (Holm)": p_text(p2),
        }
        if matching:
            row["p at or above (Holm)"] = p_text(p1)
        row["outcome"] = result
        if st.model in SPARSE_CLASSIFIER:  # exploration, or only keeping every class connected?
            row["classes connected"] = " / ".join(
                classes_connected(st, m, s) or "-" for m in (winner, loser)
            )
        needed = c.needed(len(found)) if result == "inconclusive" else None
        row["seeds to resolve"] = "" if result != "inconclusive" else needed_text(needed)
        rows.append(row)
    columns = ["sparsity", "versus", "runs", "difference", "95 % CI", "p (Holm)"]
    columns += ["p at or above (Holm)"] * matching + ["outcome"]
    columns += ["classes connected"] * (st.model in SPARSE_CLASSIFIER) + ["seeds to resolve"]
    pairs = pd.DataFrame(rows, columns=columns)
    what = f"{winner} {'at or above' if matching else 'above'} {', '.join(losers)}"
    compared = {loser for _, loser, _ in found}
    missing = [loser for loser in losers if loser not in compared]
    return Verdict(*label_pairs(pairs, st, what, matching, missing), pairs)


def needed_text(n: int | None) -> str:
    return f"{n} per method" if n else "no number (difference too small or unknown spread)"


def label_pairs(
    pairs: pd.DataFrame, st: Study, what: str, matching: bool, missing: list[str] | None = None
) -> tuple[str, str]:
    """The label and the one-line detail of a verdict's comparisons; ``missing``: the
    baselines with no comparison (no finished runs at a sparsity the winner ran)."""
    if pairs.empty:
        return "not run here", f"no finished runs to compare ({what})"
    counts = pairs.outcome.value_counts()
    held = "at or above" if matching else "better"
    parts = [f"{counts.get(held, 0)} of {len(pairs)} comparisons {held}"]
    parts += [f"{counts[k]} {k}" for k in ("worse", "inconclusive") if counts.get(k)]
    how = f"95 % Welch intervals, Holm-corrected over the {len(pairs)}"
    if matching:
        how += f", margin {verdicts.MARGIN:g} points"
    detail = f"{what}: {', '.join(parts)} ({how})"
    single = int((pairs.runs.str.contains(r"^1 vs|vs 1$")).sum())
    if single:
        detail += f"; {single} with a single run on a side, whose spread is unknown"
    if "classes connected" in pairs:
        cut = pairs[pairs["classes connected"].str.contains(" of ")]
        if len(cut):
            where = ", ".join(f"{v} at s = {s:g}" for v, s in zip(cut.versus, cut.sparsity))
            detail += (
                f"; in {len(cut)} of them a run leaves classes without an incoming weight "
                f"({where}): there the gap measures output connectivity, not exploration alone"
            )
    label = verdicts.label(list(pairs.outcome))
    if missing:
        detail += f"; {', '.join(missing)} not run here"
        if label == "reproduced":  # half a claim held is not the claim
            label = "inconclusive"
            detail += ", so the claim cannot be called reproduced"
    return label + qualifier(st), detail


class Html(str):
    """A value glued as HTML (``{glue}`page::key```), not as plain text: a verdict badge."""


def publish(values: dict[str, Any]) -> None:
    """Glue each value for the book's text (``{glue:text}`key```), without displaying it.

    A string is stored as its repr, which myst-nb's ``glue:text`` role turns back into the
    exact string; an :class:`Html` value is stored as HTML, for the ``{glue}`` role."""
    from IPython.display import HTML
    from myst_nb import glue

    for key, value in values.items():
        glue(key, HTML(value) if isinstance(value, Html) else value, display=False)


# Verdict label (its start) -> CSS class and symbol of its badge: the symbol carries the
# meaning without colour (colour-blind readers, print).
BADGES = (
    ("not reproduced", "no", "\u2717"),
    ("reproduced", "yes", "\u2713"),
    ("partly", "part", "\u25d0"),
    ("inconclusive", "open", "?"),
    ("not run", "none", "\u2013"),
)


def badge(label: str) -> Html:
    """The verdict ``label`` as a badge: ``✓ reproduced`` in the verdict's colour, then its
    scope note in brackets (``(cpu budget, on cifar10-jpeg)``), if any, in small type."""
    from html import escape

    kind, mark = next(((k, m) for start, k, m in BADGES if label.startswith(start)), BADGES[-1][1:])
    word, bracket, rest = label.partition(" (")
    note = f' <span class="verdict-note">({escape(rest)}</span>' if bracket else ""
    return Html(
        f'<span class="verdict verdict-{kind}" title="{escape(label)}">{mark} {escape(word)}'
        f"</span>{note}"
    )


def summary_cells(prefix: str, paper: str, ours: str, scope: str, label: str) -> dict[str, str]:
    """One row of the book's summary table, keyed ``<prefix>summary_*``: the paper's and our
    cells, the scope, the verdict label and its badge."""
    return {
        f"{prefix}summary_paper": paper,
        f"{prefix}summary_ours": ours,
        f"{prefix}summary_scope": scope,
        f"{prefix}summary_verdict": label,
        f"{prefix}summary_badge": badge(label),
    }


def scope_text(st: Study, sparsity: float | None = None, seeds: str = "") -> str:
    """A summary row's scope: network, data, budget, paper version, sparsity, seeds."""
    name = MODEL_NAMES.get(st.model, st.model)
    version = f" ({PAPER_VERSIONS[st.model]})" if st.model in PAPER_VERSIONS else ""
    parts = [f"{name} / {st.variant()}", f"{st.budget} budget{version}"]
    parts += [f"s = {sparsity:g}"] if sparsity is not None else []
    return " \u00b7 ".join(parts + ([seeds] if seeds else []))


def summary_row(st: Study, verdict: Verdict, a: str, b: str, prefix: str = "") -> dict[str, str]:
    """The claim's row of the book's summary table (keys ``<prefix>summary_*``): the paper's
    and our mean accuracies of ``a`` and ``b`` (``"97.70 vs 43.25"``) at the highest sparsity
    of the study at which both have finished runs (else its highest sparsity), the scope
    (network, data, budget, paper version, sparsity, finished runs per side), the verdict and
    its badge. The paper's cell is "not in the paper" where the paper has no runs of both
    methods on this network at that sparsity: a row never sets another network's numbers
    beside ours."""
    ours_means = summarize(st)
    both = [x for x in st.sparsities if pair_text(ours_means, a, b, x) != "-"]
    s = max(both or st.sparsities)
    runs = ours_means.set_index(["method", "sparsity"]).runs
    counts = [int(runs.get((m, s), 0) or 0) for m in (a, b)]
    plural = "s" if max(counts) != 1 else ""
    seeds = (
        f"{counts[0]} run{plural} each"
        if counts[0] == counts[1]
        else f"{counts[0]} and {counts[1]} runs"
    )
    theirs = pair_text(paper_means(st.model, st.dataset), a, b, s)
    ours = pair_text(ours_means, a, b, s)
    return summary_cells(
        prefix,
        theirs if theirs != "-" else "not in the paper",
        ours if ours != "-" else "not run here",
        scope_text(st, s, seeds if ours != "-" else ""),
        verdict.label,
    )


def exploration_fits(st: Study) -> pd.DataFrame:
    """Does accuracy rise with the length of exploration? Per sparsity and series (windows that
    stop early, windows that start late; the official window, from epoch 0, belongs to both),
    the least-squares slope of the runs' test accuracy against the epochs with reallocation, in
    points per 10 epochs (``slope``), with its 95 % t-interval (``low``, ``high``) and its
    two-sided p Holm-corrected over the rows (``p_holm``; n - 2 degrees of freedom, every run
    one point, seeds not paired). A series needs two window lengths and three runs."""
    from scipy.stats import linregress, t

    runs = exploration_windows(st)
    full = runs[runs.start == 0].groupby("sparsity").explored.max()
    rows = []
    for s, cell in runs.groupby("sparsity"):
        official = cell[(cell.start == 0) & (cell.explored == full.get(s))]
        for name, part in (
            ("stops early", cell[cell.start == 0]),
            ("starts late", pd.concat([cell[cell.start > 0], official])),
        ):
            if part.explored.nunique() < 2 or len(part) < 3:
                continue
            fit = linregress(part.explored.astype(float), part.test_acc.astype(float))
            half = float(t.ppf(0.975, len(part) - 2)) * fit.stderr
            rows.append(
                {
                    "sparsity": s,
                    "windows": name,
                    "explored": sorted(part.explored.unique()),
                    "runs": len(part),
                    "slope": 10 * fit.slope,
                    "low": 10 * (fit.slope - half),
                    "high": 10 * (fit.slope + half),
                    "p": fit.pvalue,
                }
            )
    columns = ["sparsity", "windows", "explored", "runs", "slope", "low", "high", "p", "p_holm"]
    out = pd.DataFrame(rows, columns=columns[:-1])
    out["p_holm"] = verdicts.holm(list(out.p))
    return out[columns]


def exploration_trend(st: Study) -> pd.DataFrame:
    """:func:`exploration_fits` as the page shows it."""
    fits = exploration_fits(st)
    return pd.DataFrame(
        {
            "sparsity": fits.sparsity,
            "windows": fits.windows,
            "epochs with reallocation": [", ".join(f"{e:g}" for e in x) for x in fits.explored],
            "runs": fits.runs,
            "slope (points per 10 epochs)": [f"{v:+.3f}" for v in fits.slope],
            "95 % CI": [f"[{a:+.3f}, {b:+.3f}]" for a, b in zip(fits.low, fits.high)],
            "p (Holm)": [p_text(p) for p in fits.p_holm],
        }
    )


def exploration_trend_text(st: Study) -> str:
    """One sentence on :func:`exploration_fits`: in how many series accuracy rises with the
    epochs of reallocation (slope above 0, Holm-corrected p below 0.05), falls, or neither."""
    fits = exploration_fits(st)
    if fits.empty:
        return "no series of windows has two lengths with finished runs yet"
    rising = fits[(fits.slope > 0) & (fits.p_holm < 0.05)]
    falling = fits[(fits.slope < 0) & (fits.p_holm < 0.05)]
    parts = [f"accuracy rises with the epochs of reallocation in {len(rising)} of {len(fits)} "
             "series of windows"]  # fmt: skip
    if len(rising):
        parts.append(
            f" (slopes {rising.slope.min():+.3f} to {rising.slope.max():+.3f} points per 10 "
            f"epochs, Holm-corrected p {_at_most(rising.p_holm.max())})"
        )
    if len(falling):
        parts.append(f", falls in {len(falling)}")
    rest = len(fits) - len(rising) - len(falling)
    if rest:
        parts.append(f", and neither is resolved in {rest}")
    return "".join(parts)


def _at_most(p: float) -> str:
    return f"at most {p_text(p)}" if p >= 0.001 else "below 0.001"
