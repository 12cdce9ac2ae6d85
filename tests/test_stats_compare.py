"""Comparing models on the same patients (f2b_study.stats.compare): the numbers and the refusals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from f2b_study import CLASSES
from f2b_study.errors import InputError
from f2b_study.stats import auc as delong
from f2b_study.stats.compare import align, compare_models, comparison_rows, model_names
from f2b_study.stats.decision import decision_data
from f2b_study.stats.evaluation import _compare
from f2b_study.stats.predictions import predictions_from_frame


def two_models(n=500, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.35, 0.45, 0.2])
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5
    a = np.exp(logits)
    b = np.exp(0.5 * logits + rng.normal(size=(n, 3)))
    return y, a / a.sum(axis=1, keepdims=True), b / b.sum(axis=1, keepdims=True)


def test_paired_tests_and_net_benefit_differences():
    y, a, b = two_models()
    doc = compare_models(["A", "B"], y, [a, b], replicates=200, seed=3)
    versus = doc["versus"]["B"]
    assert versus["difference"] == "A − B"
    expected = _compare(y, a, b, classes=(0, 1, 2), macro=True)
    for key in (*CLASSES, "macro"):
        assert versus["delong_paired"][key]["difference"] == pytest.approx(expected[key]["difference"], abs=1e-12)
        assert versus["delong_paired"][key]["p"] == pytest.approx(expected[key]["p"], abs=1e-12)
    assert doc["models"]["A"]["auc"]["osteoporosis"]["auc"] == pytest.approx(
        delong.delong_auc(a[:, 2], y == 2).auc)
    for decision in ("osteoporosis", "low_bone_mass"):
        curve_a = doc["models"]["A"]["decision_curves"][decision]
        curve_b = doc["models"]["B"]["decision_curves"][decision]
        for diff, pa, pb in zip(versus["net_benefit_difference"][decision], curve_a, curve_b, strict=True):
            assert diff["difference"] == pytest.approx(pa["net_benefit"] - pb["net_benefit"], abs=1e-12)
        with_ci = [d for d in versus["net_benefit_difference"][decision] if d["ci"]]
        assert [d["threshold"] for d in with_ci] == doc["table_thresholds"]
        assert all(d["ci"][0] <= d["ci"][1] for d in with_ci)
    again = compare_models(["A", "B"], y, [a, b], replicates=200, seed=3)
    assert again == doc
    rows = comparison_rows(doc)
    assert rows[1]["auc_macro_difference_vs_reference"] == pytest.approx(versus["delong_paired"]["macro"]["difference"])
    score, event = decision_data(y, a, "osteoporosis")
    t = 0.2
    tp, fp = ((score >= t) & event).sum(), ((score >= t) & ~event).sum()
    assert rows[0]["net_benefit_osteoporosis_t0.20"] == pytest.approx(tp / y.size - fp / y.size * t / (1 - t))


def test_a_class_missing_makes_its_tests_null_with_reason():
    y, a, b = two_models(200, 1)
    y = np.where(y == 2, 1, y)
    doc = compare_models(["A", "B"], y, [a, b], replicates=0)
    assert doc["versus"]["B"]["delong_paired"]["osteoporosis"] is None
    assert doc["versus"]["B"]["delong_paired"]["macro"] is None
    assert doc["versus"]["B"]["net_benefit_difference"]["osteoporosis"] is None
    assert "two osteoporosis patients" in doc["notes"]["versus.B.delong_paired.osteoporosis"]
    assert doc["models"]["A"]["decision_curves"]["osteoporosis"] is None


def test_model_names_are_the_shortest_distinct_path_endings():
    assert model_names(["runs/resnet34/val_predictions.csv", "runs/vit/val_predictions.csv"]) == [
        "resnet34/val_predictions", "vit/val_predictions"]
    assert model_names(["a.csv", "b.xlsx"]) == ["a", "b"]
    assert model_names(["x/a.csv", "x/a.csv"]) == ["x/a (1)", "x/a (2)"]


def _frame(ids, classes, seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([1, 1, 1], size=len(ids)).round(6)
    p[:, 2] = (1 - p[:, 0] - p[:, 1]).round(6)
    return pl.DataFrame({"patient_id": ids, "bone_status": classes, "p_normal": p[:, 0], "p_osteopenia": p[:, 1],
                         "p_osteoporosis": p[:, 2]})


def test_align_reorders_by_patient_and_refuses_mismatches():
    ids = [f"P{i}" for i in range(6)]
    classes = ["normal", "osteopenia", "osteoporosis"] * 2
    a = predictions_from_frame(_frame(ids, classes, 0), source="a.csv")
    other = _frame(ids, classes, 1)
    b = predictions_from_frame(other.reverse(), source="b.csv")
    _, y, probas = align([a, b])
    assert np.array_equal(y, a.y)
    assert np.allclose(probas[1], other.select("p_normal", "p_osteopenia", "p_osteoporosis").to_numpy())
    wrong = predictions_from_frame(_frame(ids, ["normal", *classes[1:]], 1), source="c.csv")
    with pytest.raises(InputError, match=r"c\.csv, row 2, column 'bone_status': value 'normal': expected "
                       r"'osteopenia' for patient P0 as in a\.csv \(1 patient\(s\) differ\)"):
        align([predictions_from_frame(_frame(ids, ["osteopenia", *classes[1:]], 0), source="a.csv"), wrong])
    with pytest.raises(InputError, match=r"d\.csv.*1 of a\.csv's patients missing \(e\.g\. P5\)"):
        align([a, predictions_from_frame(_frame(ids[:5], classes[:5], 1), source="d.csv")])
