"""The statistical rule every comparison verdict of the book comes from.

One comparison: method A against method B at one sparsity, over the seeds each ran.

* The difference of the mean test accuracies, d = mean(A) - mean(B), with its 95 % confidence
  interval from Welch's t (unequal variances, Welch-Satterthwaite degrees of freedom).
* "A beats B": the two-sided Welch p-value of d = 0. "A matches or beats B" (non-inferiority):
  the one-sided p-value of d <= -margin, margin :data:`MARGIN` = 0.3 accuracy points.
* The p-values of the comparisons that one verdict rests on are Holm-corrected together.
* Outcome: *better* (corrected p < 0.05 and d > 0; for "matches or beats", *at or above*:
  corrected one-sided p < 0.05), *worse* (corrected two-sided p < 0.05 and d < 0), else
  *inconclusive*, with the seeds per method that would resolve it at the observed spread.
  A side with a single run has no spread: inconclusive.
* Verdict: *reproduced* when every comparison holds, *not reproduced* when one is
  significantly the other way, else *inconclusive*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
MARGIN = 0.3  # accuracy points: the equivalence margin of "matches or beats"
MAX_SEEDS = 100  # seeds_needed gives up beyond this


@dataclass(frozen=True)
class Comparison:
    """A against B: the difference of means, its 95 % interval and the uncorrected p-values
    (``p_ni``: one-sided, of d <= -margin; NaN without a margin)."""

    runs: tuple[int, int]
    difference: float
    low: float
    high: float
    p: float
    p_ni: float
    variances: tuple[float, float]  # sample variances over seeds (NaN for a single run)
    margin: float | None = None

    def needed(self, comparisons: int = 1) -> int | None:
        """Seeds per method that would resolve this comparison at its observed spread, with
        the correction for ``comparisons`` tests (Bonferroni's level, which Holm's first step
        uses); a single run's side borrows the other side's spread. None: no number would."""
        va, vb = self.variances
        va, vb = (vb, vb) if math.isnan(va) else (va, va) if math.isnan(vb) else (va, vb)
        d, margin = self.difference, self.margin
        if margin is not None and d <= -margin:
            margin = None  # it can only resolve as worse
        alpha = ALPHA / max(1, comparisons)
        return seeds_needed(d, va, vb, margin, start=max(self.runs), alpha=alpha)


def _moments(values: Sequence[float]) -> tuple[int, float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else math.nan
    return n, mean, var


def welch(va: float, na: int, vb: float, nb: int) -> tuple[float, float]:
    """Standard error of the difference of two means and its Welch-Satterthwaite df."""
    ua, ub = va / na, vb / nb
    se = math.sqrt(ua + ub)
    if se == 0:
        return 0.0, float(na + nb - 2)
    df = (ua + ub) ** 2 / (ua**2 / (na - 1) + ub**2 / (nb - 1))
    return se, df


def compare(a: Sequence[float], b: Sequence[float], margin: float | None = None) -> Comparison:
    """Compare the accuracies ``a`` (the claimed winner) with ``b``."""
    from scipy.stats import t

    (na, ma, va), (nb, mb, vb) = _moments(a), _moments(b)
    d, spread = ma - mb, (va, vb)
    if na < 2 or nb < 2:
        return Comparison((na, nb), d, math.nan, math.nan, math.nan, math.nan, spread, margin)
    se, df = welch(va, na, vb, nb)
    if se == 0:  # identical runs on both sides: the difference is exact
        p = 0.0 if d != 0 else 1.0
        p_ni = math.nan if margin is None else (0.0 if d > -margin else 1.0)
        return Comparison((na, nb), d, d, d, p, p_ni, spread, margin)
    half = float(t.ppf(1 - ALPHA / 2, df)) * se
    p = float(2 * t.sf(abs(d) / se, df))
    p_ni = math.nan if margin is None else float(t.sf((d + margin) / se, df))
    return Comparison((na, nb), d, d - half, d + half, p, p_ni, spread, margin)


def seeds_needed(
    d: float,
    va: float,
    vb: float,
    margin: float | None = None,
    start: int = 2,
    alpha: float = ALPHA,
) -> int | None:
    """The smallest number of seeds per method (from ``start``, at most :data:`MAX_SEEDS`)
    at which a difference ``d`` with these variances would be resolved at level ``alpha``: the
    two-sided interval would exclude 0 (with a margin: the one-sided bound would lie above
    -margin). None when no number does (d = 0, d <= -margin, or an unknown spread)."""
    from scipy.stats import t

    target = abs(d) if margin is None else d + margin
    if not target > 0 or math.isnan(va) or math.isnan(vb):
        return None
    for n in range(max(2, start), MAX_SEEDS + 1):
        se, df = welch(va, n, vb, n)
        q = 1 - alpha / 2 if margin is None else 1 - alpha
        if float(t.ppf(q, df)) * se < target:
            return n
    return None


def holm(ps: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1); NaN counts as 1."""
    ps = [1.0 if math.isnan(p) else p for p in ps]
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


def outcomes(
    comparisons: Sequence[Comparison], matching: bool = False
) -> list[tuple[str, float, float]]:
    """(outcome, Holm-corrected two-sided p, Holm-corrected one-sided non-inferiority p: NaN
    unless ``matching``) of each comparison of one verdict."""
    two_sided = holm([c.p for c in comparisons])
    one_sided = holm([c.p_ni for c in comparisons]) if matching else [math.nan] * len(two_sided)
    out = []
    for c, p2, p1 in zip(comparisons, two_sided, one_sided):
        if matching and p1 < ALPHA:
            result = "at or above"
        elif not matching and p2 < ALPHA and c.difference > 0:
            result = "better"
        elif p2 < ALPHA and c.difference < 0:
            result = "worse"
        else:
            result = "inconclusive"
        out.append((result, p2, p1))
    return out


HOLDS = ("better", "at or above")


def label(results: Sequence[str]) -> str:
    """The verdict of a claim from its comparisons' outcomes."""
    if not results:
        return "not run here"
    if all(r in HOLDS for r in results):
        return "reproduced"
    if "worse" in results:
        return "not reproduced"
    return "inconclusive"
