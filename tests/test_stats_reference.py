"""Issue 15's statistics against independent implementations, number by number, on committed reference data.

tests/reference/reference_data.csv (make_data.py: 400 patients, two models, probabilities on a 0.01 grid so that
scores tie at every threshold) was run through R 4.2 (pROC 1.18, rms 6.5, glm; make_reference.R ->
r_reference.csv) and MSKCC's dcurves 1.1.7 (make_dcurves_reference.py -> dcurves_reference.csv). CI needs neither.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from f2b_study import CLASSES
from f2b_study.stats import decision as dc
from f2b_study.stats.calibration_curve import flexible_calibration
from f2b_study.stats.calibration_slope import calibration_intercept_slope
from f2b_study.stats.compare import paired_tests
from f2b_study.stats.diagnostic import per_class_measures
from f2b_study.stats.subgroup_tests import auc_tests

HERE = Path(__file__).parent / "reference"
TOL = 1e-6


@pytest.fixture(scope="module")
def data():
    frame = pl.read_csv(HERE / "reference_data.csv")
    p = frame.select("p_normal", "p_osteopenia", "p_osteoporosis").to_numpy()
    q = frame.select("q_normal", "q_osteopenia", "q_osteoporosis").to_numpy()
    return frame, frame["y"].to_numpy(), p, q


@pytest.fixture(scope="module")
def r():
    table = pl.read_csv(HERE / "r_reference.csv", schema_overrides={"value": pl.Float64})
    return dict(table.iter_rows())


def test_decision_curves_match_dcurves(data):
    _, y, p, _ = data
    reference = pl.read_csv(HERE / "dcurves_reference.csv", schema_overrides={"net_benefit": pl.Float64})
    curves, reasons = dc.decision_curves(y, proba=p)
    rules, _ = dc.decision_curves(y, predicted=p.argmax(axis=1))
    assert not reasons
    checked = 0
    for decision in dc.DECISIONS:
        ours = {"score": [pt["net_benefit"] for pt in curves[decision]],
                "all": [pt["net_benefit_all"] for pt in curves[decision]],
                "rule": [pt["net_benefit"] for pt in rules[decision]], "none": [0.0] * len(dc.THRESHOLDS)}
        for model, values in ours.items():
            theirs = reference.filter((pl.col("decision") == decision) & (pl.col("model") == model))
            assert theirs["threshold"].to_list() == pytest.approx(dc.THRESHOLDS.tolist(), abs=1e-12)
            assert np.allclose(values, theirs["net_benefit"].to_numpy(), rtol=0, atol=TOL), (decision, model)
            checked += len(values)
        assert curves[decision][0]["threshold"] == 0.01 and curves[decision][-1]["threshold"] == 0.99
    assert checked == 2 * 4 * 99


def test_calibration_intercept_and_slope_match_r_glm_and_val_prob(data, r):
    _, y, p, _ = data
    for k, name in enumerate(CLASSES):
        intercept, slope = calibration_intercept_slope(y == k, p[:, k])
        assert intercept.value == pytest.approx(r[f"{name}.intercept"], abs=TOL)
        assert intercept.se == pytest.approx(r[f"{name}.intercept_se"], abs=TOL)
        assert intercept.ci == pytest.approx((r[f"{name}.intercept_lo"], r[f"{name}.intercept_hi"]), abs=TOL)
        assert slope.value == pytest.approx(r[f"{name}.slope"], abs=TOL)
        assert slope.value == pytest.approx(r[f"{name}.val_prob_slope"], abs=TOL)
        assert slope.se == pytest.approx(r[f"{name}.slope_se"], abs=TOL)
        assert slope.ci == pytest.approx((r[f"{name}.slope_lo"], r[f"{name}.slope_hi"]), abs=TOL)


def test_flexible_curve_matches_rms_lrm_rcs(data, r):
    _, y, p, _ = data
    for k, name in enumerate(CLASSES):
        curve, reason = flexible_calibration(y == k, p[:, k], replicates=50)
        assert reason is None and curve["groups"] <= 99  # a 0.01 grid: the grouping is exact
        expected = [r[f"{name}.flexible.{i:03d}"] for i in range(101)]
        assert np.allclose(curve["observed"], expected, rtol=0, atol=TOL), name


def test_wilson_intervals_match_r_prop_test(data, r):
    _, y, p, _ = data
    measures, _ = per_class_measures(y, p.argmax(axis=1), CLASSES)
    for name in CLASSES:
        for measure in ("sensitivity", "specificity", "ppv", "npv"):
            assert measures[name][f"{measure}_ci"] == pytest.approx(
                [r[f"{name}.{measure}_lo"], r[f"{name}.{measure}_hi"]], abs=TOL), (name, measure)


def test_unpaired_delong_by_sex_matches_proc_roc_test(data, r):
    frame, y, p, _ = data
    sex = frame["sex"].to_numpy().astype(object)
    tests, reasons = auc_tests(y, p, sex.astype(str), ["F", "M"])
    assert not reasons
    for name in CLASSES:
        test = tests[name]
        assert test["aucs"] == pytest.approx([r[f"{name}.sex_auc_f"], r[f"{name}.sex_auc_m"]], abs=TOL)
        assert test["auc_difference"] == pytest.approx(r[f"{name}.sex_auc_f"] - r[f"{name}.sex_auc_m"], abs=TOL)
        assert test["z"] == pytest.approx(r[f"{name}.sex_z"], abs=TOL)
        assert test["df"] == pytest.approx(r[f"{name}.sex_df"], abs=TOL)
        assert test["p"] == pytest.approx(r[f"{name}.sex_p"], abs=TOL)


def test_paired_delong_between_models_matches_proc(data, r):
    _, y, p, q = data
    tests, _ = paired_tests(y, p, q)
    for name in CLASSES:
        assert tests[name]["z"] == pytest.approx(r[f"{name}.paired_z"], abs=TOL)
        assert tests[name]["p"] == pytest.approx(r[f"{name}.paired_p"], abs=TOL)


def test_heterogeneity_across_centres_from_proc_variances(data, r):
    frame, y, p, _ = data
    centre = frame["center"].to_numpy().astype(str)
    tests, _ = auc_tests(y, p, centre, ["A", "B", "C"])
    for name in CLASSES:
        aucs = np.array([r[f"{name}.centre_{c}_auc"] for c in "ABC"])
        w = 1 / np.array([r[f"{name}.centre_{c}_var"] for c in "ABC"])
        pooled = (w * aucs).sum() / w.sum()
        q = float((w * (aucs - pooled) ** 2).sum())
        assert tests[name]["aucs"] == pytest.approx(aucs.tolist(), abs=TOL)
        assert tests[name]["q"] == pytest.approx(q, abs=TOL)
        assert tests[name]["df"] == 2
        assert tests[name]["p"] == pytest.approx(math.exp(-q / 2), abs=TOL)  # χ² with 2 df: P(X > q) = e^(−q/2)
