"""Screening operating points: where to set the referral threshold, and what it costs and saves per 1,000 screened.

For each decision of f2b_study.stats.decision (refer for DXA when p_osteoporosis ≥ t, or when 1 − p_normal ≥ t):
- data-derived: the highest threshold whose sensitivity on the data given reaches 0.90 and 0.95, i.e. the
  ⌈target·m⌉-th highest score among the m patients with the event. Chosen on the same patients it is then
  described on, so its sensitivity is optimistic: marked "data-derived".
- pre-specified: a threshold fixed in advance (the study config's [screening] section), marked "pre-specified".
At each threshold: sensitivity, specificity, PPV and NPV with Wilson 95% intervals, DXA referrals per 1,000
screened (1,000·referred/n), missed cases per 1,000 (1,000·events not referred/n) and DXA scans avoided against
referring everyone (1,000·not referred/n).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from f2b_study.stats.decision import DECISIONS, EVENT_LABELS, decision_data, undefined_reason
from f2b_study.stats.diagnostic import accuracy_measures

TARGET_SENSITIVITIES = (0.90, 0.95)
DATA_DERIVED = "data-derived"
PRE_SPECIFIED = "pre-specified"
PER = 1000


def threshold_for_sensitivity(score: np.ndarray, event: np.ndarray, target: float) -> float | None:
    """Highest t with sensitivity(score ≥ t) ≥ target; None without events."""
    cases = np.sort(np.asarray(score, dtype=np.float64)[np.asarray(event, dtype=bool)])[::-1]
    if cases.size == 0:
        return None
    need = max(1, math.ceil(round(target * cases.size, 9)))  # round: 0.9·10 is 9.000000000000002 in floats
    return float(cases[need - 1])


def at_threshold(score: np.ndarray, event: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy and per-1,000 consequences of referring score ≥ threshold."""
    score = np.asarray(score, dtype=np.float64)
    event = np.asarray(event, dtype=bool)
    referred = score >= threshold
    n = score.size
    out: dict[str, Any] = {"threshold": float(threshold)}
    for measure, value in accuracy_measures(referred, event).items():
        out[measure] = value["estimate"]
        out[f"{measure}_ci"] = value["ci"]
    missed = int((event & ~referred).sum())
    out.update(n=int(n), referred=int(referred.sum()), missed=missed,
               referrals_per_1000=PER * float(referred.sum()) / n,
               missed_per_1000=PER * missed / n,
               scans_avoided_per_1000=PER * float((~referred).sum()) / n)
    return out


def validate_prespecified(prespecified: Mapping[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for decision, threshold in (prespecified or {}).items():
        if decision not in DECISIONS:
            raise ValueError(f"pre-specified threshold for unknown decision {decision!r} "
                             f"(expected {', '.join(DECISIONS)})")
        threshold = float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"pre-specified threshold {threshold!r} for {decision} is not a probability (0 to 1)")
        out[decision] = threshold
    return out


def operating_points(y: np.ndarray, proba: np.ndarray, prespecified: Mapping[str, float] | None = None,
                     targets: tuple[float, ...] = TARGET_SENSITIVITIES,
                     ) -> tuple[dict[str, list[dict[str, Any]] | None], dict[str, str]]:
    """{decision: [points]} (pre-specified first, then each target sensitivity) and {decision: reason} for None."""
    fixed = validate_prespecified(prespecified)
    out: dict[str, list[dict[str, Any]] | None] = {}
    reasons: dict[str, str] = {}
    for decision in DECISIONS:
        score, event = decision_data(y, proba, decision)
        reason = undefined_reason(event, EVENT_LABELS[decision])
        if reason:
            out[decision], reasons[decision] = None, reason
            continue
        points = []
        if decision in fixed:
            points.append({"basis": PRE_SPECIFIED, "target_sensitivity": None,
                           **at_threshold(score, event, fixed[decision])})
        for target in targets:
            threshold = threshold_for_sensitivity(score, event, target)
            points.append({"basis": DATA_DERIVED, "target_sensitivity": target,
                           **at_threshold(score, event, threshold)})
        out[decision] = points
    return out, reasons
