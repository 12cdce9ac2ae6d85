"""Classification metrics against hand-worked cases and scikit-learn (docs/methods.md, Statistics)."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from f2b_study.stats.bootstrap import bootstrap_sums, per_cluster, percentile_interval
from f2b_study.stats.metrics import confusion_matrix, overall, per_class
from f2b_study.stats.subgroups import age_band

# rows = reference, columns = prediction; worked by hand below
HAND_CM = np.array([[3, 1, 0], [1, 2, 1], [0, 1, 1]])


def _labels_from_cm(cm):
    y, p = [], []
    for i in range(3):
        for j in range(3):
            y += [i] * cm[i, j]
            p += [j] * cm[i, j]
    return np.array(y), np.array(p)


def test_confusion_matrix_orientation_matches_sklearn():
    y, p = _labels_from_cm(HAND_CM)
    assert confusion_matrix(y, p).tolist() == HAND_CM.tolist()
    assert confusion_matrix(y, p).tolist() == sk_confusion_matrix(y, p, labels=[0, 1, 2]).tolist()


def test_hand_worked_overall():
    ov = overall(HAND_CM)
    # TP 3,2,1; support 4,4,2; predicted 4,4,2 -> precision = recall = F1 = .75, .5, .5
    assert ov["accuracy"] == pytest.approx(6 / 10)
    assert ov["precision_macro"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert ov["recall_weighted"] == pytest.approx((4 * 0.75 + 4 * 0.5 + 2 * 0.5) / 10)
    assert ov["f1_weighted"] == pytest.approx(0.6)
    # kappa: p_o = .6, p_e = (4·4 + 4·4 + 2·2)/100 = .36
    assert ov["kappa"] == pytest.approx((0.6 - 0.36) / (1 - 0.36))


def test_hand_worked_per_class():
    pc = per_class(HAND_CM)
    # normal vs rest: TP 3, FP 1, FN 1, TN 5
    assert pc["accuracy"][0] == pytest.approx(8 / 10)
    assert pc["precision"][0] == pytest.approx(3 / 4)
    assert pc["recall"][2] == pytest.approx(1 / 2)
    # OvR kappa: p_o = .8, p_e = (4·4 + 6·6)/100 = .52
    assert pc["kappa"][0] == pytest.approx((0.8 - 0.52) / (1 - 0.52))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, 200, p=[0.3, 0.5, 0.2])
    p = np.where(rng.random(200) < 0.6, y, rng.choice(3, 200))
    cm = confusion_matrix(y, p)
    ov, pc = overall(cm), per_class(cm)
    assert ov["accuracy"] == pytest.approx(accuracy_score(y, p))
    for avg in ("macro", "weighted"):
        prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=[0, 1, 2], average=avg, zero_division=0)
        assert ov[f"precision_{avg}"] == pytest.approx(prec)
        assert ov[f"recall_{avg}"] == pytest.approx(rec)
        assert ov[f"f1_{avg}"] == pytest.approx(f1)
    assert ov["kappa"] == pytest.approx(cohen_kappa_score(y, p))
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=[0, 1, 2], zero_division=0)
    np.testing.assert_allclose(pc["precision"], prec)
    np.testing.assert_allclose(pc["recall"], rec)
    np.testing.assert_allclose(pc["f1"], f1)
    for k in range(3):
        assert pc["kappa"][k] == pytest.approx(cohen_kappa_score(y == k, p == k))
        assert pc["accuracy"][k] == pytest.approx(accuracy_score(y == k, p == k))


def test_absent_and_never_predicted_classes():
    # osteoporosis absent from the reference standard; osteopenia present but never predicted
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0, 0, 2, 0, 0])
    cm = confusion_matrix(y, p)
    pc, ov = per_class(cm), overall(cm)
    assert np.isnan(pc["recall"][2])  # no osteoporosis patients
    assert pc["precision"][2] == 0  # predicted, never right
    assert np.isnan(pc["precision"][1])  # never predicted
    assert pc["f1"][1] == 0
    # macro over the present classes, a present never-predicted class counting precision 0 (sklearn, labels=present)
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=[0, 1], average="macro", zero_division=0)
    assert ov["precision_macro"] == pytest.approx(prec)
    assert ov["recall_macro"] == pytest.approx(rec)
    assert ov["f1_macro"] == pytest.approx(f1)


def test_single_class_kappa_is_undefined():
    cm = confusion_matrix(np.zeros(5, int), np.zeros(5, int))
    assert np.isnan(overall(cm)["kappa"])
    assert overall(cm)["accuracy"] == 1


def test_batched_equals_one_by_one():
    rng = np.random.default_rng(3)
    cms = rng.integers(0, 20, size=(7, 3, 3))
    batched = overall(cms)
    for i in range(7):
        single = overall(cms[i])
        for key, value in single.items():
            np.testing.assert_allclose(batched[key][i], value)


def test_bootstrap_sums_match_explicit_resampling():
    rng = np.random.default_rng(5)
    x = rng.random((50, 3))
    sums = bootstrap_sums(x, replicates=40, seed=11)
    # the same draws, one replicate at a time: indices -> counts -> weighted sums
    draws = np.random.default_rng(11).integers(0, 50, size=(40, 50), dtype=np.int32)
    explicit = np.stack([x[d].sum(axis=0) for d in draws])
    np.testing.assert_allclose(sums, explicit, rtol=1e-6)  # single-precision product


def test_bootstrap_is_patient_level():
    # patient A has three rows, B one: each replicate carries A's rows together
    x = np.array([[1.0], [1.0], [1.0], [10.0]])
    ids = np.array(["A", "A", "A", "B"])
    assert per_cluster(x, ids).ravel().tolist() == [3.0, 10.0]
    sums = bootstrap_sums(x, ids, replicates=200, seed=1).ravel()
    assert set(np.unique(sums)) <= {6.0, 13.0, 20.0}


def test_percentile_interval_ignores_undefined_replicates():
    values = np.column_stack([np.arange(101, dtype=float), np.r_[np.full(50, np.nan), np.arange(51.0)]])
    lo, hi, defined = percentile_interval(values)
    assert lo[0] == pytest.approx(2.5) and hi[0] == pytest.approx(97.5)
    assert defined.tolist() == [101, 51]
    assert lo[1] == pytest.approx(np.quantile(np.arange(51.0), 0.025))


def test_age_band_edges():
    bands = age_band(np.array([59.9, 60, 69.5, 70, 79.99, 80, 95, np.nan]))
    assert bands.tolist() == ["<60", "60–69", "60–69", "70–79", "70–79", "≥80", "≥80", None]
