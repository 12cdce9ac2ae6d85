"""Site summaries: one centre's validation as aggregates only, for multi-centre studies whose centres may not send
patient-level data (docs/multicentre.md). `f2b-study site-summary` writes one; `f2b-study pool` pools several
(stats/pooling.py).

A summary holds the site's participant flow, its Table 1 summaries, the site's own evaluation (every figure
`study` shows for a centre, computed by the same code), and the components a coordinating centre needs to pool
the sites exactly where that is possible: confusion matrices, Brier sums, ECE and reliability bins,
Hosmer–Lemeshow groups, counts at or above each decision threshold, and DeLong covariances of the AUCs (the index
test's three one-vs-rest AUCs, and index test against each comparator on the same patients).

Disclosure control, with N = ``[privacy] min_cell`` (rules in DISCLOSURE_RULES, applied table by table):
- counts that describe patients by a characteristic or an exclusion reason (flow reasons, Table 1, subgroups by
  sex and age band) are shown only when 0 or ≥ N: small exclusion reasons are merged into one "other" line (with
  the next smallest until it reaches N, so it cannot be recovered from the total); a Table 1 column or a subgroup
  level with a small count is withheld, and so is the next smallest one when the withheld ones could otherwise be
  recovered as the total minus the rest;
- a measured value (age, BMI, probability) is only ever summed or averaged over ≥ N patients: reliability and
  Hosmer–Lemeshow bins with fewer are merged with their neighbours, an ECE bin with fewer keeps its counts but not
  its sum of confidences; minima and maxima are never written; medians and quartiles are rounded to the precision
  Table 1 shows;
- the whole site's cross-tabulation of index test against reference standard, and the counts at or above each
  decision threshold, are kept whole: they carry no patient characteristic, a STARD report publishes them
  (items 23–24), and keeping them makes the pooled accuracy figures and decision curves exact.

The checksum is sha256 over the canonical JSON of everything else: it detects a file edited or damaged after it
was written, not a forger (anyone can recompute it; a shared signing key would be needed for that).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES
from f2b_study.errors import InputError
from f2b_study.jsonutil import json_safe
from f2b_study.stats import auc as delong
from f2b_study.stats import calibration as cal
from f2b_study.stats.auc import Z95
from f2b_study.stats.metrics import confusion_matrix

FORMAT = "f2b-study site summary"
SCHEMA_VERSION = 1
K = len(CLASSES)
NORMAL, OSTEOPOROSIS = CLASSES.index("normal"), CLASSES.index("osteoporosis")
THRESHOLDS = np.arange(1, 100) / 100  # decision thresholds 0.01, 0.02, …, 0.99
DECISIONS = {
    "osteoporosis": "refer when p(osteoporosis) ≥ t; the event is osteoporosis",
    "low_bone_mass": "refer when 1 − p(normal) ≥ t; the event is osteopenia or osteoporosis",
}
QUANTILE_DECIMALS = 1  # medians and quartiles are written as Table 1 shows them
TABLE1_BY = ("bone_status", "sex")
TABLE1_VARIABLES = ("sex", "bone_status", "age_years", "height_cm", "weight_kg", "bmi")
OVERALL = "Overall"
CHECKSUM_OF = "sha256 of the canonical JSON (keys sorted, no spaces, UTF-8) of every key but 'checksum'"
DISCLOSURE_RULES = (
    "Counts that describe patients by a characteristic or an exclusion reason (flow reasons, Table 1, subgroups "
    "by sex and age band) are shown only when 0 or at least min_cell; smaller exclusion reasons are merged into "
    "one 'other' line, which takes the next smallest reason too until it reaches min_cell.",
    "A Table 1 column or a subgroup level with a count below min_cell is withheld, and so is the next smallest "
    "one whenever the withheld ones could be recovered as the total minus the rest.",
    "A measured value (age, BMI, a probability) is only summed or averaged over at least min_cell patients: "
    "reliability and Hosmer–Lemeshow bins with fewer are merged with their neighbours, an ECE bin with fewer keeps "
    "its counts but not its sum of confidences; no minimum or maximum is written; medians and quartiles are rounded "
    "to one decimal.",
    "The whole site's cross-tabulation of each test against the reference standard and the counts at or above "
    "each decision threshold are kept whole: they carry no patient characteristic and a STARD report publishes "
    "them (items 23-24).",
    "No patient ID, pseudonym, photo name or file path is written.",
)


def other_reasons(min_cell: int) -> str:
    return f"other reasons (each fewer than {min_cell} patients at a centre)"


# -- disclosure control ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Disclosure:
    """The site's min_cell and a record of everything withheld or merged (written into the summary)."""

    min_cell: int
    withheld: list[dict[str, str]] = dataclasses.field(default_factory=list)
    merged: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def small(self, counts: Any) -> bool:
        values = np.asarray(counts, dtype=np.float64)
        return bool(((values > 0) & (values < self.min_cell)).any())

    def withhold(self, where: str, why: str) -> dict[str, str]:
        self.withheld.append({"where": where, "why": why})
        return {"withheld": why}

    def to_json(self) -> dict[str, Any]:
        return {"min_cell": self.min_cell, "rules": list(DISCLOSURE_RULES), "withheld": self.withheld,
                "merged": self.merged}


def merge_partition(counts: Mapping[str, int], min_cell: int) -> tuple[dict[str, int], list[str]]:
    """A partition of patients by reason with every reason of 1..min_cell−1 patients merged into one 'other'
    line; while that line is itself below min_cell, the next smallest reason joins it (so it cannot be
    recovered by subtracting the shown reasons from the total). Returns (counts, merged reasons)."""
    shown = {k: int(v) for k, v in counts.items()}
    merged = [k for k, v in shown.items() if 0 < v < min_cell]
    if not merged:
        return shown, []
    other = sum(shown.pop(k) for k in merged)
    while 0 < other < min_cell:
        rest = [k for k, v in shown.items() if v > 0]
        if not rest:
            break
        smallest = min(rest, key=lambda k: (shown[k], k))
        other += shown.pop(smallest)
        merged.append(smallest)
    shown[other_reasons(min_cell)] = other
    return shown, merged


def withheld_columns(vectors: Mapping[str, np.ndarray], total: np.ndarray, disclosure: Disclosure,
                     already: Mapping[str, str] | None = None) -> dict[str, str]:
    """{column: why} of the columns (Table 1 groups, subgroup levels) to withhold: those with a count of
    1..min_cell−1, then the next smallest while what the withheld ones add up to (the total minus the shown
    columns) would itself show such a count."""
    out = dict(already or {})
    for column, vector in vectors.items():
        if column not in out and disclosure.small(vector):
            out[column] = f"a count below min_cell ({disclosure.min_cell})"
    while out:
        shown = [c for c in vectors if c not in out]
        remainder = np.asarray(total, dtype=np.float64) - sum((np.asarray(vectors[c], dtype=np.float64)
                                                               for c in shown), np.zeros(np.shape(total)))
        candidates = [c for c in shown if np.sum(vectors[c]) > 0]  # withholding an empty column hides nothing
        if not candidates or not disclosure.small(remainder):
            break
        smallest = min(candidates, key=lambda c: (float(np.sum(vectors[c])), c))
        out[smallest] = ("withheld too, so that the withheld ones cannot be recovered as the total minus the "
                         "shown ones")
    return out


def merge_small_bins(bins: list[dict[str, Any]], min_cell: int) -> tuple[list[dict[str, Any]], int]:
    """Ordered bins (each with ``n`` and sums) with every non-empty bin of fewer than min_cell patients merged
    with the bins after it (the last ones with the bins before) until the merged bin holds min_cell; empty bins
    stay as they are. Returns (bins, how many bins were merged into others)."""
    out: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    merged = 0
    for item in bins:
        if pending is None:
            if 0 < item["n"] < min_cell:
                pending = dict(item)
            else:
                out.append(dict(item))
            continue
        pending = _combine(pending, item)
        merged += 1
        if pending["n"] >= min_cell:
            out.append(pending)
            pending = None
    if pending is not None:
        filled = [i for i, b in enumerate(out) if b["n"] > 0]
        if filled:
            start = filled[-1]
            combined = out[start]
            for later in [*out[start + 1:], pending]:
                combined = _combine(combined, later)
                merged += 1
            out = [*out[:start], combined]
        else:
            out.append(pending)
    return out, merged


def _combine(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if key == "lo":
            continue
        if key == "hi":
            out["hi"] = value
        elif isinstance(value, list):
            out[key] = [x + y for x, y in zip(a[key], value, strict=True)]
        else:
            out[key] = a[key] + value
    return out


# -- the components of one model's results ---------------------------------------------------------------------------

def one_hot(y: np.ndarray) -> np.ndarray:
    return np.asarray(y)[:, None] == np.arange(K)[None, :]


def decision_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(event, score) of each decision of the decision curves."""
    return {"osteoporosis": (y == OSTEOPOROSIS, proba[:, OSTEOPOROSIS]),
            "low_bone_mass": (y != NORMAL, 1.0 - proba[:, NORMAL])}


def at_or_above(scores: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """How many scores are ≥ each threshold."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    return ordered.size - np.searchsorted(ordered, thresholds, side="left")


def threshold_counts(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """Counts at or above each threshold: per decision (true and false positives: the decision curves), and per
    class one-vs-rest on p_k (cases and controls: the ROC curve at the thresholds)."""
    decisions = {}
    for name, (event, score) in decision_scores(y, proba).items():
        decisions[name] = {"n": int(y.size), "events": int(event.sum()),
                           "tp": at_or_above(score[event]).tolist(), "fp": at_or_above(score[~event]).tolist()}
    roc = {}
    for k, name in enumerate(CLASSES):
        case = y == k
        roc[name] = {"cases": int(case.sum()), "controls": int((~case).sum()),
                     "cases_at_or_above": at_or_above(proba[case, k]).tolist(),
                     "controls_at_or_above": at_or_above(proba[~case, k]).tolist()}
    return {"decisions": decisions, "roc": roc}


def ece_bins(proba: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """The ECE's 15 bins of the top-label confidence: patients, sum of confidences, correct predictions."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    index = cal.ece_bins(confidence)
    n = np.bincount(index, minlength=cal.ECE_BINS)
    conf = np.bincount(index, weights=confidence, minlength=cal.ECE_BINS)
    hits = np.bincount(index, weights=correct, minlength=cal.ECE_BINS)
    return [{"lo": float(cal.ECE_EDGES[b]), "hi": float(cal.ECE_EDGES[b + 1]), "n": int(n[b]),
             "sum_confidence": float(conf[b]), "correct": int(np.rint(hits[b]))} for b in range(cal.ECE_BINS)]


def reliability_bins(event: np.ndarray, p: np.ndarray) -> list[dict[str, Any]]:
    """The per-class reliability diagram's equal-width bins (cal.reliability's): patients, sum of p, events."""
    edges = np.linspace(0.0, 1.0, cal.RELIABILITY_BINS + 1)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, cal.RELIABILITY_BINS - 1)
    n = np.bincount(index, minlength=cal.RELIABILITY_BINS)
    sum_p = np.bincount(index, weights=p, minlength=cal.RELIABILITY_BINS)
    events = np.bincount(index, weights=event.astype(np.float64), minlength=cal.RELIABILITY_BINS)
    return [{"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(n[b]), "sum_p": float(sum_p[b]),
             "events": int(np.rint(events[b]))} for b in range(cal.RELIABILITY_BINS)]


def hl_group_table(outcomes: np.ndarray, probabilities: np.ndarray, score: np.ndarray) -> list[dict[str, Any]]:
    """Hosmer–Lemeshow groups exactly as stats.calibration forms them (deciles of ``score``), in order: patients,
    observed and expected count of each outcome column. The breaks (quantiles of the site's probabilities) are
    not written."""
    index, breaks = cal.hl_groups(score)
    levels = max(breaks.size - 1, 1)
    n = np.bincount(index, minlength=levels)
    observed = np.stack([np.bincount(index, weights=outcomes[:, c], minlength=levels)
                         for c in range(outcomes.shape[1])], axis=1)
    expected = np.stack([np.bincount(index, weights=probabilities[:, c], minlength=levels)
                         for c in range(outcomes.shape[1])], axis=1)
    return [{"n": int(n[g]), "observed": [int(np.rint(v)) for v in observed[g]],
             "expected": [float(v) for v in expected[g]]} for g in range(levels)]


def hl_groups_of(y: np.ndarray, proba: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    """Per class one-vs-rest on p_k (outcome columns: not k, k) and multinomial on 1 − p(normal)."""
    out = {}
    for k, name in enumerate(CLASSES):
        event = (y == k).astype(np.float64)
        out[name] = hl_group_table(np.column_stack([1 - event, event]),
                                   np.column_stack([1 - proba[:, k], proba[:, k]]), proba[:, k])
    out["multinomial"] = hl_group_table(one_hot(y).astype(np.float64), proba, 1.0 - proba[:, NORMAL])
    return out


def probability_components(y: np.ndarray, proba: np.ndarray, disclosure: Disclosure,
                           where: str) -> dict[str, Any]:
    """Everything a pool needs of a model that gives probabilities, with small bins merged."""
    predicted = proba.argmax(axis=1)
    cm = confusion_matrix(y, predicted, K)
    thetas, cov = delong.covariance(proba, one_hot(y))
    brier = cal.brier_rows(proba, y)
    out: dict[str, Any] = {
        "n": int(y.size),
        "support": cm.sum(axis=1).tolist(),
        "confusion_matrix": cm.tolist(),
        "auc": [_num(t) for t in thetas],
        "auc_covariance": _matrix(cov),
        "brier_sums": {"multiclass": float(brier.sum()), "per_class": brier.sum(axis=0).tolist()},
    }
    # a bin's patients and correct predictions are outcome counts (the threshold counts show as much); the sum of
    # confidences is a measured value: withheld below min_cell, the pool then knows it within n·[lo, hi)
    ece = ece_bins(proba, y)
    small = [b for b in ece if disclosure.small([b["n"]])]
    for b in small:
        b["sum_confidence"] = None
    if small:
        disclosure.withheld.append({"where": f"{where}.ece_bins", "why": f"the sum of confidences of {len(small)} "
                                    f"bin(s) with fewer than {disclosure.min_cell} patients (their n and correct "
                                    "predictions kept)"})
    out["ece_bins"] = ece
    out["reliability_bins"] = {}
    for k, name in enumerate(CLASSES):
        bins, merged = merge_small_bins(reliability_bins(y == k, proba[:, k]), disclosure.min_cell)
        _note_merge(disclosure, f"{where}.reliability_bins.{name}", merged)
        out["reliability_bins"][name] = bins
    out["hosmer_lemeshow_groups"] = {}
    for name, groups in hl_groups_of(y, proba).items():
        groups, merged = merge_small_bins(groups, disclosure.min_cell)
        _note_merge(disclosure, f"{where}.hosmer_lemeshow_groups.{name}", merged)
        out["hosmer_lemeshow_groups"][name] = groups
    out["threshold_counts"] = threshold_counts(y, proba)
    return out


def _note_merge(disclosure: Disclosure, where: str, merged: int) -> None:
    if merged:
        disclosure.merged.append({"where": where, "why": f"{merged} bin(s) with fewer than {disclosure.min_cell} "
                                  "patients merged with their neighbours"})


def paired_components(y: np.ndarray, index_proba: np.ndarray, other_scores: np.ndarray,
                      macro: bool) -> dict[str, Any]:
    """The index test's and a comparator's one-vs-rest AUCs on the same patients (columns: index normal,
    osteopenia, osteoporosis, then the comparator's) with their DeLong covariance, and the paired tests
    (index − comparator) per class and, when the comparator ranks every class, of the macro AUC."""
    positives = one_hot(y)
    thetas, cov = delong.covariance(np.hstack([index_proba, other_scores]), np.hstack([positives, positives]))
    tests: dict[str, Any] = {}
    for k, name in enumerate(CLASSES):
        contrast = np.zeros(2 * K)
        contrast[k], contrast[K + k] = 1.0, -1.0
        tests[name] = contrast_test(thetas, cov, contrast) if np.isfinite(thetas[[k, K + k]]).all() else None
    if macro and np.isfinite(thetas).all():
        contrast = np.concatenate([np.full(K, 1 / K), np.full(K, -1 / K)])
        tests["macro"] = contrast_test(thetas, cov, contrast)
        tests["macro"]["aucs"] = [float(thetas[:K].mean()), float(thetas[K:].mean())]
    return {"n": int(y.size), "aucs": [_num(t) for t in thetas], "covariance": _matrix(cov), "tests": tests}


def contrast_test(thetas: np.ndarray, cov: np.ndarray, contrast: np.ndarray) -> dict[str, Any]:
    """z-test of a contrast of correlated AUCs (stats.auc.difference_test from the AUCs and their covariance)."""
    from scipy import stats

    used = np.flatnonzero(contrast)
    d = float(contrast[used] @ thetas[used])
    var = float(contrast[used] @ cov[np.ix_(used, used)] @ contrast[used])
    se = math.sqrt(var) if math.isfinite(var) and var >= 0 else math.nan
    z = 0.0 if se == 0 and d == 0 else (d / se if se and math.isfinite(se) else math.nan)
    p = float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else math.nan
    half = Z95 * se if math.isfinite(se) else math.nan
    pair = [_num(thetas[used[0]]), _num(thetas[used[-1]])] if used.size == 2 else None
    return {"aucs": pair, "difference": _num(d), "se": _num(se),
            "ci": None if not math.isfinite(half) else [d - half, d + half], "z": _num(z), "p": _num(p)}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _matrix(values: np.ndarray) -> list[list[float | None]]:
    return [[_num(v) for v in row] for row in np.asarray(values, dtype=np.float64)]


# -- the site's own evaluation ---------------------------------------------------------------------------------------

EVALUATION_KEYS = ("n", "classes", "overall", "per_class", "hosmer_lemeshow_multinomial", "confusion_matrix", "ci",
                   "support", "predicted_counts", "auc_se")
_HL_BREAKS = re.compile(r"\([^()]*\d[^()]*, [^()]*\d[^()]*\]")


def evaluation_document(ev: Mapping[str, Any]) -> dict[str, Any]:
    """The site's evaluation as `study` computes it per centre, without what names or describes single patients
    (the most confident errors, the ROC and reliability curves) and without its subgroups (written apart, under
    disclosure control)."""
    doc = {key: json_safe(ev[key]) for key in EVALUATION_KEYS if key in ev}
    # a note on an empty Hosmer–Lemeshow group quotes the group's bounds (quantiles of the site's probabilities)
    doc["notes"] = {path: _HL_BREAKS.sub("(a quantile group)", reason) for path, reason in ev["notes"].items()
                    if not path.startswith("subgroups.")}
    boot = ev.get("bootstrap") or {}
    doc["bootstrap"] = {k: boot.get(k) for k in ("replicates", "seed", "level", "unit")}
    return doc


def subgroup_summary(ev: Mapping[str, Any], disclosure: Disclosure) -> dict[str, Any]:
    """Per subgroup column (sex, age band), per level: its counts by class, confusion matrix and its own
    figures, a level withheld (with the next smallest, see withheld_columns) when its table has a small cell."""
    out: dict[str, Any] = {}
    total = np.asarray(ev["confusion_matrix"], dtype=np.float64).ravel()
    for column, levels in (ev.get("subgroups") or {}).items():
        vectors = {level: np.asarray(sub["confusion_matrix"], dtype=np.float64).ravel()
                   for level, sub in levels.items()}
        withheld = withheld_columns(vectors, total, disclosure)
        entry: dict[str, Any] = {}
        for level, sub in levels.items():
            if level in withheld:
                entry[level] = disclosure.withhold(f"subgroups.{column}.{level}", withheld[level])
                continue
            doc = evaluation_document(sub)
            doc["auc"] = {name: {"auc": sub["per_class"][name]["auc"], "se": sub["auc_se"].get(name)}
                          for name in CLASSES}
            entry[level] = doc
        out[column] = entry
    return out


# -- the participant flow and Table 1 ----------------------------------------------------------------------------

def flow_summary(flow: Mapping[str, Any], disclosure: Disclosure) -> dict[str, Any]:
    """The site's participant flow (ParticipantFlow.to_dict) with exclusion reasons and photo-stage reasons of
    fewer than min_cell patients merged, and rare photo flags left out."""
    out = json.loads(json.dumps(json_safe(dict(flow))))
    out.pop("by_centre", None)
    excluded, merged = merge_partition(out.get("excluded") or {}, disclosure.min_cell)
    if merged:
        disclosure.merged.append({"where": "flow.excluded", "why": f"{len(merged)} exclusion reason(s) merged into "
                                  f"'{other_reasons(disclosure.min_cell)}'"})
    out["excluded"] = excluded
    photo = {"no photo": out.get("no_photo") or 0, **(out.get("photo_qc_excluded") or {})}
    photo, merged = merge_partition(photo, disclosure.min_cell)
    if merged:
        disclosure.merged.append({"where": "flow.photo_qc_excluded", "why": f"{len(merged)} photo-stage reason(s) "
                                  f"merged into '{other_reasons(disclosure.min_cell)}'"})
    if "no_photo" in out:
        out["no_photo"] = photo.pop("no photo", 0)
    else:
        photo.pop("no photo", None)
    out["photo_qc_excluded"] = photo
    flags = out.get("photo_flags") or {}
    rare = [f for f, n in flags.items() if disclosure.small([n])]
    for flag in rare:
        flags.pop(flag)
        disclosure.withhold(f"flow.photo_flags.{flag}", f"fewer than {disclosure.min_cell} photos")
    out["photo_flags"] = flags
    return out


def _group_order(by: str, present: list[str]) -> list[str]:
    from f2b_study.stats.table1 import GROUP_ORDER

    preferred = [g for g in GROUP_ORDER.get(by, []) if g in present]
    return preferred + sorted(g for g in present if g not in preferred)


def _numbers(frame: pl.DataFrame, variable: str) -> np.ndarray | None:
    from f2b_study.stats.table1 import CATEGORICAL_HINT

    if variable in CATEGORICAL_HINT or not frame.schema[variable].is_numeric():
        return None
    return frame[variable].cast(pl.Float64).fill_null(np.nan).to_numpy()


def table1_summary(frame: pl.DataFrame, by: str, disclosure: Disclosure,
                   variables: Sequence[str] = TABLE1_VARIABLES) -> dict[str, Any]:
    """Table 1 of ``frame`` by ``by`` as summaries: per group and overall, continuous variables as n, mean, SD
    (exact to pool), median and quartiles (this site's, rounded), and whether this site's Table 1 rule
    (Shapiro–Wilk P ≥ 0.01 in every group) shows mean ± SD; categorical variables as counts per level."""
    from f2b_study.stats.table1 import NORMALITY_ALPHA, _shapiro_p  # the Table 1 rule itself, not a copy

    where = f"table1.{by}"
    left_out = frame.filter(pl.col(by).is_null()).height
    frame = frame.filter(pl.col(by).is_not_null()).with_columns(pl.col(by).cast(pl.String))
    groups = _group_order(by, frame[by].unique().to_list())
    index = frame[by].to_numpy()
    sizes = {g: np.array([(index == g).sum()]) for g in groups}
    withheld_groups = withheld_columns(sizes, np.array([frame.height]), disclosure)
    out: dict[str, Any] = {"by": by, "population": "eligible patients", "groups": groups,
                           "quantiles": "median, q1 and q3 are this centre's own (per site), rounded to "
                                        f"{QUANTILE_DECIMALS} decimal: they cannot be pooled",
                           "rows_without_group": left_out,
                           "n": {OVERALL: frame.height, **{g: None if g in withheld_groups else int(sizes[g][0])
                                                           for g in groups}},
                           "variables": {}}
    for g, why in withheld_groups.items():
        disclosure.withhold(f"{where}.{g}", why)
    for variable in [v for v in variables if v in frame.columns and v != by]:
        values = _numbers(frame, variable)
        if values is not None:
            present = ~np.isnan(values)
            per_group = {g: values[present & (index == g)] for g in groups}
            normal = all(_shapiro_p(v) >= NORMALITY_ALPHA for v in per_group.values())
            counts = {g: np.array([v.size]) for g, v in per_group.items()}
            withheld = withheld_columns(counts, np.array([present.sum()]), disclosure, withheld_groups)
            cells: dict[str, Any] = {}
            if disclosure.small([present.sum()]):
                cells[OVERALL] = disclosure.withhold(f"{where}.{variable}.{OVERALL}",
                                                     f"fewer than {disclosure.min_cell} values")
            else:
                cells[OVERALL] = _describe(values[present], int((~present).sum()))
            missing = {g: int((~present & (index == g)).sum()) for g in groups}
            cells.update(_group_cells(groups, withheld, withheld_groups, disclosure, f"{where}.{variable}",
                                      lambda g, v=per_group, m=missing: _describe(v[g], m[g])))
            out["variables"][variable] = {"kind": "continuous",
                                          "site_rule": "mean ± SD" if normal else "median (IQR)",
                                          "groups": cells}
            continue
        text = np.array(frame[variable].cast(pl.String).to_list(), dtype=object)
        known = np.array([v is not None for v in text], dtype=bool)
        levels = _group_order(variable, sorted({str(v) for v in text[known]}))
        if (~known).any():
            levels.append("missing")
        keys = np.where(known, text, "missing")

        def vector(mask: np.ndarray, keys: np.ndarray = keys, levels: list[str] = levels) -> np.ndarray:
            return np.array([int(((keys == level) & mask).sum()) for level in levels])

        overall = vector(np.ones(frame.height, dtype=bool))
        if disclosure.small(overall):
            out["variables"][variable] = {"kind": "categorical", "levels": None, "groups": disclosure.withhold(
                f"{where}.{variable}", f"a level has fewer than {disclosure.min_cell} patients in the whole site")}
            continue
        vectors = {g: vector(index == g) for g in groups}
        withheld = withheld_columns(vectors, overall, disclosure, withheld_groups)
        cells = {OVERALL: dict(zip(levels, overall.tolist(), strict=True))}
        cells.update(_group_cells(groups, withheld, withheld_groups, disclosure, f"{where}.{variable}",
                                  lambda g, v=vectors, k=levels: dict(zip(k, v[g].tolist(), strict=True))))
        out["variables"][variable] = {"kind": "categorical", "levels": levels, "groups": cells}
    return out


def _group_cells(groups: Sequence[str], withheld: Mapping[str, str], withheld_groups: Mapping[str, str],
                 disclosure: Disclosure, where: str, describe: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """One variable's cells by group: ``describe(g)``, or {"withheld": why} for a withheld group (recorded in the
    disclosure log once per variable, unless the whole group is already withheld)."""
    cells: dict[str, Any] = {}
    for g in groups:
        if g in withheld:
            cells[g] = {"withheld": withheld[g]}
            if g not in withheld_groups:
                disclosure.withhold(f"{where}.{g}", withheld[g])
        else:
            cells[g] = describe(g)
    return cells


def _describe(values: np.ndarray, missing: int) -> dict[str, Any]:
    n = int(values.size)
    out: dict[str, Any] = {"n": n, "missing": missing, "mean": None, "sd": None, "median": None, "q1": None,
                           "q3": None}
    if n:
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        out.update(mean=float(values.mean()), sd=float(np.std(values, ddof=1)) if n > 1 else None,
                   median=round(float(median), QUANTILE_DECIMALS), q1=round(float(q1), QUANTILE_DECIMALS),
                   q3=round(float(q3), QUANTILE_DECIMALS))
    return out


# -- comparators -----------------------------------------------------------------------------------------------------

def comparator_summaries(ps: Any, full: Mapping[str, Any], disclosure: Disclosure, *, clinical_model: Any = None,
                         clinical_source: str | None = None, replicates: int, seed: int) -> dict[str, Any]:
    """OSTA and the clinical model at this site: their own evaluation (as `study` computes it per centre), their
    confusion matrices and, paired with the index test on the same patients, the DeLong covariances and tests.
    The clinical model is the one evaluate_predictions fits on this site's training split; when the site has none,
    ``clinical_model`` (fitted elsewhere, e.g. on the model's development training split) is applied instead."""
    from f2b_study.stats import comparators as comp
    from f2b_study.stats.evaluation import evaluate_arrays

    frame, y, proba = ps.evaluated, ps.y, ps.proba
    given = full.get("comparators") or {}
    out: dict[str, Any] = {}

    osta = given.get("osta") or {}
    weight = frame["weight_kg"].cast(float).fill_null(np.nan).to_numpy()
    age = frame["age_years"].cast(float).fill_null(np.nan).to_numpy()
    mask = np.isfinite(weight) & np.isfinite(age)
    entry: dict[str, Any] = {"label": comp.OSTA_LABEL, "description": comp.OSTA_DESCRIPTION, "n": int(mask.sum()),
                             "reason": osta.get("reason"), "evaluation": None}
    if osta.get("evaluation"):
        index = comp.osta_index(weight[mask], age[mask])
        entry["evaluation"] = evaluation_document(osta["evaluation"])
        entry["comparison"] = json_safe(osta.get("comparison"))
        entry["confusion_matrix"] = osta["evaluation"]["confusion_matrix"]
        entry["paired"] = paired_components(y[mask], proba[mask], comp.osta_auc_scores(index), macro=False)
    out["osta"] = entry

    logit = given.get("clinical_logit") or {}
    entry = {"label": comp.LOGIT_LABEL, "description": logit.get("description"), "n": logit.get("n", 0),
             "reason": logit.get("reason"), "evaluation": None, "fitted_on": None}
    model, p, complete = None, None, None
    if "coefficients" in logit:
        model = comp.fit_clinical_logit(ps.train)[0]
        entry["fitted_on"] = (f"this centre's training split ({model.n_train} patients with age, sex and BMI)"
                              if model else None)
    elif clinical_model is not None:
        model = clinical_model
        entry["fitted_on"] = clinical_source or "a model fitted elsewhere"
        entry["description"] = f"{comp.describe_logit(model)} ({entry['fitted_on']})"
        entry["reason"] = None
    if model is not None:
        p, complete = model.predict_proba(frame)
        entry["n"] = int(complete.sum())
        entry["coefficients"] = {"columns": ["intercept", *model.columns], "classes": list(CLASSES[1:]),
                                 "params": np.asarray(model.params).tolist()}
        if complete.any():
            ev = logit.get("evaluation") if "coefficients" in logit else evaluate_arrays(
                y[complete], proba=p[complete], clusters=ps.patient_id[complete], replicates=replicates,
                seed=seed, with_curves=False)
            entry["evaluation"] = evaluation_document(ev)
            paired = paired_components(y[complete], proba[complete], p[complete], macro=True)
            entry["paired"] = paired
            entry["comparison"] = (json_safe(logit.get("comparison")) if "coefficients" in logit
                                   else paired["tests"])
            entry.update(probability_components(y[complete], p[complete], disclosure,
                                                "comparators.clinical_logit"))
        else:
            entry["reason"] = "no evaluated row has age, sex and BMI"
    out["clinical_logit"] = entry
    return out


# -- the whole summary -------------------------------------------------------------------------------------------

def build_site_summary(ps: Any, *, site: str, flow: Mapping[str, Any], eligible: pl.DataFrame,
                       provenance: Mapping[str, Any], settings: Mapping[str, Any], min_cell: int,
                       by: Sequence[str] = ("sex", "age_band"), replicates: int = 2000, seed: int = 42,
                       clinical_model: Any = None, clinical_source: str | None = None) -> dict[str, Any]:
    """The site summary of a validated PredictionSet ``ps`` (evaluated rows, and training rows that fit the
    clinical model), the site's participant ``flow`` and its ``eligible`` rows (Table 1). The site's own
    evaluation is `evaluate_predictions` with ``by`` (sex, age band), exactly as `study` evaluates a centre."""
    from f2b_study.stats.evaluation import evaluate_predictions

    if ps.evaluated.height < min_cell:
        raise InputError.at(ps.source, column="patient_id", show_value=False,
                            expected=f"at least min_cell ({min_cell}) evaluated patients for a summary that leaves "
                            f"the site (found {ps.evaluated.height})")
    disclosure = Disclosure(min_cell)
    y, proba = ps.y, ps.proba
    full = evaluate_predictions(ps, by=tuple(c for c in by if c != "center"), replicates=replicates, seed=seed)
    index_test = {"evaluation": evaluation_document(full),
                  **probability_components(y, proba, disclosure, "index_test")}
    summary: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "site": site,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "provenance": dict(provenance),
        "settings": {**settings, "min_cell": min_cell, "bootstrap": replicates, "bootstrap_seed": seed,
                     "subgroups": [c for c in by if c != "center"]},
        "flow": flow_summary(flow, disclosure),
        "table1": {b: table1_summary(eligible, b, disclosure) for b in TABLE1_BY if b in eligible.columns},
        "thresholds": THRESHOLDS.tolist(),
        "decisions": dict(DECISIONS),
        "index_test": index_test,
        "comparators": comparator_summaries(ps, full, disclosure, clinical_model=clinical_model,
                                            clinical_source=clinical_source, replicates=replicates, seed=seed),
        "subgroups": subgroup_summary(full, disclosure),
    }
    summary["privacy"] = disclosure.to_json()
    return seal(json_safe(summary))


# -- the file: canonical form, checksum, reading -------------------------------------------------------------------

def canonical(summary: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in summary.items() if k != "checksum"}
    return json.dumps(json_safe(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def seal(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with its checksum (over everything else, in canonical form)."""
    summary = {k: v for k, v in summary.items() if k != "checksum"}
    summary["checksum"] = {"algorithm": "sha256", "of": CHECKSUM_OF,
                           "value": hashlib.sha256(canonical(summary)).hexdigest()}
    return summary


def dumps_summary(summary: Mapping[str, Any]) -> str:
    """Human-readable JSON: objects indented, lists of numbers on one line."""
    return _pretty(json_safe(summary), 0) + "\n"


INLINE_WIDTH = 110


def _flat(value: Any) -> bool:
    return not isinstance(value, dict | list) or (
        isinstance(value, list) and all(not isinstance(v, dict | list) for v in value))


def _pretty(value: Any, level: int) -> str:
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        if all(_flat(v) for v in value.values()):  # a bin, a group, a cell: one line when it fits
            line = json.dumps(value, ensure_ascii=False, allow_nan=False)
            if len(line) + level <= INLINE_WIDTH:
                return line
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_pretty(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value) or all(
                isinstance(v, list) and all(not isinstance(x, dict | list) for x in v) for v in value):
            return json.dumps(value, ensure_ascii=False, allow_nan=False)
        return "[\n" + ",\n".join(f"{inner}{_pretty(v, level + 1)}" for v in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def write_summary(summary: Mapping[str, Any], target: str | Path) -> Path:
    from f2b_study.atomic import write_text

    target = Path(target)
    write_text(target, dumps_summary(summary))
    return target


def read_summary(path: str | Path) -> dict[str, Any]:
    """A site summary, refused (one line naming the file) when it is not one, has another schema version, or
    was edited after it was written (its checksum no longer matches)."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError.at(path, show_value=False, expected="an existing site summary (.json)") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError.at(path, show_value=False,
                            expected=f"a site summary written by f2b-study site-summary (not JSON: {error})") from None
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise InputError.at(path, column="format", value=summary.get("format") if isinstance(summary, dict) else None,
                            expected=f"'{FORMAT}' (a file written by f2b-study site-summary)")
    if summary.get("schema_version") != SCHEMA_VERSION:
        raise InputError.at(path, column="schema_version", value=summary.get("schema_version"),
                            expected=f"schema version {SCHEMA_VERSION}, the one this f2b-study reads (rerun "
                            "site-summary with the same f2b-study version at every site)")
    stored = (summary.get("checksum") or {}).get("value") if isinstance(summary.get("checksum"), dict) else None
    if stored != hashlib.sha256(canonical(summary)).hexdigest():
        raise InputError.at(path, column="checksum", value=stored,
                            expected="the sha256 of the file's content: the summary was changed after "
                            "site-summary wrote it (rerun site-summary rather than editing the file)")
    return summary
