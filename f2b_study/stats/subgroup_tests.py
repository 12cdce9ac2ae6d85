"""Formal tests of differences between subgroups (sex, centre, age band) instead of columns side by side.

- Two levels (e.g. sex): each class's one-vs-rest AUC difference, first level minus second in sorted order
  (F − M), by DeLong's test for two independent ROC curves exactly as R's pROC roc.test(paired = FALSE,
  method = "delong"): z = (AUC_a − AUC_b)/√(Var_a + Var_b), each variance DeLong's, referred (as pROC does) to
  Student's t with Welch–Satterthwaite df = (Var_a + Var_b)²/(Var_a²/(N_a − 1) + Var_b²/(N_b − 1)), N the
  level's patients (the normal in large samples); 95% CI difference ± 1.96·√(Var_a + Var_b). The macro AUC
  likewise, each level's variance from the covariance of its three OvR AUCs.
- More levels: Cochran's Q heterogeneity test of the levels' AUCs (inverse-variance weights 1/Var_l,
  Q = Σ w_l(AUC_l − pooled)², χ² with L − 1 df), the meta-analysis test of f2b_study.stats.meta.
- Gaps at the screening operating points (thresholds chosen on all patients): sensitivity and specificity of each
  level and their difference (fairlearn's "difference" between groups); for two levels with Newcombe's hybrid
  score 95% interval for a difference of independent proportions (statsmodels confint_proportions_2indep,
  method "newcomb"); for more levels the largest minus the smallest, without an interval.
A level with one class only, or fewer than two patients of a class or of the rest, has no DeLong variance: the
test is null, with that reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from f2b_study import CLASSES
from f2b_study.stats import auc as delong
from f2b_study.stats.decision import decision_data

DELONG_UNPAIRED = "DeLong's test for two independent ROC curves"
HETEROGENEITY = "Cochran's Q test of heterogeneity of the levels' AUCs (inverse-variance weights)"


def _num(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def unpaired_test(auc_a: float, var_a: float, n_a: int, auc_b: float, var_b: float, n_b: int) -> dict[str, Any]:
    """DeLong's test of two AUCs from independent samples of n_a and n_b patients (pROC's
    delong.unpaired.test): {auc_difference, auc_difference_ci, se, z, df, p, aucs}."""
    difference = auc_a - auc_b
    se = math.sqrt(var_a + var_b)
    if se > 0:
        z = difference / se
        df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
        p = float(2 * stats.t.sf(abs(z), df))
    else:  # both AUCs 0 or 1: no variance
        z, df, p = (0.0, math.nan, 1.0) if difference == 0 else (math.copysign(math.inf, difference), math.nan, 0.0)
    return {"auc_difference": _num(difference),
            "auc_difference_ci": [_num(difference - delong.Z95 * se), _num(difference + delong.Z95 * se)],
            "se": _num(se), "z": _num(z), "df": _num(df), "p": _num(p), "aucs": [_num(auc_a), _num(auc_b)]}


def heterogeneity_test(aucs: Sequence[float], variances: Sequence[float]) -> dict[str, Any]:
    y = np.asarray(aucs, dtype=np.float64)
    w = 1 / np.asarray(variances, dtype=np.float64)
    pooled = float((w * y).sum() / w.sum())
    q = float((w * (y - pooled) ** 2).sum())
    df = y.size - 1
    return {"q": q, "df": df, "p": float(stats.chi2.sf(q, df)), "pooled_auc": pooled}


def _level_auc(y: np.ndarray, scores: np.ndarray, k: int | None) -> tuple[float, float, str | None]:
    """(AUC, DeLong variance, reason) for class k (or the macro AUC for k None) within one level."""
    if k is not None:
        positive = y == k
        if not positive.any():
            return math.nan, math.nan, f"no {CLASSES[k]} patients"
        if positive.all():
            return math.nan, math.nan, f"only {CLASSES[k]} patients"
        p = delong.placements(scores[:, k], positive)
        var = delong.variance(p)
        if not math.isfinite(var):
            return p.theta, math.nan, (f"DeLong's variance needs two {CLASSES[k]} patients and two others "
                                       f"({p.cases.size} and {p.controls.size})")
        return p.theta, var, None
    present = [j for j in range(len(CLASSES)) if 1 < int((y == j).sum()) < y.size - 1]
    if len(present) < len(CLASSES):
        missing = [CLASSES[j] for j in range(len(CLASSES)) if j not in present]
        return math.nan, math.nan, f"the macro AUC needs every class: too few {', '.join(missing)} patients"
    estimate, se, _ = delong.mean_auc(scores, y[:, None] == np.arange(len(CLASSES))[None, :])
    return estimate, se**2, None


def auc_tests(y: np.ndarray, scores: np.ndarray, values: np.ndarray, levels: Sequence[str],
              ) -> tuple[dict[str, Any], dict[str, str]]:
    """{class or "macro": test or None} and {class: reason} for the None ones."""
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    masks = [values == level for level in levels]
    for k, name in [*enumerate(CLASSES), (None, "macro")]:
        fitted = [_level_auc(y[m], scores[m], k) for m in masks]
        bad = [(level, why) for level, (_, _, why) in zip(levels, fitted, strict=True) if why]
        if len(levels) == 2:
            if bad:
                out[name] = None
                reasons[name] = "; ".join(f"{level}: {why}" for level, why in bad)
                continue
            (auc_a, var_a, _), (auc_b, var_b, _) = fitted
            out[name] = unpaired_test(auc_a, var_a, int(masks[0].sum()), auc_b, var_b, int(masks[1].sum()))
        else:
            # a level whose AUC is 0 or 1 has DeLong variance 0: an infinite weight, left out with that reason
            bad += [(level, "DeLong variance 0 (the classes are perfectly separated): infinite weight")
                    for level, (_, v, why) in zip(levels, fitted, strict=True) if not why and v <= 0]
            usable = [(level, a, v) for level, (a, v, why) in zip(levels, fitted, strict=True) if not why and v > 0]
            if len(usable) < 2:
                out[name] = None
                reasons[name] = "fewer than two levels with a DeLong variance (" + "; ".join(
                    f"{level}: {why}" for level, why in bad) + ")"
                continue
            test = heterogeneity_test([a for _, a, _ in usable], [v for _, _, v in usable])
            out[name] = {**test, "levels": [level for level, _, _ in usable],
                         "aucs": [_num(a) for _, a, _ in usable]}
            if bad:
                reasons[name] = "left out: " + "; ".join(f"{level}: {why}" for level, why in bad)
    return out, reasons


def _rate(positive: np.ndarray, case: np.ndarray) -> tuple[int, int]:
    return int((positive & case).sum()), int(case.sum())


def operating_point_gaps(y: np.ndarray, proba: np.ndarray, values: np.ndarray, levels: Sequence[str],
                         points: Mapping[str, list[dict[str, Any]] | None]) -> tuple[dict[str, Any], dict[str, str]]:
    """Per decision and operating point: each level's sensitivity and specificity and the gaps between levels."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for decision, listed in points.items():
        if not listed:
            out[decision] = None
            reasons[decision] = "no operating points for this decision"
            continue
        score, event = decision_data(y, proba, decision)
        rows = []
        for i, point in enumerate(listed):
            referred = score >= point["threshold"]
            row: dict[str, Any] = {"basis": point["basis"], "target_sensitivity": point["target_sensitivity"],
                                   "threshold": point["threshold"]}
            for measure, positive, case in (("sensitivity", referred, event), ("specificity", ~referred, ~event)):
                counts = {level: _rate(positive[values == level], case[values == level]) for level in levels}
                row[measure] = {level: (c / t if t else None) for level, (c, t) in counts.items()}
                gap, ci, why = None, None, None
                empty = [level for level, (_, t) in counts.items() if t == 0]
                if empty:
                    what = "patients with" if measure == "sensitivity" else "patients without"
                    why = f"{', '.join(empty)}: no {what} the event, no {measure}"
                elif len(levels) == 2:
                    (c1, t1), (c2, t2) = counts[levels[0]], counts[levels[1]]
                    gap = c1 / t1 - c2 / t2
                    lo, hi = confint_proportions_2indep(c1, t1, c2, t2, method="newcomb")
                    ci = [float(lo), float(hi)]
                else:
                    rates = [c / t for c, t in counts.values()]
                    gap = max(rates) - min(rates)
                    why = "more than two levels: largest minus smallest, no interval"
                row[f"{measure}_gap"] = gap
                row[f"{measure}_gap_ci"] = ci
                if why:
                    reasons[f"{decision}.{i}.{measure}_gap"] = why
            rows.append(row)
        out[decision] = rows
    return out, reasons


def subgroup_tests(y: np.ndarray, proba: np.ndarray, values: np.ndarray,
                   points: Mapping[str, list[dict[str, Any]] | None] | None = None,
                   ) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """All tests of one subgroup column (``values``: level per row, None where unknown, left out)."""
    values = np.asarray(values, dtype=object)
    known = np.array([v is not None for v in values], dtype=bool)
    y, proba, values = np.asarray(y)[known], np.asarray(proba, dtype=np.float64)[known], values[known].astype(str)
    levels = sorted(set(values.tolist()))
    if len(levels) < 2:
        return None, {"": f"{len(levels)} level(s): nothing to compare"}
    tests, reasons = auc_tests(y, proba, values, levels)
    out: dict[str, Any] = {**tests, "levels": levels, "n": {level: int((values == level).sum()) for level in levels},
                           "test": DELONG_UNPAIRED if len(levels) == 2 else HETEROGENEITY}
    if len(levels) == 2:
        out["difference"] = f"{levels[0]} − {levels[1]}"
    if points:
        gaps, gap_reasons = operating_point_gaps(y, proba, values, levels, points)
        out["operating_points"] = gaps
        reasons.update({f"operating_points.{key}": why for key, why in gap_reasons.items()})
    return out, reasons
