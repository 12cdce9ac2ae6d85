"""Is the index test degenerate? A model that names one class for (nearly) everyone, or agrees with the reference
standard no better than chance, makes every other number of the report misleading (accuracy then equals the
prevalence of that class). The report says so at the top; the console summary prints the same line.

    assess(evaluation) -> Degeneracy      (the evaluation dict, or evaluation.json's content; no torch, no numpy)

Degenerate when any of:
- one predicted class covers >= ONE_CLASS_SHARE of the patients;
- Cohen's kappa (3x3) <= KAPPA_MAX;
- the macro one-vs-rest AUC's 95% CI includes CHANCE_AUC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from f2b_study import CLASSES
from f2b_study.present import format as fmt

ONE_CLASS_SHARE = 0.95
KAPPA_MAX = 0.05
CHANCE_AUC = 0.5


@dataclasses.dataclass(frozen=True)
class Degeneracy:
    """The verdict and the numbers behind it. ``reasons`` are sentences, empty when the test is not degenerate."""

    reasons: tuple[str, ...]
    n: int
    dominant_class: str | None = None
    dominant_share: float | None = None
    kappa: float | None = None
    auc_macro: float | None = None
    auc_macro_ci: tuple[float, float] | None = None

    @property
    def degenerate(self) -> bool:
        return bool(self.reasons)

    def headline(self) -> str:
        return ("The index test is degenerate: the model does not separate the classes." if self.degenerate
                else "")

    def explanation(self) -> str:
        if not self.degenerate:
            return ""
        return (" ".join(self.reasons) + " Accuracy, precision and recall then mostly reflect how common the "
                "predicted class is, not what the model learned from the faces. Read the numbers below as a failed "
                "test of this model, not as an estimate of Face2Bone's accuracy.")

    def console_line(self) -> str:
        """One line for the `study` / `demo` / `evaluate` summary ("" when not degenerate)."""
        if not self.degenerate:
            return ""
        return "WARNING: degenerate index test — " + " ".join(self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"degenerate": self.degenerate, "reasons": list(self.reasons), "n": self.n,
                "dominant_class": self.dominant_class, "dominant_share": self.dominant_share,
                "kappa": self.kappa, "auc_macro": self.auc_macro,
                "auc_macro_ci": list(self.auc_macro_ci) if self.auc_macro_ci else None}


def _predicted_counts(evaluation: Mapping[str, Any]) -> list[int] | None:
    counts = evaluation.get("predicted_counts")
    if counts is not None:
        return [int(c) for c in counts]
    matrix: Sequence[Sequence[Any]] | None = evaluation.get("confusion_matrix")
    if not matrix:
        return None
    return [int(sum(row[j] for row in matrix)) for j in range(len(matrix[0]))]


def assess(evaluation: Mapping[str, Any]) -> Degeneracy:
    """The degeneracy of the index test in an evaluation (``evaluate_predictions`` / ``to_document`` output)."""
    classes = list(evaluation.get("classes") or CLASSES)
    overall = evaluation.get("overall") or {}
    reasons: list[str] = []
    n = int(evaluation.get("n") or 0)

    dominant, share = None, None
    counts = _predicted_counts(evaluation)
    total = sum(counts) if counts else 0
    if counts and total:
        top = max(range(len(counts)), key=lambda k: counts[k])
        dominant, share = classes[top], counts[top] / total
        if share >= ONE_CLASS_SHARE:
            reasons.append(f"It predicted {dominant} for {counts[top]} of {total} patients "
                           f"({fmt.number(100 * share, 1)}%).")

    kappa = fmt.finite(overall.get("kappa"))
    if kappa is not None and kappa <= KAPPA_MAX:
        reasons.append(f"Cohen's κ is {fmt.number(kappa, 3)} (≤ {KAPPA_MAX:g}: agreement with the reference "
                       "standard no better than chance).")

    auc = fmt.finite(overall.get("auc_macro_ovr"))
    raw_ci = (evaluation.get("ci") or {}).get("auc_macro_ovr")
    ci = None
    if raw_ci is not None and fmt.finite(raw_ci[0]) is not None and fmt.finite(raw_ci[1]) is not None:
        ci = (float(raw_ci[0]), float(raw_ci[1]))
        if ci[0] <= CHANCE_AUC <= ci[1]:
            reasons.append(f"The macro AUC's 95% CI ({fmt.number(ci[0])} to {fmt.number(ci[1])}) includes "
                           f"{CHANCE_AUC:g}, the AUC of a coin toss.")
    return Degeneracy(reasons=tuple(reasons), n=n, dominant_class=dominant, dominant_share=share, kappa=kappa,
                      auc_macro=auc, auc_macro_ci=ci)
