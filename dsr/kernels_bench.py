"""Do masks make anything faster? Masked dense kernels against ``torch.sparse`` CSR kernels at
this project's layer shapes, measured on this machine.

The training loop keeps sparse weights as dense tensors with zeros (a mask): every forward
pass costs what the dense layer costs. A CSR weight skips the zeros. This measures, for one
forward pass of one batch on one thread:

* LeNet-300-100's three linear layers (784 -> 300 -> 100 -> 10, batch 100): ``F.linear`` with
  the masked dense weight against ``torch.sparse.mm`` of the CSR weight and the input;
* WRN-28-2's 3x3 convolutions, one per width (32, 64 and 128 channels at 32x32, 16x16 and 8x8,
  batch 32): ``F.conv2d`` with the masked dense weight against the same convolution as a CSR
  matrix product on the unfolded input (im2col, ``F.unfold``, included in its time);

at sparsities 0.5 to 0.99, random masks (as the methods' initial masks). Each time is the
median of ``repeats`` calls after warm-up, the two kernels alternating. The ratio is the masked
dense time over the CSR time: above 1, CSR is faster. ``python -m dsr bench --kernels FILE``
writes the rows and the machine's description to a JSON file that the book reads.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from dsr.provenance import read_measurement, write_measurement

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
# (network, layer, kind, weight shape, input shape)
CASES = (
    ("LeNet-300-100", "fc1", "linear", (300, 784), (100, 784)),
    ("LeNet-300-100", "fc2", "linear", (100, 300), (100, 300)),
    ("LeNet-300-100", "fc3", "linear", (10, 100), (100, 100)),
    ("WRN-28-2", "3x3 conv, 32 ch, 32x32", "conv", (32, 32, 3, 3), (32, 32, 32, 32)),
    ("WRN-28-2", "3x3 conv, 64 ch, 16x16", "conv", (64, 64, 3, 3), (32, 64, 16, 16)),
    ("WRN-28-2", "3x3 conv, 128 ch, 8x8", "conv", (128, 128, 3, 3), (32, 128, 8, 8)),
)


def masked(shape: tuple[int, ...], sparsity: float, g: torch.Generator) -> torch.Tensor:
    """A random weight with exactly round((1 - s) n) nonzeros at random positions."""
    w = torch.randn(shape, generator=g)
    n = w.numel()
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=g)[: round((1 - sparsity) * n)]] = True
    return w * keep.view(shape)


def kernels(kind: str, w: torch.Tensor, x: torch.Tensor):
    """(masked dense call, CSR call) computing the same output."""
    with warnings.catch_warnings():  # torch: "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        csr = (w if kind == "linear" else w.reshape(w.shape[0], -1)).to_sparse_csr()
    if kind == "linear":
        return (lambda: F.linear(x, w)), (lambda: torch.sparse.mm(csr, x.t()).t())
    out_ch, _, kh, kw = w.shape
    b, _, h, wd = x.shape

    def sparse_conv():
        cols = F.unfold(x, (kh, kw), padding=1)  # (b, c*9, h*w)
        flat = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (c*9, b*h*w)
        return torch.sparse.mm(csr, flat).reshape(out_ch, b, h, wd).transpose(0, 1)

    return (lambda: F.conv2d(x, w, padding=1)), sparse_conv


def median_times(a, b, repeats: int) -> tuple[float, float]:
    """Median seconds per call of ``a`` and ``b``, alternating, after two warm-up calls each."""
    for _ in range(2):
        a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for f, out in ((a, ta), (b, tb)):
            start = time.perf_counter()
            f()
            out.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


@torch.no_grad()
def measure(repeats: int = 20, sparsities=SPARSITIES, cases=CASES, log=print) -> list[dict]:
    """One row per layer and sparsity: both times (ms) and their ratio; checks on the way that
    both kernels give the same output."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for net, layer, kind, wshape, xshape in cases:
        x = torch.randn(xshape, generator=g)
        for s in sparsities:
            w = masked(wshape, s, g)
            dense, sparse = kernels(kind, w, x)
            if not torch.allclose(dense(), sparse(), rtol=1e-4, atol=1e-4):
                raise AssertionError(f"{layer} at s = {s}: the CSR output differs")
            td, ts = median_times(dense, sparse, repeats)
            rows.append(
                {
                    "network": net,
                    "layer": layer,
                    "kind": kind,
                    "sparsity": s,
                    "masked_dense_ms": td * 1e3,
                    "csr_ms": ts * 1e3,
                    "speedup": td / ts,
                }
            )
            log(f"{layer:24s} s = {s:<5g} masked dense {td * 1e3:8.3f} ms  CSR {ts * 1e3:8.3f} ms")
    return rows


def write(path: Path, repeats: int = 20, log=print, sparsities=SPARSITIES, cases=CASES) -> dict:
    """Measure and write ``{"machine": ..., "repeats": ..., "rows": [...]}`` to ``path``."""
    return write_measurement(path, repeats, measure(repeats, sparsities, cases, log=log))


def crossovers(rows: list[dict]) -> list[dict]:
    """Per layer: the lowest sparsity measured from which on CSR is faster at every sparsity
    measured above it (None: masked dense is faster somewhere up to the highest)."""
    out = []
    layers = dict.fromkeys((r["network"], r["layer"]) for r in rows)
    for net, layer in layers:
        mine = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["sparsity"])
        since = None
        for r in mine:
            if r["speedup"] > 1:
                since = r["sparsity"] if since is None else since
            else:
                since = None
        out.append({"network": net, "layer": layer, "CSR faster from sparsity": since})
    return out


BENCH_FILE = Path(__file__).resolve().parent.parent / "data" / "bench" / "sparse_kernels.json"


def load(path: Path | None = None) -> dict | None:
    """The committed measurement (``data/bench/sparse_kernels.json``), or None if absent."""
    return read_measurement(path or BENCH_FILE)
