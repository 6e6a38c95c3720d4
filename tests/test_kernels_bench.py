"""The sparse-kernel measurement (dsr.kernels_bench): same outputs, rows, crossovers, file."""

from __future__ import annotations

import json

import pandas as pd

from dsr import kernels_bench, plots

SMALL = (
    ("LeNet-300-100", "fc2", "linear", (100, 300), (100, 300)),
    ("WRN-28-2", "3x3 conv", "conv", (8, 8, 3, 3), (2, 8, 8, 8)),
)


def test_both_kernels_compute_the_same_output():
    """The masked dense and the CSR call agree, for a linear layer and a 3x3 convolution."""
    import torch

    g = torch.Generator().manual_seed(0)
    for _, _, kind, wshape, xshape in SMALL:
        w = kernels_bench.masked(wshape, 0.9, g)
        assert int((w != 0).sum()) == round(0.1 * w.numel())
        dense, sparse = kernels_bench.kernels(kind, w, torch.randn(xshape, generator=g))
        assert torch.allclose(dense(), sparse(), atol=1e-5)


def test_a_measurement_file_holds_the_machine_and_one_row_per_layer_and_sparsity(tmp_path):
    path = tmp_path / "k.json"
    kernels_bench.write(path, repeats=1, log=lambda _: None, sparsities=(0.5, 0.99), cases=SMALL)
    data = json.loads(path.read_text())
    assert {"cpu", "threads", "torch", "code_commit", "measured"} <= set(data["machine"])
    rows = data["rows"]
    assert [(r["layer"], r["sparsity"]) for r in rows] == [
        ("fc2", 0.5), ("fc2", 0.99), ("3x3 conv", 0.5), ("3x3 conv", 0.99),
    ]  # fmt: skip
    assert all(r["speedup"] == r["masked_dense_ms"] / r["csr_ms"] > 0 for r in rows)
    assert kernels_bench.load(path) == data
    fig = plots.kernel_speedups(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == ["LeNet-300-100", "WRN-28-2"]


def test_a_crossover_is_where_csr_stays_faster():
    """CSR faster at 0.9 and above gives 0.9; faster at 0.7 but not at 0.9 does not count;
    never faster gives None."""

    def rows(layer, speedups):
        return [
            {"network": "n", "layer": layer, "sparsity": s, "speedup": x}
            for s, x in zip((0.5, 0.7, 0.9, 0.99), speedups)
        ]

    found = kernels_bench.crossovers(
        rows("a", (0.5, 0.8, 1.2, 3.0)) + rows("b", (0.5, 1.1, 0.9, 2.0)) + rows("c", (0.1,) * 4)
    )
    assert [f["CSR faster from sparsity"] for f in found] == [0.9, 0.99, None]
