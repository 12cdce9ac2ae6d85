"""ECE, Brier and Hosmer–Lemeshow against hand-worked cases and an independent, loop-by-loop implementation of
R's quantile(type 7) + cut(include.lowest = TRUE) + hoslem.test."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from f2b_study.stats import calibration as cal

HAND_P = np.array([[0.6, 0.3, 0.1], [0.2, 0.62, 0.18], [1.0, 0.0, 0.0], [0.1, 0.1, 0.8], [0.35, 0.4, 0.25]])
HAND_Y = np.array([0, 0, 0, 2, 2])


def test_ece_bins_edges():
    conf = np.array([0.0, 1 / 15, 0.0666, 0.6, 14 / 15, 0.99999, 1.0])
    assert cal.ece_bins(conf).tolist() == [0, 1, 0, 9, 14, 14, 14]


def test_ece_hand_worked():
    # bins: 0.6 & 0.62 -> bin 9 (1 correct, Σconf 1.22); 1.0 -> 14 (correct); 0.8 -> 12 (correct); 0.4 -> 6 (wrong)
    expected = (abs(1 - 1.22) + abs(1 - 1.0) + abs(1 - 0.8) + abs(0 - 0.4)) / 5
    assert cal.expected_calibration_error(HAND_P, HAND_Y) == pytest.approx(expected)


def test_brier_hand_worked_and_sklearn():
    rows = [0.16 + 0.09 + 0.01, 0.64 + 0.62**2 + 0.18**2, 0.0, 0.01 + 0.01 + 0.04, 0.35**2 + 0.4**2 + 0.75**2]
    assert cal.brier_multiclass(HAND_P, HAND_Y) == pytest.approx(np.mean(rows))
    per = cal.brier_per_class(HAND_P, HAND_Y)
    for k in range(3):
        assert per[k] == pytest.approx(brier_score_loss((k == HAND_Y).astype(int), HAND_P[:, k]))


# ---- Hosmer–Lemeshow ------------------------------------------------------------------------------------------

def r_quantile7(x, probs):
    """R's quantile(type = 7), written from its documentation: h = (n − 1)p, interpolate x[⌊h⌋], x[⌊h⌋ + 1]."""
    xs = sorted(x)
    out = []
    for p in probs:
        h = (len(xs) - 1) * p
        lo = math.floor(h)
        hi = min(lo + 1, len(xs) - 1)
        out.append(xs[lo] + (h - lo) * (xs[hi] - xs[lo]))
    return out


def reference_hoslem(y, p, g=10):
    """ResourceSelection::hoslem.test, statement by statement, in plain Python loops."""
    breaks = sorted(set(r_quantile7(p, [i / g for i in range(g + 1)])))
    groups = len(breaks) - 1
    obs = [[0.0, 0.0] for _ in range(groups)]
    exp = [[0.0, 0.0] for _ in range(groups)]
    members = [0] * groups
    for yi, pi in zip(y, p, strict=True):
        for j in range(groups):
            lo, hi = breaks[j], breaks[j + 1]
            if (lo < pi <= hi) or (j == 0 and pi == lo):  # cut(right = TRUE, include.lowest = TRUE)
                obs[j][0] += 1 - yi
                obs[j][1] += yi
                exp[j][0] += 1 - pi
                exp[j][1] += pi
                members[j] += 1
                break
    stat = 0.0
    for j in range(groups):
        for c in range(2):
            stat += (obs[j][c] - exp[j][c]) ** 2 / exp[j][c] if exp[j][c] else math.nan
    big_g = sum(1 for m in members if m)
    return stat, big_g - 2


def test_hl_hand_worked_with_ties_and_few_distinct_values():
    # n = 11: the deciles fall on the data points themselves, so breaks = unique(p) = .1 .2 .3 .5 .7 .9
    p = np.array([0.1, 0.1, 0.1, 0.2, 0.2, 0.3, 0.5, 0.5, 0.7, 0.9, 0.9])
    y = np.array([0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1])
    # groups [.1,.2]: O1 2 E1 .7, O0 3 E0 4.3 | (.2,.3]: O1 0 E1 .3, O0 1 E0 .7 | (.3,.5]: O = E = 1, 1
    #        (.5,.7]: O1 1 E1 .7, O0 0 E0 .3 | (.7,.9]: O1 2 E1 1.8, O0 0 E0 .2
    terms = [1.3**2 / 0.7, 1.3**2 / 4.3, 0.3**2 / 0.3, 0.3**2 / 0.7, 0, 0, 0.3**2 / 0.7, 0.3**2 / 0.3,
             0.2**2 / 1.8, 0.2**2 / 0.2]
    hl = cal.hosmer_lemeshow(y, p)
    assert hl.breaks == pytest.approx([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    assert hl.groups == 5
    assert hl.df == 3
    assert hl.statistic == pytest.approx(sum(terms))
    assert hl.p == pytest.approx(stats.chi2.sf(sum(terms), 3))
    assert hl.reason is None


def test_hl_empty_group_is_null_with_reason_like_r_nan():
    # n = 4 < 11: interpolated breaks leave groups with no patient -> R's statistic is NaN; G = 4 groups -> df 2
    hl = cal.hosmer_lemeshow(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert hl.statistic is None and hl.p is None
    assert hl.df == 2 and hl.groups == 4
    assert "empty" in hl.reason
    assert math.isnan(reference_hoslem([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4])[0])


def test_hl_single_value_and_two_values():
    one = cal.hosmer_lemeshow(np.array([0, 1, 1]), np.array([0.5, 0.5, 0.5]))
    assert one.statistic is None and one.df is None and "equal" in one.reason
    two = cal.hosmer_lemeshow(np.array([0, 1, 1, 0, 1, 0] * 3), np.array([0.2, 0.7] * 9))
    assert two.groups == 2 and two.df == 0
    assert two.statistic is not None and two.p is None and "df = 0" in two.reason


@pytest.mark.parametrize("seed", range(6))
def test_hl_matches_reference_implementation(seed):
    rng = np.random.default_rng(seed)
    n = [15, 40, 200, 37, 120, 60][seed]
    p = rng.beta(2, 3, n)
    if seed % 2:
        p = np.round(p, 1)  # ties and fewer than 10 distinct values
    y = (rng.random(n) < p).astype(int)
    stat, df = reference_hoslem(y.tolist(), p.tolist())
    hl = cal.hosmer_lemeshow(y, p)
    assert hl.df == df
    if math.isnan(stat):
        assert hl.statistic is None
    else:
        assert hl.statistic == pytest.approx(stat)
        assert hl.p == pytest.approx(stats.chi2.sf(stat, df)) if df > 0 else hl.p is None


def test_multinomial_hl_hand_worked():
    # grouping on 1 − p_normal; n = 11 so the breaks are the data values; df = (G − 2)(K − 1)
    p_normal = np.array([0.9, 0.9, 0.8, 0.8, 0.8, 0.7, 0.5, 0.5, 0.3, 0.1, 0.1])
    rest = 1 - p_normal
    proba = np.column_stack([p_normal, rest * 0.6, rest * 0.4])
    y = np.array([0, 0, 0, 1, 0, 1, 0, 2, 1, 2, 1])
    hl = cal.hosmer_lemeshow_multinomial(y, proba)
    score = 1 - p_normal  # .1 .1 .2 .2 .2 .3 .5 .5 .7 .9 .9 -> groups as in the binary hand case: G = 5
    groups = [np.isin(np.round(score, 9), v) for v in ([0.1, 0.2], [0.3], [0.5], [0.7], [0.9])]
    expected = 0.0
    for members in groups:
        for k in range(3):
            o = (y[members] == k).sum()
            e = proba[members, k].sum()
            expected += (o - e) ** 2 / e
    assert hl.groups == 5
    assert hl.df == (5 - 2) * (3 - 1)
    assert hl.statistic == pytest.approx(expected)
    assert hl.p == pytest.approx(stats.chi2.sf(expected, 6))


def test_reliability_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(2)
    p = rng.random(500)
    y = rng.random(500) < p
    bins = cal.reliability(y, p)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    np.testing.assert_allclose([b["observed"] for b in bins], prob_true)
    np.testing.assert_allclose([b["mean_predicted"] for b in bins], prob_pred)
    assert sum(b["n"] for b in bins) == 500
