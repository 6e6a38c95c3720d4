"""ResNet-50 / ImageNet (page 5): the paper's table, the cluster commands, its summary row."""

from __future__ import annotations

import pandas as pd

from dsr.claims import scope_text, summary_cells, verdict_beats
from dsr.events import active_before, grown_per_tensor  # noqa: F401  (grown_per_tensor: API)
from dsr.study import Study, model_available, protocol_for, split
from dsr.tables import pair_text, paper_runs, summarize


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
    submission's Table 2; top-1, one number per cell as tabulated) and our runs, at the
    study's highest sparsity."""
    s = max(st.sparsities)
    ok = table[(table.checked == "yes") & (table.sparsity == s)].set_index("method")
    ours = summarize(st)
    ours = ours[(ours.sparsity == s) & (ours.runs > 0)].set_index("method")
    ran = {"dsr", "static"} <= set(ours.index)
    return summary_cells(
        "",
        f"{ok.top1['dsr']} vs {ok.top1['static']} (top-1, as tabulated)",
        pair_text(ours.reset_index(), "dsr", "static", s) if ran else "not run here",
        scope_text(st, s)
        if ran
        else f"ResNet-50 / ImageNet · s = {s:g} · paper: ICLR-2019 submission, Table 2 · "
        "not run here",
        verdict_beats(st, "dsr", ["static"]).label,
    )
