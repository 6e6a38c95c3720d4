"""``python -m dsr bench``: speed ratios measured in one run on this machine.

* masked sparse training step (static masks) / dense training step, LeNet-300-100 and WRN-28-2,
  batch 100 (target <= 1.05);
* one DSR reallocation / the P = 100 training steps between two reallocations (target <= 1%).

Steps are timed after warm-up, alternating sparse and dense so that drift hits both alike;
medians are reported.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from dsr.methods import sparsify
from dsr.models import create_model, input_shape


def make(model_name: str, method: str, sparsity: float, device: str):
    torch.manual_seed(0)
    model = create_model(model_name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    hp = {"np_target": 600, "realloc_schedule": "0:100"} if method == "dsr" else {}
    m = sparsify(model, method, sparsity=sparsity, steps_per_epoch=10**9, optimizer=opt, **hp)
    return model, opt, m


def step_fn(model, opt, method, x, y):
    def step() -> None:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        method.before_step()
        opt.step()
        method.masks.apply_() if method.masks is not None else None

    return step


def timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
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


def main(args) -> int:
    device = args.device
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    print(
        f"{'model':10} {'dense ms':>9} {'sparse ms':>10} {'sparse/dense':>13} "
        f"{'realloc ms':>11} {'realloc/(100 steps)':>20}"
    )
    for name, repeats in (("lenet300", args.repeats * 10), ("wrn28_2", max(3, args.repeats // 4))):
        r = bench_model(name, repeats, device)
        print(
            f"{name:10} {1e3 * r['dense_step']:9.2f} {1e3 * r['sparse_step']:10.2f} "
            f"{r['ratio']:13.3f} {1e3 * r['realloc']:11.2f} {100 * r['realloc_fraction']:19.3f}%"
        )
    print("targets: sparse/dense <= 1.05; realloc/(100 steps) <= 1%")
    return 0
