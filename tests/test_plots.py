"""dsr.plots: every legend sits at a fixed place (matplotlib's default "best" searches the data
and warns on stderr when that is slow, which would put a warning on a page of the book)."""

from __future__ import annotations

import io
import warnings

import pytest

from dsr import plots, results

BEST = 0  # matplotlib's code for loc="best"


@pytest.fixture(scope="module")
def study() -> results.Study:
    """Committed LeNet-300-100 runs (several methods, sparsities and seeds, dense among them)."""
    return results.study(
        "default", "lenet300", "mnist", "dsr,static,pruning,dense", "0.9,0.99", "0,1"
    )


def figures(st: results.Study):
    record = st.record("dsr", 0.9, 0)
    over = results.density_over_training(record)
    yield plots.accuracy_vs_sparsity(st)
    yield plots.accuracy_by_method(st)
    yield plots.cost(st)
    yield plots.density_over_training(over, results.final_density(record, over), "dsr")
    yield plots.imagenet(results.imagenet_table())
    yield plots.exploration(st)


def test_every_legend_has_a_fixed_place_and_drawing_warns_nothing(study):
    assert len(study.done()) >= 6  # the committed runs are there: the plots have data
    legends = 0
    for fig in figures(study):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fig.savefig(io.BytesIO(), format="png")
        for legend in [ax.get_legend() for ax in fig.axes] + list(fig.legends):
            if legend is not None:
                legends += 1
                assert legend._loc != BEST, fig
    assert legends >= 4  # accuracy (one for the figure), density (2 panels), imagenet (2 panels)


def test_the_accuracy_figure_has_one_legend_outside_and_zoomed_panels(study):
    """One figure legend, each method once; the lower panels zoom into the top band, where the
    verdicts' differences are, and no interval reaches above 100 %."""
    fig = plots.accuracy_vs_sparsity(study)
    assert [ax.get_legend() for ax in fig.axes] == [None] * 4 and len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == len(set(labels)) and {"dsr", "static", "pruning"} <= set(labels)
    full, zoom = fig.axes[1], fig.axes[3]  # ours, then ours zoomed
    assert zoom.get_ylim()[1] <= 100.0 and zoom.get_ylim()[0] > full.get_ylim()[0]
    assert zoom.get_ylim()[1] - zoom.get_ylim()[0] < 0.5 * (full.get_ylim()[1] - full.get_ylim()[0])


def test_a_95_percent_interval_of_accuracies_ends_at_100():
    import pandas as pd

    low, high = plots.t_interval(pd.Series([99.9, 100.0, 98.0]))
    assert high == 100.0 and low < 99.3


def test_table_escapes_text_and_keeps_floats_short():
    """A cell "< 0.001" is text on the page, not the start of an HTML tag; 0.5 stays "0.5"."""
    import pandas as pd

    html = plots.table(pd.DataFrame({"p (Welch)": ["< 0.001"], "x": [0.5]})).to_html()
    assert ">&lt; 0.001</td>" in html and ">< 0.001" not in html
    assert ">0.5</td>" in html


def test_an_interval_cell_never_breaks_inside_its_brackets():
    """Only the interval column is kept on one line; other text may still wrap."""
    import re

    import pandas as pd

    df = pd.DataFrame({"95 % CI": ["[+0.11, +0.59]"], "versus": ["static_replica:fresh"]})
    html = plots.table(df).to_html()
    assert ">[+0.11, +0.59]</td>" in html  # no soft break inside it either
    nowrap = set(re.findall(r"td\.(col\d+) \{[^}]*white-space: nowrap", html))
    assert nowrap == {"col0"}, html


def test_short_words_stay_whole_and_a_method_spec_breaks_after_its_separators_first():
    """A column of short words ("inconclusive") never breaks inside a word (it broke as
    "inconclusi / ve" in page 06's verdict table); a long method spec gets a soft break
    after ":" and "_" and may still break anywhere; text stays HTML-escaped."""
    import re

    import pandas as pd

    df = pd.DataFrame(
        {
            "versus": ["static_replica:fresh", "static:sparse_init=protect_output"],
            "outcome": ["inconclusive", "better"],
            "p (Holm)": ["< 0.001", "0.061"],
        }
    )
    html = plots.table(df).to_html()
    whole_words = set(re.findall(r"td\.(col\d+) \{\s*overflow-wrap: normal", html))
    assert whole_words == {"col1", "col2"}, html
    assert "white-space: nowrap" not in html  # they still wrap between words
    assert "static_<wbr>replica:<wbr>fresh" in html
    assert "static:<wbr>sparse_<wbr>init=<wbr>protect_<wbr>output" in html
    assert "&lt; 0.001" in html and "< 0.001" not in html


def test_a_method_keeps_its_colour_on_every_page_and_variants_get_their_own():
    one = plots.palette(["dsr", "static", "pruning"])
    other = plots.palette(["pruning", "set", "static", "dsr"])
    assert all(one[m] == other[m] for m in one)  # whatever else the figure shows
    assert len(set(one.values())) == 3
    replicas = plots.palette(["dsr", "static_replica:fresh", "static_replica:source"])
    assert len(set(replicas.values())) == 3
    assert replicas["static_replica:fresh"] == plots.COLOURS["static_replica"]


def test_the_exploration_figure_plots_each_run_at_its_window_length(study):
    """Committed DSR runs: one panel per sparsity, each run a dot at epochs 0 to 90 (the
    official window, ``realloc_stop`` 90 of 100 epochs)."""
    fig = plots.exploration(study)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["s = 0.9", "s = 0.99"]
    dots = [c for c in axes[0].collections if len(c.get_offsets()) == 2]  # seeds 0, 1
    assert dots and {float(x) for x, _ in dots[0].get_offsets()} == {90.0}


def test_a_table_with_a_repeated_column_name_is_styled_by_position():
    """Page 04 shows a table whose column names repeat: it renders, styled by position."""
    import pandas as pd

    df = pd.DataFrame([["fc1", "static:sparse_init=protect_output"]], columns=["x", "x"])
    html = plots.table(df).to_html()
    assert "td.col0 {" in html and "td.col1 {" not in html  # "fc1" whole; the spec may break
