"""Classification metrics from a 3×3 confusion matrix (docs/methods.md, Statistics), one definition for every number.

Every function takes confusion matrices of shape (..., K, K) — rows the reference standard, columns the
prediction — so the same code gives the point estimate and all bootstrap replicates at once (a replicate is a
weighted confusion matrix). Undefined values are NaN here; the evaluation turns them into null with a reason.

Definitions (the paper's Table 2/3 mixes them; the report always says which):
- accuracy = trace / N.
- per class, one-vs-rest (OvR): precision TP/(TP+FP), recall TP/(TP+FN), F1 2TP/(2TP+FP+FN),
  OvR accuracy (TP+TN)/N, Cohen's kappa of the OvR 2×2 table.
- macro = unweighted mean over the classes present in the reference standard (support > 0);
  weighted = support-weighted mean. In both means a class that is present but never predicted counts with
  precision 0 (scikit-learn's zero_division=0), so never predicting a class is penalised, not skipped.
- Cohen's kappa on the K×K table: (p_o − p_e)/(1 − p_e), p_e = Σ_k row_k·col_k / N².
- Weighted kappa (the classes are ordered normal < osteopenia < osteoporosis): 1 − Σ w_ij·O_ij / Σ w_ij·E_ij,
  E_ij = row_i·col_j / N, disagreement weights w_ij = |i − j| (linear) or (i − j)² (quadratic), as
  scikit-learn's cohen_kappa_score(weights=...); written on the confusion matrix so the bootstrap replicates
  (weighted confusion matrices) get it in one vectorised call.
"""

from __future__ import annotations

import numpy as np

PER_CLASS = ("accuracy", "precision", "recall", "f1", "kappa")
OVERALL_FROM_CM = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                   "recall_weighted", "f1_weighted", "kappa", "kappa_linear", "kappa_quadratic")
KAPPA_WEIGHTS = ("linear", "quadratic")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int = 3,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """K×K counts, rows = reference standard, columns = prediction (scikit-learn's orientation)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cells = np.bincount(y_true * k + y_pred, weights=weights, minlength=k * k)
    return cells.reshape(k, k) if weights is not None else cells.reshape(k, k).astype(np.int64)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """OvR metrics per class: arrays of shape (..., K)."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum(axis=(-2, -1))[..., None]
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    fp = predicted - tp
    fn = support - tp
    tn = n - tp - fp - fn
    po = _divide(tp + tn, n)
    pe = _divide(predicted * support + (n - predicted) * (n - support), n * n)
    return {
        "accuracy": po,
        "precision": _divide(tp, predicted),
        "recall": _divide(tp, support),
        "f1": _divide(2 * tp, 2 * tp + fp + fn),
        "kappa": _divide(po - pe, 1.0 - pe),
        "support": support,
    }


def overall(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro and weighted precision/recall/F1, Cohen's kappa: arrays of shape (...)."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum(axis=(-2, -1))
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    classes = per_class(cm)
    present = support > 0
    n_present = present.sum(axis=-1)
    out = {"accuracy": _divide(tp.sum(axis=-1), n)}
    for name in ("precision", "recall", "f1"):
        # present classes only; a present class never predicted has precision NaN -> 0 (zero_division=0)
        values = np.where(present, np.nan_to_num(classes[name], nan=0.0), 0.0)
        out[f"{name}_macro"] = _divide(values.sum(axis=-1), n_present)
        out[f"{name}_weighted"] = _divide((values * support).sum(axis=-1), n)
    po = _divide(tp.sum(axis=-1), n)
    pe = _divide((support * predicted).sum(axis=-1), n * n)
    out["kappa"] = _divide(po - pe, 1.0 - pe)
    for weights in KAPPA_WEIGHTS:
        out[f"kappa_{weights}"] = weighted_kappa(cm, weights)
    return out


def weighted_kappa(cm: np.ndarray, weights: str) -> np.ndarray:
    """Weighted Cohen's kappa of (..., K, K) confusion matrices; NaN where the expected disagreement is 0."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[-1]
    distance = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :]).astype(np.float64)
    if weights == "quadratic":
        distance = distance**2
    elif weights != "linear":
        raise ValueError(f"weights must be linear or quadratic, not {weights!r}")
    n = cm.sum(axis=(-2, -1))
    expected = cm.sum(axis=-1)[..., :, None] * cm.sum(axis=-2)[..., None, :]
    observed_disagreement = (cm * distance).sum(axis=(-2, -1))
    expected_disagreement = _divide((expected * distance).sum(axis=(-2, -1)), n)
    return 1.0 - _divide(observed_disagreement, expected_disagreement)
