"""Flexible calibration curve (level 3 of the calibration hierarchy) with a patient-level bootstrap band.

The curve is a logistic regression of the one-vs-rest outcome on a restricted cubic spline of logit(p) (p
clipped to [1e-6, 1 − 1e-6]), Harrell's rcs as R's rms::rcspline.eval builds it and CalibrationCurves'
val.prob.ci.2(smooth = "rcs") fits: 4 knots at the 5th, 35th, 65th and 95th percentiles of logit(p) (3 knots
at the 10th, 50th and 90th when either outcome has fewer than 20 patients), linear beyond the outer knots. It is
drawn at 101 probabilities from the 1st to the 99th percentile of p.

Speed: the patients are grouped on logit(p), exactly when there are at most 200 distinct values and otherwise
into 200 equal-count groups each placed at its mean logit (within a group logit(p) spans a few hundredths at
100,000 patients, far below what the spline can bend over); the fit on the groups' (events, patients) is the
same maximum-likelihood problem as patient by patient when the grouping is exact. A bootstrap replicate of
patients is then a multinomial draw of each group's size followed by a binomial draw of its events (the exact
distribution of the resampled counts), and every replicate is refitted by one batched Newton–Raphson (statsmodels
refitting 2,000 times would take a minute). The band is the pointwise 2.5th–97.5th percentile of the replicate
curves. When a patient has several rows (clustered data) the band is left out, with that reason.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import expit

from f2b_study.stats.bootstrap import LEVEL, REPLICATES, SEED
from f2b_study.stats.calibration_slope import clipped_logit

GROUPS = 200
GRID_POINTS = 101
GRID_RANGE = (0.01, 0.99)  # quantiles of p spanned by the curve
KNOTS_4 = (0.05, 0.35, 0.65, 0.95)
KNOTS_3 = (0.10, 0.50, 0.90)
MIN_EVENTS_4_KNOTS = 20
MIN_EVENTS = 10
NEWTON_STEPS = 30


def rcs_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Design [1, x, rcs terms] of Harrell's restricted cubic spline (rms::rcspline.eval, norm = 2).

    Written out (three lines of the formula): patsy's cr() places its boundary knots at the data's extremes and
    cannot extrapolate, rms places them at the 5th/95th percentiles and is linear beyond.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(knots, dtype=np.float64)
    k = t.size
    kd = (t[-1] - t[0]) ** (2 / 3)

    def cube(a: np.ndarray) -> np.ndarray:
        return np.maximum(a / kd, 0.0) ** 3

    terms = [cube(x - t[j]) + ((t[-2] - t[j]) * cube(x - t[-1]) - (t[-1] - t[j]) * cube(x - t[-2])) / (t[-1] - t[-2])
             for j in range(k - 2)]
    return np.column_stack([np.ones_like(x), x, *terms])


def _groups(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group index per patient, group representative x): exact below GROUPS distinct values (one sort)."""
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    new = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    index = np.empty(x.size, dtype=np.int64)
    if int(new.sum()) <= GROUPS:
        index[order] = np.cumsum(new) - 1
        return index, ordered[new]
    index[order] = np.arange(x.size) * GROUPS // x.size
    sizes = np.bincount(index, minlength=GROUPS)
    return index, np.bincount(index, weights=x, minlength=GROUPS) / sizes


def _newton(design: np.ndarray, events: np.ndarray, trials: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Batched maximum likelihood of binomial logistic regressions sharing one design: ``events`` and
    ``trials`` are B×G, the result B×q (rows NaN where a replicate does not converge)."""
    q = design.shape[1]
    # every replicate's Hessian Σ_g w_bg·x_gi·x_gj in one matrix product: (B×G) @ (G×q²)
    pairs = (design[:, :, None] * design[:, None, :]).reshape(design.shape[0], q * q)
    beta = np.repeat(start[None, :], events.shape[0], axis=0)
    done = np.zeros(events.shape[0], dtype=bool)
    with np.errstate(all="ignore"):
        for _ in range(NEWTON_STEPS):
            mu = expit(beta @ design.T)
            gradient = (events - trials * mu) @ design
            hessian = ((trials * mu * (1 - mu)) @ pairs).reshape(-1, q, q)
            try:
                step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = np.stack([np.linalg.lstsq(h, g, rcond=None)[0] for h, g in zip(hessian, gradient,
                                                                                        strict=True)])
            beta = np.where(done[:, None], beta, beta + step)
            done |= np.abs(step).max(axis=1) < 1e-8  # curves then exact to ~1e-9
            if done.all():
                break
    beta[~done | ~np.isfinite(beta).all(axis=1)] = np.nan
    return beta


def flexible_calibration(y: np.ndarray, p: np.ndarray, *, replicates: int = REPLICATES, seed: int = SEED,
                         clustered: bool = False, what: str = "the event") -> tuple[dict[str, Any] | None, str | None]:
    """({predicted, observed, lo, hi, knots, ...}, None) or (None, reason)."""
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    events = int(y.sum())
    fewest = min(events, y.size - events)
    if fewest < MIN_EVENTS:
        return None, (f"a spline calibration curve needs at least {MIN_EVENTS} patients with and without {what} "
                      f"({events} with, {y.size - events} without)")
    x = clipped_logit(p)
    knots = np.unique(np.quantile(x, KNOTS_4 if fewest >= MIN_EVENTS_4_KNOTS else KNOTS_3))
    if knots.size < 3:
        return None, "too few distinct predicted probabilities for spline knots"
    index, centres = _groups(x)
    g = centres.size
    trials = np.bincount(index, minlength=g).astype(np.float64)
    hits = np.bincount(index, weights=y.astype(np.float64), minlength=g)
    design = rcs_basis(centres, knots)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = GLM(np.column_stack([hits, trials - hits]), design, family=families.Binomial()).fit()
            beta = np.asarray(fit.params, dtype=np.float64)
        except (np.linalg.LinAlgError, ValueError) as error:
            return None, f"the spline logistic regression failed ({error})"
    if any(issubclass(w.category, PerfectSeparationWarning) for w in caught) or not np.isfinite(beta).all():
        return None, "the spline logistic regression does not converge (separation)"
    lo_p, hi_p = np.quantile(p, GRID_RANGE)
    grid = np.linspace(lo_p, hi_p, GRID_POINTS)
    grid_design = rcs_basis(clipped_logit(grid), knots)
    observed = expit(grid_design @ beta)
    out: dict[str, Any] = {
        "predicted": grid.tolist(), "observed": observed.tolist(), "lo": None, "hi": None,
        "knots": expit(knots).tolist(), "groups": g, "replicates": 0, "defined": 0,
        "band_reason": None}
    if clustered:
        out["band_reason"] = "patients with several rows: the band's grouped resampling assumes one row per patient"
    elif replicates > 0:
        rng = np.random.default_rng(seed)
        sizes = rng.multinomial(y.size, trials / trials.sum(), size=replicates).astype(np.float64)
        share = np.divide(hits, trials, out=np.zeros(g), where=trials > 0)
        drawn = rng.binomial(sizes.astype(np.int64), share[None, :]).astype(np.float64)
        betas = _newton(design, drawn, sizes, beta)
        with np.errstate(all="ignore"):
            curves = expit(betas @ grid_design.T)
        ok = np.isfinite(curves).all(axis=1)
        alpha = (1 - LEVEL) / 2
        if ok.any():
            lo, hi = np.quantile(curves[ok], [alpha, 1 - alpha], axis=0)
            out.update(lo=lo.tolist(), hi=hi.tolist())
        out.update(replicates=replicates, defined=int(ok.sum()))
        if not ok.any():
            out["band_reason"] = "the spline fit failed in every bootstrap replicate"
    return out, None
