"""dsr.verdicts: the statistical rule of every comparison verdict, on crafted numbers."""

from __future__ import annotations

import math

import pytest
from scipy.stats import t, ttest_ind

from dsr import verdicts


def test_welch_interval_and_p_agree_with_scipy():
    a, b = [98.1, 98.4, 98.2, 98.6], [97.9, 98.0, 97.7]
    c = verdicts.compare(a, b)
    assert c.p == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    assert c.difference == pytest.approx(sum(a) / 4 - sum(b) / 3)
    se, df = verdicts.welch(
        sum((x - sum(a) / 4) ** 2 for x in a) / 3, 4, sum((x - sum(b) / 3) ** 2 for x in b) / 2, 3
    )
    half = t.ppf(0.975, df) * se
    assert (c.low, c.high) == pytest.approx((c.difference - half, c.difference + half))
    assert c.low > 0 and c.needed() == 4  # resolved at the seeds it has


def test_non_inferiority_p_is_one_sided_against_the_margin():
    a, b = [98.00, 98.02, 98.04], [98.05, 98.07, 98.09]  # 0.05 below, tiny spread
    c = verdicts.compare(a, b, margin=0.3)
    se, df = verdicts.welch(0.0004, 3, 0.0004, 3)
    assert c.p_ni == pytest.approx(t.sf((c.difference + 0.3) / se, df))
    assert c.p_ni < 0.05 and c.p < 0.05  # at or above within the margin, though below 0
    [(result, _, p_ni)] = verdicts.outcomes([c], matching=True)
    assert result == "at or above" and p_ni == pytest.approx(c.p_ni)
    assert verdicts.outcomes([c])[0][0] == "worse"


def test_holm_adjusts_step_down_and_stays_monotone():
    assert verdicts.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert verdicts.holm([0.02, math.nan]) == pytest.approx([0.04, 1.0])
    assert verdicts.holm([0.6, 0.6]) == [1.0, 1.0]


def test_seeds_needed_is_the_first_number_that_resolves_the_difference():
    """At the returned n per method the 95 % interval of d excludes 0; at n - 1 it does not."""
    d, va, vb = 0.2, 0.09, 0.04
    n = verdicts.seeds_needed(d, va, vb)
    assert n is not None and n > 2

    def resolved(k: int) -> bool:
        se, df = verdicts.welch(va, k, vb, k)
        return t.ppf(0.975, df) * se < d

    assert resolved(n) and not resolved(n - 1)
    assert verdicts.seeds_needed(0.0, va, vb) is None
    assert verdicts.seeds_needed(-0.5, va, vb, margin=0.3) is None  # below the margin: never
    assert verdicts.seeds_needed(0.001, 1.0, 1.0) is None  # beyond MAX_SEEDS


def test_a_single_run_side_is_inconclusive_with_the_other_sides_spread():
    c = verdicts.compare([98.0, 98.2, 98.4], [97.0])
    assert math.isnan(c.low) and math.isnan(c.p)
    assert verdicts.outcomes([c])[0][:2] == ("inconclusive", 1.0)
    assert c.needed() == verdicts.seeds_needed(c.difference, 0.04, 0.04, start=3)
    assert c.needed() is not None


def test_identical_runs_on_both_sides_give_an_exact_difference():
    c = verdicts.compare([98.0, 98.0], [97.5, 97.5])
    assert (c.low, c.high, c.p) == (0.5, 0.5, 0.0)
    assert verdicts.outcomes([c])[0][:2] == ("better", 0.0)


@pytest.mark.parametrize(
    "outcomes, label",
    [
        (["better", "better"], "reproduced"),
        (["at or above", "better"], "reproduced"),
        (["better", "inconclusive"], "inconclusive"),
        (["better", "worse"], "not reproduced"),
        (["inconclusive", "worse"], "not reproduced"),
        ([], "not run here"),
    ],
)
def test_a_claim_holds_when_every_comparison_does(outcomes, label):
    assert verdicts.label(outcomes) == label


def test_seeds_to_resolve_account_for_the_number_of_comparisons():
    """The same difference needs more seeds among six comparisons (level 0.05 / 6) than alone."""
    c = verdicts.compare([98.0, 98.3, 98.6], [97.7, 98.0, 98.3])
    alone, among_six = c.needed(1), c.needed(6)
    assert alone is not None and among_six is not None and among_six > alone


def test_a_loss_beyond_the_margin_can_only_resolve_as_worse():
    """d = -0.45 with a 0.3 margin: never "at or above"; the seeds counted are those that
    would show it worse."""
    c = verdicts.compare([97.55, 97.85, 98.15], [98.0, 98.3, 98.6], margin=0.3)
    assert c.needed() == verdicts.seeds_needed(-0.45, 0.09, 0.09, start=3)
