"""DeLong AUC, variance, CIs and paired tests: against brute force, a hand-worked case and simulation."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from f2b_study.stats import auc as delong


def naive_placements(scores, positive):
    """DeLong 1988 structural components by the definition, O(m·n): ψ(x, y) = 1 if x > y, ½ if equal, 0 else."""
    cases, controls = scores[positive], scores[~positive]
    psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
    return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)


def naive_delong(scores, positive):
    theta, v10, v01 = naive_placements(scores, positive)
    m, n = v10.size, v01.size
    s10 = ((v10 - theta) ** 2).sum() / (m - 1)
    s01 = ((v01 - theta) ** 2).sum() / (n - 1)
    return theta, s10 / m + s01 / n


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fast_placements_equal_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 80).astype(float)  # many ties
    positive = rng.random(80) < 0.4
    fast = delong.placements(scores, positive)
    theta, v10, v01 = naive_placements(scores, positive)
    assert fast.theta == pytest.approx(theta)
    np.testing.assert_allclose(fast.cases, v10)
    np.testing.assert_allclose(fast.controls, v01)
    assert fast.theta == pytest.approx(roc_auc_score(positive, scores))  # Mann–Whitney = sklearn's AUC
    assert delong.variance(fast) == pytest.approx(naive_delong(scores, positive)[1])


def test_hand_worked_delong_ci():
    # cases 0.9, 0.8, 0.4; controls 0.7, 0.3 -> V10 = 1, 1, ½ ; V01 = ⅔, 1 ; AUC = 5/6
    # S10 = ((1/6)² + (1/6)² + (1/3)²)/2 = 1/12 ; S01 = ((1/6)² + (1/6)²)/1 = 1/18 ; S = (1/12)/3 + (1/18)/2 = 1/18
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.3])
    positive = np.array([True, True, True, False, False])
    result = delong.delong_auc(scores, positive)
    assert result.auc == pytest.approx(5 / 6)
    assert result.se == pytest.approx(math.sqrt(1 / 18))
    lo = 5 / 6 - 1.959963984540054 * math.sqrt(1 / 18)
    assert result.ci[0] == pytest.approx(lo)
    assert result.ci[1] == 1.0  # clipped to 1 as pROC does


def test_undefined_cases():
    scores = np.array([0.1, 0.2, 0.3])
    assert math.isnan(delong.delong_auc(scores, np.array([False, False, False])).auc)  # no cases
    one_case = delong.delong_auc(scores, np.array([False, False, True]))
    assert one_case.auc == 1.0 and math.isnan(one_case.se)  # pROC: NA CI with a single case
    assert all(math.isnan(v) for v in one_case.ci)


def test_variance_matches_simulated_sampling_variance():
    # binormal model, m = n = 40: the mean DeLong variance is close to the true variance of the AUC estimate
    rng = np.random.default_rng(7)
    aucs, variances = [], []
    positive = np.r_[np.ones(40, bool), np.zeros(40, bool)]
    for _ in range(3000):
        scores = np.r_[rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 40)]
        p = delong.placements(scores, positive)
        aucs.append(p.theta)
        variances.append(delong.variance(p))
    assert np.mean(variances) == pytest.approx(np.var(aucs), rel=0.08)


def test_covariance_matches_proc_paired_formula():
    # pROC's delong.paired.calculations: S = SX/m + SY/n with cross-products of the two tests' placements
    rng = np.random.default_rng(4)
    positive = rng.random(60) < 0.5
    a = rng.normal(size=60) + positive
    b = 0.5 * a + rng.normal(size=60)
    ta, xa, ya = naive_placements(a, positive)
    tb, xb, yb = naive_placements(b, positive)
    m, n = xa.size, ya.size
    sx = ((xa - ta) * (xb - tb)).sum() / (m - 1)
    sy = ((ya - ta) * (yb - tb)).sum() / (n - 1)
    thetas, cov = delong.covariance(np.column_stack([a, b]), np.column_stack([positive, positive]))
    assert thetas.tolist() == pytest.approx([ta, tb])
    assert cov[0, 1] == pytest.approx(sx / m + sy / n)
    assert cov[0, 0] == pytest.approx(naive_delong(a, positive)[1])
    test = delong.paired_test(a, b, positive)
    var_d = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    assert test["z"] == pytest.approx((ta - tb) / math.sqrt(var_d))
    assert test["p"] == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(abs(test["z"]) / math.sqrt(2)))))


def test_identical_scores_give_z_zero():
    positive = np.array([1, 1, 0, 0, 1, 0], bool)
    s = np.array([0.9, 0.4, 0.3, 0.5, 0.8, 0.1])
    test = delong.paired_test(s, s, positive)
    assert test["z"] == 0 and test["p"] == 1


def test_mean_auc_variance_is_mean_of_covariance():
    rng = np.random.default_rng(9)
    y = rng.choice(3, 90)
    proba = rng.dirichlet([1, 1, 1], 90)
    proba[np.arange(90), y] += 0.5
    positives = y[:, None] == np.arange(3)[None, :]
    thetas, cov = delong.covariance(proba, positives)
    estimate, se, _ = delong.mean_auc(proba, positives)
    assert estimate == pytest.approx(thetas.mean())
    assert se**2 == pytest.approx(cov.sum() / 9)
    for k in range(3):  # the diagonal is each class's own DeLong variance
        assert cov[k, k] == pytest.approx(naive_delong(proba[:, k], positives[:, k])[1])
