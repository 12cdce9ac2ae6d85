"""One evaluation of a set of predictions against the reference standard: the numbers of the paper's Tables 2–4
and Fig. 9, each with its 95% CI, by the definitions of docs/methods.md (see metrics, auc, calibration, bootstrap).

``evaluate_arrays`` is the core (arrays in, a JSON-ready dict out); ``evaluate_predictions`` adds subgroups and
the clinical comparators for a validated PredictionSet; ``to_document`` trims a full evaluation to the exact
shape `f2b-study evaluate --json` prints. Undefined values are None, and ``notes`` maps the path of every None
(and every partial mean) to its reason, e.g. ``"per_class.osteoporosis.recall": "no osteoporosis patients ..."``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from f2b_study import CLASSES
from f2b_study.stats import auc as delong
from f2b_study.stats import calibration as cal
from f2b_study.stats.bootstrap import LEVEL, REPLICATES, SEED, bootstrap_sums, percentile_interval
from f2b_study.stats.calibration_curve import flexible_calibration
from f2b_study.stats.calibration_slope import calibration_intercept_slope
from f2b_study.stats.decision import decision_curves
from f2b_study.stats.diagnostic import MEASURES, per_class_measures
from f2b_study.stats.metrics import OVERALL_FROM_CM, confusion_matrix, overall, per_class
from f2b_study.stats.operating import operating_points

K = len(CLASSES)
OVERALL_KEYS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
                "f1_weighted", "auc_macro_ovr", "kappa", "kappa_linear", "kappa_quadratic", "ece", "brier")
CALIBRATION_KEYS = ("calibration_intercept", "calibration_intercept_ci", "calibration_slope", "calibration_slope_ci")
DIAGNOSTIC_KEYS = tuple(key for measure in MEASURES for key in (measure, f"{measure}_ci"))
PER_CLASS_KEYS = ("accuracy", "precision", "recall", "f1", "auc", "auc_ci", "kappa", "brier", "hosmer_lemeshow",
                  *CALIBRATION_KEYS, *DIAGNOSTIC_KEYS)
PER_CLASS_BOOTSTRAPPED = ("accuracy", "precision", "recall", "f1", "kappa", "brier")
DOCUMENT_KEYS = ("n", "classes", "overall", "per_class", "hosmer_lemeshow_multinomial", "confusion_matrix", "ci",
                 "decision_curves", "decision_curves_comparators", "operating_points", "subgroups", "subgroup_tests",
                 "notes")
OSTA_RULE_NOTE = ("OSTA gives risk categories, not probabilities: its curve is a fixed referral rule (high risk -> "
                  "refer for osteoporosis; moderate or high risk -> refer for low bone mass) that refers the same "
                  "patients at every threshold")
ROC_POINTS = 400  # ROC curves are thinned to this many points for plotting
TOP_ERRORS = 10
CLUSTER = "_cluster"  # optional column: the bootstrap unit when patient IDs alone are not unique (pooled centres)

Progress = Callable[[str], None]


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _pair(lo: float, hi: float) -> list[float] | None:
    lo, hi = _num(lo), _num(hi)
    return None if lo is None or hi is None else [lo, hi]


def _names(indices: Sequence[int]) -> str:
    return ", ".join(CLASSES[i] for i in indices)


def evaluate_arrays(
    y: np.ndarray,
    *,
    proba: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
    auc_scores: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    replicates: int = REPLICATES,
    seed: int = SEED,
    no_auc_reasons: dict[int, str] | None = None,
    no_proba_reason: str = "no predicted probabilities",
    ids: np.ndarray | None = None,
    with_curves: bool = True,
    prespecified: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Every metric of docs/methods.md, Statistics for reference classes ``y`` (0..K−1).

    ``proba`` (N×K) gives the predicted class (argmax; ties go to the first class in CLASSES order), the AUC
    scores and the calibration numbers; a comparator without probabilities passes ``predicted`` and
    ``auc_scores`` (NaN columns: no AUC, with ``no_auc_reasons[k]``) instead. ``clusters`` (patient IDs) make the
    bootstrap resample patients rather than rows. ``replicates = 0`` skips the bootstrap. ``with_curves`` adds
    the figure data and the clinical-utility analyses (decision curves, operating points at the sensitivity
    targets and at the ``prespecified`` thresholds {decision: threshold}, flexible calibration curves); subgroup
    evaluations leave them out.
    """
    y = np.asarray(y, dtype=np.int64)
    n = int(y.size)
    notes: dict[str, str] = {}
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        predicted = proba.argmax(axis=1) if predicted is None else predicted
        auc_scores = proba if auc_scores is None else auc_scores
    if predicted is None:
        raise ValueError("evaluate_arrays needs proba or predicted")
    predicted = np.asarray(predicted, dtype=np.int64)
    cm = confusion_matrix(y, predicted, K)
    support, predicted_n = cm.sum(axis=1), cm.sum(axis=0)
    present = np.flatnonzero(support > 0)
    absent = np.flatnonzero(support == 0)

    ov_cm = overall(cm)
    pc_cm = per_class(cm)
    out_overall: dict[str, float | None] = {key: None for key in OVERALL_KEYS}
    for key in OVERALL_FROM_CM:
        out_overall[key] = _num(ov_cm[key])
    if absent.size and present.size:
        for key in ("precision_macro", "recall_macro", "f1_macro"):
            notes[f"overall.{key}"] = (f"mean over the {present.size} classes present in the reference standard "
                                       f"({_names(absent)} absent)")
    if out_overall["kappa"] is None:
        notes["overall.kappa"] = "undefined: reference standard and prediction are one and the same single class"
    for key in ("kappa_linear", "kappa_quadratic"):
        if out_overall[key] is None:
            notes[f"overall.{key}"] = "undefined: the expected disagreement is 0 (a single class in the reference " \
                                      "standard and in the prediction)"

    per: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(CLASSES):
        entry: dict[str, Any] = {key: None for key in PER_CLASS_KEYS}
        for key in ("accuracy", "precision", "recall", "f1", "kappa"):
            entry[key] = _num(pc_cm[key][k])
        if entry["precision"] is None:
            notes[f"per_class.{name}.precision"] = f"no patient was predicted {name}"
        if entry["recall"] is None:
            notes[f"per_class.{name}.recall"] = f"no {name} patients in the reference standard"
        if entry["f1"] is None:
            notes[f"per_class.{name}.f1"] = f"no {name} patients and none predicted {name}"
        if entry["kappa"] is None:
            notes[f"per_class.{name}.kappa"] = (f"undefined: the {name}-vs-rest table has one category only "
                                                "(reference and prediction agree on all or none)")
        per[name] = entry
    measures, measure_reasons = per_class_measures(y, predicted, CLASSES)
    for name, values in measures.items():
        per[name].update(values)
    notes.update({f"per_class.{key}": why for key, why in measure_reasons.items()})

    # AUC: per class OvR (Mann–Whitney) with DeLong CI; macro = mean of the defined ones, CI from their covariance
    auc_se: dict[str, float | None] = {}
    defined: list[int] = []
    no_auc_reasons = no_auc_reasons or {}
    for k, name in enumerate(CLASSES):
        if auc_scores is None or not np.isfinite(auc_scores[:, k]).any():
            notes[f"per_class.{name}.auc"] = no_auc_reasons.get(k, "no score to rank patients by")
            continue
        result = delong.delong_auc(auc_scores[:, k], y == k)
        per[name]["auc"] = _num(result.auc)
        per[name]["auc_ci"] = _pair(*result.ci)
        auc_se[name] = _num(result.se)
        if per[name]["auc"] is None:
            notes[f"per_class.{name}.auc"] = (f"no {name} patients" if result.n_cases == 0
                                              else f"every patient is {name}: no controls")
            continue
        defined.append(k)
        if per[name]["auc_ci"] is None:
            notes[f"per_class.{name}.auc_ci"] = (f"DeLong's variance needs two {name} patients and two others "
                                                 f"({result.n_cases} and {result.n_controls} here)")
    ci: dict[str, list[float] | None] = {}
    if defined:
        scores = np.asarray(auc_scores, dtype=np.float64)[:, defined]
        positives = y[:, None] == np.asarray(defined)[None, :]
        estimate, se, interval = delong.mean_auc(scores, positives)
        out_overall["auc_macro_ovr"] = _num(estimate)
        auc_se["macro"] = _num(se)
        ci["auc_macro_ovr"] = _pair(*interval)
        if len(defined) < K:
            missing = [k for k in range(K) if k not in defined]
            notes["overall.auc_macro_ovr"] = f"mean over {_names(defined)} only ({_names(missing)}: no AUC)"
        if ci["auc_macro_ovr"] is None:
            notes["ci.auc_macro_ovr"] = "DeLong's variance is undefined for a class with fewer than two patients"
    else:
        notes["overall.auc_macro_ovr"] = "no class has an AUC"

    # calibration
    hl_multi: dict[str, Any] = {"statistic": None, "df": None, "p": None}
    reliability: dict[str, Any] = {}
    flexible: dict[str, Any] = {}
    clustered = clusters is not None and np.unique(clusters).size < n
    if proba is not None:
        for k, name in enumerate(CLASSES):
            intercept, slope = calibration_intercept_slope(y == k, proba[:, k], what=name)
            for key, estimate in (("calibration_intercept", intercept), ("calibration_slope", slope)):
                per[name][key] = _num(estimate.value)
                per[name][f"{key}_ci"] = _pair(*estimate.ci) if estimate.ci else None
                if estimate.reason:
                    notes[f"per_class.{name}.{key}"] = estimate.reason
            if with_curves:
                flexible[name], why = flexible_calibration(y == k, proba[:, k], replicates=replicates, seed=seed,
                                                           clustered=clustered, what=name)
                if why:
                    notes[f"curves.flexible_calibration.{name}"] = why
        out_overall["ece"] = _num(cal.expected_calibration_error(proba, y))
        out_overall["brier"] = _num(cal.brier_multiclass(proba, y))
        brier_k = cal.brier_per_class(proba, y)
        for k, name in enumerate(CLASSES):
            per[name]["brier"] = _num(brier_k[k])
            hl = cal.hosmer_lemeshow(y == k, proba[:, k], what=f"{name}-vs-rest")
            per[name]["hosmer_lemeshow"] = hl.to_json()
            if hl.reason:
                notes[f"per_class.{name}.hosmer_lemeshow"] = hl.reason
        multi = cal.hosmer_lemeshow_multinomial(y, proba)
        hl_multi = multi.to_json()
        if multi.reason:
            notes["hosmer_lemeshow_multinomial"] = multi.reason
        if with_curves:
            reliability = {"top_label": cal.top_label_reliability(proba, y),
                           **{name: cal.reliability(y == k, proba[:, k]) for k, name in enumerate(CLASSES)}}
    else:
        for key in ("ece", "brier"):
            notes[f"overall.{key}"] = no_proba_reason
        for name in CLASSES:
            per[name]["hosmer_lemeshow"] = {"statistic": None, "df": None, "p": None}
            notes[f"per_class.{name}.brier"] = no_proba_reason
            notes[f"per_class.{name}.calibration_intercept"] = no_proba_reason
            notes[f"per_class.{name}.calibration_slope"] = no_proba_reason
            notes[f"per_class.{name}.hosmer_lemeshow"] = no_proba_reason
        notes["hosmer_lemeshow_multinomial"] = no_proba_reason

    # clinical utility: decision curves and screening operating points (main evaluations, not subgroups)
    curves_dc: dict[str, Any] = {}
    points: dict[str, Any] = {}
    if with_curves and n > 0:
        curves_dc, reasons = decision_curves(y, proba=proba, predicted=None if proba is not None else predicted)
        notes.update({f"decision_curves.{key}": why for key, why in reasons.items()})
        if proba is not None:
            points, reasons = operating_points(y, proba, prespecified)
            notes.update({f"operating_points.{key}": why for key, why in reasons.items()})
        else:
            points = {decision: None for decision in curves_dc}
            notes.update({f"operating_points.{decision}": no_proba_reason for decision in curves_dc})

    # patient-level bootstrap for everything but the AUCs
    if replicates > 0 and n > 0:
        ci.update(_bootstrap_cis(y, predicted, proba, clusters, replicates, seed, out_overall, per, notes))

    out: dict[str, Any] = {
        "n": n,
        "classes": list(CLASSES),
        "overall": out_overall,
        "per_class": per,
        "hosmer_lemeshow_multinomial": hl_multi,
        "confusion_matrix": cm.tolist(),
        "ci": ci,
        "decision_curves": curves_dc,
        "operating_points": points,
        "subgroups": {},
        "subgroup_tests": {},
        "notes": notes,
        # the rest is for the report, not the --json document
        "support": support.tolist(),
        "predicted_counts": predicted_n.tolist(),
        "auc_se": auc_se,
        "bootstrap": {"replicates": replicates, "seed": seed, "level": LEVEL,
                      "unit": "patient", "patients": int(np.unique(clusters).size) if clusters is not None else n},
    }
    if with_curves:
        out["curves"] = {"roc": _roc_curves(y, auc_scores, defined), "reliability": reliability,
                         "flexible_calibration": flexible}
    if ids is not None and proba is not None:
        out["errors"] = _top_errors(y, predicted, proba, ids)
    return out


def _bootstrap_cis(y: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None, clusters: np.ndarray | None,
                   replicates: int, seed: int, point_overall: dict, point_per: dict,
                   notes: dict[str, str]) -> dict[str, list[float] | None]:
    n = y.size
    cells = np.zeros((n, K * K))
    cells[np.arange(n), y * K + predicted] = 1.0
    parts = [cells]
    if proba is not None:
        confidence = proba.max(axis=1)
        bins = cal.ece_bins(confidence)
        correct = np.zeros((n, cal.ECE_BINS))
        conf = np.zeros((n, cal.ECE_BINS))
        correct[np.arange(n), bins] = (predicted == y).astype(np.float64)
        conf[np.arange(n), bins] = confidence
        terms = cal.brier_rows(proba, y)
        parts += [correct, conf, terms.sum(axis=1, keepdims=True), terms]
    sums = bootstrap_sums(np.hstack(parts), clusters, replicates, seed)
    cm_b = sums[:, : K * K].reshape(-1, K, K)
    total = sums[:, : K * K].sum(axis=1)
    series: dict[str, np.ndarray] = {}
    ov_b = overall(cm_b)
    for key in OVERALL_FROM_CM:
        series[key] = ov_b[key]
    pc_b = per_class(cm_b)
    for k, name in enumerate(CLASSES):
        for key in ("accuracy", "precision", "recall", "f1", "kappa"):
            series[f"{name}.{key}"] = pc_b[key][:, k]
    if proba is not None:
        b = cal.ECE_BINS
        offset = K * K
        series["ece"] = cal.ece_from_sums(sums[:, offset:offset + b], sums[:, offset + b:offset + 2 * b], total)
        brier = sums[:, offset + 2 * b:] / total[:, None]
        series["brier"] = brier[:, 0]
        for k, name in enumerate(CLASSES):
            series[f"{name}.brier"] = brier[:, 1 + k]
    keys = list(series)
    lo, hi, defined = percentile_interval(np.column_stack([series[key] for key in keys]))
    out: dict[str, list[float] | None] = {}
    for j, key in enumerate(keys):
        name, _, metric = key.rpartition(".")
        point = point_per[name][metric] if name else point_overall[key]
        if point is None:
            continue  # the estimate itself is undefined; its note says why
        out[key] = _pair(lo[j], hi[j])
        if out[key] is None:
            notes[f"ci.{key}"] = "undefined in every bootstrap replicate"
        elif defined[j] < replicates:
            notes[f"ci.{key}"] = (f"over the {int(defined[j])} of {replicates} bootstrap replicates where it is "
                                  "defined")
    return out


def _roc_curves(y: np.ndarray, scores: np.ndarray | None, defined: list[int]) -> dict[str, dict[str, list[float]]]:
    from sklearn.metrics import roc_curve

    curves: dict[str, dict[str, list[float]]] = {}
    for k in defined:
        fpr, tpr, _ = roc_curve(y == k, scores[:, k], drop_intermediate=True)
        if fpr.size > ROC_POINTS:
            keep = np.unique(np.linspace(0, fpr.size - 1, ROC_POINTS).round().astype(int))
            fpr, tpr = fpr[keep], tpr[keep]
        curves[CLASSES[k]] = {"fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist()}
    return curves


def _top_errors(y: np.ndarray, predicted: np.ndarray, proba: np.ndarray, ids: np.ndarray) -> list[dict[str, Any]]:
    """The most confident misclassifications (IDs raw here; the report pseudonymises them)."""
    wrong = np.flatnonzero(predicted != y)
    confidence = proba[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:TOP_ERRORS]
    return [{"row": int(i), "patient_id": str(ids[i]), "reference": CLASSES[y[i]],
             "predicted": CLASSES[predicted[i]], "confidence": float(proba[i, predicted[i]])} for i in order]


def to_document(full: dict[str, Any]) -> dict[str, Any]:
    """The exact `evaluate --json` shape (docs/statistics.md) plus ``notes`` (the reason of every null).

    Built here and nowhere else: a JSON-safe dict of plain numbers, lists and strings.
    """
    own = ("subgroups", "notes", "decision_curves_comparators")
    doc = {key: full.get(key, {}) for key in DOCUMENT_KEYS if key not in own}
    notes = dict(full["notes"])
    comparators: dict[str, Any] = {}
    for name, comp in (full.get("comparators") or {}).items():
        evaluation = comp.get("evaluation")
        if evaluation is None:
            comparators[name] = None
            notes[f"decision_curves_comparators.{name}"] = comp.get("reason") or "not evaluated"
            continue
        comparators[name] = evaluation.get("decision_curves", {})
        for path, reason in evaluation["notes"].items():
            if path.startswith("decision_curves."):
                notes[f"decision_curves_comparators.{name}.{path.partition('.')[2]}"] = reason
        if name == "osta":
            notes["decision_curves_comparators.osta"] = OSTA_RULE_NOTE
    doc["decision_curves_comparators"] = comparators
    subgroups: dict[str, dict[str, Any]] = {}
    for column, levels in full.get("subgroups", {}).items():
        subgroups[column] = {}
        for level, sub in levels.items():
            subgroups[column][level] = {"n": sub["n"], "overall": sub["overall"]}
            for path, reason in sub["notes"].items():
                if path.startswith("overall."):
                    notes[f"subgroups.{column}.{level}.{path}"] = reason
    doc["subgroups"] = subgroups
    doc["notes"] = notes
    return {key: doc[key] for key in DOCUMENT_KEYS}


# -- a PredictionSet: the face model, its subgroups and the clinical comparators ---------------------------------

def subgroup_values(ps: Any, column: str) -> np.ndarray | None:
    """Per evaluated row, the subgroup level (None where unknown); None when the column is not available."""
    from f2b_study.stats.subgroups import age_band

    frame = ps.evaluated
    if column == "age_band":
        if "age_years" not in frame.columns or frame["age_years"].null_count() == frame.height:
            return None
        return age_band(frame["age_years"].fill_null(np.nan).to_numpy())
    if column not in frame.columns or frame[column].null_count() == frame.height:
        return None
    return np.array(frame[column].cast(str).to_list(), dtype=object)


def evaluate_predictions(ps: Any, *, by: Sequence[str] = (), replicates: int = REPLICATES, seed: int = SEED,
                         comparators: bool = True, subgroup_ci: bool = True,
                         prespecified: Mapping[str, float] | None = None,
                         progress: Progress | None = None) -> dict[str, Any]:
    """Full evaluation of a PredictionSet: the face model, subgroups by ``by`` (sex, center, age_band or any
    column) with the tests of their differences, and (when the covariates are there) the clinical comparators
    with DeLong tests against the model. ``prespecified`` ({"osteoporosis": t, "low_bone_mass": t}, from the
    study config's [screening]) adds pre-specified screening operating points."""
    from f2b_study.stats.subgroup_tests import subgroup_tests
    from f2b_study.stats.subgroups import ordered_levels

    step = progress or (lambda _message: None)
    y, proba, ids = ps.y, ps.proba, ps.patient_id
    clusters = ps.evaluated[CLUSTER].to_numpy() if CLUSTER in ps.evaluated.columns else ids
    step("face model")
    full = evaluate_arrays(y, proba=proba, clusters=clusters, ids=ids, replicates=replicates, seed=seed,
                           prespecified=prespecified)
    if getattr(ps, "excluded", None):
        full["notes"]["n"] = "rows left out: " + "; ".join(f"{why}: {n}" for why, n in ps.excluded.items())
    for column in by:
        values = subgroup_values(ps, column)
        if values is None:
            full["notes"][f"subgroups.{column}"] = f"no '{column}' values in the predictions"
            continue
        known = np.array([v is not None for v in values])
        if (~known).any():
            full["notes"][f"subgroups.{column}"] = f"{int((~known).sum())} row(s) without a {column} value left out"
        levels = ordered_levels(column, sorted({str(v) for v in values[known]}))
        full["subgroups"][column] = {}
        for level in levels:
            step(f"subgroup {column} = {level}")
            mask = known & (values == level)
            full["subgroups"][column][level] = evaluate_arrays(
                y[mask], proba=proba[mask], clusters=clusters[mask], replicates=replicates if subgroup_ci else 0,
                seed=seed, with_curves=False)
        step(f"subgroup tests {column}")
        tests, reasons = subgroup_tests(y, proba, values, full["operating_points"])
        full["subgroup_tests"][column] = tests
        for key, why in reasons.items():
            full["notes"][f"subgroup_tests.{column}" + (f".{key}" if key else "")] = why
    if comparators:
        step("clinical comparators")
        full["comparators"] = evaluate_comparators(ps, clusters, replicates=replicates, seed=seed)
    return full


def evaluate_comparators(ps: Any, clusters: np.ndarray | None = None, *, replicates: int = REPLICATES,
                         seed: int = SEED) -> dict[str, Any]:
    """OSTA (published cut-offs) and the clinical MNLogit, each evaluated on the rows that have its covariates,
    with DeLong's paired test of the face model's AUC against it on those same rows."""
    from f2b_study.stats import comparators as comp

    frame, y, proba = ps.evaluated, ps.y, ps.proba
    ids = ps.patient_id if clusters is None else clusters
    out: dict[str, Any] = {}

    weight = frame["weight_kg"].cast(float).fill_null(np.nan).to_numpy()
    age = frame["age_years"].cast(float).fill_null(np.nan).to_numpy()
    mask = np.isfinite(weight) & np.isfinite(age)
    osta: dict[str, Any] = {"label": comp.OSTA_LABEL, "n": int(mask.sum()), "evaluation": None, "reason": None,
                            "description": comp.OSTA_DESCRIPTION}
    if not mask.any():
        osta["reason"] = "needs weight_kg and age_years in the evaluated rows"
    else:
        index = comp.osta_index(weight[mask], age[mask])
        scores = comp.osta_auc_scores(index)
        osta["evaluation"] = evaluate_arrays(
            y[mask], predicted=comp.osta_class(index), auc_scores=scores, clusters=ids[mask], replicates=replicates,
            seed=seed, no_auc_reasons={1: comp.OSTA_NO_AUC}, no_proba_reason=comp.OSTA_NO_PROBABILITIES)
        osta["comparison"] = _compare(y[mask], proba[mask], scores, classes=(0, 2), macro=False)
        if mask.sum() < len(mask):
            osta["reason"] = f"{int(len(mask) - mask.sum())} evaluated row(s) without weight or age left out"
    out["osta"] = osta

    logit: dict[str, Any] = {"label": comp.LOGIT_LABEL, "n": 0, "evaluation": None, "reason": None,
                             "description": None}
    model, reason = comp.fit_clinical_logit(ps.train)
    if model is None:
        logit["reason"] = reason
    else:
        p, complete = model.predict_proba(frame)
        logit["description"] = comp.describe_logit(model)
        logit["n"] = int(complete.sum())
        logit["coefficients"] = {"columns": ["intercept", *model.columns], "classes": list(CLASSES[1:]),
                                 "params": model.params.tolist()}
        if not complete.any():
            logit["reason"] = "no evaluated row has age, sex and BMI"
        else:
            logit["evaluation"] = evaluate_arrays(y[complete], proba=p[complete], clusters=ids[complete],
                                                  replicates=replicates, seed=seed)
            logit["comparison"] = _compare(y[complete], proba[complete], p[complete], classes=(0, 1, 2), macro=True)
            if complete.sum() < len(complete):
                logit["reason"] = f"{int(len(complete) - complete.sum())} evaluated row(s) without age, sex or BMI " \
                                  "left out"
    out["clinical_logit"] = logit
    return out


def _compare(y: np.ndarray, face: np.ndarray, other: np.ndarray, classes: Sequence[int],
             macro: bool) -> dict[str, Any]:
    """DeLong paired tests, face model minus comparator, per class and (when both have all classes) macro."""
    result: dict[str, Any] = {}
    usable = []
    for k in classes:
        positive = y == k
        if positive.all() or not positive.any():
            result[CLASSES[k]] = None
            continue
        test = delong.paired_test(face[:, k], other[:, k], positive)
        result[CLASSES[k]] = _clean_test(test)
        usable.append(k)
    if macro and len(usable) == K:
        scores = np.hstack([face, other])
        positives = np.hstack([y[:, None] == np.arange(K)[None, :]] * 2)
        contrast = np.concatenate([np.full(K, 1 / K), np.full(K, -1 / K)])
        test = delong.difference_test(scores, positives, contrast)
        test["aucs"] = [float(np.mean(test["aucs"][:K])), float(np.mean(test["aucs"][K:]))]
        result["macro"] = _clean_test(test)
    return result


def _clean_test(test: dict[str, Any]) -> dict[str, Any]:
    return {"aucs": [_num(a) for a in test["aucs"]] if "aucs" in test else None,
            "difference": _num(test["difference"]), "se": _num(test["se"]), "ci": _pair(*test["ci"]),
            "z": _num(test["z"]), "p": _num(test["p"])}
