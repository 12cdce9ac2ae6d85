"""Multi-centre validation: per-centre evaluations, the pooled evaluation and a meta-analysis of the AUCs.

Each centre's AUC (macro OvR, and per class) carries its DeLong SE; they are pooled by inverse variance (fixed
effect) and by DerSimonian–Laird random effects (τ² truncated at 0), with Cochran's Q, its χ² p-value
(df = centres − 1) and I² = max(0, (Q − df)/Q) (Higgins & Thompson 2002). A centre whose AUC has no SE (a class
with fewer than two patients) is left out of that meta-analysis, with the reason. The pooled evaluation is the
plain evaluation of all centres' predictions together (patients kept apart by centre in the bootstrap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from f2b_study import CLASSES
from f2b_study.stats.auc import Z95
from f2b_study.stats.bootstrap import REPLICATES, SEED
from f2b_study.stats.evaluation import CLUSTER, Progress, evaluate_predictions
from f2b_study.stats.predictions import PredictionSet, predictions_from_frame

META_METRICS = ("auc_macro_ovr", *CLASSES)
METHOD = "inverse-variance fixed effect; DerSimonian–Laird random effects"


def _clip(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def meta_analysis(names: list[str], estimates: list[float | None], ses: list[float | None], *,
                  clip: bool = True) -> dict[str, Any]:
    """Fixed-effect (inverse variance) and DerSimonian–Laird random-effects pooling of per-centre estimates with
    their SEs; Cochran's Q, I², τ². ``clip``: CIs clipped to [0, 1] (AUCs); False for differences of AUCs.

    Written out (a dozen lines of textbook formulae) rather than statsmodels' combine_effects: its "dl"/"chi2"
    τ² in statsmodels 0.15 is not truncated at zero, so whenever Q < df it returns a negative τ² and broken
    random-effects weights. The tests check these numbers against combine_effects where Q > df.
    """
    bound = _clip if clip else (lambda value: value)
    studies, excluded = [], {}
    for name, estimate, se in zip(names, estimates, ses, strict=True):
        if estimate is None or se is None or not math.isfinite(se) or se <= 0:
            excluded[name] = "no AUC" if estimate is None else "no DeLong SE (fewer than two patients of a class)"
            continue
        studies.append((name, float(estimate), float(se)))
    out: dict[str, Any] = {"method": METHOD, "studies": [], "excluded": excluded, "fixed": None, "random": None,
                           "q": None, "df": None, "p_heterogeneity": None, "i2": None, "tau2": None, "reason": None}
    for name, estimate, se in studies:
        out["studies"].append({"name": name, "estimate": estimate, "se": se,
                               "ci": [bound(estimate - Z95 * se), bound(estimate + Z95 * se)]})
    if len(studies) < 2:
        out["reason"] = f"{len(studies)} centre(s) with an AUC and its SE: pooling needs two or more"
        return out
    y = np.array([s[1] for s in studies])
    v = np.array([s[2] for s in studies]) ** 2
    w = 1 / v
    fixed = float((w * y).sum() / w.sum())
    q = float((w * (y - fixed) ** 2).sum())
    df = len(studies) - 1
    c = float(w.sum() - (w**2).sum() / w.sum())
    tau2 = max(0.0, (q - df) / c) if c > 0 else 0.0
    w_re = 1 / (v + tau2)
    random = float((w_re * y).sum() / w_re.sum())
    for study, wf, wr in zip(out["studies"], w / w.sum(), w_re / w_re.sum(), strict=True):
        study["weight_fixed"] = float(wf)
        study["weight_random"] = float(wr)
    for key, estimate, weights in (("fixed", fixed, w), ("random", random, w_re)):
        se = math.sqrt(1 / weights.sum())
        out[key] = {"estimate": estimate, "se": se, "ci": [bound(estimate - Z95 * se), bound(estimate + Z95 * se)]}
    out.update(q=q, df=df, p_heterogeneity=float(stats.chi2.sf(q, df)), i2=max(0.0, (q - df) / q) if q > 0 else 0.0,
               tau2=tau2)
    return out


def multicentre_summary(per_centre: Mapping[str, PredictionSet | pl.DataFrame], *, by: tuple[str, ...] = (),
                        replicates: int = REPLICATES, seed: int = SEED,
                        prespecified: Mapping[str, float] | None = None,
                        progress: Progress | None = None) -> dict[str, Any]:
    """Per-centre evaluations, the pooled evaluation and the AUC meta-analyses (forest-plot data) of centres
    given as {centre name: PredictionSet or predictions frame}; ``prespecified`` thresholds as in
    `evaluate_predictions`."""
    step = progress or (lambda _message: None)
    sets = {name: ps if isinstance(ps, PredictionSet) else predictions_from_frame(ps, source=name)
            for name, ps in per_centre.items()}
    centres = {}
    for name, ps in sets.items():
        step(f"centre {name}")
        centres[name] = evaluate_predictions(ps, by=tuple(c for c in by if c != "center"), replicates=replicates,
                                             seed=seed, prespecified=prespecified)
    step("pooled")
    pooled = evaluate_predictions(_pool(sets), by=by, replicates=replicates, seed=seed, prespecified=prespecified)
    return {"centres": centres, "pooled": pooled, "meta": auc_meta_analyses(centres),
            "n": {name: ps.evaluated.height for name, ps in sets.items()}}


def auc_meta_analyses(centres: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Fixed- and random-effects meta-analyses of the centres' macro and per-class AUCs (DeLong SEs), from their
    evaluations (`evaluate_predictions` output; site summaries carry the same keys)."""
    names = list(centres)
    meta = {}
    for metric in META_METRICS:
        if metric == "auc_macro_ovr":
            estimates = [centres[n]["overall"]["auc_macro_ovr"] for n in names]
            ses = [centres[n]["auc_se"].get("macro") for n in names]
        else:
            estimates = [centres[n]["per_class"][metric]["auc"] for n in names]
            ses = [centres[n]["auc_se"].get(metric) for n in names]
        meta[metric] = meta_analysis(names, estimates, ses)
    return meta


def _pool(sets: Mapping[str, PredictionSet]) -> PredictionSet:
    """All centres' rows together; the center column filled with the centre's name and patient IDs made
    unique per centre (the same ID at two centres is two patients)."""
    def tag(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.with_columns(pl.col("center").fill_null(name),
                                  (pl.lit(f"{name}\x1f") + pl.col("patient_id")).alias(CLUSTER))

    evaluated = pl.concat([tag(ps.evaluated, name) for name, ps in sets.items()], how="vertical_relaxed")
    train = pl.concat([tag(ps.train, name) for name, ps in sets.items()], how="vertical_relaxed")
    return PredictionSet(source="pooled", evaluated=evaluated, train=train)
