"""``python -m dsr bench``: speed measured in one run on this machine.

Ratios (any device):

* masked sparse training step (static masks) / dense training step, LeNet-300-100 and WRN-28-2,
  batch 100 (target <= 1.05);
* one DSR reallocation / the P = 100 training steps between two reallocations (target <= 1%);
* the cost of one reallocation of SET and RigL as a ratio to DSR's, at the same volume (Np
  weights pruned and regrown, s = 0.9), on WRN-28-2's sparse tensors (1.45 M positions,
  Np = 20,000) and on every conv and FC weight of a ResNet-50 (25.5 M, Np = 400,000): the
  DSR paper says its global threshold is cheaper than SET's per-tensor sort;
* a DeepR training step (noise, sign checks, rewiring every iteration) / a static one;
* WRN-28-2 training images/s per thread on the paths of the loop's runtime options: fp32,
  channels-last, and bf16 autocast + channels-last, with each one's ratio to fp32; with
  ``--compile`` also bf16 + channels-last under ``torch.compile`` (its compile time, a minute
  or more on one CPU thread, printed apart and not in the rate).

Steps are timed after warm-up, alternating sparse and dense so that drift hits both alike;
medians are reported.

Prune rules (``--prune-rules FILE``, CPU): one DSR reallocation under the adaptive threshold
(official) against one under exact top-K (``prune_rule="topk"``), from the same state, pruning
and regrowing the same Np weights, on LeNet-300-100 at s = 0.9 and 0.99 (Np = 600), WRN-28-2
(Np = 20,000) and ResNet-50 (Np = 400,000) at s = 0.9; written to a JSON file that the book
reads (``data/bench/prune_rules.json``, page 7's part 2).

Throughput (``--images`` > 0): WRN-28-2 trained by the real training loop
(:func:`dsr.train.train`) on random CIFAR-sized images held on the device, with augmentation
there, batch 100, dense and DSR at s = 0.9 (P = 100 throughout, the schedule's most frequent
reallocation, so the projection errs long). Training images/s exclude the test pass, which is
timed apart; the projection is the paper's 200 epochs of 50,000 training and 10,000 test images.
With ``--sync-check`` (CUDA) the host synchronisations of a training epoch without reallocation
are counted: a few per epoch (losses read at its end), none per step.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dsr.config import preset
from dsr.data import CIFAR_MEAN, CIFAR_STD, Data
from dsr.methods import sparsify
from dsr.models import create_model, input_shape
from dsr.provenance import read_measurement, write_measurement
from dsr.train import (
    DEFAULT_RUNTIME,
    Runtime,
    autocast,
    evaluate,
    memory_format,
    native_bf16,
    train,
)


def make(model_name: str, method: str, sparsity: float, device: str):
    torch.manual_seed(0)
    model = create_model(model_name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    hp = {"np_target": 600, "realloc_schedule": "0:100"} if method == "dsr" else {}
    m = sparsify(model, method, sparsity=sparsity, steps_per_epoch=10**9, optimizer=opt, **hp)
    return model, opt, m


def step_fn(model, opt, method, x, y, hooks: bool = False, runtime=None):
    """One training step. With ``hooks`` it ends in the method's ``after_step`` (DeepR's
    rewiring); without, it only zeroes the inactive weights, so no reallocation is timed.
    With a ``runtime``, the input takes its memory format and the forward pass runs under its
    autocast, through the training loop's own helpers."""
    runtime = runtime or DEFAULT_RUNTIME
    x = memory_format(x, runtime)
    device = x.device

    def step() -> None:
        opt.zero_grad()
        with autocast(device, runtime):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        method.before_step()
        opt.step()
        if hooks:
            method.after_step()
        elif method.masks is not None:
            method.masks.apply_()

    return step


def synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def bench_model(model_name: str, repeats: int, device: str, batch: int = 100) -> dict:
    shape = input_shape(model_name)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    dense = step_fn(*make(model_name, "dense", 0.0, device), x, y)
    sparse = step_fn(*make(model_name, "static", 0.9, device), x, y)
    for _ in range(3):
        dense(), sparse()
    td, ts = [], []
    for _ in range(repeats):
        td.append(timed(dense, device))
        ts.append(timed(sparse, device))
    model, opt, dsr = make(model_name, "dsr", 0.9, device)
    dstep = step_fn(model, opt, dsr, x, y)
    for _ in range(3):
        dstep()
    tr = [timed(dsr.update, device) for _ in range(max(3, repeats // 4))]
    step = statistics.median(ts)
    return {
        "dense_step": statistics.median(td),
        "sparse_step": step,
        "realloc": statistics.median(tr),
        "ratio": step / statistics.median(td),
        "realloc_fraction": statistics.median(tr) / (100 * step),
    }


def random_cifar(n_train: int, n_test: int, device: str):
    """Random uint8 images of CIFAR-10's shape with CIFAR's augmentation, on ``device``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    data = Data("random", x[:n_train], y[:n_train], x[n_train:], y[n_train:], "random", True,
                CIFAR_MEAN, CIFAR_STD)  # fmt: skip
    return data.to(device)


def wrn_config(method: str, epochs: int, realloc: bool = True):
    return preset(
        "wrn28_2-cifar10",
        "paper",
        dataset="synthetic",  # a label only: the data is passed in
        method=method,
        sparsity=0.9 if method != "dense" else 0.0,
        epochs=epochs,
        lr_schedule="0:0.1",
        realloc_schedule="0:100",
        realloc_stop=epochs if realloc else 0,
    )


def throughput(method: str, images: int, epochs: int, device: str, runtime) -> dict:
    """Training and test images/s of WRN-28-2 under the real loop, after a warm-up epoch."""
    data = random_cifar(images, images // 5, device)
    t = train(wrn_config(method, epochs), device=device, progress=False, data=data,
              runtime=runtime)  # fmt: skip
    epoch = statistics.median(r["seconds"] for r in t.history[1:])
    test = statistics.median(
        timed(lambda: evaluate(t.model, data, runtime=runtime), device) for _ in range(3)
    )
    return {
        "train_ips": images / max(epoch - test, 1e-9),
        "test_ips": (images // 5) / test,
        "reallocations": len(t.events),
    }


def count_syncs(images: int, device: str, runtime) -> tuple[int, int]:
    """Host synchronisations inside the step loop of one DSR training epoch without
    reallocation (CUDA's sync debug mode), and the number of steps."""
    from dataclasses import replace

    data = random_cifar(images, 100, device)
    cfg = wrn_config("dsr", 1, realloc=False)
    train(cfg, device=device, progress=False, data=data, runtime=runtime)  # warm-up
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        debug = replace(runtime, sync_debug=True)
        train(cfg, device=device, progress=False, data=data, runtime=debug)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    return len(syncs), data.steps_per_epoch(cfg.batch_size)


def resnet50_weights() -> tuple[nn.Module, list[str]]:
    """torchvision's ResNet-50 and the names of all its conv and FC layers (25,502,912
    weights): a ResNet-50-sized set of sparse tensors."""
    from torchvision.models import resnet50

    model = resnet50()
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return model, names


def wrn_weights() -> tuple[nn.Module, list[str]]:
    model = create_model("wrn28_2")
    return model, list(model.sparse_module_names())


def lenet_weights() -> tuple[nn.Module, list[str]]:
    model = create_model("lenet300")
    return model, list(model.sparse_module_names())


def realloc_method(
    build, method: str, np_target: int, device: str, sparsity: float = 0.9, **options
):
    """A method at ``sparsity`` on the model from ``build``, set to move about Np weights
    (``options``: further method fields, such as DSR's ``prune_rule``)."""
    torch.manual_seed(0)
    model, names = build()
    model = model.to(device)
    hp = {
        "dsr": dict(np_target=np_target, realloc_schedule="0:100"),
        "set": dict(np_target=np_target, realloc_schedule="0:100"),
        "rigl": dict(epochs=1),
    }[method]
    m = sparsify(
        model, method, sparsity=sparsity, steps_per_epoch=10**9, names=names, **hp, **options
    )
    if m.masks.total_active() <= np_target:
        raise ValueError(f"s = {sparsity:g}: Np {np_target} >= active weights")
    if method == "rigl":  # drop fraction at step 0 is alpha: prune Np in all
        m.alpha = np_target / m.masks.total_active()
        m.dense_grads = [torch.randn_like(w) for w in m.masks.weights]
    if method == "dsr":  # a threshold between the Np-th and the next smallest active |w|
        active = torch.cat([w.detach()[k].abs() for w, k in zip(m.masks.weights, m.masks.masks)])
        below, above = (float(active.kthvalue(k).values) for k in (np_target, np_target + 1))
        m.h = (below + above) / 2 if above > below else below * (1 + 1e-6)
    return m


class Snapshot:
    """A method's weights, masks and update state, restored before each timed update."""

    def __init__(self, m):
        self.m = m
        self.weights = [w.detach().clone() for w in m.masks.weights]
        self.masks = [k.clone() for k in m.masks.masks]
        self.grads = getattr(m, "dense_grads", None)

    @torch.no_grad()
    def restore(self) -> None:
        for w, k, w0, k0 in zip(self.m.masks.weights, self.m.masks.masks, self.weights, self.masks):
            w.copy_(w0)
            k.copy_(k0)
        if hasattr(self.m, "h"):
            self.m.threshold = self.m.h
        self.m.dense_grads = self.grads


def time_updates(methods: dict, repeats: int, device: str) -> dict[str, tuple[float, int]]:
    """Median time of one ``update()`` of each method, always from the same state, the methods
    alternating round by round (the first round, a warm-up, is not counted); and the number
    of weights each update moved."""
    snaps = {name: Snapshot(m) for name, m in methods.items()}
    times: dict[str, list[float]] = {name: [] for name in methods}
    moved: dict[str, int] = {}
    for _ in range(repeats + 1):
        for name, m in methods.items():
            snaps[name].restore()
            synchronize(device)
            t0 = time.perf_counter()
            event = m.update()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
            moved[name] = event["pruned"]
    return {name: (statistics.median(t[1:]), moved[name]) for name, t in times.items()}


def bench_realloc(repeats: int, device: str) -> None:
    print(f"\n{'reallocation (s = 0.9)':24} {'method':6} {'moved':>8} {'ms':>10} {'/ DSR':>7}")
    cases = (("WRN-28-2", wrn_weights, 20000), ("ResNet-50 (25.5 M)", resnet50_weights, 400000))
    for label, build, np_target in cases:
        methods = {m: realloc_method(build, m, np_target, device) for m in ("dsr", "set", "rigl")}
        result = time_updates(methods, repeats, device)
        base = result["dsr"][0]
        for method, (t, moved) in result.items():
            print(f"{label:24} {method:6} {moved:8d} {1e3 * t:10.2f} {t / base:7.2f}")
        del methods


# (network, weights, sparsity, Np): the paper protocol's Np for each network
PRUNE_RULE_CASES = (
    ("LeNet-300-100", lenet_weights, 0.9, 600),
    ("LeNet-300-100", lenet_weights, 0.99, 600),
    ("WRN-28-2", wrn_weights, 0.9, 20_000),
    ("ResNet-50", resnet50_weights, 0.9, 400_000),
)


def measure_prune_rules(
    repeats: int, device: str = "cpu", cases=PRUNE_RULE_CASES, log=print
) -> list[dict]:
    """One DSR reallocation under the adaptive threshold (official) against one under exact
    top-K (``prune_rule="topk"``), from the same weights and masks, moving the same Np: the
    threshold is set between the Np-th and the next smallest active |w|, so both prune the same
    weights (unless |w| ties at the cut; ``moved_threshold`` is what the threshold pruned).
    Each time is the median of ``repeats`` updates after a warm-up, the two rules alternating;
    ``topk_over_threshold`` above 1: top-K costs more. One row per case."""
    rows = []
    for network, build, sparsity, np_target in cases:
        methods = {
            rule: realloc_method(build, "dsr", np_target, device, sparsity, prune_rule=rule)
            for rule in ("threshold", "topk")
        }
        result = time_updates(methods, repeats, device)
        (t_thr, moved_thr), (t_topk, moved_topk) = result["threshold"], result["topk"]
        if abs(moved_thr - moved_topk) > np_target // 1000:  # only ties at the cut may differ
            raise AssertionError(f"{network}: the two rules pruned {moved_thr} and {moved_topk}")
        rows.append(
            {
                "network": network,
                "sparsity": sparsity,
                "sparse_positions": sum(methods["topk"].masks.numels),
                "active": methods["topk"].masks.total_active(),
                "np": np_target,
                "moved": moved_topk,
                "moved_threshold": moved_thr,
                "threshold_ms": 1e3 * t_thr,
                "topk_ms": 1e3 * t_topk,
                "topk_over_threshold": t_topk / t_thr,
            }
        )
        log(
            f"{network:14} s = {sparsity:<5g} moved {moved_thr:7d}  threshold "
            f"{1e3 * t_thr:9.2f} ms  top-K {1e3 * t_topk:9.2f} ms  ratio {t_topk / t_thr:5.2f}"
        )
        del methods
    return rows


PRUNE_RULES_FILE = Path(__file__).resolve().parent.parent / "data" / "bench" / "prune_rules.json"


def write_prune_rules(path: Path, repeats: int = 20, cases=PRUNE_RULE_CASES, log=print) -> dict:
    """Measure (:func:`measure_prune_rules`, on the CPU) and write ``{"machine": ...,
    "repeats": ..., "rows": [...]}`` to ``path``."""
    return write_measurement(path, repeats, measure_prune_rules(repeats, "cpu", cases, log=log))


def load_prune_rules(path: Path | None = None) -> dict | None:
    """The committed measurement (``data/bench/prune_rules.json``), or None if absent."""
    return read_measurement(path or PRUNE_RULES_FILE)


def bench_deepr(repeats: int, device: str, batch: int = 100) -> None:
    print(f"\n{'model':10} {'static ms':>10} {'deepr ms':>9} {'deepr/static':>13}")
    for name, n in (("lenet300", repeats * 10), ("wrn28_2", max(3, repeats // 4))):
        x = torch.randn(batch, *input_shape(name), device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        fns = {}
        for method in ("static", "deepr"):
            model, opt, m = make(name, method, 0.9, device)
            fns[method] = step_fn(model, opt, m, x, y, hooks=True)
        for _ in range(3):
            fns["static"](), fns["deepr"]()
        ts = {k: [] for k in fns}
        for _ in range(n):
            for k, fn in fns.items():
                ts[k].append(timed(fn, device))
        s, d = statistics.median(ts["static"]), statistics.median(ts["deepr"])
        print(f"{name:10} {1e3 * s:10.2f} {1e3 * d:9.2f} {d / s:13.3f}")


def print_ratios(repeats: int, device: str) -> None:
    print(
        f"{'model':10} {'dense ms':>9} {'sparse ms':>10} {'sparse/dense':>13} "
        f"{'realloc ms':>11} {'realloc/(100 steps)':>20}"
    )
    for name, reps in (("lenet300", repeats * 10), ("wrn28_2", max(3, repeats // 4))):
        r = bench_model(name, reps, device)
        print(
            f"{name:10} {1e3 * r['dense_step']:9.2f} {1e3 * r['sparse_step']:10.2f} "
            f"{r['ratio']:13.3f} {1e3 * r['realloc']:11.2f} {100 * r['realloc_fraction']:19.3f}%"
        )
    print("targets: sparse/dense <= 1.05; realloc/(100 steps) <= 1%")


CPU_PATHS = (
    ("fp32", dict()),
    ("channels-last", dict(channels_last=True)),
    ("bf16 + channels-last", dict(bf16=True, channels_last=True)),
)


COMPILED = "bf16 + channels-last + compile"


def bench_paths(
    repeats: int, device: str, batch: int = 100, compile: bool = False
) -> dict[str, float]:
    """Training images/s per thread of one WRN-28-2 step (static masks, s = 0.9, batch 100)
    under each runtime path of :data:`CPU_PATHS` (and, with ``compile``, bf16 + channels-last
    through ``torch.compile`` of the same model, as ``--compile`` trains); the paths alternate
    step by step so that drift hits all alike. The compile time is printed, not timed in."""
    x = torch.randn(batch, *input_shape("wrn28_2"), device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    model, opt, method = make("wrn28_2", "static", 0.9, device)
    steps = {
        name: step_fn(model, opt, method, x, y, runtime=Runtime(**kw)) for name, kw in CPU_PATHS
    }
    # Without bf16 hardware a bf16 step takes tens of seconds: time it once.
    slow = {name for name, kw in CPU_PATHS if kw.get("bf16") and not native_bf16(device)}
    if compile:
        fast = Runtime(bf16=True, channels_last=True, compile=True)
        steps[COMPILED] = step_fn(torch.compile(model), opt, method, x, y, runtime=fast)
        if not native_bf16(device):
            slow.add(COMPILED)
    for name, step in steps.items():
        if name == COMPILED:
            print(f"  compiling the {COMPILED} step (a minute or more on one CPU thread) ...")
            print(f"  compiled in {timed(step, device):.0f} s (first step, not in the rate)")
        step()  # warm-up: oneDNN picks its kernels on the first call of each layout
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(repeats):
        for name, step in steps.items():
            if i == 0 or name not in slow:
                times[name].append(timed(step, device))
    threads = torch.get_num_threads()
    return {name: batch / statistics.median(t) / threads for name, t in times.items()}


def print_paths(repeats: int, device: str, compile: bool = False) -> dict[str, float]:
    print("WRN-28-2 training step, static s = 0.9, batch 100: images/s per thread")
    ips = bench_paths(repeats, device, compile=compile)
    for name, v in ips.items():
        note = "" if "bf16" not in name or native_bf16(device) else "  (no bf16 hardware: 1 step)"
        print(f"  {name:31} {v:8.1f} images/s/thread  {v / ips['fp32']:5.2f}x fp32{note}")
    return ips


def print_throughput(images: int, epochs: int, device: str, runtime) -> dict:
    print(
        f"WRN-28-2 training, real loop, batch 100, {images} images/epoch, "
        f"{runtime.precision}, channels_last={runtime.channels_last}, compile={runtime.compile}"
    )
    out = {}
    for method in ("dense", "dsr"):
        r = throughput(method, images, epochs, device, runtime)
        hours = 200 * (50_000 / r["train_ips"] + 10_000 / r["test_ips"]) / 60
        print(
            f"  {method:6} {r['train_ips']:9.0f} train images/s {r['test_ips']:9.0f} test "
            f"images/s -> 200 epochs of CIFAR-10 in {hours:.1f} min"
        )
        out[method] = {**r, "projected_min": hours}
    return out


def main(args, runtime: Runtime) -> int:
    """``python -m dsr bench`` with its parsed options ``args``, under ``runtime`` (the CLI
    builds it from the options: this module imports nothing above the training loop)."""
    device = args.device
    torch.set_flush_denormal(runtime.flush_denormal)  # as training does
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    if str(device).startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(torch.device(device))}")
    if not args.no_ratios:
        print_ratios(args.repeats, device)
        bench_realloc(max(3, args.repeats // 4), device)
        bench_deepr(args.repeats, device)
        print_paths(max(3, args.repeats // 4), device, compile=runtime.compile)
    if args.images > 0:
        print_throughput(args.images, args.epochs, device, runtime)
    if args.sync_check and str(device).startswith("cuda"):
        syncs, steps = count_syncs(args.images or 10_000, device, runtime)
        print(f"host syncs in a {steps}-step epoch without reallocation: {syncs}")
    return 0
