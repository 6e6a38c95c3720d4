"""Data parallelism on 2 gloo ranks (CPU), as ``torchrun --nproc_per_node=2 -m dsr train``.

One spawned process group runs every distributed case through the command line, with the
environment torchrun sets: DSR stopped after one epoch and resumed, DSR uninterrupted, and each
other method present. The ranks record a digest of their masks after every reallocation; the
tests compare those, and the results with a 1-process run of the same config.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
import torch

from dsr.config import FIELD_TYPES
from dsr.methods import METHODS

# The tiny LeNet / synthetic run of tests.conftest.tiny, as command-line options, with an odd
# batch: 512 = 16 x 31 + 16, so the ranks' shards are 16 + 15 and, last, 8 + 8 examples.
ARGS = [
    "train", "--dataset", "synthetic", "--epochs", "3", "--batch_size", "31",
    "--lr_schedule", "0:0.05,2:0.01", "--np_target", "50", "--realloc_schedule", "0:4,1:8",
    "--realloc_stop", "2", "--sparsity", "0.9", "--threads", "1", "--no-progress",
]  # fmt: skip
# Options that make the other methods update within the tiny run, where the field exists.
EXTRA = {"rigl_update_every": "4"}
OTHERS = [m for m in ("static", "set", "deepr", "rigl") if m in METHODS]


def method_args(method: str) -> list[str]:
    extra = [x for k, v in EXTRA.items() if k in FIELD_TYPES for x in (f"--{k}", v)]
    return [*ARGS, "--method", method, *extra]


def digest(method) -> str:
    h = hashlib.sha256()
    for m in method.masks.masks:
        h.update(m.cpu().numpy().tobytes())
    return h.hexdigest()


def worker(rank: int, port: int, out: str) -> None:
    """One rank: the environment torchrun would give, then the command line, several times."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
    )
    torch.set_num_threads(1)
    import dsr.distributed as dist_mod
    from dsr.__main__ import main

    log: dict[str, list] = {}
    original = dist_mod.sync_after_update

    def recorded(method, optimizer):
        agreed = original(method, optimizer)
        log[current].append({"agreed": agreed, "masks": digest(method)})
        return agreed

    dist_mod.sync_after_update = recorded
    root = Path(out)
    codes = {}
    for i, (current, argv) in enumerate(
        [
            ("dsr-stopped", [*method_args("dsr"), "--stop-after", "1"]),
            ("dsr-resumed", method_args("dsr")),
            ("dsr-straight", method_args("dsr")),
            *[(m, method_args(m)) for m in OTHERS],
        ]
    ):
        os.environ["MASTER_PORT"] = str(port + i)  # a new process group per command
        log[current] = []
        runs = root / ("straight" if current == "dsr-straight" else "ddp")
        codes[current] = main([*argv, "--runs-root", str(runs)])
    (root / f"rank{rank}.json").write_text(json.dumps({"log": log, "codes": codes}))


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive free TCP ports."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        try:
            for p in range(first, first + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return first
        except OSError:
            continue
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> dict:
    """Runs the 2-rank process group once; returns the ranks' logs and the run folders."""
    out = tmp_path_factory.mktemp("ddp")
    port = free_ports(3 + len(OTHERS))
    torch.multiprocessing.spawn(worker, args=(port, str(out)), nprocs=2)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return {"ranks": ranks, "root": out}


def load(root: Path, method: str):
    from dsr.__main__ import config_from_args, parser
    from dsr.runs import load_run

    cfg = config_from_args(parser().parse_args(method_args(method)))
    return load_run(cfg, root)


def final_weights(record) -> dict:
    return torch.load(record.path / "final.pt", weights_only=True)["model"]


def test_every_rank_ends_each_command_successfully(ddp):
    """Exit status 0 on both ranks for each of the commands."""
    for r in ddp["ranks"]:
        assert set(r["codes"].values()) == {0}, r["codes"]


@pytest.mark.parametrize("case", ["dsr-resumed", "dsr-straight", *OTHERS])
def test_masks_are_equal_on_both_ranks_after_every_reallocation(ddp, case):
    """After each update the two ranks hold the same masks, and they held them before rank 0's
    guard broadcast too (each rank decided alike)."""
    a, b = (r["log"][case] for r in ddp["ranks"])
    assert [e["masks"] for e in a] == [e["masks"] for e in b]
    assert all(e["agreed"] for e in a + b)
    if case.startswith("dsr"):
        assert len(a) == (2 if case == "dsr-resumed" else 6)  # epochs 1-2 after the resume
    elif case != "static":
        assert len(a) > 0  # set, deepr (a log entry per epoch), rigl: they did update


def test_a_2_rank_run_equals_the_1_process_run_with_the_same_global_batch(ddp, tmp_path):
    """Same masks after every reallocation and at the end, same weights to float tolerance,
    same metrics: synchronised batch norm and the scaled loss make the shards one batch."""
    from dsr.__main__ import main

    assert main([*method_args("dsr"), "--runs-root", str(tmp_path)]) == 0
    one, two = load(tmp_path, "dsr"), load(ddp["root"] / "straight", "dsr")
    assert [e["pruned"] for e in one.reallocations()] == [e["pruned"] for e in two.reallocations()]
    m1, m2 = one.final_masks(), two.final_masks()
    assert all(torch.equal(m1[k], m2[k]) for k in m1)
    w1, w2 = (final_weights(r) for r in (one, two))
    for k in w1:
        assert torch.allclose(w1[k].float(), w2[k].float(), rtol=1e-4, atol=1e-5), k
    for r1, r2 in zip(one.metrics(), two.metrics()):
        assert r1["test_acc"] == r2["test_acc"]
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-5)


def test_a_run_resumed_under_torchrun_equals_an_uninterrupted_one(ddp):
    """Stopped after epoch 1 and resumed by a new command on both ranks: bit for bit the
    weights and metrics of the uninterrupted 2-rank run."""
    resumed, straight = load(ddp["root"] / "ddp", "dsr"), load(ddp["root"] / "straight", "dsr")
    a, b = (
        torch.load(r.path / "final.pt", weights_only=True)["model"] for r in (resumed, straight)
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop = {"seconds"}
    strip = [{k: v for k, v in r.items() if k not in drop} for r in resumed.metrics()]
    assert strip == [{k: v for k, v in r.items() if k not in drop} for r in straight.metrics()]
    assert resumed.summary["runtime"][0]["processes"] == 2


def test_only_rank_0_writes_and_the_checkpoint_is_gone(ddp):
    """One run folder per config, complete, no checkpoint and no second writer's temp files."""
    folders = sorted(p.name for p in (ddp["root"] / "ddp").iterdir())
    assert len(folders) == 1 + len(OTHERS)
    for name in folders:
        files = {p.name for p in (ddp["root"] / "ddp" / name).iterdir()}
        assert "summary.json" in files and "checkpoint.pt" not in files
        assert not [f for f in files if f.endswith(".tmp")]
