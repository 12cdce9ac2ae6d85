"""Multi-centre meta-analysis (against statsmodels) and the clinical comparators."""

import numpy as np
import polars as pl
import pytest
from report_sample import predictions
from statsmodels.discrete.discrete_model import MNLogit
from statsmodels.stats.meta_analysis import combine_effects

from f2b_study.report.figures import forest_svg
from f2b_study.stats import comparators as comp
from f2b_study.stats.meta import meta_analysis, multicentre_summary


def test_meta_analysis_matches_statsmodels_when_heterogeneous():
    est = [0.90, 0.80, 0.70, 0.85]
    se = [0.02, 0.03, 0.025, 0.04]
    ours = meta_analysis(["a", "b", "c", "d"], est, se)
    ref = combine_effects(np.array(est), np.array(se) ** 2, method_re="chi2")
    frame = ref.summary_frame()
    assert ours["q"] == pytest.approx(ref.q) and ours["q"] > ours["df"]  # Q > df: statsmodels' τ² is right here
    assert ours["tau2"] == pytest.approx(ref.tau2)
    assert ours["i2"] == pytest.approx((ref.q - 3) / ref.q)
    assert ours["fixed"]["estimate"] == pytest.approx(frame.loc["fixed effect", "eff"])
    assert ours["random"]["estimate"] == pytest.approx(frame.loc["random effect", "eff"])
    assert ours["random"]["se"] == pytest.approx(frame.loc["random effect", "sd_eff"])
    assert sum(s["weight_random"] for s in ours["studies"]) == pytest.approx(1)


def test_meta_analysis_homogeneous_truncates_tau2():
    ours = meta_analysis(["a", "b"], [0.93, 0.92], [0.02, 0.0223])
    assert ours["q"] < ours["df"]
    assert ours["tau2"] == 0 and ours["i2"] == 0
    assert ours["random"]["estimate"] == pytest.approx(ours["fixed"]["estimate"])


def test_meta_analysis_needs_two_centres_with_se():
    ours = meta_analysis(["a", "b"], [0.9, None], [0.02, None])
    assert ours["fixed"] is None and "pooling needs two" in ours["reason"]
    assert ours["excluded"] == {"b": "no AUC"}


def test_multicentre_summary_and_forest():
    frames = {"A": predictions(120, 1, "A", "a"), "B & <b>": predictions(90, 2, "B & <b>", "b")}
    summary = multicentre_summary(frames, replicates=50)
    assert set(summary["centres"]) == {"A", "B & <b>"}
    n = sum(c["n"] for c in summary["centres"].values())
    assert summary["pooled"]["n"] == n
    meta = summary["meta"]["auc_macro_ovr"]
    assert [s["name"] for s in meta["studies"]] == ["A", "B & <b>"]
    assert meta["i2"] is not None and 0 <= meta["i2"] <= 1
    svg = forest_svg(meta, "AUC", "f")
    assert svg.startswith("<svg") and "B &amp; &lt;b&gt;" in svg


def test_osta_categories_and_scores():
    assert comp.osta_index(np.array([60.0]), np.array([70.0]))[0] == pytest.approx(-2.0)
    index = np.array([-0.99, -1.0, -2.5, -4.0, -4.01, 3.0])
    assert comp.osta_class(index).tolist() == [0, 1, 1, 1, 2, 0]
    scores = comp.osta_auc_scores(index)
    assert np.isnan(scores[:, 1]).all() and (scores[:, 2] == -index).all()


def _train(n=300, seed=0, constant_sex=False):
    rng = np.random.default_rng(seed)
    age = rng.uniform(50, 90, n)
    bmi = rng.normal(25, 4, n)
    eta = np.column_stack([np.zeros(n), 0.04 * (age - 70) - 0.1 * (bmi - 25), 0.08 * (age - 70) - 0.2 * (bmi - 25)])
    p = np.exp(eta) / np.exp(eta).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    sex = np.full(n, "F") if constant_sex else rng.choice(["F", "M"], n)
    return pl.DataFrame({"y": y, "age_years": age, "sex": sex, "bmi": bmi})


def test_clinical_logit_is_statsmodels_mnlogit():
    train = _train()
    model, reason = comp.fit_clinical_logit(train)
    assert reason is None and model.columns == ["age_years", "sex", "bmi"]
    x = np.column_stack([np.ones(train.height), train["age_years"], (train["sex"] == "M").cast(float), train["bmi"]])
    reference = MNLogit(train["y"].to_numpy(), x).fit(disp=0)
    proba, complete = model.predict_proba(train)
    assert complete.all()
    np.testing.assert_allclose(proba, reference.predict(x), atol=1e-6)


def test_clinical_logit_drops_constant_sex_and_refuses_missing_class():
    model, _ = comp.fit_clinical_logit(_train(constant_sex=True))
    assert model.columns == ["age_years", "bmi"] and model.dropped == ["sex"]
    assert "left out" in comp.describe_logit(model)
    only_two = _train().filter(pl.col("y") < 2)
    model, reason = comp.fit_clinical_logit(only_two)
    assert model is None and "osteoporosis" in reason
