"""Claim 4, where the parameters go: per-tensor densities over training from a run's
reallocation log, at the end, and the verdict that larger tensors end sparser (pages 4 and 6)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dsr.claims import Verdict, qualifier, scope_text, summary_cells
from dsr.events import active_before, grown_per_tensor  # noqa: F401  (grown_per_tensor: API)
from dsr.study import Study


def density_over_training(record) -> pd.DataFrame:
    """Density of every sparse tensor after every reallocation, from ``reallocations.jsonl``,
    with the initial density (before the first reallocation, derived from that event's
    pruned and grown counts) at step 0. Columns: step, epoch, tensor, depth, numel, active,
    density."""
    columns = ["step", "epoch", "tensor", "depth", "numel", "active", "density"]
    if record is None:
        return pd.DataFrame(columns=columns)
    tensors = record.summary["density"]["tensors"]
    events = record.reallocations()
    rows = []
    if events:
        rows += tensor_rows(0, 0, active_before(events[0]), tensors)
    for e in events:
        rows += tensor_rows(e["step"], e["epoch"], e["active"], tensors)
    return pd.DataFrame(rows, columns=columns)


def tensor_rows(step: int, epoch: int, active: list[int], tensors: list[dict]) -> list[dict]:
    return [
        dict(step=step, epoch=epoch, tensor=t["name"], depth=i, numel=t["numel"], active=a,
             density=a / t["numel"])
        for i, (t, a) in enumerate(zip(tensors, active))
    ]  # fmt: skip


def final_density(record, over: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per sparse tensor: shape, size, and its density at the start and at the end; ``over``:
    the run's :func:`density_over_training`, if the caller has it already."""
    columns = ["tensor", "depth", "shape", "numel", "active", "initial density", "final density"]
    if record is None:
        return pd.DataFrame(columns=columns)
    over = density_over_training(record) if over is None else over
    final = pd.DataFrame(record.summary["density"]["tensors"])
    start = over[over.step == 0].set_index("tensor").density if len(over) else None
    final["initial density"] = final.name.map(start) if start is not None else float("nan")
    final["depth"] = range(len(final))
    final["shape"] = final["shape"].map(lambda s: " x ".join(map(str, s)))
    return final.rename(columns={"name": "tensor", "density": "final density"})[columns]


def size_pairs(final: pd.DataFrame) -> tuple[int, int]:
    """(pairs where the larger tensor ends sparser, pairs of tensors of different sizes)."""
    size, density = final.numel.tolist(), final["final density"].tolist()
    pairs = [(i, j) for i in range(len(size)) for j in range(len(size)) if size[i] > size[j]]
    return sum(density[i] < density[j] for i, j in pairs), len(pairs)


@dataclass
class DensityPage:
    """One run's per-tensor density over training and at the end, and claim 4's verdict."""

    over: pd.DataFrame
    final: pd.DataFrame
    verdict: Verdict


def density_page(st: Study, method: str, sparsity: float, seed: int) -> DensityPage:
    record = st.record(method, sparsity, seed)
    over = density_over_training(record)
    final = final_density(record, over)
    return DensityPage(over, final, verdict_larger_sparser(final, st))


def larger_sparser_label(held: int, total: int) -> str:
    """Claim 4's rule on size pairs: all held, more than half, or not."""
    if held == total:
        return "reproduced"
    return "partly reproduced" if 2 * held > total else "not reproduced"


def finals_by_seed(st: Study, method: str, sparsity: float) -> dict[int, pd.DataFrame]:
    """:func:`final_density` of every finished run of ``method`` at ``sparsity`` in ``st``, by
    seed."""
    records = {seed: st.record(method, sparsity, seed) for seed in st.seeds}
    return {seed: final_density(r) for seed, r in records.items() if r is not None}


def verdict_larger_sparser(final: pd.DataFrame, st: Study) -> Verdict:
    """Do larger tensors end sparser? Over every pair of sparse tensors of different sizes:
    "reproduced" when the larger one ends sparser in all of them, "partly reproduced" in more
    than half, "not reproduced" otherwise. Tensors of equal size (the many 3x3 convs of a WRN
    stage) are not compared; the Spearman correlations of size and of depth with the final
    density are reported beside."""
    if len(final) < 2:
        return Verdict("not run here", "no finished run to read", final)
    ok, total = size_pairs(final)
    if total == 0:
        return Verdict("not run here", "every sparse tensor has the same size", final)
    rho = rank_correlation(final.numel, final["final density"])
    depth = rank_correlation(final.depth, final["final density"])
    label = larger_sparser_label(ok, total)
    detail = (
        f"in {ok} of {total} pairs of tensors of different sizes the larger ends sparser; "
        f"Spearman correlation of tensor size and final density {signed(rho)}, "
        f"of depth and final density {signed(depth)}"
    )
    return Verdict(label + qualifier(st), detail, final)


def rank_correlation(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rho of ``x`` and ``y``; NaN, without a warning, where either is constant
    (e.g. a method that ends every tensor at one density: there is no ranking to correlate)."""
    if x.nunique() < 2 or y.nunique() < 2:
        return float("nan")
    return float(x.corr(y, method="spearman"))


def signed(rho: float) -> str:
    """``+0.92``; "undefined" for NaN (:func:`rank_correlation`)."""
    return "undefined (one of the two is constant)" if rho != rho else f"{rho:+.2f}"


def density_over_seeds(st: Study, method: str, sparsity: float) -> Verdict:
    """Claim 4 on every finished run of ``method`` at ``sparsity`` in ``st``, one per seed:
    "reproduced" when in each of them every larger tensor ends sparser than every smaller one,
    "partly reproduced" when more than half of the size pairs of all runs hold, "not
    reproduced" otherwise. ``pairs``: one row per seed (pairs held, rank correlations of size
    and of depth with the final density, that run's verdict)."""
    columns = ["seed", "larger sparser", "size pairs", "size-density rho", "depth-density rho",
               "verdict"]  # fmt: skip
    rows = []
    for seed, final in finals_by_seed(st, method, sparsity).items():
        held, total = size_pairs(final)
        density = final["final density"]
        rows.append(
            {
                "seed": seed,
                "larger sparser": held,
                "size pairs": total,
                "size-density rho": round(rank_correlation(final.numel, density), 2),
                "depth-density rho": round(rank_correlation(final.depth, density), 2),
                "verdict": larger_sparser_label(held, total) if total else "not run here",
            }
        )
    table = pd.DataFrame(rows, columns=columns)
    if table.empty or table["size pairs"].sum() == 0:
        return Verdict("not run here", "no finished run with tensors of different sizes", table)
    held, total = table["larger sparser"].sum(), table["size pairs"].sum()
    every = int((table["larger sparser"] == table["size pairs"]).sum())
    label = larger_sparser_label(held, total)  # all held over all runs: every run holds all
    detail = (
        f"in {every} of {len(table)} runs (seeds {', '.join(map(str, table.seed))}) every larger "
        f"tensor ends sparser than every smaller one; {held} of {total} size pairs over all "
        f"runs; rank correlation of depth and final density {rho_range(table)}"
    )
    return Verdict(label + qualifier(st), detail, table)


def rho_range(table: pd.DataFrame) -> str:
    """The depth-density rank correlations of :func:`density_over_seeds`'s table, "+1.00" or
    "-0.99 to -0.98"."""
    rho = table["depth-density rho"]
    low, high = f"{rho.min():+.2f}", f"{rho.max():+.2f}"
    return low if low == high else f"{low} to {high}"


def density_spread(st: Study, method: str, sparsity: float) -> pd.DataFrame:
    """Per sparse tensor: its size and final density, mean ± std over the finished runs of
    ``method`` at ``sparsity`` in ``st`` (one per seed), and the lowest and highest."""
    finals = list(finals_by_seed(st, method, sparsity).values())
    columns = ["tensor", "shape", "numel", "runs", "final density", "lowest", "highest"]
    if not finals:
        return pd.DataFrame(columns=columns)
    both = pd.concat(finals)
    out = both.groupby(["depth", "tensor", "shape", "numel"], sort=True)["final density"].agg(
        runs="count", mean="mean", std="std", lowest="min", highest="max"
    )
    out = out.reset_index()
    out["final density"] = [
        f"{m:.4f}" if c == 1 else f"{m:.4f} ± {d:.4f}"
        for m, d, c in zip(out["mean"], out["std"], out.runs)
    ]
    out[["lowest", "highest"]] = out[["lowest", "highest"]].round(4)
    return out[columns]


def density_summary(parts: list[tuple[Study, Verdict]]) -> dict[str, str]:
    """Notebook 4's rows of the summary table, one per network read (``parts``), keyed
    ``<model>_summary_*``. The row states the size result the verdict rests on; depth is on the
    page (in LeNet-300-100 the deeper tensors are also the smaller ones, so depth and size
    cannot be told apart there)."""
    out: dict[str, str] = {}
    for st, v in parts:
        t = v.pairs
        ran = v.label != "not run here"
        runs = f"{len(t)} run" + ("s" if len(t) != 1 else "")
        pairs = (  # the verdict's pairs table has these columns only when runs were read
            f"larger sparser in {t['larger sparser'].sum()} of {t['size pairs'].sum()} size pairs"
            if ran
            else "not run here"
        )
        out.update(
            summary_cells(
                f"{st.model}_",
                "larger and deeper tensors end sparser (figure)"
                if st.model == "wrn28_2"
                else "not in the paper",
                pairs,
                scope_text(st, None, runs if ran else ""),
                v.label,
            )
        )
    return out
