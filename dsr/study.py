"""Which runs a page needs, and where they are: a :class:`Study` names the runs of one claim
(methods x sparsities x seeds of one protocol at one budget) and :func:`study` finds them in
the run cache (training the missing ones only where the profile allows it).

Profiles (the notebooks' ``profile`` parameter):

* ``default``: the paper's protocol, read from the committed run cache; never trains. A run that
  is not there is shown as "not run" (the paper's budget takes hours per run on a CPU).
* ``smoke``, ``cpu``, ``paper``: that budget of :data:`dsr.config.BUDGETS`; runs missing from the
  cache are trained first, in this process.

A notebook's ``budget`` parameter names another budget for the ``default`` profile to read
(WRN-28-2's committed runs are at the ``cpu`` budget); the other profiles ignore it and run at
their own budget.

Methods are named as in :data:`dsr.methods.METHODS`, optionally with a variant,
``name:value``, which sets the method's variant field (its ``variant_field``), e.g.
``static_replica:source``, or with fields, ``name:field=value`` (the ablations). A method that
this version of the package does not have is reported as "not available" and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dsr.config import BUDGETS, PROTOCOLS, ConfigError, RunConfig, coerce, preset
from dsr.data import PROJECT, DataError, load
from dsr.errors import ResultsError
from dsr.events import active_before, grown_per_tensor  # noqa: F401  (grown_per_tensor: API)
from dsr.methods import METHODS
from dsr.models import MODELS
from dsr.runs import load_run, run, run_dir
from dsr.schedules import Schedule
from dsr.train import data_shape, default_runtime, slow_bf16

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
    "regrowth_seeds": "notebook 7: seeds of part 1 (where regrowth goes)",
    "exploration_seeds": "notebook 7: seeds of part 4 (when exploration matters)",
    "rules_file": "notebook 7: the threshold / top-K timing to read (empty: the committed one)",
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
        if not METHODS[name].variant_field:
            raise ConfigError(f"method {name!r} has no variants")
        overrides[METHODS[name].variant_field] = variant
    args = (base["protocol"], base["budget"])
    cfg = preset(*args, **{**base["fields"], **overrides}, seed=seed)  # the spec wins
    if not length:
        return cfg
    factor = length[:-1]
    if not (length.endswith("x") and factor.isdigit() and int(factor) >= 1):
        raise ConfigError(f"length multiplier {'@' + length!r}: expected @Nx, e.g. @2x")
    if name not in LONGER:
        raise ConfigError(f"a length multiplier applies to {', '.join(LONGER)}, not {name}")
    longer = Schedule.parse(cfg.lr_schedule).scaled(int(factor)).format()
    overrides.update(epochs=cfg.epochs * int(factor), lr_schedule=longer)
    return preset(*args, **{**base["fields"], **overrides}, seed=seed)


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


def model_available(model: str) -> bool:
    """Whether this version of the package has the model and a protocol for it."""
    return model in MODELS and any(p["model"] == model for p in PROTOCOLS.values())
