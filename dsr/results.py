"""The notebooks' view of the package: everything a page needs, from the modules that do each
job (each name here is theirs):

* :mod:`dsr.study`: which runs a page needs and where they are (profiles, method specs);
* :mod:`dsr.tables`: tables of those runs beside the paper's numbers, costs, provenance;
* :mod:`dsr.claims`: verdicts, and what a page publishes of them (glue, badges, summary rows);
* :mod:`dsr.density`: claim 4, where the parameters go (pages 4 and 6);
* :mod:`dsr.imagenet`: ResNet-50 / ImageNet (page 5).
"""

from __future__ import annotations

from dsr.claims import (  # noqa: F401
    BADGES,
    Html,
    Verdict,
    badge,
    exploration_fits,
    exploration_trend,
    exploration_trend_text,
    label_pairs,
    needed_text,
    publish,
    qualifier,
    scope_text,
    summary_cells,
    summary_row,
    verdict_beats,
)
from dsr.density import (  # noqa: F401
    DensityPage,
    density_over_seeds,
    density_over_training,
    density_page,
    density_spread,
    density_summary,
    final_density,
    finals_by_seed,
    larger_sparser_label,
    rho_range,
    size_pairs,
    tensor_rows,
    verdict_larger_sparser,
)
from dsr.errors import ConfigError, ResultsError  # noqa: F401
from dsr.events import grown_per_tensor  # noqa: F401
from dsr.imagenet import (  # noqa: F401
    cluster_commands,
    imagenet_summary,
    imagenet_table,
)
from dsr.study import (  # noqa: F401
    LONGER,
    MODEL_NAMES,
    NOTEBOOK_ONLY,
    PAPER_DATASET,
    PAPER_DIR,
    PAPER_METHODS,
    PAPER_MODELS,
    PAPER_VERSIONS,
    PROFILES,
    RUN_COLUMNS,
    Study,
    budget_of,
    data_for,
    mask_updates,
    method_config,
    method_name,
    model_available,
    protocol_for,
    run_row,
    split,
    study,
)
from dsr.tables import (  # noqa: F401
    SPARSE_CLASSIFIER,
    budget_text,
    classes_connected,
    cost_table,
    exploration_windows,
    flops_rows,
    flops_table,
    interval_text,
    last_tensor_connections,
    mean_std,
    output_connections,
    p_text,
    pair_text,
    paper_dense,
    paper_for,
    paper_means,
    paper_pivot,
    paper_runs,
    provenance,
    status_table,
    summarize,
    versus_paper,
    wall_time,
    welch_p,
)
