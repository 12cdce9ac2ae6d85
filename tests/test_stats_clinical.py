"""Issue 15's statistics on generated data against statsmodels and scikit-learn, and their edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.metrics import cohen_kappa_score

from f2b_study import CLASSES
from f2b_study.stats import calibration_curve as flex
from f2b_study.stats import decision as dc
from f2b_study.stats import operating as op
from f2b_study.stats.calibration_slope import calibration_intercept_slope, clipped_logit
from f2b_study.stats.diagnostic import per_class_measures
from f2b_study.stats.meta import meta_analysis
from f2b_study.stats.methods import methods_definitions
from f2b_study.stats.metrics import confusion_matrix, overall, weighted_kappa
from f2b_study.stats.subgroup_tests import auc_tests, subgroup_tests


def generated(n: int, seed: int, shift: float = 1.5, temperature: float = 1.0):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.35, 0.45, 0.2])
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += shift
    p = np.exp(logits / temperature)
    return y, p / p.sum(axis=1, keepdims=True)


# -- weighted kappa ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_weighted_kappa_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = rng.choice(3, n, p=rng.dirichlet([1, 1, 1]))
    pred = np.where(rng.uniform(size=n) < 0.6, y, rng.choice(3, n))
    cm = confusion_matrix(y, pred, 3)
    for weights in ("linear", "quadratic"):
        expected = cohen_kappa_score(y, pred, weights=weights, labels=[0, 1, 2])
        assert float(weighted_kappa(cm, weights)) == pytest.approx(expected, abs=1e-12)
        assert float(overall(cm)[f"kappa_{weights}"]) == pytest.approx(expected, abs=1e-12)


def test_weighted_kappa_vectorised_over_replicates_and_undefined_for_one_class():
    y, p = generated(300, 1)
    cm = confusion_matrix(y, p.argmax(axis=1), 3).astype(float)
    stack = np.stack([cm, cm * 2, cm.T])
    values = weighted_kappa(stack, "quadratic")
    assert values.shape == (3,) and values[0] == pytest.approx(values[1])
    single = np.zeros((3, 3))
    single[2, 2] = 5
    assert math.isnan(float(weighted_kappa(single, "linear")))
    with pytest.raises(ValueError):
        weighted_kappa(cm, "cubic")


# -- calibration intercept and slope -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,temperature", [(0, 1.0), (1, 0.5), (2, 2.0)])
def test_intercept_and_slope_match_statsmodels_glm(seed, temperature):
    y, p = generated(4000, seed, temperature=temperature)
    for k in range(3):
        outcome = (y == k).astype(float)
        x = clipped_logit(p[:, k])
        glm_i = sm.GLM(outcome, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=x).fit(tol=1e-13)
        glm_s = sm.GLM(outcome, sm.add_constant(x), family=sm.families.Binomial()).fit(tol=1e-13)
        intercept, slope = calibration_intercept_slope(y == k, p[:, k])
        assert intercept.value == pytest.approx(glm_i.params[0], abs=1e-8)
        assert intercept.ci == pytest.approx(tuple(glm_i.conf_int(0.05)[0]), abs=1e-8)
        assert slope.value == pytest.approx(glm_s.params[1], abs=1e-8)
        assert slope.ci == pytest.approx(tuple(glm_s.conf_int(0.05)[1]), abs=1e-8)


def test_perfectly_calibrated_probabilities_give_intercept_0_slope_1():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.98, 200_000)
    y = rng.uniform(size=p.size) < p
    intercept, slope = calibration_intercept_slope(y, p)
    assert intercept.ci[0] < 0 < intercept.ci[1] and abs(intercept.value) < 0.02
    assert slope.ci[0] < 1 < slope.ci[1] and abs(slope.value - 1) < 0.02


def test_probabilities_of_0_and_1_are_clipped_not_infinite():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    p = np.array([0.0, 0.2, 1.0, 0.7, 0.4, 0.6, 0.3, 0.5])
    intercept, slope = calibration_intercept_slope(y, p)
    x = np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
    expected = sm.GLM(y.astype(float), np.ones((8, 1)), family=sm.families.Binomial(), offset=x).fit(tol=1e-13)
    assert intercept.value == pytest.approx(expected.params[0], abs=1e-8)
    assert slope.value is not None and math.isfinite(slope.value)


def test_intercept_slope_edge_cases_are_null_with_reasons():
    p = np.array([0.1, 0.3, 0.5, 0.7])
    none = calibration_intercept_slope(np.zeros(4, bool), p, what="osteoporosis")
    assert none[0].value is None and "no patients with osteoporosis" in none[0].reason
    every = calibration_intercept_slope(np.ones(4, bool), p, what="osteoporosis")
    assert every[1].value is None and "every patient has osteoporosis" in every[1].reason
    separated = calibration_intercept_slope(np.array([0, 0, 1, 1], bool), p)
    assert separated[0].value is not None and separated[1].value is None
    assert "separates" in separated[1].reason
    flat = calibration_intercept_slope(np.array([0, 1, 0, 1], bool), np.full(4, 0.5))
    assert flat[0].value == pytest.approx(0.0, abs=1e-12) and "same predicted probability" in flat[1].reason


# -- flexible calibration curve ------------------------------------------------------------------------------------

def test_spline_fit_on_exact_groups_equals_patient_level_glm():
    rng = np.random.default_rng(4)
    p = rng.integers(1, 100, 3000) / 100  # 99 distinct values: the grouping is exact
    y = rng.uniform(size=p.size) < p**1.3
    curve, reason = flex.flexible_calibration(y, p, replicates=0)
    assert reason is None and curve["lo"] is None
    x = clipped_logit(p)
    knots = np.quantile(x, flex.KNOTS_4)
    raw = sm.GLM(y.astype(float), flex.rcs_basis(x, knots), family=sm.families.Binomial()).fit(tol=1e-13)
    grid = np.array(curve["predicted"])
    expected = raw.predict(flex.rcs_basis(clipped_logit(grid), knots))
    assert np.allclose(curve["observed"], expected, atol=1e-8)
    assert curve["knots"] == pytest.approx((1 / (1 + np.exp(-knots))).tolist())


def test_grouped_spline_fit_is_close_to_the_patient_level_fit():
    rng = np.random.default_rng(5)
    p = rng.beta(2, 5, 30_000)
    y = rng.uniform(size=p.size) < np.clip(p * 1.2, 0, 1)
    curve, _ = flex.flexible_calibration(y, p, replicates=0)
    assert curve["groups"] == flex.GROUPS
    x = clipped_logit(p)
    knots = np.quantile(x, flex.KNOTS_4)
    raw = sm.GLM(y.astype(float), flex.rcs_basis(x, knots), family=sm.families.Binomial()).fit()
    expected = raw.predict(flex.rcs_basis(clipped_logit(np.array(curve["predicted"])), knots))
    assert np.abs(np.array(curve["observed"]) - expected).max() < 2e-3


def test_batched_newton_equals_statsmodels_on_each_replicate():
    rng = np.random.default_rng(6)
    design = flex.rcs_basis(np.linspace(-3, 2, 60), np.array([-2.5, -1.0, 0.5, 1.6]))
    trials = rng.integers(5, 40, size=(4, 60)).astype(float)
    truth = 1 / (1 + np.exp(-(design @ np.array([0.2, 0.9, 0.3, -0.4]))))
    events = rng.binomial(trials.astype(int), truth).astype(float)
    betas = flex._newton(design, events, trials, np.zeros(design.shape[1]))
    for b in range(4):
        fit = sm.GLM(np.column_stack([events[b], trials[b] - events[b]]), design,
                     family=sm.families.Binomial()).fit(tol=1e-13)
        assert np.allclose(betas[b], fit.params, atol=1e-7)


def test_bootstrap_band_surrounds_the_curve_and_is_reproducible():
    y, p = generated(2000, 7)
    a, _ = flex.flexible_calibration(y == 2, p[:, 2], replicates=300, seed=1)
    b, _ = flex.flexible_calibration(y == 2, p[:, 2], replicates=300, seed=1)
    assert a == b and a["replicates"] == 300 and a["defined"] == 300
    lo, hi, mid = np.array(a["lo"]), np.array(a["hi"]), np.array(a["observed"])
    assert (lo <= hi).all() and np.mean((lo <= mid) & (mid <= hi)) > 0.95
    assert len(a["predicted"]) == flex.GRID_POINTS


def test_flexible_curve_edge_cases():
    p = np.linspace(0.05, 0.95, 100)
    few = np.zeros(100, bool)
    few[:5] = True
    curve, reason = flex.flexible_calibration(few, p)
    assert curve is None and "at least 10" in reason and "5 with" in reason
    y = np.arange(100) % 2 == 0
    curve, reason = flex.flexible_calibration(y, p, replicates=20, clustered=True)
    assert curve["lo"] is None and "several rows" in curve["band_reason"]
    curve, reason = flex.flexible_calibration(y, np.full(100, 0.3))
    assert curve is None and "distinct" in reason


# -- decision curves -----------------------------------------------------------------------------------------------

def test_net_benefit_by_brute_force_with_ties_at_thresholds():
    rng = np.random.default_rng(8)
    score = rng.integers(0, 101, 500) / 100  # values exactly on the thresholds
    event = rng.uniform(size=500) < score
    counts = dc.referral_counts(score, event)
    for i, t in enumerate(dc.THRESHOLDS):
        refer = score >= t
        assert counts.tp[i] == (refer & event).sum() and counts.fp[i] == (refer & ~event).sum()
    curve = dc.curve(score, event)
    t = 0.2
    point = next(pt for pt in curve if pt["threshold"] == t)
    tp, fp = ((score >= t) & event).sum(), ((score >= t) & ~event).sum()
    assert point["net_benefit"] == pytest.approx(tp / 500 - fp / 500 * t / (1 - t), abs=1e-15)
    prevalence = event.mean()
    assert point["net_benefit_all"] == pytest.approx(prevalence - (1 - prevalence) * t / (1 - t), abs=1e-15)


def test_decisions_and_their_undefined_cases():
    y, p = generated(200, 9)
    score, event = dc.decision_data(y, p, "low_bone_mass")
    assert np.array_equal(event, y != 0) and np.allclose(score, p[:, 1] + p[:, 2])
    curves, reasons = dc.decision_curves(np.where(y == 2, 1, y), proba=p)
    assert curves["osteoporosis"] is None and "no patients with osteoporosis" in reasons["osteoporosis"]
    assert curves["low_bone_mass"] is not None
    curves, reasons = dc.decision_curves(np.full(10, 2), proba=p[:10])
    assert curves["osteoporosis"] is None and curves["low_bone_mass"] is None
    assert "every patient has" in reasons["low_bone_mass"]
    rule, _ = dc.decision_curves(y, predicted=p.argmax(axis=1))
    refer = p.argmax(axis=1) == 2
    tp, fp = (refer & (y == 2)).sum(), (refer & (y != 2)).sum()
    for point in rule["osteoporosis"]:
        t = point["threshold"]
        assert point["net_benefit"] == pytest.approx(tp / 200 - fp / 200 * t / (1 - t), abs=1e-15)
    with pytest.raises(ValueError):
        dc.decision_data(y, p, "fracture")


# -- diagnostic accuracy and operating points ----------------------------------------------------------------------

def test_diagnostic_measures_and_zero_denominators():
    y = np.array([0, 0, 1, 1, 1, 0])
    predicted = np.array([0, 1, 1, 1, 0, 0])
    measures, reasons = per_class_measures(y, predicted, CLASSES)
    assert measures["normal"]["sensitivity"] == pytest.approx(2 / 3)
    assert measures["normal"]["specificity"] == pytest.approx(2 / 3)
    assert measures["osteopenia"]["ppv"] == pytest.approx(2 / 3)
    lo, hi = measures["osteopenia"]["ppv_ci"]
    assert 0 < lo < 2 / 3 < hi < 1  # Wilson: inside (0, 1) even for 3 patients
    assert measures["osteoporosis"]["sensitivity"] is None
    assert "no patients with osteoporosis" in reasons["osteoporosis.sensitivity"]
    assert measures["osteoporosis"]["ppv"] is None and "no patients predicted osteoporosis" in reasons[
        "osteoporosis.ppv"]
    assert measures["osteoporosis"]["specificity"] == 1.0


def test_data_derived_thresholds_are_the_highest_reaching_the_target():
    y, p = generated(1500, 10)
    points, reasons = op.operating_points(y, p)
    assert not reasons
    for decision in dc.DECISIONS:
        score, event = dc.decision_data(y, p, decision)
        for point, target in zip(points[decision], op.TARGET_SENSITIVITIES, strict=True):
            t = point["threshold"]
            assert point["basis"] == op.DATA_DERIVED and point["target_sensitivity"] == target
            assert point["sensitivity"] >= target
            higher = np.unique(score[score > t])
            if higher.size:
                assert ((score >= higher[0]) & event).sum() / event.sum() < target
            n = y.size
            assert point["referrals_per_1000"] == pytest.approx(1000 * (score >= t).sum() / n)
            assert point["missed_per_1000"] == pytest.approx(1000 * ((score < t) & event).sum() / n)
            assert point["scans_avoided_per_1000"] == pytest.approx(1000 - point["referrals_per_1000"])
            assert point["specificity"] == pytest.approx(((score < t) & ~event).sum() / (~event).sum())


def test_exact_sensitivity_targets_do_not_slip_on_float_rounding():
    score = np.arange(10) / 10
    event = np.ones(10, bool)
    assert op.threshold_for_sensitivity(score, event, 0.9) == pytest.approx(0.1)  # 9 of 10, not 10 of 10


def test_prespecified_threshold_first_and_validated():
    y, p = generated(400, 11)
    points, _ = op.operating_points(y, p, {"osteoporosis": 0.25})
    first = points["osteoporosis"][0]
    assert first["basis"] == op.PRE_SPECIFIED and first["threshold"] == 0.25 and first["target_sensitivity"] is None
    assert [pt["basis"] for pt in points["low_bone_mass"]] == [op.DATA_DERIVED] * 2
    with pytest.raises(ValueError, match="unknown decision"):
        op.operating_points(y, p, {"fracture": 0.2})
    with pytest.raises(ValueError, match="not a probability"):
        op.operating_points(y, p, {"osteoporosis": 1.5})
    points, reasons = op.operating_points(np.where(y == 2, 0, y), p)
    assert points["osteoporosis"] is None and "no patients with osteoporosis" in reasons["osteoporosis"]


# -- subgroup tests ------------------------------------------------------------------------------------------------

def test_more_than_two_levels_heterogeneity_equals_meta_analysis_q():
    y, p = generated(900, 12)
    levels = np.array(["A", "B", "C"], dtype=object)[np.arange(900) % 3]
    tests, reasons = auc_tests(y, p, levels.astype(str), ["A", "B", "C"])
    assert not reasons
    from f2b_study.stats import auc as delong

    for k, name in enumerate(CLASSES):
        estimates, ses = [], []
        for level in "ABC":
            result = delong.delong_auc(p[levels == level, k], y[levels == level] == k)
            estimates.append(result.auc)
            ses.append(result.se)
        meta = meta_analysis(list("ABC"), estimates, ses)
        assert tests[name]["q"] == pytest.approx(meta["q"], abs=1e-12)
        assert tests[name]["p"] == pytest.approx(meta["p_heterogeneity"], abs=1e-12)


def test_level_with_one_class_gives_null_with_reason_and_gaps_by_brute_force():
    y, p = generated(600, 13)
    sex = np.where(np.arange(600) % 3 == 0, "M", "F").astype(object)
    y = np.where((sex == "M") & (y == 2), 1, y)  # men without osteoporosis
    points, _ = op.operating_points(y, p)
    tests, reasons = subgroup_tests(y, p, sex, points)
    assert tests["levels"] == ["F", "M"] and tests["difference"] == "F − M"
    assert tests["osteoporosis"] is None and "M: no osteoporosis patients" in reasons["osteoporosis"]
    assert tests["macro"] is None
    assert tests["normal"]["auc_difference"] == pytest.approx(tests["normal"]["aucs"][0] - tests["normal"]["aucs"][1])
    gap = tests["operating_points"]["low_bone_mass"][0]
    score, event = dc.decision_data(y, p, "low_bone_mass")
    rates = {}
    for level in ("F", "M"):
        mask = sex == level
        rates[level] = ((score[mask] >= gap["threshold"]) & event[mask]).sum() / event[mask].sum()
    assert gap["sensitivity"] == pytest.approx(rates)
    assert gap["sensitivity_gap"] == pytest.approx(rates["F"] - rates["M"])
    assert gap["sensitivity_gap_ci"][0] < gap["sensitivity_gap"] < gap["sensitivity_gap_ci"][1]
    men_osteoporosis = tests["operating_points"]["osteoporosis"][0]
    assert men_osteoporosis["sensitivity_gap"] is None
    assert "M: no patients with the event" in reasons["operating_points.osteoporosis.0.sensitivity_gap"]


def test_unknown_levels_are_left_out_and_one_level_is_not_tested():
    y, p = generated(200, 14)
    values = np.array([None if i % 10 == 0 else "F" for i in range(200)], dtype=object)
    tests, reasons = subgroup_tests(y, p, values)
    assert tests is None and "1 level(s)" in reasons[""]


# -- methods text --------------------------------------------------------------------------------------------------

def test_methods_text_follows_the_constants_and_the_evaluation():
    sentences = methods_definitions()
    text = " ".join(sentences)
    assert "from 0.01 to 0.99 in steps of 0.01" in text
    assert "[1e-06, 1 − 1e-06]" in text and "Wilson" in text and "0.90 and 0.95" in text
    assert "5th, 35th, 65th, 95th percentiles" in text and "2,000" in text
    evaluation = {"bootstrap": {"replicates": 500}, "subgroup_tests": {"sex": {}},
                  "operating_points": {"osteoporosis": [{"basis": "pre-specified", "threshold": 0.2}]}}
    text = " ".join(methods_definitions(evaluation))
    assert "500 patient-level" in text and "osteoporosis t = 0.2" in text and "run for: sex" in text
