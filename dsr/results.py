"""Tables for the book: our runs from the run cache beside the paper's published numbers.

Data flows one way: a :class:`Study` names the runs of one claim (methods x sparsities x
seeds of one protocol at one budget), :func:`study` finds them in the run cache (training the
missing ones only where the profile allows it), and the functions below turn the stored results
into tables (mean ± std over seeds), verdicts and provenance rows. Nothing here types a number:
every value comes from a run's ``summary.json`` / logs or from ``data/paper/``.

Profiles (the notebooks' ``profile`` parameter):

* ``default``: the paper's protocol, read from the committed run cache; never trains. A run that
  is not there is shown as "not run" (the paper's budget takes hours per run on a CPU).
* ``smoke``, ``cpu``, ``paper``: that budget of :data:`dsr.config.BUDGETS`; runs missing from the
  cache are trained first, in this process.

A notebook's ``budget`` parameter names another budget for the ``default`` profile to read
(WRN-28-2's committed runs are at the ``cpu`` budget); the other profiles ignore it and run at
their own budget.

Methods are named as in :data:`dsr.methods.METHODS`, optionally with a variant,
``name:value``, which sets the method's variant field (:data:`VARIANT_FIELDS`), e.g.
``static_replica:source``. A method that this version of the package does not have is reported
as "not available" and skipped.

Paper numbers: ``data/paper/dsr_paper_runs.csv`` (per run) and ``dsr_paper_imagenet.csv``, with
their source in ``data/paper/README.md``. Results on ``cifar10-jpeg`` are compared with the
paper's CIFAR-10 numbers only side by side, labelled, never as a difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dsr.config import BUDGETS, PROTOCOLS, ConfigError, RunConfig, coerce, preset
from dsr.data import PROJECT
from dsr.errors import ResultsError
from dsr.events import active_before, grown_per_tensor  # noqa: F401  (grown_per_tensor: API)
from dsr.schedules import Schedule

PAPER_DIR = PROJECT / "data" / "paper"
PROFILES = ("default", "smoke", "cpu", "paper")
# Notebook parameters that are not RunConfig fields (checked by tests/test_notebooks.py).
NOTEBOOK_ONLY = {
    "profile": "default | smoke | cpu | paper (see the module docstring)",
    "methods": "comma-separated method names, optionally name:variant or name:field=value, and @Nx "
    "(N x the epochs)",
    "sparsities": "comma-separated sparsities",
    "seeds": "comma-separated seeds",
    "runs_root": "run cache folder; empty: $DSR_RUNS or data/runs",
    "budget": "the budget whose committed runs the default profile reads (empty: paper)",
    "bench_file": "notebook 8: the kernel measurement to read (empty: the committed one)",
    "wrn_dataset": "notebook 4: data set of its WRN-28-2 run (cifar10 or cifar10-jpeg)",
    "wrn_budget": "notebook 4: budget of the committed WRN-28-2 run the default profile reads",
    "wrn_sparsity": "notebook 4: sparsity of its WRN-28-2 run",
    "wrn_seeds": "notebook 4: seeds of the WRN-28-2 runs read for the pattern over seeds",
    "scope_sparsities": "notebook 1: sparsities of its per-tensor vs global pruning section",
    "scope_seeds": "notebook 1: seeds of its per-tensor vs global pruning section",
}
# The field a method's ``name:value`` variant sets.
VARIANT_FIELDS = {
    "static_replica": "replica_init",
    "thin_dense": "thin_match",
    "set": "set_variant",
    "deepr": "deepr_sign_reference",
    "pruning": "prune_scope",
}
# Paper names -> registry names (data/paper uses the paper's names).
PAPER_MODELS = {"lenet-300-100": "lenet300", "wrn-28-2": "wrn28_2", "resnet-50": "resnet50"}
PAPER_METHODS = {"compressed": "pruning"}
# The paper's data set that a data variant of ours stands in for.
PAPER_DATASET = {"mnist": "mnist", "cifar10": "cifar10", "cifar10-jpeg": "cifar10"}
MODEL_NAMES = {"lenet300": "LeNet-300-100", "wrn28_2": "WRN-28-2", "resnet50": "ResNet-50"}
# Which version of the paper ran each network (scope of every summary row).
PAPER_VERSIONS = {
    "lenet300": "ICLR-2019 submission",
    "wrn28_2": "ICML 2019",
    "resnet50": "ICML 2019",
}


# --- planning and collecting runs ------------------------------------------------------------


def protocol_for(model: str) -> str:
    """The protocol (:data:`dsr.config.PROTOCOLS`) whose model is ``model``."""
    for name, proto in PROTOCOLS.items():
        if proto["model"] == model:
            return name
    raise ConfigError(f"no protocol for model {model!r} (known: {', '.join(PROTOCOLS)})")


def budget_of(profile: str) -> str:
    """The budget a profile runs at: ``default`` reads the paper-budget runs."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    return "paper" if profile == "default" else profile


def split(text: str, kind: type = str) -> list:
    """``"0.9, 0.99"`` -> ``[0.9, 0.99]``."""
    try:
        return [kind(x.strip()) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a list of {kind.__name__}") from None


# Methods a length multiplier (``name@2x``) applies to: the baselines the ICML-2019 runs
# trained twice as long as DSR (400 against 200 epochs, learning-rate drops scaled).
LONGER = ("static", "static_replica", "thin_dense")


def method_name(spec: str) -> str:
    """The registry name of a method spec: ``static_replica`` for ``static_replica:fresh@2x``."""
    return spec.partition("@")[0].partition(":")[0]


def method_config(base: dict[str, Any], spec: str, sparsity: float, seed: int) -> RunConfig:
    """The config of method ``spec`` in a study: ``name``, ``name:variant``, or
    ``name:field=value`` (several joined by ``+``: ``dsr:regrowth=within+realloc_stop=10``, the
    ablations), and any of them with ``@Nx`` (``static_replica:fresh@2x``): N times the
    protocol's epochs, with the learning-rate boundaries scaled by N (a replica's source stays
    the protocol's DSR run).

    Raises:
        ConfigError: the method or its variant field is not in this version of the package,
            or a length multiplier that is malformed or not offered for the method.
    """
    from dsr.methods import METHODS

    spec, _, length = spec.partition("@")
    name, _, variant = spec.partition(":")
    if name not in METHODS:
        raise ConfigError(f"method {name!r} is not available in this version of dsr")
    overrides: dict[str, Any] = dict(method=name, sparsity=0.0 if name == "dense" else sparsity)
    if "=" in variant:
        for part in variant.split("+"):
            key, eq, value = part.partition("=")
            if not eq or key in ("method", "sparsity", "seed"):
                raise ConfigError(f"method spec {spec!r}: expected name:field=value, got {part!r}")
            overrides[key] = coerce(key, value)
    elif variant:
        if name not in VARIANT_FIELDS:
            raise ConfigError(f"method {name!r} has no variants")
        overrides[VARIANT_FIELDS[name]] = variant
    args = (base["protocol"], base["budget"])
    cfg = preset(*args, **base["fields"], **overrides, seed=seed)
    if not length:
        return cfg
    factor = length[:-1]
    if not (length.endswith("x") and factor.isdigit() and int(factor) >= 1):
        raise ConfigError(f"length multiplier {'@' + length!r}: expected @Nx, e.g. @2x")
    if name not in LONGER:
        raise ConfigError(f"a length multiplier applies to {', '.join(LONGER)}, not {name}")
    longer = Schedule.parse(cfg.lr_schedule).scaled(int(factor)).format()
    overrides.update(epochs=cfg.epochs * int(factor), lr_schedule=longer)
    return preset(*args, **base["fields"], **overrides, seed=seed)


@dataclass
class Study:
    """The runs of one claim: one protocol at one budget, methods x sparsities x seeds."""

    profile: str
    model: str
    dataset: str
    methods: list[str]
    sparsities: list[float]
    seeds: list[int]
    root: Path | None = None
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per planned run
    committed_budget: str = "paper"  # the budget the default profile reads

    @property
    def protocol(self) -> str:
        return protocol_for(self.model)

    @property
    def budget(self) -> str:
        return self.committed_budget if self.profile == "default" else budget_of(self.profile)

    @property
    def trains(self) -> bool:
        return self.profile != "default"

    def base(self) -> dict[str, Any]:
        """Arguments of :func:`dsr.config.preset` shared by every run of the study."""
        fields_ = (
            {} if self.dataset == PROTOCOLS[self.protocol]["dataset"] else {"dataset": self.dataset}
        )
        return {"protocol": self.protocol, "budget": self.budget, "fields": fields_}

    def plan(self) -> list[tuple[str, float, int, RunConfig | str]]:
        """(method spec, sparsity, seed, config or the reason it cannot run), dense once."""
        out = []
        for spec in self.methods:
            for s in [0.0] if spec == "dense" else self.sparsities:
                for seed in self.seeds:
                    try:
                        cfg: RunConfig | str = method_config(self.base(), spec, s, seed)
                    except ConfigError as e:
                        cfg = str(e)
                    out.append((spec, s, seed, cfg))
        return out

    def record(self, label: str, sparsity: float, seed: int):
        """The RunRecord of one finished run of the study, or None."""
        from dsr.runs import load_run

        rows = self.done()
        hit = rows[(rows.label == label) & (rows.sparsity == sparsity) & (rows.seed == seed)]
        if hit.empty:
            return None
        cfg = method_config(self.base(), label, sparsity, seed)
        return load_run(cfg, self.root)

    def done(self) -> pd.DataFrame:
        return self.runs[self.runs.status == "done"]

    def variant(self) -> str:
        """The one data variant of the finished runs (the config's data set if none).

        Raises:
            ResultsError: the finished runs are on more than one data variant, or of more than
                one precision (:meth:`precision`): no comparison mixes them.
        """
        variants = sorted(set(self.done().data_variant))
        if len(variants) > 1:
            raise ResultsError(
                f"cannot mix data variants {' and '.join(variants)} in one comparison"
            )
        self.precision()
        return variants[0] if variants else self.dataset

    def precision(self) -> str:
        """The one precision of the finished runs ("fp32", "bf16-autocast"; "" if none).

        Raises:
            ResultsError: runs of different precision (a run resumed in another precision
                counts as its own, e.g. "bf16-autocast+fp32").
        """
        precisions = self.done().precision.fillna("unrecorded")
        found = sorted(precisions.unique())
        if len(found) > 1:
            counts = precisions.value_counts()
            raise ResultsError(
                "cannot compare runs of different precision in one comparison: "
                + ", ".join(f"{counts[p]} {p}" for p in found)
                + " (rerun them in one precision, or study each precision on its own)"
            )
        return found[0] if found else ""

    def runtime(self):
        """How the runs this study trains execute: its protocol at its budget's default."""
        from dsr.train import default_runtime

        return default_runtime(self.protocol, self.budget)


RUN_COLUMNS = [
    "label", "method", "sparsity", "seed", "status", "test_acc", "best_test_acc", "data_variant",
    "hash", "epochs", "wall_seconds", "reallocations", "code_commit", "code_dirty", "device",
    "torch", "data_checksum", "finished", "precision", "reason",
]  # fmt: skip


def run_row(
    spec: str,
    sparsity: float,
    seed: int,
    cfg: RunConfig | str,
    root,
    loaded: dict | None,
    runtime=None,
) -> dict:
    """One row of a study's run table: a finished run's results, or why there are none.

    With ``loaded`` (a dict that keeps data sets between calls) a missing run is trained, with
    ``runtime`` (default: fp32); without it, it is reported as "not run".
    """
    from dsr.data import DataError
    from dsr.runs import load_run, run, run_dir
    from dsr.train import slow_bf16

    row = dict(label=spec, method=method_name(spec), sparsity=sparsity, seed=seed)
    if isinstance(cfg, str):
        return {**row, "status": "not available", "reason": cfg}
    record = load_run(cfg, root)
    slow = slow_bf16(runtime) if record is None and loaded is not None and runtime else None
    if slow:  # a cpu-profile page on a CPU without bf16 hardware: days instead of hours
        return {**row, "status": "not available", "reason": slow, "hash": cfg.hash}
    if record is None and loaded is not None:
        try:
            kw = {} if runtime is None else {"runtime": runtime}
            record = run(cfg, root, progress=False, data=data_for(cfg, loaded), **kw)
        except DataError as e:  # e.g. no ImageNet folder here
            return {**row, "status": "not available", "reason": str(e)}
    if record is None:
        path = run_dir(cfg, root)
        failed = (path / "failed.json").exists()
        if failed:
            reason = f"diverged: see {path.name}/failed.json"
        else:  # only the default profile gets here: it reads the cache and never trains
            reason = f"not in the run cache (config {cfg.hash}); this profile never trains"
        return {
            **row,
            "status": "failed" if failed else "not run",
            "reason": reason,
            "hash": cfg.hash,
        }
    s = record.summary
    return {
        **row,
        "status": "done",
        "test_acc": s["final_test_acc"],
        "best_test_acc": s["best_test_acc"],
        "epochs": cfg.epochs,
        "reallocations": mask_updates(record),
        **{k: s.get(k) for k in ("data_variant", "hash", "wall_seconds", "code_commit")},
        **{k: s.get(k) for k in ("code_dirty", "device", "torch", "data_checksum", "finished")},
        "precision": s.get("precision", "unrecorded"),
    }


def mask_updates(record) -> int:
    """How many times a finished run changed its masks, from its event log: one per logged
    reallocation, except where an event stands for several (DeepR rewires at every optimizer
    step and logs one event per epoch with its ``iterations``)."""
    return sum(int(e.get("iterations", 1)) for e in record.reallocations())


def data_for(cfg: RunConfig, loaded: dict):
    """The data set of ``cfg``, loaded once per (data set, input shape) and kept in ``loaded``."""
    from dsr.data import load
    from dsr.train import data_shape

    key = (cfg.dataset, data_shape(cfg))
    if key not in loaded:
        loaded[key] = load(*key)
    return loaded[key]


def study(
    profile: str,
    model: str,
    dataset: str,
    methods: str,
    sparsities: str,
    seeds: str,
    runs_root: str = "",
    budget: str = "",
) -> Study:
    """Find (or, outside the ``default`` profile, train) every run of a claim.

    Args:
        profile: ``default`` (committed results, never trains), ``smoke``, ``cpu`` or ``paper``.
        model, dataset: registry names; the protocol is the one of ``model``.
        methods, sparsities, seeds: comma-separated lists (see the module docstring).
        runs_root: the run cache; empty: ``$DSR_RUNS`` or ``data/runs``.
        budget: the budget of the committed runs the ``default`` profile reads (empty:
            ``paper``); ignored by the other profiles.
    """
    if budget and budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r} (known: {', '.join(BUDGETS)})")
    st = Study(
        profile,
        model,
        dataset,
        split(methods),
        split(sparsities, float),
        split(seeds, int),
        Path(runs_root) if runs_root else None,
        committed_budget=budget or "paper",
    )
    loaded: dict | None = {} if st.trains else None
    runtime = st.runtime() if st.trains else None
    rows = [run_row(*p, st.root, loaded, runtime) for p in st.plan()]
    st.runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return st


# --- tables ----------------------------------------------------------------------------------


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
    """The paper's per-run numbers with registry names (``method``, ``model``) beside the
    paper's own (``paper_method``, ``paper_model``)."""
    df = pd.read_csv(PAPER_DIR / file)
    df["paper_model"], df["paper_method"] = df.model, df.method
    df["model"] = df.model.map(lambda m: PAPER_MODELS.get(m, m))
    df["method"] = df.method.map(lambda m: PAPER_METHODS.get(m, m))
    return df


def paper_for(model: str, dataset: str) -> pd.DataFrame:
    """The paper's per-run accuracies for a model and (our) data set; empty if it has none."""
    df = paper_runs()
    return df[(df.model == model) & (df.dataset == PAPER_DATASET.get(dataset, dataset))]


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


# --- verdicts --------------------------------------------------------------------------------


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


def interval_text(low: float, high: float) -> str:
    return "-" if pd.isna(low) else f"[{low:+.2f}, {high:+.2f}]"


def p_text(p: float) -> str:
    return "-" if pd.isna(p) else (f"{p:.3f}" if p >= 0.001 else "< 0.001")


def verdict_beats(st: Study, winner: str, losers: list[str], matching: bool = False) -> Verdict:
    """Does ``winner`` reach a higher mean accuracy than each of ``losers`` at every sparsity
    (``matching``: at least as high, within :data:`dsr.verdicts.MARGIN`)?

    Every comparison made (both methods with finished runs at a sparsity) follows the rule of
    :mod:`dsr.verdicts`: the difference of the means with its 95 % Welch interval, p-values
    Holm-corrected over the comparisons of this verdict, and one of better (or at or above),
    worse, inconclusive; the label is reproduced, not reproduced, inconclusive, or "not run
    here" when no comparison could be made, with the budget and data in brackets where they
    are not the paper's.
    """
    from dsr import verdicts

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
    return Verdict(*label_pairs(pairs, st, what, matching), pairs)


def needed_text(n: int | None) -> str:
    return f"{n} per method" if n else "no number (difference too small or unknown spread)"


def label_pairs(pairs: pd.DataFrame, st: Study, what: str, matching: bool) -> tuple[str, str]:
    """The label and the one-line detail of a verdict's comparisons."""
    from dsr import verdicts

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
    return verdicts.label(list(pairs.outcome)) + qualifier(st), detail


# --- budget and provenance -------------------------------------------------------------------


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
    seeds = f"seeds {','.join(str(s) for s in st.seeds)} (the paper: 5 runs per cell)"
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


def flops_rows(st: Study) -> pd.DataFrame:
    """Each finished run's FLOPs ledger (:func:`dsr.flops.ledger`): label, sparsity, seed, test
    accuracy, training and inference FLOPs, each also as a multiple of the dense network's."""
    from dsr import flops

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


# --- where the parameters go (reallocation logs) ---------------------------------------------


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
    rho = final.numel.corr(final["final density"], method="spearman")
    depth = final.depth.corr(final["final density"], method="spearman")
    label = larger_sparser_label(ok, total)
    detail = (
        f"in {ok} of {total} pairs of tensors of different sizes the larger ends sparser; "
        f"Spearman correlation of tensor size and final density {rho:+.2f}, "
        f"of depth and final density {depth:+.2f}"
    )
    return Verdict(label + qualifier(st), detail, final)


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
        rows.append(
            {
                "seed": seed,
                "larger sparser": held,
                "size pairs": total,
                "size-density rho": round(final.numel.corr(final["final density"], "spearman"), 2),
                "depth-density rho": round(final.depth.corr(final["final density"], "spearman"), 2),
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


# --- ResNet-50 / ImageNet ----------------------------------------------------------------------


def imagenet_table() -> pd.DataFrame:
    """The paper's ResNet-50 / ImageNet table with each row's version and how it was checked;
    rows marked UNVERIFIED in ``data/paper/README.md`` keep that mark in a column of their own."""
    df = paper_runs("dsr_paper_imagenet.csv")
    df["checked"] = df.source_check.map(lambda s: "UNVERIFIED" if "UNVERIFIED" in s else "yes")
    cols = ["method", "sparsity", "params", "top1", "top5", "paper_version", "checked"]
    out = df[cols].rename(columns={"paper_version": "version"})
    for col in ("params", "top5"):  # not every row has them
        out[col] = out[col].astype(object).where(out[col].notna(), "-")
    return out


def cluster_commands(model: str, methods: str, sparsities: str, seeds: str, gpus: int) -> str:
    """The shell commands that train a model's runs at the paper's budget, one per run, each
    on ``gpus`` GPUs of one node with torchrun; a comment line if the package lacks the model."""
    if not model_available(model):
        return f"# {model} is not in this version of dsr.models: no command to give yet"
    protocol = protocol_for(model)
    lines = [
        f"torchrun --nproc_per_node={gpus} -m dsr train --protocol {protocol} --budget paper "
        f"--method {m} --sparsity {0.0 if m == 'dense' else s:g} --seed {seed} --device cuda"
        for m in split(methods)
        for s in ([0.0] if m == "dense" else split(sparsities, float))
        for seed in split(seeds, int)
    ]
    return "\n".join(lines)


def imagenet_summary(table: pd.DataFrame, st: Study) -> dict[str, str]:
    """Notebook 5's row of the summary table: the paper's checked rows only (the ICLR-2019
    submission's Table 2; top-1, one run each) and our runs, at the study's highest sparsity."""
    s = max(st.sparsities)
    ok = table[(table.checked == "yes") & (table.sparsity == s)].set_index("method")
    ours = summarize(st)
    ours = ours[(ours.sparsity == s) & (ours.runs > 0)].set_index("method")
    ran = {"dsr", "static"} <= set(ours.index)
    return summary_cells(
        "",
        f"{ok.top1['dsr']} vs {ok.top1['static']} (top-1, one run each)",
        pair_text(ours.reset_index(), "dsr", "static", s) if ran else "not run here",
        scope_text(st, s) if ran else "ResNet-50 / ImageNet: not run here",
        verdict_beats(st, "dsr", ["static"]).label,
    )


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


def model_available(model: str) -> bool:
    """Whether this version of the package has the model and a protocol for it."""
    from dsr.models import MODELS

    return model in MODELS and any(p["model"] == model for p in PROTOCOLS.values())


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
