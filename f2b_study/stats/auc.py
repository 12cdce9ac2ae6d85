"""AUC (Mann–Whitney) with DeLong's variance, as R's pROC computes it (docs/methods.md, Statistics).

Written here rather than taken from a library: scikit-learn gives the AUC but no variance, and the DeLong
structural components are also what the paired test between two models and the covariance of the three
one-vs-rest AUCs (for the macro AUC's interval) are built from.

- Placements (DeLong's structural components) by midranks (Sun & Xu 2014): for a case, V10 = share of
  controls scored lower (ties count ½); for a control, V01 = share of cases scored higher (ties ½).
  AUC = mean V10 = mean V01 = the Mann–Whitney statistic. Direction is fixed: higher score = case
  (pROC's direction "<"; pROC's default "auto" would flip an AUC below 0.5, we never do).
- Variance S = var(V10)/m + var(V01)/n (sample variances, denominators m − 1 and n − 1); 95% CI
  AUC ± 1.96·√S, clipped to [0, 1] as pROC's ci.auc(method = "delong") does; undefined with fewer than two
  cases or two controls (pROC returns NA there).
- Several AUCs on the same patients: each patient's influence ψ = (V − AUC)/√(m(m − 1)) as a case,
  (V − AUC)/√(n(n − 1)) as a control; Σψ² is exactly the DeLong variance, Σψ_a·ψ_b is pROC's paired
  covariance when the cases are the same, and its natural extension when they are not (the three OvR AUCs).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


@dataclasses.dataclass(frozen=True)
class Placements:
    theta: float
    cases: np.ndarray  # V10, one per case
    controls: np.ndarray  # V01, one per control


@dataclasses.dataclass(frozen=True)
class AucResult:
    auc: float  # NaN without cases or without controls
    se: float  # NaN with fewer than two cases or two controls
    ci: tuple[float, float]
    n_cases: int
    n_controls: int


def placements(scores: np.ndarray, positive: np.ndarray) -> Placements:
    """DeLong's structural components in O(N log N) by midranks."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    cases, controls = scores[positive], scores[~positive]
    m, n = cases.size, controls.size
    if m == 0 or n == 0:
        return Placements(math.nan, np.full(m, np.nan), np.full(n, np.nan))
    ranks_all = stats.rankdata(np.concatenate([cases, controls]))
    v10 = (ranks_all[:m] - stats.rankdata(cases)) / n
    v01 = 1.0 - (ranks_all[m:] - stats.rankdata(controls)) / m
    return Placements(float(v10.mean()), v10, v01)


def variance(p: Placements) -> float:
    m, n = p.cases.size, p.controls.size
    if m <= 1 or n <= 1:
        return math.nan
    return float(np.var(p.cases, ddof=1) / m + np.var(p.controls, ddof=1) / n)


def normal_ci(estimate: float, var: float, clip: bool = True) -> tuple[float, float]:
    """estimate ± 1.96·√var; clipped to [0, 1] for an AUC (pROC)."""
    if not (math.isfinite(estimate) and math.isfinite(var)):
        return (math.nan, math.nan)
    half = Z95 * math.sqrt(max(var, 0.0))
    lo, hi = estimate - half, estimate + half
    return (min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)) if clip else (lo, hi)


def delong_auc(scores: np.ndarray, positive: np.ndarray) -> AucResult:
    p = placements(scores, positive)
    var = variance(p)
    return AucResult(auc=p.theta, se=math.sqrt(var) if math.isfinite(var) else math.nan,
                     ci=normal_ci(p.theta, var), n_cases=int(p.cases.size), n_controls=int(p.controls.size))


def influence(scores: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray]:
    """(AUC, ψ per patient) with Σψ² = DeLong's variance; ψ is NaN where the variance is undefined."""
    positive = np.asarray(positive, dtype=bool)
    p = placements(scores, positive)
    m, n = p.cases.size, p.controls.size
    psi = np.full(positive.size, np.nan)
    if m > 1 and n > 1:
        psi[positive] = (p.cases - p.theta) / math.sqrt(m * (m - 1))
        psi[~positive] = (p.controls - p.theta) / math.sqrt(n * (n - 1))
    return p.theta, psi


def covariance(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of J (score, positive) pairs on the same N patients and their DeLong covariance matrix.

    ``scores`` and ``positives`` are N×J. Rows of undefined AUCs are NaN in the covariance.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    thetas, psis = zip(*(influence(scores[:, j], positives[:, j]) for j in range(scores.shape[1])), strict=True)
    psi = np.column_stack(psis)
    return np.array(thetas), psi.T @ psi


def mean_auc(scores: np.ndarray, positives: np.ndarray,
             use: np.ndarray | None = None) -> tuple[float, float, tuple[float, float]]:
    """Mean of several AUCs (the macro OvR AUC) with its DeLong SE and 95% CI (columns ``use`` only)."""
    thetas, cov = covariance(scores, positives)
    use = np.isfinite(thetas) if use is None else np.asarray(use, dtype=bool)
    if not use.any():
        return math.nan, math.nan, (math.nan, math.nan)
    k = int(use.sum())
    estimate = float(thetas[use].mean())
    var = float(cov[np.ix_(use, use)].sum() / k**2)
    se = math.sqrt(var) if math.isfinite(var) and var >= 0 else math.nan
    return estimate, se, normal_ci(estimate, var)


def paired_test(scores_a: np.ndarray, scores_b: np.ndarray, positive: np.ndarray) -> dict:
    """DeLong's test of two correlated AUCs on the same patients (pROC roc.test(method = "delong")).

    Returns the two AUCs, their difference (a − b), its SE, 95% CI (not clipped), z and two-sided p.
    """
    a = np.column_stack([scores_a, scores_b])
    pos = np.column_stack([positive, positive])
    return difference_test(a, pos, np.array([1.0, -1.0]))


def difference_test(scores: np.ndarray, positives: np.ndarray, contrast: np.ndarray) -> dict:
    """z-test of a linear contrast of AUCs (e.g. macro AUC of model A minus that of model B)."""
    thetas, cov = covariance(scores, positives)
    contrast = np.asarray(contrast, dtype=np.float64)
    d = float(contrast @ thetas)
    var = float(contrast @ cov @ contrast)
    se = math.sqrt(var) if math.isfinite(var) and var >= 0 else math.nan
    if se == 0 and d == 0:  # noqa: SIM108 - pROC's special case: identical AUCs
        z = 0.0
    else:
        z = d / se if se and math.isfinite(se) else math.nan
    p = float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else math.nan
    return {"aucs": [float(t) for t in thetas], "difference": d, "se": se, "ci": normal_ci(d, var, clip=False),
            "z": z, "p": p}
