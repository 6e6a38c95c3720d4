"""The methods' configuration: presets, sources, ERK densities, thin-dense sizing, the CLI."""

from __future__ import annotations

import math
from concurrent.futures import Future

import pytest

from dsr import runs as runs_module
from dsr.__main__ import main
from dsr.config import ConfigError, preset
from dsr.masks import erk_counts, erk_densities
from dsr.methods import METHODS
from dsr.methods.baselines import matched_width, model_counts
from dsr.runs import load_run
from tests.conftest import tiny

LENET = [(300, 784), (100, 300), (10, 100)]


def test_new_fields_keep_the_ids_of_existing_runs():
    """Configs that use none of the new fields hash as they did before those fields existed
    (ids computed with the code before this change)."""
    assert preset("lenet300-mnist", "paper").hash == "21581d2a277c"
    old_cpu_budget = dict(  # WRN-28-2's cpu budget when that id was computed
        epochs=10,
        lr_schedule="0:0.1,3:0.02,6:0.004,8:0.0008",
        realloc_schedule="0:25,1:50,4:100,7:200",
        realloc_stop=9,
    )
    wrn = preset(
        "wrn28_2-cifar10", "paper", method="static", sparsity=0.8, seed=2, **old_cpu_budget
    )
    assert wrn.hash == "559f5d8c3b1e"
    assert preset("lenet300-mnist", "smoke", method="dense", sparsity=0.0).hash == "8fcf298109fd"


def test_pruning_preset_is_the_48_epoch_protocol_from_the_protocols_dense_run():
    """method=pruning gets 48 epochs and the reference's LR; its source is exactly the
    sweep's dense run of the same protocol (same hash)."""
    cfg = preset("lenet300-mnist", "paper", method="pruning", sparsity=0.95)
    assert (cfg.epochs, cfg.lr_schedule) == (48, "0:0,1:0.02,25:0.004,35:0.0008")
    (source,) = METHODS["pruning"].dependencies(cfg)
    assert source == preset("lenet300-mnist", "paper", method="dense", sparsity=0.0)


def test_replica_source_is_the_protocols_dsr_run_also_when_the_replica_trains_longer():
    """The replica's source is the preset's dsr run, at the protocol's epochs even when the
    replica itself is given twice as many."""
    dsr = preset("wrn28_2-cifar10", "paper", method="dsr", sparsity=0.8)
    same = preset("wrn28_2-cifar10", "paper", method="static_replica", sparsity=0.8)
    longer = preset(
        "wrn28_2-cifar10",
        "paper",
        method="static_replica",
        sparsity=0.8,
        epochs=400,
        lr_schedule="0:0.1,120:0.02,220:0.004,350:0.0008",
    )
    assert same.source_epochs == 0 and longer.source_epochs == 200
    assert [METHODS["static_replica"].dependencies(c)[0] for c in (same, longer)] == [dsr, dsr]


def test_deepr_preset_has_the_reference_l1_no_weight_decay_and_a_scaled_temperature():
    """DeepR: L1 1e-5, weight decay 0; the 13-epoch budget shortens the T schedule like LR's
    (boundaries 25, 80, 140 of 200 epochs times 13/200, rounded)."""
    cfg = preset("wrn28_2-cifar10", "cpu", method="deepr")
    assert (cfg.l1, cfg.weight_decay) == (1e-5, 0.0)
    assert cfg.deepr_temperature_schedule == "0:1e-05,2:1e-08,5:1e-12,9:1e-15"


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("sparse_init", "normal", "sparse_init must be"),
        ("set_variant", "x", "set_variant must be"),
        ("deepr_sign_reference", "x", "deepr_sign_reference must be"),
        ("replica_init", "x", "replica_init must be"),
        ("thin_match", "x", "thin_match must be"),
        ("deepr_temperature_schedule", "3:1", "deepr_temperature_schedule: epochs must start"),
        ("rigl_drop_fraction", 0.0, "rigl_drop_fraction"),
        ("snfs_prune_rate", 1.0, "snfs_prune_rate"),
        ("set_zeta", 1.0, "set_zeta"),
    ],
)
def test_bad_method_options_are_one_line_config_errors(field, value, message):
    """Each bad value names its field (methods check their own options)."""
    method = {"rigl_drop_fraction": "rigl", "snfs_prune_rate": "snfs", "set_zeta": "set"}
    with pytest.raises(ConfigError, match=message):
        tiny(**{field: value, "method": method.get(field, "dsr")})


def test_erk_densities_follow_eps_times_sum_over_prod_and_cap_at_one():
    """ERK on LeNet-300-100 at density 0.1: the 100x10 layer is made dense; the others get
    eps (n_in + n_out) / (n_in n_out) with one eps; the mean density is 0.1."""
    d = erk_densities(LENET, 0.1)
    assert d[2] == 1.0
    eps = [di / (sum(s) / math.prod(s)) for di, s in zip(d[:2], LENET[:2])]
    assert eps[0] == pytest.approx(eps[1])
    numels = [math.prod(s) for s in LENET]
    assert sum(di * n for di, n in zip(d, numels)) == pytest.approx(0.1 * sum(numels))


def test_erk_counts_are_exact_and_within_one_of_the_densities():
    """Counts sum to round(density * total), none above its size, each within 1 of its quota."""
    shapes = [(32, 16, 3, 3), (64, 32, 3, 3), (10, 64)]
    counts = erk_counts(shapes, 0.2)
    numels = [math.prod(s) for s in shapes]
    assert sum(counts) == round(0.2 * sum(numels))
    for c, dens, n in zip(counts, erk_densities(shapes, 0.2), numels):
        assert c <= n and abs(c - dens * n) < 1


def test_memory_matched_thin_dense_counts_one_bit_per_mask_position():
    """thin_match=memory sizes the thin network to (non-zeros + positions / 32) parameters,
    within 1 %, wider than the parameter-matched one."""
    full = model_counts("lenet300", 1.0)
    target = round(0.1 * full["sparse_positions"]) + full["dense"] + full["sparse_positions"] / 32
    width = matched_width("lenet300", 0.9, "memory")
    got = model_counts("lenet300", width)["total"]
    assert abs(got - target) / target < 0.01
    assert width > matched_width("lenet300", 0.9, "params")


class InProcessPool:
    """Stands in for the sweep's process pool: runs each job at once in this process."""

    def __init__(self, workers, mp_context=None, initializer=None, initargs=()):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future


def test_sweep_trains_a_pruning_run_and_its_dense_source(tmp_path, monkeypatch):
    """`python -m dsr sweep --methods pruning` (smoke budget) trains the dense source first,
    then the pruning run with the pruning protocol's epochs (jobs run in this process)."""
    monkeypatch.setattr(runs_module, "ProcessPoolExecutor", InProcessPool)
    runs = tmp_path / "runs"
    args = ["sweep", "--methods", "pruning", "--budget", "smoke", "--dataset", "synthetic"]
    args += ["--epochs", "2", "--prune_every", "1", "--prune_times", "2", "--workers", "1"]
    assert main([*args, "--runs-root", str(runs), "--no-progress"]) == 0
    cfg = preset(
        "lenet300-mnist",
        "smoke",
        method="pruning",
        dataset="synthetic",
        epochs=2,
        prune_every=1,
        prune_times=2,
    )
    assert load_run(cfg, runs) is not None
    assert load_run(METHODS["pruning"].dependencies(cfg)[0], runs) is not None


def test_dense_is_one_run_per_seed_whatever_sparsity_is_asked():
    """``--method dense --sparsity 0.9`` is the dense run of the grid (sparsity 0), not another."""
    asked = preset("lenet300-mnist", "paper", method="dense", sparsity=0.9)
    assert asked.sparsity == 0.0
    assert asked == preset("lenet300-mnist", "paper", method="dense", sparsity=0.0)
    assert asked.hash == preset("lenet300-mnist", "paper").replace(method="dense").hash


def test_wrn_cpu_budget_keeps_the_papers_reallocations_per_epoch():
    """WRN-28-2's cpu budget (13 epochs of all 50,000 images, the whole test set): 500 steps
    per epoch as in the paper, so the paper's periods (in steps) are kept and a run reallocates
    as often per epoch as the paper's; every boundary is at the paper's fraction of training
    (13/200 of its epoch, rounded)."""
    paper, cpu = preset("wrn28_2-cifar10", "paper"), preset("wrn28_2-cifar10", "cpu")
    assert (cpu.train_subset, cpu.test_subset, cpu.epochs) == (0, 0, 13)
    assert cpu.realloc_schedule == "0:100,2:200,5:400,9:800"  # paper: 0:100,25:200,80:400,140:800
    assert [round(e * 13 / 200) for e in (25, 80, 140)] == [2, 5, 9]
    assert cpu.lr_schedule == "0:0.1,4:0.02,8:0.004,10:0.0008"  # paper's steps at 60, 120, 160
    assert (paper.realloc_stop, cpu.realloc_stop) == (190, 12)


def test_wrn_pruning_runs_at_the_official_weight_decay_from_the_protocols_dense_run():
    """The official WRN-28-2 pruning commands leave --weight-decay at main.py's 1e-4; the dense
    run they start from trained at 5e-4: the source config is the protocol's dense run."""
    from dsr.methods import METHODS

    for budget in ("paper", "cpu"):
        cfg = preset("wrn28_2-cifar10", budget, method="pruning", sparsity=0.9, seed=1)
        assert (cfg.weight_decay, cfg.source_weight_decay) == (1e-4, 5e-4)
        [source] = METHODS["pruning"].dependencies(cfg)
        assert source == preset("wrn28_2-cifar10", budget, method="dense", seed=1)
    lenet = preset("lenet300-mnist", "paper", method="pruning", sparsity=0.9)
    assert (lenet.weight_decay, lenet.source_weight_decay) == (0.0, -1.0)  # unchanged hashes


def test_sweep_plans_the_runs_a_notebook_reads_from_its_method_specs():
    """``sweep --methods`` takes the notebooks' method specs (variant, field=value, @Nx) and
    plans exactly the configs their studies read, hash for hash; plain names plan as before."""
    from dsr.__main__ import parser, sweep_configs
    from dsr.study import Study

    specs = ["static_replica:source@2x", "dsr:regrowth=within+realloc_stop=25", "dense"]
    args = parser().parse_args(["sweep", "--protocol", "lenet300-mnist", "--budget", "paper"])
    got = sweep_configs(args, specs + ["static"], [0.9, 0.99], [0, 3])
    study = Study("paper", "lenet300", "mnist", specs, [0.9, 0.99], [0, 3])
    planned = [cfg for *_, cfg in study.plan()]
    plain = [preset("lenet300-mnist", "paper", method="static", sparsity=s, seed=seed)
             for s in (0.9, 0.99) for seed in (0, 3)]  # fmt: skip
    assert [c.hash for c in got] == [c.hash for c in planned + plain]
    assert len(got) == 4 + 4 + 2 + 4  # dense once per seed
    longer = got[0]
    assert (longer.method, longer.replica_init, longer.epochs) == ("static_replica", "source", 200)
    assert longer.lr_schedule == "0:0.1,50:0.02,100:0.004,150:0.0008"
    within = got[4]
    assert (within.regrowth, within.realloc_stop) == ("within", 25)


def test_a_method_spec_wins_over_the_same_field_on_the_command_line():
    """``--regrowth anti`` with ``dsr:regrowth=within``: the spec names the run; other options
    (``--epochs``) apply to every run, and @2x doubles what they set."""
    from dsr.__main__ import parser, sweep_configs

    argv = ["sweep", "--budget", "smoke", "--regrowth", "anti", "--epochs", "3"]
    within, plain = sweep_configs(
        parser().parse_args(argv), ["dsr:regrowth=within", "dsr"], [0.9], [0]
    )
    assert (within.regrowth, within.epochs) == ("within", 3)
    assert (plain.regrowth, plain.epochs) == ("anti", 3)
    args = parser().parse_args(["sweep", "--budget", "smoke", "--epochs", "3"])
    (static2x,) = sweep_configs(args, ["static@2x"], [0.9], [0])
    assert (static2x.method, static2x.epochs) == ("static", 6)


def test_sweep_trains_a_method_spec_where_its_study_finds_it(tmp_path, monkeypatch):
    """``sweep --methods static:sparse_init=protect_output`` (smoke budget) trains the run a
    page with that spec reads: the study finds it finished."""
    from dsr.study import Study

    monkeypatch.setattr(runs_module, "ProcessPoolExecutor", InProcessPool)
    runs = tmp_path / "runs"
    spec = "static:sparse_init=protect_output"
    args = ["sweep", "--methods", spec, "--budget", "smoke", "--dataset", "synthetic"]
    assert main([*args, "--sparsities", "0.99", "--workers", "1", "--runs-root", str(runs),
                 "--no-progress"]) == 0  # fmt: skip
    study = Study("smoke", "lenet300", "synthetic", [spec], [0.99], [0], runs)
    ((*_, cfg),) = study.plan()
    record = load_run(cfg, runs)
    assert record is not None and cfg.sparse_init == "protect_output"
    assert len(list(runs.iterdir())) == 1
