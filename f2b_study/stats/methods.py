"""Methods text of the clinical-utility statistics (issue 15), generated from the constants the code uses, so the
report can never describe a definition other than the one computed.

``methods_definitions(evaluation)`` returns plain sentences (no markup) for a report or a paper's methods
section; given an evaluation (the full dict or its ``to_document`` form) it also states what that evaluation
actually did: the bootstrap replicates, pre-specified thresholds, subgroup columns tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from f2b_study.stats import calibration_curve as flex
from f2b_study.stats.bootstrap import REPLICATES
from f2b_study.stats.calibration_slope import CLIP
from f2b_study.stats.compare import TABLE_THRESHOLDS
from f2b_study.stats.decision import THRESHOLDS
from f2b_study.stats.operating import TARGET_SENSITIVITIES


def _pct(values: tuple[float, ...]) -> str:
    return ", ".join(f"{100 * v:g}th" for v in values)


def _thresholds_used(evaluation: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for decision, points in (evaluation.get("operating_points") or {}).items():
        for point in points or []:
            if point.get("basis") == "pre-specified":
                out[decision] = point["threshold"]
    return out


def methods_definitions(evaluation: Mapping[str, Any] | None = None) -> list[str]:
    """Sentences defining decision curves, calibration intercept/slope and curve, diagnostic accuracy, operating
    points, weighted kappa, subgroup tests and model comparison, as computed."""
    evaluation = evaluation or {}
    replicates = (evaluation.get("bootstrap") or {}).get("replicates", REPLICATES)
    lo, hi = float(THRESHOLDS[0]), float(THRESHOLDS[-1])
    step = float(THRESHOLDS[1] - THRESHOLDS[0])
    sentences = [
        "Clinical utility was assessed by decision curve analysis (Vickers and Elkin, 2006) for two referral "
        "decisions: referral for DXA when the predicted probability of osteoporosis was at least the threshold "
        "probability t (event: osteoporosis), and when the predicted probability of low bone mass, 1 − p(normal), "
        "was at least t (event: osteopenia or osteoporosis). Net benefit was TP/n − FP/n × t/(1 − t) at every t "
        f"from {lo:.2f} to {hi:.2f} in steps of {step:.2f}, compared with referring every patient "
        "(prevalence − (1 − prevalence) × t/(1 − t)) and referring none (0). The OSTA index, which gives risk "
        "categories rather than probabilities, was shown as a fixed referral rule (high risk for osteoporosis; "
        "moderate or high risk for low bone mass).",
        "Calibration was assessed one-vs-rest for each class with predicted probabilities clipped to "
        f"[{CLIP:g}, 1 − {CLIP:g}]: the calibration intercept (calibration-in-the-large) is the intercept of a "
        "logistic regression of the outcome on a constant with logit(p) as offset, and the calibration slope is the "
        "coefficient of logit(p) in a logistic regression of the outcome on logit(p); both with 95% Wald "
        "confidence intervals (ideal values 0 and 1).",
        "Flexible calibration curves were a logistic regression of the outcome on a restricted cubic spline of "
        f"logit(p) with {len(flex.KNOTS_4)} knots at the {_pct(flex.KNOTS_4)} percentiles "
        f"({len(flex.KNOTS_3)} knots at the {_pct(flex.KNOTS_3)} when fewer than {flex.MIN_EVENTS_4_KNOTS} patients "
        f"had or lacked the class), drawn from the {100 * flex.GRID_RANGE[0]:g}st to the "
        f"{100 * flex.GRID_RANGE[1]:g}th percentile of p, with a pointwise 95% percentile band from {replicates:,} "
        "patient-level bootstrap replicates (patients grouped into at most "
        f"{flex.GROUPS} groups of logit(p) for the fit).",
        "Sensitivity, specificity, positive and negative predictive values were computed one-vs-rest on the "
        "predicted class (the class of highest probability), each with a Wilson score 95% confidence interval.",
        "Screening operating points: for each referral decision, the highest threshold reaching a sensitivity of "
        + " and ".join(f"{v:.2f}" for v in TARGET_SENSITIVITIES)
        + " on the evaluated patients (data-derived, hence optimistic), and any threshold fixed before the "
        "analysis (pre-specified); at each, sensitivity and specificity (Wilson 95% CIs), DXA referrals per 1,000 "
        "screened, missed cases per 1,000 and scans avoided per 1,000 compared with referring everyone.",
        "Agreement on the ordered three-class scale was also summarised by linear and quadratic weighted Cohen's "
        "kappa (disagreement weights |i − j| and (i − j)²), with patient-level bootstrap 95% percentile intervals.",
        "Differences between two subgroups (e.g. women minus men, levels in alphabetical order) in each class's "
        "one-vs-rest AUC and in the macro AUC were tested by DeLong's test for two independent ROC curves "
        "(z = ΔAUC/√(Var₁ + Var₂)); for subgroups with more than two levels, Cochran's Q test of heterogeneity of "
        "the AUCs with inverse-variance weights. Gaps in sensitivity and specificity between two subgroups at the "
        "operating points are given with Newcombe's hybrid score 95% interval.",
        "Models evaluated on the same patients were compared by DeLong's test for two correlated ROC curves per "
        "class and for the macro AUC, and by the difference in net benefit at each threshold, with patient-level "
        f"bootstrap 95% intervals at t = {', '.join(f'{t:.2f}' for t in TABLE_THRESHOLDS)}.",
    ]
    fixed = _thresholds_used(evaluation)
    if fixed:
        sentences.append("Pre-specified thresholds: " + "; ".join(
            f"{'osteoporosis' if d == 'osteoporosis' else 'low bone mass'} t = {t:g}" for d, t in fixed.items()) + ".")
    tested = list((evaluation.get("subgroup_tests") or {}).keys())
    if tested:
        sentences.append("Subgroup difference tests were run for: " + ", ".join(tested) + ".")
    return sentences
