"""Calibration (docs/methods.md): ECE, Brier scores, Hosmer–Lemeshow per class and multinomial, reliability curves.

- ECE (Guo et al. 2017): 15 equal-width bins [k/15, (k+1)/15) on the top-label confidence max_k p_k, a
  confidence of exactly 1.0 in the last bin; ECE = Σ_b (n_b/N)·|acc_b − conf_b| = Σ_b |Σcorrect_b − Σconf_b| / N.
- Brier: multiclass = mean over patients of Σ_k (p_k − y_k)²; per class = mean of (p_k − y_k)².
- Hosmer–Lemeshow, R ResourceSelection::hoslem.test (0.3-6) to the letter, written here because no Python
  library implements that grouping: breaks = unique(quantile(p, 0, 0.1, …, 1)) (type 7 = numpy's linear
  default); groups = cut(p, breaks, include.lowest = TRUE): right-closed (a, b], the first one [a, b];
  statistic = Σ over groups and both outcomes of (O − E)²/E (an empty group gives 0/0: R's statistic is NaN,
  ours is null with that reason); df = G − 2 with G the number of non-empty groups (R's length(unique(cutyhat)));
  p = 1 − pchisq(statistic, df). Per class one-vs-rest on p_k.
- Multinomial Hosmer–Lemeshow (Fagerland, Hosmer & Bofin 2008): the same grouping on 1 − p_normal; statistic
  Σ over groups and all K classes of (O − E)²/E; df = (G − 2)(K − 1).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

ECE_BINS = 15
HL_GROUPS = 10
RELIABILITY_BINS = 10
ECE_EDGES = np.arange(ECE_BINS + 1) / ECE_BINS


def ece_bins(confidence: np.ndarray) -> np.ndarray:
    """Bin index 0..14 of each top-label confidence: [k/15, (k+1)/15), 1.0 in the last bin."""
    index = np.searchsorted(ECE_EDGES, np.asarray(confidence, dtype=np.float64), side="right") - 1
    return np.clip(index, 0, ECE_BINS - 1)


def ece_from_sums(correct_sums: np.ndarray, confidence_sums: np.ndarray, n: np.ndarray) -> np.ndarray:
    """ECE from per-bin sums of correctness and confidence (shape (..., 15)) and the total weight n (...)."""
    num = np.abs(np.asarray(correct_sums) - np.asarray(confidence_sums)).sum(axis=-1)
    n = np.asarray(n, dtype=np.float64)
    return np.divide(num, n, out=np.full(np.shape(num), np.nan), where=n > 0)


def expected_calibration_error(proba: np.ndarray, y: np.ndarray) -> float:
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    bins = ece_bins(confidence)
    correct_sums = np.bincount(bins, weights=correct, minlength=ECE_BINS)
    confidence_sums = np.bincount(bins, weights=confidence, minlength=ECE_BINS)
    return float(ece_from_sums(correct_sums, confidence_sums, np.float64(len(confidence))))


def one_hot(y: np.ndarray, k: int) -> np.ndarray:
    return (np.asarray(y)[:, None] == np.arange(k)[None, :]).astype(np.float64)


def brier_rows(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per patient (p_k − y_k)², shape N×K; multiclass Brier = mean of the row sums, per class = column means."""
    proba = np.asarray(proba, dtype=np.float64)
    return (proba - one_hot(y, proba.shape[1])) ** 2


def brier_multiclass(proba: np.ndarray, y: np.ndarray) -> float:
    return float(brier_rows(proba, y).sum(axis=1).mean())


def brier_per_class(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    return brier_rows(proba, y).mean(axis=0)


@dataclasses.dataclass(frozen=True)
class HosmerLemeshow:
    statistic: float | None
    df: int | None
    p: float | None
    groups: int  # non-empty groups formed (G)
    breaks: list[float]
    observed: list[list[float]]  # per group (all groups from the breaks, empty ones included): per outcome
    expected: list[list[float]]
    reason: str | None = None  # why statistic or p is null

    def to_json(self) -> dict:
        return {"statistic": self.statistic, "df": self.df, "p": self.p}


def hl_groups(score: np.ndarray, g: int = HL_GROUPS) -> tuple[np.ndarray, np.ndarray]:
    """Group index of each value and the breaks, as cut(score, unique(quantile(score, 0:g/g)), include.lowest)."""
    score = np.asarray(score, dtype=np.float64)
    breaks = np.unique(np.quantile(score, np.arange(g + 1) / g))
    # (a, b] intervals: the first break >= value closes the value's group; the lowest value joins the first group
    index = np.searchsorted(breaks, score, side="left") - 1
    return np.clip(index, 0, max(len(breaks) - 2, 0)), breaks


def _hl(outcomes: np.ndarray, probabilities: np.ndarray, score: np.ndarray, g: int, k_for_df: int,
        what: str) -> HosmerLemeshow:
    """Shared core: ``outcomes`` and ``probabilities`` are N×C (C outcome columns), grouped on ``score``."""
    n = score.size
    if n == 0:
        return HosmerLemeshow(None, None, None, 0, [], [], [], f"no patients for the {what}")
    index, breaks = hl_groups(score, g)
    if breaks.size < 2:
        return HosmerLemeshow(None, None, None, 1, breaks.tolist(), [], [],
                              f"all predicted probabilities of the {what} are equal: one group, no test "
                              "(R's cut() refuses a single break)")
    levels = breaks.size - 1
    observed = np.stack([np.bincount(index, weights=outcomes[:, c], minlength=levels)
                         for c in range(outcomes.shape[1])], axis=1)
    expected = np.stack([np.bincount(index, weights=probabilities[:, c], minlength=levels)
                         for c in range(outcomes.shape[1])], axis=1)
    counts = np.bincount(index, minlength=levels)
    groups = int((counts > 0).sum())
    df = (groups - 2) * (k_for_df - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (observed - expected) ** 2 / expected
    statistic = float(terms.sum())
    base = dict(groups=groups, breaks=breaks.tolist(), observed=observed.tolist(), expected=expected.tolist())
    if not math.isfinite(statistic):
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            j = int(empty[0])
            why = (f"quantile group ({breaks[j]:.4g}, {breaks[j + 1]:.4g}] is empty, so (O − E)²/E is 0/0 "
                   "(R's hoslem.test gives NaN)")
        else:
            why = "an expected count is 0 in a group (O − E)²/E is not finite (R's hoslem.test gives NaN/Inf)"
        return HosmerLemeshow(None, df, None, **base, reason=f"{what}: {why}")
    if df <= 0:
        return HosmerLemeshow(statistic, df, None, **base,
                              reason=f"{what}: only {groups} group(s) with distinct probabilities, df = {df} ≤ 0")
    return HosmerLemeshow(statistic, df, float(stats.chi2.sf(statistic, df)), **base)


def hosmer_lemeshow(y: np.ndarray, p: np.ndarray, g: int = HL_GROUPS,
                    what: str = "Hosmer–Lemeshow test") -> HosmerLemeshow:
    """Binary Hosmer–Lemeshow test of outcome ``y`` (0/1) against probability ``p`` (ResourceSelection)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return _hl(np.column_stack([1 - y, y]), np.column_stack([1 - p, p]), p, g, 2, what)


def hosmer_lemeshow_multinomial(y: np.ndarray, proba: np.ndarray, g: int = HL_GROUPS,
                                what: str = "multinomial Hosmer–Lemeshow test") -> HosmerLemeshow:
    """Fagerland–Hosmer multinomial test; groups on 1 − p of the first (reference) class; df = (G − 2)(K − 1)."""
    proba = np.asarray(proba, dtype=np.float64)
    k = proba.shape[1]
    return _hl(one_hot(y, k), proba, 1.0 - proba[:, 0], g, k, what)


def reliability(y: np.ndarray, p: np.ndarray, edges: np.ndarray | None = None) -> list[dict]:
    """Reliability-diagram data on bins [a, b) (1.0 in the last), equal-width by default: per non-empty bin the
    count, mean predicted probability and observed frequency (scikit-learn's calibration_curve plus counts)."""
    edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1) if edges is None else np.asarray(edges)
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    nb = edges.size - 1
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, nb - 1)
    counts = np.bincount(index, minlength=nb)
    sum_p = np.bincount(index, weights=p, minlength=nb)
    sum_y = np.bincount(index, weights=y, minlength=nb)
    return [{"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(counts[b]),
             "mean_predicted": float(sum_p[b] / counts[b]), "observed": float(sum_y[b] / counts[b])}
            for b in range(nb) if counts[b] > 0]


def top_label_reliability(proba: np.ndarray, y: np.ndarray) -> list[dict]:
    """The ECE's own bins: mean confidence vs accuracy of the predicted class."""
    proba = np.asarray(proba, dtype=np.float64)
    correct = (proba.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    return reliability(correct, proba.max(axis=1), ECE_EDGES)
