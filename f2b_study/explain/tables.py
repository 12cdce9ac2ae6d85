"""The explainability tables (paper Tables 6–8; docs/methods.md). Statistics only: numpy, scipy, polars; no torch.

Unit of analysis: the patient. A patient with several photos contributes the mean of their images' region values
(`patient_values`), so no one weighs more for having more photos and no pair of one patient's photos counts as
"intra-class agreement".

Table 6 — mean ± SD (sample SD, n − 1) of each region's Shapley value per reference class, overall and by sex.
  Which output is explained is a column: "reference class" (each patient's value for the probability of their own
  DXA class: what moves the model towards the right answer) and each class's output for every patient (e.g.
  "osteoporosis": what moves every patient towards osteoporosis; the paper's negative-to-positive progression
  from normal to osteoporosis reads most naturally this way).
Table 7 — cosine similarity of attribution vectors within each class (all pairs of its patients) and between
  classes (all cross pairs). Attribution vector = the 5 regions × K outputs values of a patient (15 numbers for
  three classes): one vector per patient whatever their class, so every pair compares like with like. Zero vectors
  (no region changes the output) have no direction and are left out (counted). Test: Welch's two-sample t-test
  (scipy.stats.ttest_ind, equal_var=False, two-sided) of the intra-class pair similarities against the
  inter-class ones, per class (pairs involving that class) and overall. Pairs sharing a patient are not
  independent, so the P-values are optimistic; read them as descriptive.
Table 8 — Jensen–Shannon divergence between classes' attention maps: JSD(P‖Q) = ½ KL(P‖M) + ½ KL(Q‖M),
  M = ½(P + Q), logarithm base 2 (bits: 0 for identical maps, 1 for maps with disjoint support). scipy's
  `jensenshannon` returns the distance √JSD; both are given (the distance column is √ of our divergence).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

REFERENCE = "reference class"
JSD_BASE = 2.0


def value_column(region: str, output: str) -> str:
    """Column of region_shapley.csv holding φ(region) for one model output."""
    return f"shap_{region}_{output}"


def patient_values(frame: pl.DataFrame, regions: Sequence[str], outputs: Sequence[str]) -> pl.DataFrame:
    """One row per patient: the mean of their images' values; patient_id, bone_status, sex kept (first)."""
    columns = [value_column(r, o) for r in regions for o in outputs]
    keep = [c for c in ("bone_status", "sex") if c in frame.columns]
    return (frame.group_by("patient_id", maintain_order=True)
            .agg(*[pl.col(c).first() for c in keep], *[pl.col(c).mean() for c in columns], pl.len().alias("n_images")))


def fmt(value: float | None, digits: int = 3) -> str:
    """Fixed-point with ``digits`` decimals and a Unicode minus (one precision per table: see ``table_digits``)."""
    from f2b_study.present.format import number

    return number(value, digits)


def table_digits(values: Sequence[float | None]) -> int:
    """Decimals that give the table's largest |value| three significant digits (3 to 6): region values of
    probabilities are often 1e-3 or smaller, and a column must not mix 0.0123 with 8.91e-05."""
    from f2b_study.present.format import decimals_for

    return decimals_for(list(values))


def mean_sd(values: np.ndarray) -> tuple[int, float | None, float | None]:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = len(values)
    mean = float(values.mean()) if n else None
    sd = float(values.std(ddof=1)) if n > 1 else None
    return n, mean, sd


def table6(patients: pl.DataFrame, regions: Sequence[str], classes: Sequence[str], *,
           by: str | None = "sex") -> pl.DataFrame:
    """Table 6: one row per (explained output, subgroup, region); per class n, mean, sd and "mean ± SD"."""
    subgroups: list[tuple[str, pl.DataFrame]] = [("all", patients)]
    if by and by in patients.columns:
        levels = sorted(v for v in patients[by].unique().to_list() if v is not None)
        subgroups += [(f"{by} {level}", patients.filter(pl.col(by) == level)) for level in levels]
    records: list[dict[str, Any]] = []
    for explained in (REFERENCE, *classes):
        for subgroup, frame in subgroups:
            for region in regions:
                record: dict[str, Any] = {"explained_output": explained, "subgroup": subgroup, "region": region}
                for cls in classes:
                    rows = frame.filter(pl.col("bone_status") == cls)
                    column = value_column(region, cls if explained == REFERENCE else explained)
                    n, mean, sd = mean_sd(rows[column].to_numpy())
                    record.update({f"{cls}_n": n, f"{cls}_mean": mean, f"{cls}_sd": sd})
                records.append(record)
    digits = table_digits([r[f"{c}_{k}"] for r in records for c in classes for k in ("mean", "sd")])
    for record in records:
        for cls in classes:
            record[cls] = (f"{fmt(record[f'{cls}_mean'], digits)} ± {fmt(record[f'{cls}_sd'], digits)}"
                           if record[f"{cls}_n"] else "—")
    return pl.DataFrame(records, infer_schema_length=None)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / norms
    return unit @ unit.T


def _welch(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return {"t": None, "df": None, "p": None}
    result = ttest_ind(a, b, equal_var=False)
    if not np.isfinite(result.statistic):
        return {"t": None, "df": None, "p": None}
    return {"t": float(result.statistic), "df": float(result.df), "p": float(result.pvalue)}


def table7(patients: pl.DataFrame, regions: Sequence[str], classes: Sequence[str]) -> tuple[pl.DataFrame,
                                                                                            dict[str, Any]]:
    """Table 7 rows (intra per class, inter per class pair, and the overall intra-vs-inter row) and a summary
    (vector definition, zero vectors left out, the test)."""
    columns = [value_column(r, o) for o in classes for r in regions]
    vectors = patients.select(columns).to_numpy().astype(np.float64)
    labels = patients["bone_status"].to_numpy()
    usable = np.isfinite(vectors).all(axis=1) & (np.linalg.norm(np.nan_to_num(vectors), axis=1) > 0)
    vectors, labels = vectors[usable], labels[usable]
    similarity = cosine_matrix(vectors) if len(vectors) else np.zeros((0, 0))
    index = {cls: np.flatnonzero(labels == cls) for cls in classes}

    intra = {}
    for cls in classes:
        idx = index[cls]
        upper = np.triu_indices(len(idx), k=1)
        intra[cls] = similarity[np.ix_(idx, idx)][upper]
    inter = {(a, b): similarity[np.ix_(index[a], index[b])].ravel() for a, b in itertools.combinations(classes, 2)}

    records: list[dict[str, Any]] = []

    def add(kind: str, comparison: str, pairs: np.ndarray, n_vectors: int, test: dict[str, Any]) -> None:
        n, mean, sd = mean_sd(pairs)
        # cosine similarities lie in [−1, 1]: three decimals throughout
        records.append({"analysis": kind, "comparison": comparison, "n_patients": n_vectors, "n_pairs": n,
                        "mean": mean, "sd": sd, "similarity": f"{fmt(mean)} ± {fmt(sd)}" if n else "—",
                        "welch_t": test.get("t"), "welch_df": test.get("df"), "p": test.get("p")})

    for cls in classes:
        involving = np.concatenate([v for pair, v in inter.items() if cls in pair] or [np.zeros(0)])
        add("intra-class", cls, intra[cls], len(index[cls]), _welch(intra[cls], involving))
    for (a, b), pairs in inter.items():
        add("inter-class", f"{a}–{b}", pairs, len(index[a]) + len(index[b]), {})
    all_intra = np.concatenate([*intra.values(), np.zeros(0)])
    all_inter = np.concatenate([*inter.values(), np.zeros(0)])
    add("intra vs inter", "all intra-class pairs vs all inter-class pairs", all_intra, len(vectors),
        _welch(all_intra, all_inter))
    summary = {"vector": f"{len(regions)} regions × {len(classes)} outputs ({len(columns)} values) per patient",
               "zero_or_missing_vectors_left_out": int((~usable).sum()),
               "test": "Welch's two-sample t-test (unequal variances), two-sided; intra-class pairs vs inter-class "
                       "pairs (per class: the pairs involving that class). Pairs sharing a patient are not "
                       "independent: P-values are descriptive.",
               "intra_mean": mean_sd(all_intra)[1], "inter_mean": mean_sd(all_inter)[1]}
    return pl.DataFrame(records, infer_schema_length=None), summary


def js_divergence(p: np.ndarray, q: np.ndarray, base: float = JSD_BASE) -> float:
    """Jensen–Shannon divergence of two non-negative maps (each normalised to sum 1), in units of log `base`.

    The same quantity as scipy.spatial.distance.jensenshannon(p, q, base) ** 2, summed here from
    scipy.special.rel_entr and clipped at 0: scipy's distance takes the square root of a sum that rounding can
    leave slightly negative for (near-)identical maps, which returns NaN."""
    from scipy.special import rel_entr

    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise ValueError(f"maps of different sizes: {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    divergence = (rel_entr(p, m).sum() + rel_entr(q, m).sum()) / (2 * np.log(base))
    return float(max(divergence, 0.0))


def table8(maps: Mapping[str, Mapping[str, np.ndarray]], classes: Sequence[str]) -> pl.DataFrame:
    """Table 8: per class pair and per kind of map ({kind: {class: map}}), the JS divergence (base 2) and
    scipy's JS distance (its square root)."""
    records = []
    for a, b in itertools.combinations(classes, 2):
        record: dict[str, Any] = {"comparison": f"{a}–{b}"}
        for kind, by_class in maps.items():
            if a in by_class and b in by_class:
                divergence = js_divergence(by_class[a], by_class[b])
                record[f"{kind}_js_divergence"] = divergence
                record[f"{kind}_js_distance"] = float(np.sqrt(divergence)) if np.isfinite(divergence) else None
            else:
                record[f"{kind}_js_divergence"] = None
                record[f"{kind}_js_distance"] = None
        records.append(record)
    return pl.DataFrame(records, infer_schema_length=None)
