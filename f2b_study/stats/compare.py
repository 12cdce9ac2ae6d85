"""Comparing models on the same patients (`f2b-study evaluate A.csv --compare B.csv …`, the paper's Table 2).

The first file is the reference; each other model is compared with it on the same patients:
- AUC per class (one-vs-rest) and macro, each with its DeLong 95% CI;
- DeLong's paired test of the difference, reference minus model, per class and for the macro AUC (a contrast of
  the six correlated AUCs, f2b_study.stats.auc.difference_test; R pROC roc.test(paired = TRUE) per class);
- decision curves of both decisions, and the difference in net benefit (reference minus model) at every
  threshold, with a patient-level bootstrap 95% percentile interval at the table thresholds (the difference is
  a mean over patients of (refer_ref − refer_model)·(event − (1 − event)·t/(1 − t)), so one bootstrap of sums).
Files must hold the same patients (patient_id) with the same reference-standard classes, one row each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from f2b_study import CLASSES
from f2b_study.errors import InputError
from f2b_study.stats import auc as delong
from f2b_study.stats.bootstrap import REPLICATES, SEED, bootstrap_sums, percentile_interval
from f2b_study.stats.decision import DECISIONS, THRESHOLDS, curve, decision_data
from f2b_study.stats.metrics import confusion_matrix, overall

K = len(CLASSES)
TABLE_THRESHOLDS = (0.05, 0.10, 0.20, 0.30, 0.50)
EXAMPLES = 3


def _num(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _pair(lo: float, hi: float) -> list[float] | None:
    lo, hi = _num(lo), _num(hi)
    return None if lo is None or hi is None else [lo, hi]


def model_names(sources: Sequence[str]) -> list[str]:
    """Shortest distinct path endings: runs/resnet34/val_predictions.csv and runs/vit/val_predictions.csv ->
    resnet34/val_predictions, vit/val_predictions."""
    from pathlib import PurePath

    parts = [PurePath(s).with_suffix("").parts or (s,) for s in sources]
    depth = 1
    while depth < max(len(p) for p in parts):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
        depth += 1
    names = ["/".join(p) for p in parts]
    return names if len(set(names)) == len(names) else [f"{name} ({i + 1})" for i, name in enumerate(names)]


def align(sets: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(patient IDs, classes, [N×3 probabilities per file]) in the first file's row order.

    InputError naming the file when a file repeats a patient, lacks or adds patients, or gives a patient another
    reference-standard class than the first file.
    """
    first = sets[0]
    ids = np.asarray(first.patient_id).astype(str)
    y = first.y
    _no_duplicates(first, ids)
    position = {pid: i for i, pid in enumerate(ids)}
    probas = [first.proba]
    for other in sets[1:]:
        other_ids = np.asarray(other.patient_id).astype(str)
        _no_duplicates(other, other_ids)
        only_first = sorted(set(ids) - set(other_ids))
        only_other = sorted(set(other_ids) - set(ids))
        if only_first or only_other:
            parts = []
            if only_first:
                parts.append(f"{len(only_first)} of {first.source}'s patients missing (e.g. "
                             f"{', '.join(only_first[:EXAMPLES])})")
            if only_other:
                parts.append(f"{len(only_other)} patient(s) not in {first.source} (e.g. "
                             f"{', '.join(only_other[:EXAMPLES])})")
            raise InputError.at(other.source, column="patient_id", show_value=False,
                                expected=f"the same evaluated patients as {first.source}: " + "; ".join(parts))
        order = np.array([position[pid] for pid in other_ids])
        y_other = np.empty_like(y)
        y_other[order] = other.y
        differ = np.flatnonzero(y_other != y)
        if differ.size:
            i = int(differ[0])
            row = int(other.evaluated["_row"][int(np.flatnonzero(other_ids == ids[i])[0])]) \
                if "_row" in other.evaluated.columns else None
            raise InputError.at(other.source, row=row, column="bone_status", value=CLASSES[int(y_other[i])],
                                expected=f"'{CLASSES[int(y[i])]}' for patient {ids[i]} as in {first.source} "
                                f"({differ.size} patient(s) differ): the same reference standard")
        proba = np.empty_like(other.proba)
        proba[order] = other.proba
        probas.append(proba)
    return ids, y, probas


def _no_duplicates(ps: Any, ids: np.ndarray) -> None:
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        pid = str(unique[counts > 1][0])
        rows = ps.evaluated["_row"].to_numpy()[ids == pid].tolist() if "_row" in ps.evaluated.columns else []
        raise InputError.at(ps.source, row=rows[1] if len(rows) > 1 else None, column="patient_id", value=pid,
                            expected=f"one row per patient to compare models ({pid} is also on row {rows[0]})"
                            if rows else "one row per patient to compare models")


def _aucs(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    defined = []
    for k, name in enumerate(CLASSES):
        result = delong.delong_auc(proba[:, k], y == k)
        out[name] = {"auc": _num(result.auc), "ci": _pair(*result.ci)}
        if out[name]["auc"] is not None:
            defined.append(k)
    if len(defined) == K:
        estimate, _, interval = delong.mean_auc(proba, y[:, None] == np.arange(K)[None, :])
        out["macro"] = {"auc": _num(estimate), "ci": _pair(*interval)}
    else:
        out["macro"] = {"auc": None, "ci": None}
    return out


def _clean(test: dict[str, Any]) -> dict[str, Any]:
    return {"aucs": [_num(a) for a in test["aucs"]], "difference": _num(test["difference"]), "se": _num(test["se"]),
            "ci": _pair(*test["ci"]), "z": _num(test["z"]), "p": _num(test["p"])}


def paired_tests(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[dict[str, Any], dict[str, str]]:
    """DeLong paired tests, a − b, per class and macro; (tests, reasons for the None ones)."""
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    usable = []
    for k, name in enumerate(CLASSES):
        positive = y == k
        if positive.sum() < 2 or (~positive).sum() < 2:
            out[name] = None
            reasons[name] = f"DeLong's test needs two {name} patients and two others"
            continue
        out[name] = _clean(delong.paired_test(a[:, k], b[:, k], positive))
        usable.append(k)
    if len(usable) == K:
        positives = np.hstack([y[:, None] == np.arange(K)[None, :]] * 2)
        test = delong.difference_test(np.hstack([a, b]), positives,
                                      np.concatenate([np.full(K, 1 / K), np.full(K, -1 / K)]))
        test["aucs"] = [float(np.mean(test["aucs"][:K])), float(np.mean(test["aucs"][K:]))]
        out["macro"] = _clean(test)
    else:
        out["macro"] = None
        reasons["macro"] = "the macro AUC needs every class"
    return out, reasons


def net_benefit_differences(y: np.ndarray, a: np.ndarray, b: np.ndarray, replicates: int, seed: int,
                            ) -> tuple[dict[str, Any], dict[str, str]]:
    """{decision: [{threshold, difference, ci}]} of net benefit a − b (ci at TABLE_THRESHOLDS only)."""
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    n = y.size
    columns, keys = [], []
    for decision in DECISIONS:
        score_a, event = decision_data(y, a, decision)
        score_b, _ = decision_data(y, b, decision)
        if event.all() or not event.any():
            out[decision] = None
            reasons[decision] = "no patients with the event" if not event.any() else "every patient has the event"
            continue
        rows = []
        for t in THRESHOLDS:
            harm = np.where(event, 1.0, -t / (1 - t))
            d = ((score_a >= t).astype(np.float64) - (score_b >= t)) * harm
            rows.append({"threshold": float(t), "difference": float(d.sum() / n), "ci": None})
            if any(abs(t - s) < 1e-9 for s in TABLE_THRESHOLDS):
                columns.append(d)
                keys.append((decision, len(rows) - 1))
        out[decision] = rows
    if columns and replicates > 0:
        sums = bootstrap_sums(np.column_stack(columns), None, replicates, seed)
        lo, hi, _ = percentile_interval(sums / n)
        for j, (decision, i) in enumerate(keys):
            out[decision][i]["ci"] = _pair(lo[j], hi[j])
    return out, reasons


def compare_models(names: Sequence[str], y: np.ndarray, probas: Sequence[np.ndarray], *,
                   replicates: int = REPLICATES, seed: int = SEED) -> dict[str, Any]:
    """The comparison document: every model's AUCs and decision curves, and each model against the first."""
    y = np.asarray(y, dtype=np.int64)
    reference = names[0]
    notes: dict[str, str] = {}
    models: dict[str, Any] = {}
    for name, proba in zip(names, probas, strict=True):
        cm = confusion_matrix(y, proba.argmax(axis=1), K)
        summary = overall(cm)
        curves = {}
        for decision in DECISIONS:
            score, event = decision_data(y, proba, decision)
            curves[decision] = curve(score, event) if 0 < event.sum() < y.size else None
        models[name] = {"auc": _aucs(y, proba), "accuracy": _num(summary["accuracy"]),
                        "kappa_quadratic": _num(summary["kappa_quadratic"]), "decision_curves": curves}
    versus: dict[str, Any] = {}
    for name, proba in zip(names[1:], probas[1:], strict=True):
        tests, reasons = paired_tests(y, probas[0], proba)
        differences, nb_reasons = net_benefit_differences(y, probas[0], proba, replicates, seed)
        versus[name] = {"difference": f"{reference} − {name}", "delong_paired": tests,
                        "net_benefit_difference": differences}
        notes.update({f"versus.{name}.delong_paired.{key}": why for key, why in reasons.items()})
        notes.update({f"versus.{name}.net_benefit_difference.{key}": why for key, why in nb_reasons.items()})
    return {"n": int(y.size), "classes": list(CLASSES), "reference": reference, "models": models, "versus": versus,
            "table_thresholds": list(TABLE_THRESHOLDS),
            "bootstrap": {"replicates": replicates, "seed": seed, "unit": "patient"}, "notes": notes}


def comparison_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per model for comparison.csv (the reference row has no differences)."""
    rows = []
    for name, model in document["models"].items():
        row: dict[str, Any] = {"model": name, "n": document["n"], "accuracy": model["accuracy"],
                               "kappa_quadratic": model["kappa_quadratic"]}
        for key in ("macro", *CLASSES):
            auc = model["auc"][key]
            row[f"auc_{key}"] = auc["auc"]
            row[f"auc_{key}_ci_low"], row[f"auc_{key}_ci_high"] = auc["ci"] or (None, None)
        vs = document["versus"].get(name)
        for key in ("macro", *CLASSES):
            test = (vs or {}).get("delong_paired", {}).get(key)
            row[f"auc_{key}_difference_vs_reference"] = test["difference"] if test else None
            row[f"auc_{key}_difference_ci_low"], row[f"auc_{key}_difference_ci_high"] = \
                (test["ci"] or (None, None)) if test else (None, None)
            row[f"auc_{key}_p_vs_reference"] = test["p"] if test else None
        for decision in DECISIONS:
            curve_points = model["decision_curves"][decision] or []
            by_threshold = {round(p["threshold"], 2): p for p in curve_points}
            differences = {round(p["threshold"], 2): p for p in ((vs or {}).get("net_benefit_difference", {})
                                                                 .get(decision) or [])}
            for t in document["table_thresholds"]:
                tag = f"{decision}_t{t:.2f}"
                point = by_threshold.get(round(t, 2))
                row[f"net_benefit_{tag}"] = point["net_benefit"] if point else None
                diff = differences.get(round(t, 2))
                row[f"net_benefit_difference_{tag}"] = diff["difference"] if diff else None
                row[f"net_benefit_difference_{tag}_ci_low"], row[f"net_benefit_difference_{tag}_ci_high"] = \
                    (diff["ci"] or (None, None)) if diff else (None, None)
        rows.append(row)
    return rows
