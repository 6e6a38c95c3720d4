"""Tables of a study's runs beside the paper's published numbers: means over seeds, the
paper's runs, costs and FLOPs, output connectivity, budget and provenance. Nothing here types a
number: every value comes from a run's ``summary.json`` / logs or from ``data/paper/``
(``dsr_paper_runs.csv`` per run, with its source in ``data/paper/README.md``). Results on
``cifar10-jpeg`` are compared with the paper's CIFAR-10 numbers only side by side, labelled,
never as a difference.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dsr import flops
from dsr.config import preset
from dsr.events import active_before, grown_per_tensor  # noqa: F401  (grown_per_tensor: API)
from dsr.study import (
    MODEL_NAMES,
    PAPER_DATASET,
    PAPER_DIR,
    PAPER_METHODS,
    PAPER_MODELS,
    Study,
    method_name,
)


def mean_std(values: pd.Series, digits: int = 2) -> str:
    """``"97.91 ± 0.05"``; a single value has no std; no value is "not run"."""
    if len(values) == 0:
        return "not run"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f} (1 run)"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def summarize(st: Study) -> pd.DataFrame:
    """Mean ± std of the final test accuracy over seeds, one row per (method, sparsity).

    Raises:
        ResultsError: the finished runs are on more than one data variant.
    """
    st.variant()
    rows = []
    for (label, s), g in st.runs.groupby(["label", "sparsity"], sort=False):
        done = g[g.status == "done"]
        rows.append(
            {
                "method": label,
                "sparsity": s,
                "seeds": ",".join(str(x) for x in done.seed),
                "runs": len(done),
                "mean": done.test_acc.mean() if len(done) else float("nan"),
                "std": done.test_acc.std(ddof=1) if len(done) > 1 else float("nan"),
                "accuracy": mean_std(done.test_acc),
                "status": "done" if len(done) == len(g) else sorted(set(g.status) - {"done"})[0],
            }
        )
    return pd.DataFrame(rows)


def paper_runs(file: str = "dsr_paper_runs.csv") -> pd.DataFrame:
    """The paper's per-run numbers with registry names (``model``, and ``method`` where the file
    has a method column) beside the paper's own (``paper_model``, ``paper_method``)."""
    df = pd.read_csv(PAPER_DIR / file)
    df["paper_model"] = df.model
    df["model"] = df.model.map(lambda m: PAPER_MODELS.get(m, m))
    if "method" in df:  # the dense file has one network per row, no method
        df["paper_method"] = df.method
        df["method"] = df.method.map(lambda m: PAPER_METHODS.get(m, m))
    return df


def paper_for(model: str, dataset: str) -> pd.DataFrame:
    """The paper's per-run accuracies for a model and (our) data set; empty if it has none."""
    df = paper_runs()
    return df[(df.model == model) & (df.dataset == PAPER_DATASET.get(dataset, dataset))]


def paper_dense(model: str, dataset: str) -> str:
    """The full dense network's published accuracy for a model and (our) data set, as text with
    its source (``data/paper/dsr_paper_dense.csv``); "not published here" if the file has none."""
    df = paper_runs("dsr_paper_dense.csv")
    df = df[(df.model == model) & (df.dataset == PAPER_DATASET.get(dataset, dataset))]
    if df.empty:
        return "not published here"
    row = df.iloc[0]
    return f"{row.test_accuracy:.2f} % on {row.dataset}, from {row.source}"


def versus_paper(st: Study) -> pd.DataFrame:
    """Our runs beside the paper's, per (method, sparsity): per-run values, mean ± std, and,
    where both the data and the budget are the paper's (never for ``cifar10-jpeg`` or a
    shortened budget), the difference of the means and the p-value of Welch's t-test of it."""
    ours = summarize(st)
    variant = st.variant()
    paper = paper_for(st.model, st.dataset)
    theirs = f"paper ({PAPER_DATASET.get(st.dataset, st.dataset)})"
    same = variant == PAPER_DATASET.get(variant) and st.budget == "paper"
    yours = f"ours ({variant}, {st.budget} budget)"
    rows = []
    for _, r in ours.iterrows():
        p = paper[(paper.method == r.method) & (paper.sparsity.round(4) == round(r.sparsity, 4))]
        mine = st.done()
        mine = mine[(mine.label == r.method) & (mine.sparsity == r.sparsity)]
        row = {
            "method": r.method,
            "sparsity": r.sparsity,
            f"{theirs}: runs": ", ".join(f"{v:.2f}" for v in p.test_accuracy) or "-",
            f"{theirs}: mean ± std": mean_std(p.test_accuracy) if len(p) else "-",
            "our seeds": r.seeds or "-",
            f"{yours}: runs": ", ".join(f"{v:.2f}" for v in mine.test_acc) or r.status,
            f"{yours}: mean ± std": r.accuracy if r.runs else r.status,
        }
        if same:
            diff = r["mean"] - p.test_accuracy.mean() if len(p) and r.runs else float("nan")
            row["ours - paper"] = "-" if pd.isna(diff) else f"{diff:+.2f}"
            row["p (Welch)"] = welch_p(mine.test_acc, p.test_accuracy)
        rows.append(row)
    return pd.DataFrame(rows)


def welch_p(ours: pd.Series, theirs: pd.Series) -> str:
    """The two-sided p-value of Welch's t-test (unequal variances) that our runs and the
    paper's have the same mean, as text; "-" with fewer than two runs on either side or no
    spread on both."""
    from scipy.stats import ttest_ind

    if len(ours) < 2 or len(theirs) < 2 or (ours.std() == 0 and theirs.std() == 0):
        return "-"
    return p_text(float(ttest_ind(list(ours), list(theirs), equal_var=False).pvalue))


def interval_text(low: float, high: float) -> str:
    return "-" if pd.isna(low) else f"[{low:+.2f}, {high:+.2f}]"


def p_text(p: float) -> str:
    return "-" if pd.isna(p) else (f"{p:.3f}" if p >= 0.001 else "< 0.001")


def budget_text(st: Study) -> str:
    """The budget run, and how its config differs from the paper's protocol (computed)."""
    paper = preset(st.protocol, "paper").to_dict()
    ran = preset(st.protocol, st.budget, **st.base()["fields"]).to_dict()

    def show(key: str, value: Any) -> str:
        return "all" if key.endswith("_subset") and value == 0 else str(value)

    diffs = [
        f"{k} {show(k, ran[k])} (paper: {show(k, paper[k])})"
        for k in ran
        if ran[k] != paper[k] and k not in ("method", "sparsity", "seed")
    ]
    planned = ",".join(str(s) for s in st.seeds)
    finished = ",".join(str(s) for s in sorted({int(s) for s in st.done().get("seed", [])}))
    seeds = f"seeds {planned}"
    if finished != planned:
        seeds += (
            f" planned, finished runs for seed{'s' if ',' in finished else ''} {finished}"
            if finished
            else " planned, no run finished"
        )
    seeds += " (the paper: 5 runs per cell)"
    precision = st.precision() or st.runtime().precision
    head = (
        f"{MODEL_NAMES.get(st.model, st.model)} / {st.dataset}, {st.budget} budget, "
        f"{precision}, {seeds}"
    )
    return head + ("; differs from the paper in " + "; ".join(diffs) if diffs else "")


def provenance(st: Study, *more: Study) -> pd.DataFrame:
    """One row per finished run of ``st`` and then of ``more`` (each run once): what produced
    it (config hash, seed, code, data, device)."""
    done = pd.concat([s.done() for s in (st, *more)]).drop_duplicates("hash")
    return pd.DataFrame(
        {
            "method": done.label,
            "sparsity": done.sparsity,
            "seed": done.seed,
            "config hash": done.hash,
            "code commit": [
                f"{c[:10]}{' (modified)' if d else ''}"
                for c, d in zip(done.code_commit, done.code_dirty)
            ],
            "data": [f"{v} ({c[:8]})" for v, c in zip(done.data_variant, done.data_checksum)],
            "device": done.device,
            "precision": done.precision,
            "torch": done.torch,
        }
    ).reset_index(drop=True)


def status_table(st: Study) -> pd.DataFrame:
    """Runs that are not finished, with the reason (not available, not run, failed)."""
    rows = st.runs[st.runs.status != "done"]
    return rows[["label", "sparsity", "seed", "status", "reason"]].fillna("").reset_index(drop=True)


def pair_text(means: pd.DataFrame, a: str, b: str, sparsity: float) -> str:
    """``"97.70 vs 43.25"``: the mean accuracies of ``a`` and ``b`` at ``sparsity`` ("(1 run)"
    after a single run), or "-" if either has no finished run there."""
    cells = []
    for m in (a, b):
        hit = means[(means.method == m) & (means.sparsity.round(4) == round(sparsity, 4))]
        if hit.empty or not hit.runs.iloc[0]:
            return "-"
        cells.append(hit.accuracy.iloc[0].split(" ± ")[0])
    return " vs ".join(cells)


def paper_means(model: str, dataset: str) -> pd.DataFrame:
    """The paper's mean ± std per (method, sparsity), in the layout of :func:`summarize`."""
    rows = [
        {"method": m, "sparsity": s, "runs": len(g), "accuracy": mean_std(g.test_accuracy)}
        for (m, s), g in paper_for(model, dataset).groupby(["method", "sparsity"])
    ]
    return pd.DataFrame(rows, columns=["method", "sparsity", "runs", "accuracy"])


def cost_table(st: Study) -> pd.DataFrame:
    """Reallocation cost per method and device: mask updates per epoch (exact, from the logs;
    DeepR's one per optimizer step) and wall seconds per epoch, the median and range of the
    runs on that device (measured on whatever machine ran the run; noisy on a shared CPU; never
    combined across devices)."""
    done = st.done()
    rows = []
    for label, g in done.groupby("label", sort=False):
        for device, d in g.groupby("device", sort=True):
            t = d.wall_seconds / d.epochs
            spread = f" ({t.min():.2f}-{t.max():.2f})" if len(d) > 1 else ""
            rows.append(
                {
                    "method": label,
                    "device": device,
                    "runs": len(d),
                    "mask updates per epoch": f"{(d.reallocations / d.epochs).mean():.1f}",
                    "seconds per epoch": f"{t.median():.2f}{spread}",
                }
            )
    columns = ["method", "device", "runs", "mask updates per epoch", "seconds per epoch"]
    return pd.DataFrame(rows, columns=columns)


def exploration_windows(st: Study) -> pd.DataFrame:
    """DSR's finished runs (``dsr`` and its ``dsr:...`` variants) with the window of epochs in
    which their masks were reallocated, from each run's config: ``start`` (realloc_start) and
    ``explored`` (the stop, at most the epochs, minus the start)."""
    done = st.done()
    done = done[done.label.map(method_name) == "dsr"].copy()
    windows = {
        (label, round(s, 6)): (cfg.realloc_start, min(cfg.realloc_stop, cfg.epochs))
        for label, s, _, cfg in st.plan()
        if not isinstance(cfg, str)
    }
    window = [windows[(label, round(s, 6))] for label, s in zip(done.label, done.sparsity)]
    done["start"] = [a for a, _ in window]
    done["explored"] = [b - a for a, b in window]
    return done


def flops_rows(st: Study) -> pd.DataFrame:
    """Each finished run's FLOPs ledger (:func:`dsr.flops.ledger`): label, sparsity, seed, test
    accuracy, training and inference FLOPs, each also as a multiple of the dense network's."""
    rows = []
    for r in st.done().itertuples():
        ledger = flops.ledger(st.record(r.label, r.sparsity, r.seed))
        rows.append(
            {
                "label": r.label,
                "sparsity": r.sparsity,
                "seed": r.seed,
                "test_acc": r.test_acc,
                "train_flops": ledger["train_flops"],
                "train_x_dense": ledger["train_flops"] / ledger["dense_train_flops"],
                "inference_flops": ledger["inference_flops"],
                "inference_x_dense": ledger["inference_flops"] / ledger["dense_inference_flops"],
            }
        )
    columns = ["label", "sparsity", "seed", "test_acc", "train_flops", "train_x_dense",
               "inference_flops", "inference_x_dense"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def flops_table(st: Study) -> pd.DataFrame:
    """The FLOPs ledger per method and sparsity (the mean over its runs): training FLOPs of a
    whole run and inference FLOPs of one example, each with its multiple of the dense
    network's (trained for the protocol's epochs)."""
    rows = flops_rows(st)
    columns = ["method", "sparsity", "runs", "training FLOPs", "training, x dense",
               "inference FLOPs", "inference, x dense"]  # fmt: skip
    if rows.empty:
        return pd.DataFrame(columns=columns)
    g = rows.groupby(["label", "sparsity"], sort=False)
    out = pd.DataFrame(
        {
            "method": [k[0] for k in g.groups],
            "sparsity": [k[1] for k in g.groups],
            "runs": g.size().values,
            "training FLOPs": [f"{v:.3g}" for v in g.train_flops.mean()],
            "training, x dense": [f"{v:.3g}" for v in g.train_x_dense.mean()],
            "inference FLOPs": [f"{v:.3g}" for v in g.inference_flops.mean()],
            "inference, x dense": [f"{v:.3g}" for v in g.inference_x_dense.mean()],
        }
    )
    return out[columns]


def last_tensor_connections(record) -> tuple[str, int, int, int]:
    """The last sparse tensor of a finished run's final masks: its name, its output units with
    at least one active weight, its active weights, and its output units."""
    tensor, last = list(record.final_masks().items())[-1]
    connected = int(last.reshape(last.shape[0], -1).any(dim=1).sum())
    return tensor, connected, int(last.sum()), last.shape[0]


# Models whose last sparse tensor is the classifier (its rows are the classes).
SPARSE_CLASSIFIER = {"lenet300"}


def classes_connected(st: Study, label: str, sparsity: float) -> str:
    """The fewest classes with an incoming weight at the end of any finished run of ``label``
    at ``sparsity``, as "k of n" ("all" for a method without masks); "" where the classifier
    is not sparse (WRN-28-2, ResNet-50: every class stays connected)."""
    if st.model not in SPARSE_CLASSIFIER:
        return ""
    done = st.done()
    hit = done[(done.label == label) & (done.sparsity.round(6) == round(sparsity, 6))]
    counts, total = [], 0
    for seed in hit.seed:
        record = st.record(label, sparsity, int(seed))
        if record is None:  # a run table without a run cache behind it
            return ""
        if not (record.path / "masks_final.npz").exists():
            return "all"
        _, connected, _, total = last_tensor_connections(record)
        counts.append(connected)
    return "" if not counts else ("all" if min(counts) == total else f"{min(counts)} of {total}")


def output_connections(st: Study, methods: list[str]) -> pd.DataFrame:
    """Per method and sparsity: how many output units of the last sparse tensor (LeNet-300-100's
    fc3: the 10 classes) keep at least one active weight at the end of each finished run, and
    that tensor's active weights, from the runs' final masks (one value per seed).

    An output unit with no incoming weight is a constant (its batch-norm bias): per-tensor
    pruning to a uniform sparsity leaves the 10 x 100 output layer only 1000 (1 - s) weights,
    and a class left with none cannot be predicted from the input."""
    rows = []
    done = st.done()
    for label in methods:
        for s in st.sparsities:
            hit = done[(done.label == label) & (done.sparsity == s)].sort_values("seed")
            connected, active, accuracy, tensor, total = [], [], [], "", 0
            for seed, acc in zip(hit.seed, hit.test_acc):
                record = st.record(label, s, int(seed))
                if not (record.path / "masks_final.npz").exists():  # a dense method
                    continue
                tensor, outputs, weights, total = last_tensor_connections(record)
                connected.append(outputs)
                active.append(weights)
                accuracy.append(f"{acc:.2f}")
            if connected:
                rows.append(
                    {
                        "method": label,
                        "sparsity": s,
                        "tensor": tensor,
                        "active weights": ", ".join(map(str, active)),
                        "outputs connected": ", ".join(map(str, connected)) + f" of {total}",
                        "test accuracy": ", ".join(accuracy),
                    }
                )
    columns = ["method", "sparsity", "tensor", "active weights", "outputs connected"]
    return pd.DataFrame(rows, columns=[*columns, "test accuracy"])


def paper_pivot(model: str, dataset: str) -> pd.DataFrame:
    """The paper's mean ± std over its 5 runs, sparsity by method."""
    means = paper_means(model, dataset)
    wide = means.pivot(index="sparsity", columns="method", values="accuracy").reset_index()
    wide.columns.name = None
    return wide


def wall_time(st: Study, label: str) -> str:
    """Wall time per run of one method on each device it ran on (times on different devices
    are not combined): the median and range, since one run slowed by a busy machine would pull
    a mean far from the others: ``"median 1520 s per run (1480-5536 s, 3 runs on cpu ...);
    140 s per run (1 run on cuda ...)"``."""
    g = st.done()
    g = g[g.label == label]
    if g.empty:
        return "not run here"
    parts = []
    for device, d in g.groupby("device", sort=True):
        t = d.wall_seconds
        if len(d) == 1:
            parts.append(f"{t.iloc[0]:.0f} s per run (1 run on {device})")
        else:
            parts.append(
                f"median {t.median():.0f} s per run ({t.min():.0f}-{t.max():.0f} s, "
                f"{len(d)} runs on {device})"
            )
    return "; ".join(parts)
