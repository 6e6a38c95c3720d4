"""dsr.results: tables from the run cache and from data/paper, verdicts, provenance."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dsr import claims, density, results
from dsr.results import RUN_COLUMNS, ResultsError, Study


def fake(rows: list[tuple], profile: str = "default") -> Study:
    """A study of LeNet / MNIST whose run table is ``rows`` of (label, sparsity, seed, acc,
    variant[, precision]); no run cache involved. Precision: fp32 unless a row names one."""
    st = Study(profile, "lenet300", "mnist", [], sorted({r[1] for r in rows}), [0, 1])
    st.methods = list(dict.fromkeys(r[0] for r in rows))
    table = [
        dict(label=lab, method=lab, sparsity=s, seed=seed, status="done", test_acc=acc,
             data_variant=var, epochs=100, wall_seconds=10.0, reallocations=5,
             precision=(*more, "fp32")[0])
        for lab, s, seed, acc, var, *more in rows
    ]  # fmt: skip
    st.runs = pd.DataFrame(table, columns=RUN_COLUMNS)
    return st


def test_summary_is_mean_and_sample_std_over_seeds():
    """summarize() gives the mean and the sample standard deviation (ddof 1) per cell."""
    st = fake([("dsr", 0.9, 0, 98.0, "mnist"), ("dsr", 0.9, 1, 98.4, "mnist")])
    row = results.summarize(st).iloc[0]
    assert (row.runs, row.seeds, round(row["mean"], 6)) == (2, "0,1", 98.2)
    assert row["std"] == pytest.approx(0.2828427, abs=1e-6)
    assert row.accuracy == "98.20 ± 0.28"


def test_mixing_data_variants_is_refused_in_one_line():
    """Runs on two data variants cannot be summarised together: a one-line ResultsError."""
    st = fake([("dsr", 0.9, 0, 98.0, "mnist"), ("dsr", 0.9, 1, 60.0, "synthetic")])
    with pytest.raises(ResultsError, match="^cannot mix data variants mnist and synthetic") as e:
        results.summarize(st)
    assert "\n" not in str(e.value)


def test_mixing_precisions_is_refused_by_every_comparison():
    """A bf16 run beside fp32 runs: the summary, the verdict and the budget line refuse to
    compare them (one line, with the count of each); one precision passes and is stated."""
    rows = [("dsr", 0.9, 0, 98.0, "mnist"), ("static", 0.9, 0, 97.0, "mnist")]
    mixed = fake(rows + [("dsr", 0.9, 1, 98.4, "mnist", "bf16-autocast")])
    match = "^cannot compare runs of different precision in one comparison: 1 bf16-autocast, 2 fp32"
    for build in (
        results.summarize,
        lambda st: results.verdict_beats(st, "dsr", ["static"]),
        results.budget_text,
    ):
        with pytest.raises(ResultsError, match=match) as e:
            build(mixed)
        assert "\n" not in str(e.value)
    one = fake([(*r, "bf16-autocast") for r in rows])
    assert one.precision() == "bf16-autocast"
    assert ", paper budget, bf16-autocast, seeds" in results.budget_text(one)
    assert results.verdict_beats(one, "dsr", ["static"]).label == "inconclusive"  # 1 vs 1


def test_budget_text_names_the_seeds_planned_and_those_finished():
    """The budget line names the study's seeds, and which of them finished when not all did."""
    rows = [("dsr", 0.9, 0, 98.0, "mnist"), ("static", 0.9, 0, 97.0, "mnist")]
    st = fake(rows)  # planned seeds 0,1; only seed 0 finished
    expected = "seeds 0,1 planned, finished runs for seed 0 (the paper: 5 runs per cell)"
    assert expected in results.budget_text(st)
    st = fake(rows + [("dsr", 0.9, 1, 98.1, "mnist")])
    assert "seeds 0,1 (the paper: 5 runs per cell)" in results.budget_text(st)


@pytest.mark.parametrize(
    "static, label, outcome",
    [
        ((96.9, 97.0, 97.1), "reproduced", "better"),
        ((97.9, 98.2, 98.5), "inconclusive", "inconclusive"),
        ((99.0, 99.1, 99.2), "not reproduced", "worse"),
    ],
)
def test_verdict_rests_on_the_welch_interval_of_the_difference(static, label, outcome):
    """dsr 98.0 / 98.2 / 98.4 against static: better when the 95 % interval of the difference
    lies above 0, worse below, inconclusive when it contains 0."""
    rows = [("dsr", 0.9, i, a, "mnist") for i, a in enumerate((98.0, 98.2, 98.4))]
    rows += [("static", 0.9, i, a, "mnist") for i, a in enumerate(static)]
    v = results.verdict_beats(fake(rows), "dsr", ["static"])
    assert v.label == label and list(v.pairs.outcome) == [outcome]
    low, high = (float(x) for x in v.pairs["95 % CI"][0].strip("[]").split(","))
    assert (low > 0) == (outcome == "better") and (high < 0) == (outcome == "worse")
    assert (v.pairs["seeds to resolve"][0] != "") == (outcome == "inconclusive")


def test_summary_row_shows_the_highest_sparsity_where_both_methods_ran():
    """The summary's "ours" compares the two methods where both finished (0.9 here), not at a
    higher sparsity where one of them is missing; with neither anywhere it says so."""
    rows = [("dsr", 0.9, 0, 98.5, "mnist"), ("set", 0.9, 0, 98.4, "mnist")]
    rows += [("dsr", 0.99, 0, 97.7, "mnist")]
    st = fake(rows)
    verdict = results.verdict_beats(st, "dsr", ["set"])
    row = results.summary_row(st, verdict, "dsr", "set")
    assert row["summary_ours"] == "98.50 (1 run) vs 98.40 (1 run)"
    assert row["summary_scope"].endswith("s = 0.9 \u00b7 1 run each")  # where both ran
    assert row["summary_paper"] == "not in the paper"  # no SET runs on LeNet-300-100 there
    assert results.summary_row(st, verdict, "dsr", "deepr")["summary_ours"] == "not run here"
    st = fake(rows + [("dsr", 0.9, 1, 98.3, "mnist")])
    row = results.summary_row(st, verdict, "dsr", "set")
    assert row["summary_ours"] == "98.40 vs 98.40 (1 run)"
    assert row["summary_scope"].endswith("2 and 1 runs")


def test_a_verdict_badge_carries_its_meaning_in_a_symbol_and_its_scope_in_brackets():
    b = results.badge("reproduced (cpu budget, on cifar10-jpeg)")
    assert 'class="verdict verdict-yes"' in b and "\u2713 reproduced</span>" in b
    assert '<span class="verdict-note">(cpu budget, on cifar10-jpeg)</span>' in b
    assert "verdict-no" in results.badge("not reproduced") and "\u2717" in results.badge(
        "not reproduced"
    )
    assert "verdict-open" in results.badge("inconclusive (smoke budget)")
    assert "verdict-none" in results.badge("not run here")


def test_matches_or_beats_is_non_inferiority_within_the_margin():
    """dsr against pruning at three sparsities, three seeds each: clearly above; 0.05 points
    below with a spread of 0.02 (inside the 0.3-point margin: "at or above"); 1 point below
    ("worse"). "above" holds once, "at or above" twice; one significant loss: not reproduced."""
    rows = []
    for s, dsr_acc, pruning_acc in ((0.9, 98.0, 97.0), (0.95, 98.0, 98.05), (0.99, 97.0, 98.0)):
        rows += [("dsr", s, seed, dsr_acc + seed / 50, "mnist") for seed in (0, 1, 2)]
        rows += [("pruning", s, seed, pruning_acc + seed / 50, "mnist") for seed in (0, 1, 2)]
    st = fake(rows)
    beats = results.verdict_beats(st, "dsr", ["pruning"])
    matches = results.verdict_beats(st, "dsr", ["pruning"], matching=True)
    assert list(beats.pairs.outcome) == ["better", "worse", "worse"]
    assert list(matches.pairs.outcome) == ["at or above", "at or above", "worse"]
    assert matches.label == beats.label == "not reproduced"
    assert matches.detail.startswith("dsr at or above pruning: 2 of 3 comparisons at or above")
    assert "margin 0.3 points" in matches.detail
    near = fake([r for r in rows if r[1] == 0.95])
    assert results.verdict_beats(near, "dsr", ["pruning"]).label == "not reproduced"
    assert results.verdict_beats(near, "dsr", ["pruning"], matching=True).label == "reproduced"


def test_holm_correction_can_turn_a_lone_win_inconclusive():
    """A difference with p between 0.01 and 0.05 is better alone, inconclusive among four
    comparisons (Holm multiplies the smallest p by 4)."""
    dsr = [("dsr", 0.9, i, a, "mnist") for i, a in enumerate((98.0, 98.3, 98.6))]
    static = [("static", 0.9, i, a, "mnist") for i, a in enumerate((97.2, 97.5, 97.8))]
    alone = results.verdict_beats(fake(dsr + static), "dsr", ["static"])
    p_alone = float(alone.pairs["p (Holm)"][0])
    assert list(alone.pairs.outcome) == ["better"] and 0.01 < p_alone < 0.05
    others = [
        (m, 0.9, i, a, "mnist")
        for m in ("set", "deepr", "rigl")
        for i, a in enumerate((97.3, 98.3, 99.3))
    ]
    losers = ["static", "set", "deepr", "rigl"]
    four = results.verdict_beats(fake(dsr + static + others), "dsr", losers)
    assert list(four.pairs.outcome) == ["inconclusive"] * 4
    assert float(four.pairs["p (Holm)"][0]) == pytest.approx(min(1.0, 4 * p_alone), rel=1e-2)
    assert four.label == "inconclusive"


def test_one_significant_loss_makes_the_claim_not_reproduced():
    """Better than static, worse than thin_dense: not reproduced, whatever the other says."""
    rows = [("dsr", 0.9, s, 98.0 + s / 10, "mnist") for s in (0, 1, 2)]
    rows += [("static", 0.9, s, 97.0 + s / 10, "mnist") for s in (0, 1, 2)]
    rows += [("thin_dense", 0.9, s, 98.8 + s / 10, "mnist") for s in (0, 1, 2)]
    v = results.verdict_beats(fake(rows), "dsr", ["static", "thin_dense"])
    assert v.label == "not reproduced"
    assert list(v.pairs.outcome) == ["better", "worse"]


def test_a_baseline_with_no_runs_keeps_the_claim_from_reproduced():
    """DSR clearly above static, thin_dense never run: the claim against both is inconclusive,
    and the detail names the baseline not run; once thin_dense ran below DSR, reproduced."""
    rows = [("dsr", 0.9, s, 98.0 + s / 10, "mnist") for s in (0, 1, 2)]
    rows += [("static", 0.9, s, 97.0 + s / 10, "mnist") for s in (0, 1, 2)]
    v = results.verdict_beats(fake(rows), "dsr", ["static", "thin_dense"])
    assert list(v.pairs.outcome) == ["better"]
    assert v.label == "inconclusive"
    assert v.detail.endswith("; thin_dense not run here, so the claim cannot be called reproduced")
    assert results.verdict_beats(fake(rows), "dsr", ["static"]).label == "reproduced"
    rows += [("thin_dense", 0.9, s, 96.0 + s / 10, "mnist") for s in (0, 1, 2)]
    both = results.verdict_beats(fake(rows), "dsr", ["static", "thin_dense"])
    assert both.label == "reproduced" and "not run here" not in both.detail


def test_verdict_names_a_budget_other_than_the_papers():
    """A verdict at the smoke budget says so."""
    rows = [("dsr", 0.9, s, 90.0 + s, "mnist") for s in (0, 1)]
    rows += [("static", 0.9, s, 80.0 + s, "mnist") for s in (0, 1)]
    v = results.verdict_beats(fake(rows, profile="smoke"), "dsr", ["static"])
    assert v.label == "reproduced (smoke budget)"


def test_a_comparison_with_a_single_run_on_a_side_is_inconclusive():
    """Two dsr runs against one static run: no spread on that side, no interval: inconclusive,
    and the detail says why; with two static runs the same gap is better."""
    rows = [("dsr", 0.9, seed, 98.0 + seed / 10, "mnist") for seed in (0, 1)]
    one = fake(rows + [("static", 0.9, 0, 97.0, "mnist")], profile="smoke")
    v = results.verdict_beats(one, "dsr", ["static"])
    assert v.label == "inconclusive (smoke budget)"
    assert list(v.pairs.runs) == ["2 vs 1"] and list(v.pairs["95 % CI"]) == ["-"]
    assert v.detail.endswith("1 with a single run on a side, whose spread is unknown")
    two = fake(rows + [("static", 0.9, seed, 97.0 + seed / 10, "mnist") for seed in (0, 1)])
    assert results.verdict_beats(two, "dsr", ["static"]).label == "reproduced"


def test_cifar10_jpeg_is_labelled_and_never_subtracted_from_the_paper():
    """versus_paper on cifar10-jpeg labels our columns with the variant and has no difference."""
    st = fake([("dsr", 0.9, 0, 90.0, "cifar10-jpeg")])
    st.model, st.dataset = "wrn28_2", "cifar10-jpeg"
    table = results.versus_paper(st)
    assert "ours (cifar10-jpeg, paper budget): mean ± std" in table.columns
    assert "paper (cifar10): mean ± std" in table.columns
    assert "ours - paper" not in table.columns


def test_paper_numbers_are_five_runs_per_cell_with_registry_names():
    """The paper's LeNet table: 3 methods x 6 sparsities x 5 runs; compressed is pruning."""
    paper = results.paper_for("lenet300", "mnist")
    assert len(paper) == 90
    assert set(paper.method) == {"dsr", "static", "pruning"}
    assert set(paper.groupby(["method", "sparsity"]).size()) == {5}


def test_imagenet_table_keeps_the_unverified_mark():
    """Every ICML-2019 row of the ImageNet table is marked UNVERIFIED, and only those."""
    table = results.imagenet_table()
    assert set(table[table.checked == "UNVERIFIED"].version) == {"ICML2019"}
    assert (table.version == "ICML2019").sum() == (table.checked == "UNVERIFIED").sum() == 8


def test_default_profile_never_trains(isolated_cache):
    """At the default profile a missing run is 'not run' and the run cache stays empty."""
    st = results.study("default", "lenet300", "synthetic", "dsr,dense", "0.9", "0")
    assert list(st.runs.status) == ["not run", "not run"]
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())


def test_default_profile_reads_the_committed_budget_it_is_given(isolated_cache):
    """budget="cpu" makes the default profile look up the cpu-budget configs (never training);
    a training profile keeps its own budget; an unknown budget is a one-line ConfigError."""
    from dsr.config import ConfigError, preset

    args = ("wrn28_2", "cifar10-jpeg", "dsr", "0.9", "0")
    st = results.study("default", *args, budget="cpu")
    want = preset("wrn28_2-cifar10", "cpu", method="dsr", dataset="cifar10-jpeg", seed=0)
    assert st.budget == "cpu" and list(st.runs.hash) == [want.hash]
    assert list(st.runs.status) == ["not run"]
    assert results.study("default", *args).budget == "paper"
    assert results.Study("smoke", *args[:2], [], [], [], committed_budget="cpu").budget == "smoke"
    with pytest.raises(ConfigError, match="^unknown budget 'weekly'"):
        results.study("default", *args, budget="weekly")


def test_a_method_missing_from_the_registry_is_not_available():
    """A method this version lacks is reported, with its reason, and not planned."""
    st = results.study("default", "lenet300", "synthetic", "dsr,nosuchmethod", "0.9", "0")
    row = st.runs[st.runs.label == "nosuchmethod"].iloc[0]
    assert row.status == "not available"
    assert "not available in this version" in row.reason


@pytest.fixture(scope="module")
def smoke_dsr(tmp_path_factory) -> Study:
    """Two tiny DSR runs (smoke budget, synthetic data) trained into a fresh cache."""
    root = tmp_path_factory.mktemp("runs")
    return results.study("smoke", "lenet300", "synthetic", "dsr", "0.9", "0,1", str(root))


def test_smoke_profile_trains_missing_runs_and_records_provenance(smoke_dsr):
    """Both seeds are trained; provenance names each run's hash, seed and data variant."""
    prov = results.provenance(smoke_dsr)
    assert list(smoke_dsr.runs.status) == ["done", "done"]
    assert list(prov.seed) == [0, 1]
    assert [d.split()[0] for d in prov.data] == ["synthetic", "synthetic"]
    assert list(prov["config hash"]) == list(smoke_dsr.runs.hash)


def test_provenance_of_two_studies_lists_each_run_once(smoke_dsr):
    """A second study sharing a run (seed 1) adds only its other run (seed 2), after the
    first study's."""
    other = results.study("smoke", "lenet300", "synthetic", "dsr", "0.9", "1,2", smoke_dsr.root)
    prov = results.provenance(smoke_dsr, other)
    assert list(prov.seed) == [0, 1, 2]
    assert list(prov["config hash"]) == [*smoke_dsr.runs.hash, other.runs.hash.iloc[1]]


def test_density_log_conserves_the_non_zero_count(smoke_dsr):
    """Per-tensor active counts read from the log sum to the same total after every update,
    starting from the initial uniform density."""
    over = results.density_over_training(smoke_dsr.record("dsr", 0.9, 0))
    totals = over.groupby("step").active.sum()
    assert len(totals) > 1 and totals.nunique() == 1
    start = over[over.step == 0]
    assert list((start.active / start.numel).round(2)) == [0.1, 0.1, 0.1]


def test_final_density_matches_the_summary(smoke_dsr):
    """The final per-tensor densities are the run summary's, and the last logged ones."""
    record = smoke_dsr.record("dsr", 0.9, 0)
    final = results.final_density(record)
    over = results.density_over_training(record)
    last = over[over.step == over.step.max()].active.tolist()
    assert final.active.tolist() == last
    assert final.tensor.tolist() == ["fc1", "fc2", "fc3"]


def crafted_final(densities: list[float]) -> pd.DataFrame:
    """A final-density table of three tensors of 100, 10 and 1 weights."""
    return pd.DataFrame(
        {"tensor": ["a", "b", "c"], "depth": [0, 1, 2], "shape": ["100", "10", "1"],
         "numel": [100, 10, 1], "active": [0, 0, 0], "initial density": [0.2] * 3,
         "final density": densities}
    )  # fmt: skip


@pytest.mark.parametrize(
    "second, label, held",
    [
        ([0.1, 0.2, 0.3], "reproduced", 6),  # both runs: every larger tensor sparser
        ([0.1, 0.3, 0.2], "partly reproduced", 5),  # 2 of 3 pairs in one run: 5 of 6 held
        ([0.3, 0.2, 0.1], "not reproduced", 3),  # 3 of 6: not more than half
    ],
)
def test_density_over_seeds_needs_every_run_for_reproduced(
    smoke_dsr, monkeypatch, second, label, held
):
    """One row per finished seed with its pairs held; "reproduced" only when every run holds
    every size pair, "partly" when more than half of all pairs hold."""
    finals = iter([crafted_final([0.1, 0.2, 0.3]), crafted_final(second)])
    monkeypatch.setattr(density, "final_density", lambda record, over=None: next(finals))
    v = results.density_over_seeds(smoke_dsr, "dsr", 0.9)
    assert list(v.pairs.seed) == [0, 1]
    assert v.pairs["size pairs"].tolist() == [3, 3]
    assert v.pairs["larger sparser"].sum() == held
    assert v.label.split(" (")[0] == label
    assert f"{held} of 6 size pairs" in v.detail


def test_density_spread_is_over_the_seeds_runs(smoke_dsr):
    """Per tensor: the number of runs, the mean of their final densities, lowest and highest."""
    spread = results.density_spread(smoke_dsr, "dsr", 0.9)
    finals = [results.final_density(smoke_dsr.record("dsr", 0.9, s)) for s in (0, 1)]
    assert spread.tensor.tolist() == ["fc1", "fc2", "fc3"]
    assert spread.runs.tolist() == [2, 2, 2]
    for i, row in spread.iterrows():
        values = [f["final density"].iloc[i] for f in finals]
        assert row["final density"].startswith(f"{sum(values) / 2:.4f} ± ")
        assert row.lowest == round(min(values), 4) and row.highest == round(max(values), 4)


def test_output_connections_count_classes_with_an_incoming_weight(smoke_dsr, tmp_path):
    """Per seed: the last sparse tensor's active weights (the summary's count) and its output
    units with at least one; a run whose fc3 mask keeps a single row connects 1 of 10."""
    import shutil

    import numpy as np

    table = results.output_connections(smoke_dsr, ["dsr"])
    assert list(table.tensor) == ["fc3"] and list(table.sparsity) == [0.9]
    active = [
        smoke_dsr.record("dsr", 0.9, seed).summary["density"]["tensors"][-1]["active"]
        for seed in (0, 1)
    ]
    assert table["active weights"].iloc[0] == f"{active[0]}, {active[1]}"
    assert table["outputs connected"].iloc[0].endswith(" of 10")
    # the same run with every fc3 weight but those of class 3 masked off
    record = smoke_dsr.record("dsr", 0.9, 0)
    root = tmp_path / "runs"
    shutil.copytree(record.path, root / record.path.name)
    masks = {n: m.numpy() for n, m in record.final_masks().items()}
    masks["fc3"][:] = False
    masks["fc3"][3, :7] = True
    packed = {n: np.packbits(m.ravel()) for n, m in masks.items()}
    shapes = json.dumps({n: list(m.shape) for n, m in masks.items()})
    np.savez(root / record.path.name / "masks_final.npz", __shapes__=shapes, **packed)
    st = results.study("default", "lenet300", "synthetic", "dsr", "0.9", "0", str(root))
    st.runs = smoke_dsr.runs.iloc[:1]  # the smoke run, read from the copy
    st.committed_budget = "smoke"
    row = results.output_connections(st, ["dsr"]).iloc[0]
    assert (row["active weights"], row["outputs connected"]) == ("7", "1 of 10")
    assert results.classes_connected(st, "dsr", 0.9) == "1 of 10"


def test_a_verdict_says_where_a_baseline_left_classes_unconnected(monkeypatch):
    """Beside each LeNet-300-100 comparison, the fewest classes each side keeps connected; the
    detail names the comparisons where a side cut some off."""
    rows = [("dsr", s, i, 98.0 + i / 10, "mnist") for s in (0.9, 0.99) for i in (0, 1, 2)]
    rows += [("static", s, i, 97.0 + i / 10, "mnist") for s in (0.9, 0.99) for i in (0, 1, 2)]
    cut = {("static", 0.99): "6 of 10"}
    monkeypatch.setattr(claims, "classes_connected", lambda st, m, s: cut.get((m, s), "all"))
    v = results.verdict_beats(fake(rows), "dsr", ["static"])
    assert list(v.pairs["classes connected"]) == ["all / all", "all / 6 of 10"]
    assert "in 1 of them a run leaves classes without an incoming weight (static at s = 0.99)" in (
        v.detail
    )


def test_wall_time_is_median_and_range_of_the_methods_runs_per_device():
    """dsr runs of 100, 120 and 1000 s on a CPU and one of 30 s on a GPU: "median 120 s per run
    (100-1000 s, 3 runs on <cpu>); 30 s per run (1 run on <gpu>)", never one value over both
    devices, and the one slow run does not move the median."""
    st = fake([("dsr", 0.9, seed, 98.0, "mnist") for seed in range(4)])
    cpu, gpu = "cpu (x86_64, 1 threads)", "cuda (NVIDIA H200)"
    st.runs = st.runs.assign(wall_seconds=[100.0, 1000.0, 120.0, 30.0], device=[cpu, cpu, cpu, gpu])
    assert results.wall_time(st, "dsr") == (
        f"median 120 s per run (100-1000 s, 3 runs on {cpu}); 30 s per run (1 run on {gpu})"
    )
    st.runs = st.runs.iloc[:2]
    assert results.wall_time(st, "dsr") == f"median 550 s per run (100-1000 s, 2 runs on {cpu})"
    assert results.wall_time(st, "static") == "not run here"


def test_cost_table_is_per_method_and_device():
    """Two CPU runs (10 and 30 s per epoch) and one GPU run (1 s) of dsr: one row per device
    with the median and range, never one value over both; mask updates per epoch exact."""
    st = fake([("dsr", 0.9, seed, 98.0, "mnist") for seed in range(3)])
    cpu, gpu = "cpu (x86_64, 1 threads)", "cuda (NVIDIA H200)"
    st.runs = st.runs.assign(
        wall_seconds=[1000.0, 3000.0, 100.0], device=[cpu, cpu, gpu], reallocations=[270] * 3
    )
    table = results.cost_table(st)
    assert table.device.tolist() == [cpu, gpu]
    assert table.runs.tolist() == [2, 1]
    assert table["seconds per epoch"].tolist() == ["20.00 (10.00-30.00)", "1.00"]
    assert table["mask updates per epoch"].tolist() == ["2.7", "2.7"]


def test_versus_paper_tests_the_difference_of_means_with_welch():
    """Beside the paper's five dsr 0.9 runs, two of ours: the difference of the means and
    Welch's two-sided p-value (scipy's value, checked against the formula here); one run of
    ours gives no p-value."""
    from scipy import stats

    paper = results.paper_for("lenet300", "mnist")
    paper = paper[(paper.method == "dsr") & (paper.sparsity.round(4) == 0.9)].test_accuracy
    ours = [97.0, 97.2]
    row = results.versus_paper(fake([("dsr", 0.9, i, a, "mnist") for i, a in enumerate(ours)]))
    row = row.iloc[0]
    assert row["ours - paper"] == f"{sum(ours) / 2 - paper.mean():+.2f}"
    a, b = pd.Series(ours), paper
    va, vb = a.var() / len(a), b.var() / len(b)
    t = (a.mean() - b.mean()) / (va + vb) ** 0.5
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = 2 * stats.t.sf(abs(t), dof)
    assert row["p (Welch)"] == (f"{p:.3f}" if p >= 0.001 else "< 0.001")
    assert 0.001 < p < 0.05  # 97.1 ± 0.14 (2 runs) against the paper's 98.44 ± 0.10 (5 runs)
    one = results.versus_paper(fake([("dsr", 0.9, 0, 98.4, "mnist")])).iloc[0]
    assert one["p (Welch)"] == "-"


def test_larger_sparser_compares_only_tensors_of_different_sizes():
    """Three tensors of one size whose densities differ (as in a WRN stage) and a larger,
    sparser one: 3 of 3 size pairs hold, "reproduced", though the rank correlation with size
    is not -1; a larger tensor that ends denser than one smaller tensor: 2 of 3, "partly"."""
    st = fake([("dsr", 0.9, 0, 98.0, "mnist")])

    def final(densities: list[float], sizes: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {"numel": sizes, "final density": densities, "depth": range(len(sizes))}
        )

    tied = final([0.20, 0.15, 0.18, 0.10], [100, 100, 100, 400])
    v = results.verdict_larger_sparser(tied, st)
    assert results.size_pairs(tied) == (3, 3)
    assert v.label == "reproduced"
    assert tied.numel.corr(tied["final density"], method="spearman") > -1 + 1e-6
    assert v.detail.startswith("in 3 of 3 pairs of tensors of different sizes")
    mixed = final([0.20, 0.18, 0.10, 0.15], [100, 100, 100, 400])
    assert results.size_pairs(mixed) == (2, 3)
    assert results.verdict_larger_sparser(mixed, st).label == "partly reproduced"
    same = final([0.2, 0.1], [100, 100])
    assert results.verdict_larger_sparser(same, st).label == "not run here"


def test_a_length_multiplier_doubles_epochs_and_learning_rate_boundaries_only():
    """static_replica:fresh@2x: 200 epochs, drops at 50/100/150, the same DSR source run as the
    1x replica; refused for a method the ICML runs did not lengthen, and when malformed."""
    from dsr.methods import METHODS

    base = {"protocol": "lenet300-mnist", "budget": "paper", "fields": {}}
    one = results.method_config(base, "static_replica:fresh", 0.9, 1)
    two = results.method_config(base, "static_replica:fresh@2x", 0.9, 1)
    assert (two.epochs, two.lr_schedule) == (200, "0:0.1,50:0.02,100:0.004,150:0.0008")
    assert (two.source_epochs, two.source_lr_schedule) == (100, one.lr_schedule)  # DSR's
    same = dict(epochs=one.epochs, lr_schedule=one.lr_schedule, source_epochs=0)
    assert two.replace(**same, source_lr_schedule="") == one
    assert METHODS["static_replica"].dependencies(two) == METHODS["static_replica"].dependencies(
        one
    )
    assert results.method_name("static_replica:fresh@2x") == "static_replica"
    for spec, message in (("dsr@2x", "applies to static"), ("static@x2", "expected @Nx")):
        with pytest.raises(results.ConfigError, match=message):
            results.method_config(base, spec, 0.9, 0)


def test_mask_updates_count_deeprs_per_step_rewiring_not_its_per_epoch_log_entries():
    class Record:
        def __init__(self, events):
            self.events = events

        def reallocations(self):
            return self.events

    deepr = Record([{"epoch": e, "iterations": 600, "pruned": 5} for e in range(3)])
    dsr = Record([{"epoch": 0, "pruned": 5}, {"epoch": 0, "pruned": 4}])
    assert results.mask_updates(deepr) == 1800 and results.mask_updates(dsr) == 2


@pytest.mark.parametrize("method", ["dsr", "set", "snfs", "rigl", "deepr", "pruning"])
def test_density_over_training_reads_every_methods_event_log(method):
    """Notebook 4 draws any method: the density at step 0 comes out of each method's own
    event shape (the committed run of each method at s = 0.9 where there is one)."""
    from dsr.config import preset
    from dsr.data import PROJECT
    from dsr.runs import load_run

    cfg = preset("lenet300-mnist", "paper", method=method, sparsity=0.9, seed=0)
    record = load_run(cfg, PROJECT / "data" / "runs")
    assert record is not None, f"the committed {method} run at s = 0.9, seed 0 is missing"
    over = results.density_over_training(record)
    start = over[over.step == 0]
    numel = {t["name"]: t["numel"] for t in record.summary["density"]["tensors"]}
    assert list(start.tensor) == list(numel)
    assert all(0 < a <= numel[t] for t, a in zip(start.tensor, start.active))
    if method != "pruning":  # a sparse start at 1 - s overall
        total = sum(numel.values())
        assert abs(start.active.sum() / total - 0.1) < 0.002


def windows_study(acc) -> Study:
    """Fake DSR runs at s = 0.9, seeds 0-2, in the official window (epochs 0-90), three that
    stop early (10, 25, 50) and two that start late (25, 50: 65 and 40 epochs), each run's
    accuracy ``acc(epochs with reallocation, seed)``."""
    specs = {
        "dsr": 90, "dsr:realloc_stop=10": 10, "dsr:realloc_stop=25": 25,
        "dsr:realloc_stop=50": 50, "dsr:realloc_start=25": 65, "dsr:realloc_start=50": 40,
    }  # fmt: skip
    st = fake(
        [
            (spec, 0.9, seed, acc(n, seed), "mnist")
            for spec, n in specs.items()
            for seed in (0, 1, 2)
        ]
    )
    st.seeds = [0, 1, 2]
    return st


def test_the_exploration_trend_is_the_slope_per_series_with_the_official_window_in_both():
    """Accuracy exactly linear in the epochs explored (0.01 points per epoch, one seed offset
    by +-0.05): each series' slope is 0.1 points per 10 epochs, its interval around it, the
    official runs counted in both series."""
    st = windows_study(lambda n, seed: 97.0 + 0.01 * n + 0.05 * (seed - 1))
    fits = results.exploration_fits(st)
    assert list(fits.windows) == ["stops early", "starts late"]
    assert [list(e) for e in fits.explored] == [[10, 25, 50, 90], [40, 65, 90]]
    assert list(fits.runs) == [12, 9]
    assert fits.slope.tolist() == pytest.approx([0.1, 0.1])
    assert all(fits.low < 0.1) and all(fits.high > 0.1) and all(fits.p_holm < 0.001)
    text = results.exploration_trend_text(st)
    assert text.startswith("accuracy rises with the epochs of reallocation in 2 of 2 series")
    shown = results.exploration_trend(st)
    assert list(shown["slope (points per 10 epochs)"]) == ["+0.100", "+0.100"]


def test_an_exploration_trend_that_falls_or_is_flat_is_said_so():
    """Late-starting windows better than the official one, early-stopping ones no different."""
    noise = {0: -0.1, 1: 0.0, 2: 0.1}
    st = windows_study(
        lambda n, seed: 97.0 + noise[seed] + (0.02 * (90 - n) if n in (40, 65) else 0)
    )
    fits = results.exploration_fits(st)
    assert fits.slope.iloc[0] == pytest.approx(0.0, abs=1e-9) and fits.p_holm.iloc[0] > 0.05
    assert fits.slope.iloc[1] < 0 and fits.p_holm.iloc[1] < 0.05
    assert results.exploration_trend_text(st) == (
        "accuracy rises with the epochs of reallocation in 0 of 2 series of windows, falls in 1, "
        "and neither is resolved in 1"
    )


def test_without_two_window_lengths_there_is_no_trend():
    st = fake([("dsr", 0.9, seed, 98.0 + seed / 10, "mnist") for seed in (0, 1, 2)])
    assert results.exploration_fits(st).empty
    assert results.exploration_trend(st).empty
    assert results.exploration_trend_text(st).startswith("no series of windows")
