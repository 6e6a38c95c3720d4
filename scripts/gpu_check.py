#!/usr/bin/env python
"""Check dsr's GPU path on a machine with a CUDA GPU, in under 10 minutes.

Needs only PyTorch and torchvision (no book packages, no install: run it from the repository
root or anywhere, it finds the package next to it)::

    python scripts/gpu_check.py                       # the full check, summary at the end
    python scripts/gpu_check.py --no-compile          # skip the torch.compile measurement
    python scripts/gpu_check.py --smoke --device cpu  # seconds on a CPU: tests the script

Steps:

1. environment: torch and CUDA versions, the GPUs;
2. bench: WRN-28-2 training images/s under the real training loop, dense and DSR at s = 0.9,
   in fp32 (the default), in bf16 autocast + channels-last, and with torch.compile on top;
   the projected wall time of the paper's 200-epoch run for each;
3. host synchronisations of a training epoch without reallocation (should be a handful per
   epoch, none per step);
4. a short WRN-28-2 DSR run (real CIFAR-10 if ``$DSR_DATA_ROOT`` holds it, else random images):
   masks on the GPU, active parameters the same after every epoch, reallocations happened;
5. with two or more GPUs: the same run on 2 processes with DDP over NCCL: every rank's masks
   agreed before the guard broadcast at every reallocation, and the result is close to the
   1-GPU run (GPU kernels are not bit-deterministic).

Exit status 0 when every check passed; the summary lists each with its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str):
    """Run the decorated step, recording PASS/FAIL and its one-line result."""

    def wrap(fn):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            print(f"\n== {name}", flush=True)
            try:
                ok, note = fn(*args, **kwargs)
            except Exception:
                traceback.print_exc()
                ok, note = False, "raised (traceback above)"
            RESULTS.append((name, ok, f"{note} [{time.perf_counter() - t0:.0f} s]"))
            print(f"-> {'PASS' if ok else 'FAIL'}: {note}", flush=True)

        return run

    return wrap


@check("environment")
def environment(device: str):
    info = f"torch {torch.__version__}, CUDA {torch.version.cuda}"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return False, f"{info}: no CUDA device"
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info += f", {len(names)} GPU(s): {', '.join(names)}"
    return True, info


@check("throughput (WRN-28-2, real loop)")
def throughput(device: str, images: int, compile_: bool):
    from dsr.bench import print_throughput
    from dsr.train import Runtime

    variants = [Runtime()]
    if device.startswith("cuda"):
        variants.append(Runtime(channels_last=True, bf16=True))
    if compile_:
        variants.append(Runtime(channels_last=True, bf16=True, compile=True))
    notes = []
    for rt in variants:
        r = print_throughput(images, 3 if device.startswith("cuda") else 2, device, rt)
        tag = (
            rt.precision + ("+cl" if rt.channels_last else "") + ("+compile" if rt.compile else "")
        )
        notes.append(
            f"{tag}: dsr {r['dsr']['train_ips']:.0f} img/s, "
            f"200 epochs {r['dsr']['projected_min']:.1f} min"
        )
    return True, "; ".join(notes)


@check("no host sync per training step")
def syncs(device: str, images: int):
    if not device.startswith("cuda"):
        return True, "skipped (needs CUDA)"
    from dsr.bench import count_syncs
    from dsr.train import Runtime

    n, steps = count_syncs(images, device, Runtime())
    return n < max(10, steps // 10), f"{n} syncs in a {steps}-step epoch"


def short_config(smoke: bool):
    from dsr.config import preset
    from dsr.data import data_root

    real = (data_root() / "cifar-10-batches-py").is_dir()
    return preset(
        "wrn28_2-cifar10",
        "paper",
        dataset="cifar10" if real else "synthetic",
        method="dsr",
        epochs=2,
        train_subset=64 if smoke else 10_000,
        test_subset=64 if smoke else 2_000,
        batch_size=32 if smoke else 100,
        realloc_schedule="0:4" if smoke else "0:50",
        realloc_stop=2,
        np_target=2000,
    )


@check("short WRN-28-2 DSR run")
def short_run(device: str, smoke: bool, folder: Path):
    from dsr.train import train

    cfg = short_config(smoke)
    t = train(cfg, folder / "one", device=device, progress=False)
    actives = {r["active_params"] for r in t.history}
    on_device = {m.device.type for m in t.method.masks.masks} == {torch.device(device).type}
    ok = len(actives) == 1 and len(t.events) > 0 and on_device
    acc = t.history[-1]["test_acc"]
    return ok, (
        f"{cfg.dataset}, {len(t.events)} reallocations, active params {sorted(actives)}, "
        f"masks on {device}: {on_device}, test acc {acc:.1f}%, "
        f"{sum(r['seconds'] for r in t.history):.1f} s"
    )


def _ddp_worker(rank: int, port: int, argv: list[str]) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
    )
    from dsr.__main__ import main

    main(argv)


@check("2-GPU DDP run (NCCL)")
def ddp(device: str, smoke: bool, folder: Path):
    if not device.startswith("cuda") or torch.cuda.device_count() < 2:
        return True, "skipped (needs 2 GPUs)"
    from dsr.__main__ import main
    from dsr.runs import load_run

    cfg = short_config(smoke)
    argv = ["train", "--device", "cuda", "--no-progress"]
    for name in ("dataset", "method", "epochs", "train_subset", "test_subset", "batch_size"):
        argv += [f"--{name}", str(getattr(cfg, name))]
    argv += ["--protocol", "wrn28_2-cifar10", "--realloc_schedule", cfg.realloc_schedule]
    argv += ["--realloc_stop", str(cfg.realloc_stop), "--np_target", str(cfg.np_target)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two, one = folder / "ddp2", folder / "ddp1"
    torch.multiprocessing.spawn(
        _ddp_worker, args=(port, [*argv, "--runs-root", str(two)]), nprocs=2
    )
    main([*argv, "--runs-root", str(one)])
    a, b = load_run(cfg, two), load_run(cfg, one)
    events = a.reallocations()
    agreed = all(e.get("ranks_agreed") for e in events)
    diff = abs(a.summary["final_test_acc"] - b.summary["final_test_acc"])
    return agreed and len(events) > 0, (
        f"{len(events)} reallocations, ranks agreed at all: {agreed}; test acc 2 GPUs "
        f"{a.summary['final_test_acc']:.2f}% vs 1 GPU {b.summary['final_test_acc']:.2f}% "
        f"(|diff| {diff:.2f})"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (a test of the script)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = p.parse_args()
    images = 32 if args.smoke else 10_000
    torch.backends.cudnn.benchmark = True  # as `python -m dsr` does on CUDA
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ.setdefault("DSR_RUNS", str(folder / "runs"))
        environment(args.device)
        throughput(args.device, images, not args.no_compile and not args.smoke)
        syncs(args.device, images)
        short_run(args.device, args.smoke, folder)
        ddp(args.device, args.smoke, folder)
    print("\n== summary")
    for name, ok, note in RESULTS:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {note}")
    print(json.dumps({"passed": all(ok for _, ok, _ in RESULTS)}))
    return 0 if all(ok for _, ok, _ in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
