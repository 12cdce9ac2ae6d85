"""Decision curves (Vickers & Elkin 2006), as MSKCC's dcurves computes them for a binary outcome.

Two screening decisions, each a yes/no question the model's probabilities answer:
- ``osteoporosis``: refer to DXA when p_osteoporosis ≥ t; the event is DXA osteoporosis.
- ``low_bone_mass``: refer when 1 − p_normal ≥ t; the event is osteopenia or osteoporosis.

At threshold probability t, net benefit = TP/n − FP/n · t/(1 − t), referring when the score is ≥ t (dcurves'
`risk >= threshold`); refer-all = prevalence − (1 − prevalence) · t/(1 − t); refer-none = 0. Thresholds are
k/100 for k = 1…99 (dcurves' default grid without 0). A fixed rule (a comparator that gives categories, not
probabilities) refers the same patients at every t, as dcurves does with a 0/1 predictor.

Written here rather than calling dcurves: dcurves pins pandas < 3 (it would downgrade ours) and loops over
thresholds in pandas; here the counts at all 99 thresholds come from one sort. tests/test_stats_decision.py checks
every number against dcurves 1.1.7 output stored as a fixture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

THRESHOLDS = np.arange(1, 100) / 100  # k/100: the same doubles as dcurves' [i / 100 for i in range(100)]
DECISIONS = ("osteoporosis", "low_bone_mass")
DECISION_LABELS = {"osteoporosis": "refer for DXA when p(osteoporosis) ≥ t",
                   "low_bone_mass": "refer for DXA when p(osteopenia) + p(osteoporosis) = 1 − p(normal) ≥ t"}
EVENT_LABELS = {"osteoporosis": "osteoporosis", "low_bone_mass": "low bone mass (osteopenia or osteoporosis)"}


def decision_data(y: np.ndarray, proba: np.ndarray, decision: str) -> tuple[np.ndarray, np.ndarray]:
    """(score, event) of one decision from class indices ``y`` (0 normal … 2 osteoporosis) and N×3 ``proba``."""
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if decision == "osteoporosis":
        return proba[:, 2], y == 2
    if decision == "low_bone_mass":
        return 1.0 - proba[:, 0], y != 0
    raise ValueError(f"unknown decision {decision!r} (expected one of {', '.join(DECISIONS)})")


def decision_rule(y: np.ndarray, predicted: np.ndarray, decision: str) -> tuple[np.ndarray, np.ndarray]:
    """(refer 0/1, event) of one decision from predicted classes: refer osteoporosis / anything but normal."""
    y = np.asarray(y, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if decision == "osteoporosis":
        return (predicted == 2).astype(np.float64), y == 2
    if decision == "low_bone_mass":
        return (predicted != 0).astype(np.float64), y != 0
    raise ValueError(f"unknown decision {decision!r} (expected one of {', '.join(DECISIONS)})")


@dataclasses.dataclass(frozen=True)
class Counts:
    """Patients referred at each threshold: true positives (events) and false positives (non-events)."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n: int
    events: int


def referral_counts(score: np.ndarray, event: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> Counts:
    """TP and FP when referring score ≥ t, at every t, by binary search in the sorted scores (O(N log N))."""
    score = np.asarray(score, dtype=np.float64)
    event = np.asarray(event, dtype=bool)
    t = np.asarray(thresholds, dtype=np.float64)
    cases = np.sort(score[event])
    controls = np.sort(score[~event])
    tp = cases.size - np.searchsorted(cases, t, side="left")
    fp = controls.size - np.searchsorted(controls, t, side="left")
    return Counts(t, tp.astype(np.int64), fp.astype(np.int64), int(score.size), int(cases.size))


def net_benefit(counts: Counts) -> np.ndarray:
    t = counts.thresholds
    return counts.tp / counts.n - counts.fp / counts.n * t / (1 - t)


def net_benefit_all(prevalence: float, thresholds: Sequence[float] = THRESHOLDS) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64)
    return prevalence - (1 - prevalence) * t / (1 - t)


def undefined_reason(event: np.ndarray, what: str) -> str | None:
    """Why a decision curve is not shown: no events or no non-events (refer-all and the model coincide)."""
    event = np.asarray(event, dtype=bool)
    if event.size == 0:
        return "no patients"
    if not event.any():
        return f"no patients with {what}: every referral is a false positive, the curve says nothing"
    if event.all():
        return f"every patient has {what}: no patient can be spared a referral, the curve says nothing"
    return None


def curve(score: np.ndarray, event: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> list[dict[str, float]]:
    """``[{threshold, net_benefit, net_benefit_all}]`` (refer-none is 0 at every threshold)."""
    counts = referral_counts(score, event, thresholds)
    nb = net_benefit(counts)
    nb_all = net_benefit_all(counts.events / counts.n, counts.thresholds)
    return [{"threshold": float(t), "net_benefit": float(a), "net_benefit_all": float(b)}
            for t, a, b in zip(counts.thresholds, nb, nb_all, strict=True)]


def decision_curves(y: np.ndarray, proba: np.ndarray | None = None, predicted: np.ndarray | None = None,
                    ) -> tuple[dict[str, list[dict[str, float]] | None], dict[str, str]]:
    """Both decisions' curves ({decision: curve or None}) and {decision: reason} for the None ones.

    With ``proba`` the probabilities are thresholded; with ``predicted`` only, the predicted categories are a
    fixed referral rule.
    """
    out: dict[str, list[dict[str, float]] | None] = {}
    reasons: dict[str, str] = {}
    for decision in DECISIONS:
        if proba is not None:
            score, event = decision_data(y, proba, decision)
        elif predicted is not None:
            score, event = decision_rule(y, predicted, decision)
        else:
            raise ValueError("decision_curves needs proba or predicted")
        reason = undefined_reason(event, EVENT_LABELS[decision])
        if reason:
            out[decision] = None
            reasons[decision] = reason
        else:
            out[decision] = curve(score, event)
    return out, reasons
