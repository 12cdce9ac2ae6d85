"""Diagnostic accuracy (STARD item 24): sensitivity, specificity, PPV and NPV with Wilson 95% intervals.

One-vs-rest on the predicted class: for class k a patient tests positive when the predicted class (argmax) is k
and is a case when the reference standard is k. sensitivity = TP/(TP + FN), specificity = TN/(TN + FP),
PPV = TP/(TP + FP), NPV = TN/(TN + FN); each a binomial proportion with the Wilson score interval
(statsmodels' proportion_confint(method="wilson"), which R's prop.test(correct = FALSE) also gives).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MEASURES = ("sensitivity", "specificity", "ppv", "npv")
LEVEL = 0.95
_DENOMINATOR = {"sensitivity": "patients with {c}", "specificity": "patients without {c}",
                "ppv": "patients predicted {c}", "npv": "patients predicted other than {c}"}


def wilson(count: float, total: float, level: float = LEVEL) -> tuple[float, float] | None:
    from statsmodels.stats.proportion import proportion_confint

    if total <= 0:
        return None
    lo, hi = proportion_confint(count, total, alpha=1 - level, method="wilson")
    return float(lo), float(hi)


def proportion(count: float, total: float) -> dict[str, Any]:
    """{estimate, ci, count, total}; estimate and ci None when the denominator is 0."""
    if total <= 0:
        return {"estimate": None, "ci": None, "count": int(count), "total": int(total)}
    return {"estimate": float(count / total), "ci": list(wilson(count, total)), "count": int(count),
            "total": int(total)}


def two_by_two(positive: np.ndarray, case: np.ndarray) -> dict[str, int]:
    positive = np.asarray(positive, dtype=bool)
    case = np.asarray(case, dtype=bool)
    return {"tp": int((positive & case).sum()), "fp": int((positive & ~case).sum()),
            "fn": int((~positive & case).sum()), "tn": int((~positive & ~case).sum())}


def accuracy_measures(positive: np.ndarray, case: np.ndarray) -> dict[str, dict[str, Any]]:
    """The four measures of a binary test, each as ``proportion``."""
    t = two_by_two(positive, case)
    return {"sensitivity": proportion(t["tp"], t["tp"] + t["fn"]),
            "specificity": proportion(t["tn"], t["tn"] + t["fp"]),
            "ppv": proportion(t["tp"], t["tp"] + t["fp"]),
            "npv": proportion(t["tn"], t["tn"] + t["fn"])}


def per_class_measures(y: np.ndarray, predicted: np.ndarray,
                       classes: tuple[str, ...]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """{class: {sensitivity, sensitivity_ci, …, npv_ci}} and {"<class>.<measure>": reason} for the nulls."""
    y = np.asarray(y)
    predicted = np.asarray(predicted)
    out: dict[str, dict[str, Any]] = {}
    reasons: dict[str, str] = {}
    for k, name in enumerate(classes):
        entry: dict[str, Any] = {}
        for measure, value in accuracy_measures(predicted == k, y == k).items():
            entry[measure] = value["estimate"]
            entry[f"{measure}_ci"] = value["ci"]
            if value["estimate"] is None:
                reasons[f"{name}.{measure}"] = f"no {_DENOMINATOR[measure].format(c=name)}: the denominator is 0"
        out[name] = entry
    return out, reasons
