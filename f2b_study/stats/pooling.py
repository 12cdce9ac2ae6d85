"""Pooling site summaries (stats/site_summary.py) into one multi-centre evaluation, without patient data
(docs/multicentre.md; `f2b-study pool`).

What pools exactly, and what does not (``Pooled.exactness`` lists it per run, with the numbers):
- sums of counts: the participant flow, Table 1 counts, the confusion matrices and everything computed from them
  (accuracy, precision, recall, F1, κ, sensitivity, specificity, PPV, NPV and their Wilson intervals), the
  decision curves (net benefit = TP/n − FP/n · t/(1 − t) from the summed counts), the Brier scores (summed
  squared errors) and the ECE (summed per-bin confidences and correct predictions) while no centre withheld a
  bin's sum of confidences (then: an interval);
- Table 1 means and SDs (from each group's n, mean and SD), with Student's t / ANOVA from those and χ² / Fisher
  from the summed counts;
- every per-centre figure (each centre computed its own with the code `study` uses) and therefore the
  meta-analysis of the centres' AUCs (fixed and random effects, I²) and of their paired DeLong differences
  against each comparator.
Approximate or not available:
- the AUC of all patients together needs every case of one centre ranked against every control of another; it is
  computed from each centre's exact AUC (pairs within a centre) and the counts at the thresholds 0.01 … 0.99
  (pairs across centres, a pair in the same 0.01-wide bin counting ½), and the error bound is stated; its DeLong
  CI is not available (the meta-analysis gives one);
- Hosmer–Lemeshow: each centre's own decile groups pooled (Σ (O − E)²/E over all centres' groups, df = G − 2),
  not the deciles of all patients;
- bootstrap CIs of the pooled confusion-matrix metrics resample the pooled table's cells: the same distribution
  as a patient bootstrap of these metrics, with other random draws; the ECE and Brier CIs need single patients;
- medians and quartiles are per centre only; the clinical model is each centre's own (pooled as such), where
  `study` fits one model on all centres' training rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from f2b_study import CLASSES
from f2b_study.errors import InputError
from f2b_study.stats import calibration as cal
from f2b_study.stats.bootstrap import REPLICATES, SEED
from f2b_study.stats.evaluation import evaluate_arrays
from f2b_study.stats.meta import auc_meta_analyses, meta_analysis
from f2b_study.stats.site_summary import OVERALL, THRESHOLDS, read_summary
from f2b_study.stats.subgroups import ordered_levels

K = len(CLASSES)
EXACT, APPROXIMATE, PARTIAL, UNAVAILABLE = "exact", "approximate", "partial", "not available"
SAME_PROVENANCE = (
    ("model_sha256", "the same model (weights sha256)"),
    ("classes", "the same classes"),
    ("tool_version", "the same f2b-study version"),
    ("face_pipeline_version", "the same face pipeline version"),
)
WARN_SETTINGS = (("qc", "photo quality control ([qc])"), ("rules", "eligibility rules ([rules])"),
                 ("min_cell", "min_cell"), ("bootstrap", "bootstrap replicates"), ("evaluated", "evaluated patients"))


@dataclasses.dataclass(frozen=True)
class Site:
    path: Path
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.doc["site"])


def read_sites(paths: Sequence[str | Path]) -> tuple[list[Site], list[str]]:
    """The summaries, each verified (format, schema version, checksum), refused when they come from another model,
    class list, tool or face-pipeline version than the first, or repeat a site; with warnings on settings that
    differ between sites (quality control, eligibility rules, min_cell, bootstrap)."""
    if not paths:
        raise InputError("no site summary given: expected one or more SITE.json files written by site-summary")
    sites = [Site(Path(p), read_summary(p)) for p in paths]
    first = sites[0]
    if list(first.doc["provenance"].get("classes") or []) != list(CLASSES):
        raise InputError.at(first.path, column="provenance.classes", value=first.doc["provenance"].get("classes"),
                            expected=f"the classes {', '.join(CLASSES)}")
    seen: dict[str, Path] = {}
    checksums: dict[str, Path] = {}
    for site in sites:
        value = site.doc["checksum"]["value"]
        if value in checksums:
            raise InputError.at(site.path, column="checksum", show_value=False,
                                expected=f"another site's summary (this one is {checksums[value]} again)")
        checksums[value] = site.path
        if site.name in seen:
            raise InputError.at(site.path, column="site", value=site.name,
                                expected=f"a site name of its own (also the site of {seen[site.name]})")
        seen[site.name] = site.path
        for key, what in SAME_PROVENANCE:
            a, b = first.doc["provenance"].get(key), site.doc["provenance"].get(key)
            if a != b:
                raise InputError.at(site.path, column=f"provenance.{key}", value=b,
                                    expected=f"{what} as {first.path} ({a}): sites pool only results of one model, "
                                    "run by one version of the tool")
    warnings = []
    for key, what in WARN_SETTINGS:
        values = {s.name: s.doc["settings"].get(key) for s in sites}
        if len({repr(v) for v in values.values()}) > 1:
            warnings.append(f"the sites used different {what}: "
                            + "; ".join(f"{name}: {value}" for name, value in values.items()))
    simulated = {s.name for s in sites if s.doc["provenance"].get("simulated_labels")}
    if simulated and len(simulated) < len(sites):
        warnings.append(f"simulated labels at {', '.join(sorted(simulated))} only")
    return sites, warnings


# -- sums ------------------------------------------------------------------------------------------------------------

def _add(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict):
        return {k: _add(a.get(k), b.get(k)) for k in [*a, *(k for k in b if k not in a)]}
    return a + b


def pooled_flow(flows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The participant flow of all centres: every count summed."""
    from f2b_study.cohort.cohort_photos import in_class_order

    total: dict[str, Any] = {}
    for flow in flows:
        total = _add(total, {k: v for k, v in flow.items() if k != "labels"})
    for key in ("excluded", "photo_qc_excluded", "photo_flags"):
        if key in total:
            total[key] = dict(sorted(total[key].items(), key=lambda item: (-item[1], item[0])))
    for key in ("eligible_by_class", "analysed_by_class"):
        if key in total:
            total[key] = in_class_order(total[key])
    if "by_class" in total:
        total["by_class"] = {split: in_class_order(counts) for split, counts in total["by_class"].items()}
    return total


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# -- one model pooled ------------------------------------------------------------------------------------------------

def _pseudo_rows(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference, predicted) of one row per patient of a confusion matrix, in cell order."""
    cells = np.repeat(np.arange(K * K), cm.ravel().astype(np.int64))
    return cells // K, cells % K


def _bins(total: int, at_or_above: Sequence[int]) -> np.ndarray:
    """Counts in [0, .01), [.01, .02), …, [.99, 1] from the counts at or above each threshold."""
    cumulative = np.array([total, *at_or_above, 0], dtype=np.float64)
    return cumulative[:-1] - cumulative[1:]


def pooled_auc(parts: Sequence[Mapping[str, Any]], k: int) -> dict[str, Any]:
    """The Mann–Whitney AUC of class k (one-vs-rest on p_k) over all centres' patients together: pairs within a
    centre from the centre's exact AUC; pairs across centres from the counts at the thresholds, ranked by bin, a
    pair in one bin counted ½. ``bound``: the largest possible error (½ per cross-centre pair sharing a bin)."""
    name = CLASSES[k]
    rocs = [p["threshold_counts"]["roc"][name] for p in parts]
    m = np.array([r["cases"] for r in rocs], dtype=np.float64)
    n = np.array([r["controls"] for r in rocs], dtype=np.float64)
    if m.sum() == 0 or n.sum() == 0:
        return {"estimate": None, "bound": None, "reason": f"no {name} patients" if m.sum() == 0 else "no controls"}
    within = sum(mi * ni * (p["auc"][k] or 0.0) for mi, ni, p in zip(m, n, parts, strict=True) if mi * ni > 0)
    cases = [_bins(int(r["cases"]), r["cases_at_or_above"]) for r in rocs]
    controls = [_bins(int(r["controls"]), r["controls_at_or_above"]) for r in rocs]
    cross = tie = 0.0
    for s, case in enumerate(cases):
        for t, control in enumerate(controls):
            if s == t:
                continue
            below = np.concatenate([[0.0], np.cumsum(control)[:-1]])
            cross += float(case @ below + 0.5 * case @ control)
            tie += float(case @ control)
    pairs = m.sum() * n.sum()
    return {"estimate": (within + cross) / pairs, "bound": 0.5 * tie / pairs, "cases": int(m.sum()),
            "controls": int(n.sum())}


def pooled_roc(parts: Sequence[Mapping[str, Any]], k: int) -> dict[str, list[float]] | None:
    """The pooled ROC curve at the thresholds (with its ends), for the figure."""
    rocs = [p["threshold_counts"]["roc"][CLASSES[k]] for p in parts]
    m = sum(r["cases"] for r in rocs)
    n = sum(r["controls"] for r in rocs)
    if m == 0 or n == 0:
        return None
    tpr = np.sum([r["cases_at_or_above"] for r in rocs], axis=0) / m
    fpr = np.sum([r["controls_at_or_above"] for r in rocs], axis=0) / n
    return {"fpr": [0.0, *fpr[::-1].round(6).tolist(), 1.0], "tpr": [0.0, *tpr[::-1].round(6).tolist(), 1.0]}


def _coarse(parts_bins: Sequence[Sequence[Mapping[str, Any]]], edges: np.ndarray) -> list[list[Mapping[str, Any]]]:
    """Groups of the sites' bins that cover the same span: the finest bins every site's (merged) bins fit in."""
    fine = edges.size - 1
    parent = list(range(fine))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def index(value: float) -> int:
        return int(np.argmin(np.abs(edges - value)))

    for bins in parts_bins:
        for b in bins:
            first, last = index(b["lo"]), index(b["hi"]) - 1
            for i in range(first + 1, last + 1):
                parent[find(i)] = find(first)
    groups: dict[int, list[Mapping[str, Any]]] = {}
    order: dict[int, int] = {}
    for bins in parts_bins:
        for b in bins:
            root = find(index(b["lo"]))
            groups.setdefault(root, []).append(b)
            order.setdefault(root, index(b["lo"]))
    return [groups[r] for r in sorted(groups, key=lambda r: order[r])]


def pooled_ece(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """ECE from the summed bins: Σ_b |Σ correct − Σ confidence| / N. Exact while every centre showed every bin's
    sum of confidences; a bin of fewer than min_cell patients shows only its n and correct predictions, and its
    confidences lie in [lo, hi): the estimate takes the middle, and ``interval`` holds the smallest and largest
    ECE those bins allow (computed, not a rule of thumb)."""
    total = correct = known = 0.0
    fine = len(parts[0]["ece_bins"])
    n = np.zeros(fine)
    hits = np.zeros(fine)
    conf_lo = np.zeros(fine)
    conf_hi = np.zeros(fine)
    edges = [(b["lo"], b["hi"]) for b in parts[0]["ece_bins"]]
    for p in parts:
        for i, b in enumerate(p["ece_bins"]):
            n[i] += b["n"]
            hits[i] += b["correct"]
            if b["sum_confidence"] is None:
                conf_lo[i] += b["n"] * b["lo"]
                conf_hi[i] += b["n"] * b["hi"]
            else:
                conf_lo[i] += b["sum_confidence"]
                conf_hi[i] += b["sum_confidence"]
                known += b["n"]
    total = float(n.sum())
    correct = float(hits.sum())
    d_lo, d_hi = hits - conf_hi, hits - conf_lo
    middle = np.abs(hits - (conf_lo + conf_hi) / 2).sum()
    smallest = np.where((d_lo <= 0) & (d_hi >= 0), 0.0, np.minimum(np.abs(d_lo), np.abs(d_hi))).sum()
    largest = np.maximum(np.abs(d_lo), np.abs(d_hi)).sum()
    exact = bool(known == total)
    bins = [{"lo": lo, "hi": hi, "n": int(n[i]), "mean_predicted": float((conf_lo[i] + conf_hi[i]) / 2 / n[i]),
             "observed": float(hits[i] / n[i])} for i, (lo, hi) in enumerate(edges) if n[i]]
    return {"ece": float(middle / total) if total else None, "exact": exact,
            "interval": [float(smallest / total), float(largest / total)] if total else None,
            "patients_in_withheld_bins": int(total - known), "correct": int(correct), "bins": bins}


def pooled_reliability(parts: Sequence[Mapping[str, Any]], name: str) -> list[dict[str, Any]]:
    edges = np.linspace(0.0, 1.0, cal.RELIABILITY_BINS + 1)
    out = []
    for group in _coarse([p["reliability_bins"][name] for p in parts], edges):
        n = sum(b["n"] for b in group)
        if n:
            out.append({"lo": min(b["lo"] for b in group), "hi": max(b["hi"] for b in group), "n": n,
                        "mean_predicted": sum(b["sum_p"] for b in group) / n,
                        "observed": sum(b["events"] for b in group) / n})
    return out


def pooled_hosmer_lemeshow(parts: Sequence[Mapping[str, Any]], name: str, k_for_df: int) -> dict[str, Any]:
    """Σ (O − E)²/E over every centre's own (non-empty) groups and outcome columns; df = (G − 2)(k − 1)."""
    groups = [g for p in parts for g in p["hosmer_lemeshow_groups"][name] if g["n"] > 0]
    observed = np.array([g["observed"] for g in groups], dtype=np.float64)
    expected = np.array([g["expected"] for g in groups], dtype=np.float64)
    out: dict[str, Any] = {"statistic": None, "df": None, "p": None, "groups": len(groups), "reason": None}
    if not groups:
        out["reason"] = "no groups"
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = float(((observed - expected) ** 2 / expected).sum())
    df = (len(groups) - 2) * (k_for_df - 1)
    out["df"] = df
    if not math.isfinite(statistic):
        out["reason"] = "an expected count is 0 in a group"
    elif df <= 0:
        out.update(statistic=statistic, reason=f"only {len(groups)} groups, df = {df} ≤ 0")
    else:
        out.update(statistic=statistic, p=float(stats.chi2.sf(statistic, df)))
    return out


def pooled_model(parts: Sequence[Mapping[str, Any]], *, probabilities: bool, replicates: int, seed: int,
                 no_auc_reasons: Mapping[int, str] | None = None, no_proba_reason: str = "") -> dict[str, Any]:
    """An evaluation (the shape `evaluate_arrays` returns, for the report) of one model over all centres: the
    confusion-matrix figures by `evaluate_arrays` itself on the summed table (one row per patient; its bootstrap
    resamples those rows); Brier, ECE, Hosmer–Lemeshow and AUC from the pooled components, with notes saying
    what is approximate."""
    cm = np.sum([np.asarray(p["confusion_matrix"], dtype=np.int64) for p in parts], axis=0)
    y, predicted = _pseudo_rows(cm)
    ev = evaluate_arrays(y, predicted=predicted, replicates=replicates, seed=seed,
                         no_auc_reasons=dict(no_auc_reasons or {}), no_proba_reason=no_proba_reason)
    notes = ev["notes"]
    ev["bootstrap"]["unit"] = "patient (rows of the pooled confusion matrix)"
    ev["curves"] = {"roc": {}, "reliability": {}}
    if not probabilities:
        if no_auc_reasons:
            notes["overall.auc_macro_ovr"] = "not pooled across centres: see the meta-analysis of the centres' AUCs"
        return ev
    n = int(cm.sum())
    brier_multi = sum(p["brier_sums"]["multiclass"] for p in parts)
    brier_k = np.sum([p["brier_sums"]["per_class"] for p in parts], axis=0)
    ev["overall"]["brier"] = brier_multi / n
    notes.pop("overall.brier", None)
    notes["ci.brier"] = "not available from site summaries (needs single patients' values)"
    ece = pooled_ece(parts)
    ev["overall"]["ece"] = ece["ece"]
    notes.pop("overall.ece", None)
    notes["ci.ece"] = "not available from site summaries (needs single patients' values)"
    if not ece["exact"]:
        lo, hi = ece["interval"]
        notes["overall.ece"] = (f"approximate: {ece['patients_in_withheld_bins']} patient(s) in ECE bins whose sum of "
                                f"confidences a centre withheld (under min_cell); the exact ECE lies in "
                                f"[{lo:.4f}, {hi:.4f}]")
    ev["ece_pooling"] = ece
    auc_bounds: dict[str, float] = {}
    defined = []
    for k, name in enumerate(CLASSES):
        entry = ev["per_class"][name]
        entry["brier"] = float(brier_k[k] / n)
        notes.pop(f"per_class.{name}.brier", None)
        hl = pooled_hosmer_lemeshow(parts, name, 2)
        entry["hosmer_lemeshow"] = {key: hl[key] for key in ("statistic", "df", "p")}
        notes[f"per_class.{name}.hosmer_lemeshow"] = (
            f"pooled over each centre's own decile groups ({hl['groups']} groups): not the test on the deciles of "
            "all patients" + (f"; {hl['reason']}" if hl["reason"] else ""))
        auc = pooled_auc(parts, k)
        entry["auc"] = auc["estimate"]
        entry["auc_ci"] = None
        notes.pop(f"per_class.{name}.auc", None)
        if auc["estimate"] is None:
            notes[f"per_class.{name}.auc"] = auc["reason"]
            continue
        defined.append(k)
        auc_bounds[name] = auc["bound"]
        notes[f"per_class.{name}.auc"] = (f"approximate: pairs across centres ranked by 0.01-wide probability bins; "
                                          f"the all-patients AUC is within ±{auc['bound']:.4f} of this")
        notes[f"per_class.{name}.auc_ci"] = ("not available from site summaries: see the meta-analysis of the "
                                             "centres' AUCs")
        curve = pooled_roc(parts, k)
        if curve:
            ev["curves"]["roc"][name] = curve
    if len(defined) == K:
        ev["overall"]["auc_macro_ovr"] = float(np.mean([ev["per_class"][c]["auc"] for c in CLASSES]))
        bound = float(np.mean(list(auc_bounds.values())))
        notes["overall.auc_macro_ovr"] = (f"approximate (mean of the per-class approximations): within ±{bound:.4f} of "
                                          "the all-patients macro AUC")
        notes["ci.auc_macro_ovr"] = "not available from site summaries: see the meta-analysis of the centres' AUCs"
    ev["auc_bounds"] = auc_bounds
    multi = pooled_hosmer_lemeshow(parts, "multinomial", K)
    ev["hosmer_lemeshow_multinomial"] = {key: multi[key] for key in ("statistic", "df", "p")}
    notes["hosmer_lemeshow_multinomial"] = (f"pooled over each centre's own decile groups ({multi['groups']} groups): "
                                            "not the test on the deciles of all patients"
                                            + (f"; {multi['reason']}" if multi["reason"] else ""))
    ev["curves"]["reliability"] = {"top_label": [{k: b[k] for k in ("lo", "hi", "n", "mean_predicted", "observed")}
                                                 for b in ece["bins"]],
                                   **{name: pooled_reliability(parts, name) for name in CLASSES}}
    return ev


# -- decision curves and diagnostic accuracy -------------------------------------------------------------------------

def pooled_decision_curves(parts: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Net benefit at each threshold from the summed counts: TP/n − FP/n · t/(1 − t); refer-all from the
    events."""
    out = {}
    t = np.asarray(THRESHOLDS)
    w = t / (1 - t)
    for decision in parts[0]["threshold_counts"]["decisions"]:
        rows = [p["threshold_counts"]["decisions"][decision] for p in parts]
        n = sum(r["n"] for r in rows)
        events = sum(r["events"] for r in rows)
        tp = np.sum([r["tp"] for r in rows], axis=0)
        fp = np.sum([r["fp"] for r in rows], axis=0)
        benefit = tp / n - fp / n * w
        everyone = events / n - (n - events) / n * w
        out[decision] = [{"threshold": float(t[i]), "net_benefit": float(benefit[i]),
                          "net_benefit_all": float(everyone[i]), "tp": int(tp[i]), "fp": int(fp[i]), "n": n,
                          "events": events} for i in range(t.size)]
    return out


def wilson(count: int, total: int) -> dict[str, Any]:
    from statsmodels.stats.proportion import proportion_confint

    if total == 0:
        return {"value": None, "ci": None, "count": count, "total": total}
    lo, hi = proportion_confint(count, total, alpha=0.05, method="wilson")
    return {"value": count / total, "ci": [float(lo), float(hi)], "count": int(count), "total": int(total)}


def diagnostic_accuracy(cm: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per class, one-vs-rest on the predicted class: sensitivity, specificity, PPV, NPV with Wilson 95% CIs."""
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    out = {}
    for k, name in enumerate(CLASSES):
        tp = int(cm[k, k])
        fn = int(cm[k].sum()) - tp
        fp = int(cm[:, k].sum()) - tp
        tn = n - tp - fn - fp
        out[name] = {"sensitivity": wilson(tp, tp + fn), "specificity": wilson(tn, tn + fp),
                     "ppv": wilson(tp, tp + fp), "npv": wilson(tn, tn + fn)}
    return out


# -- Table 1 ---------------------------------------------------------------------------------------------------------

def pooled_table1(parts: Sequence[Mapping[str, Any]], by: str) -> tuple[Any, dict[str, Any]]:
    """Table 1 of all centres (stats.table1.Table1, for the report) and its numbers: continuous variables as
    mean ± SD pooled exactly from each centre's n, mean and SD (t-test / ANOVA from those), categorical ones from
    the summed counts (the Table 1 tests). A cell a centre withheld is marked † and leaves that centre's patients
    out; no test is run on a variable with such a cell."""
    from f2b_study.stats.site_summary import _group_order
    from f2b_study.stats.table1 import Table1, Table1Row, _categorical_test

    groups = _group_order(by, sorted({g for p in parts for g in p["groups"]}))
    columns = [OVERALL, *groups]
    numbers: dict[str, Any] = {"n": {}, "variables": {}}
    cells = {}
    for column in columns:
        values = [p["n"].get(column) for p in parts if column == OVERALL or column in p["groups"]]
        numbers["n"][column] = sum(v for v in values if v is not None)
        cells[column] = str(numbers["n"][column]) + ("†" if None in values else "")
    rows = [Table1Row("n", None, cells, None, None)]
    marked = False
    variables: list[str] = []
    for p in parts:
        variables += [v for v in p["variables"] if v not in variables]
    for variable in variables:
        entries = [p["variables"].get(variable) for p in parts]
        kind = next(e["kind"] for e in entries if e)
        partial: set[str] = set()
        contributions: list[dict[str, Any]] = []  # per centre: column -> its cell
        for e in entries:
            groups_of = e.get("groups") if e else None
            if not isinstance(groups_of, dict) or "withheld" in groups_of:
                partial.update(columns)  # the centre has no such column, or withheld the whole variable
                continue
            shown = {}
            for column in columns:
                cell = groups_of.get(column)
                if isinstance(cell, dict) and "withheld" in cell:
                    partial.add(column)
                elif cell is not None:
                    shown[column] = cell
            contributions.append(shown)
        marked |= bool(partial)
        if kind == "continuous":
            row, stats_ = _continuous(variable, contributions, columns, groups, partial)
            numbers["variables"][variable] = {"kind": kind, "groups": stats_}
            rows.append(row)
            continue
        levels: list[str] = []
        for e in entries:
            levels += [lv for lv in (e or {}).get("levels") or [] if lv not in levels]
        levels = [*_group_order(variable, [lv for lv in levels if lv != "missing"]),
                  *(["missing"] if "missing" in levels else [])]
        table = np.array([[sum(int(c.get(column, {}).get(level, 0)) for c in contributions) for column in columns]
                          for level in levels], dtype=np.int64).reshape(len(levels), len(columns))
        p_value, test = ((None, "not tested: a centre withheld a cell") if partial
                         else _categorical_test(table[:, 1:], len(groups)))
        totals = table.sum(axis=0)
        numbers["variables"][variable] = {"kind": kind, "levels": levels,
                                          "groups": {c: dict(zip(levels, table[:, j].tolist(), strict=True))
                                                     for j, c in enumerate(columns)}}
        for i, level in enumerate(levels):
            shown = {c: (f"{table[i, j]} ({100 * table[i, j] / totals[j]:.1f})" if totals[j] else "0 (–)")
                     + ("†" if c in partial else "") for j, c in enumerate(columns)}
            rows.append(Table1Row(variable, level, shown, p_value, test))
    notes = ["Continuous variables: mean ± SD pooled exactly from each centre's n, mean and SD (the Shapiro–Wilk "
             "rule that chooses median (IQR) needs single patients' values; each centre's medians are listed "
             "apart, per centre). Tests from those summaries: Student's t-test or one-way ANOVA; categorical "
             "variables: the Table 1 tests on the summed counts."]
    if marked:
        notes.append("† A centre withheld this cell (fewer than min_cell patients): the pooled figure leaves that "
                     "centre's patients out, and its variable is not tested.")
    return Table1(by=by, group_names=groups, rows=rows, notes=notes), numbers


def _continuous(variable: str, contributions: Sequence[Mapping[str, Any]], columns: list[str], groups: list[str],
                partial: set[str]) -> tuple[Any, dict[str, Any]]:
    from f2b_study.stats.table1 import Table1Row

    shown, numbers = {}, {}
    summaries: dict[str, tuple[int, float, float]] = {}
    for column in columns:
        cells = [c[column] for c in contributions if column in c]
        parts = [(cell["n"], cell["mean"], cell["sd"]) for cell in cells if cell["n"]]
        missing = sum(cell.get("missing", 0) for cell in cells)
        n = sum(p[0] for p in parts)
        if n == 0:
            shown[column] = "–"
            numbers[column] = {"n": 0, "mean": None, "sd": None, "missing": missing}
            continue
        mean = sum(p[0] * p[1] for p in parts) / n
        # the pooled sum of squares: within-centre (n−1)·SD² plus between-centre n·(mean − pooled mean)²
        squares = sum((p[0] - 1) * (p[2] or 0.0) ** 2 + p[0] * (p[1] - mean) ** 2 for p in parts)
        sd = math.sqrt(squares / (n - 1)) if n > 1 else None
        summaries[column] = (n, mean, sd if sd is not None else math.nan)
        numbers[column] = {"n": n, "mean": mean, "sd": sd, "missing": missing}
        text = f"{mean:.2f} ± {sd:.2f}" if sd is not None else f"{mean:.2f} ± –"
        if missing:
            text += f" [missing {missing}]"
        shown[column] = text + ("†" if column in partial else "")
    p_value, test = None, None
    testable = [summaries[g] for g in groups if g in summaries and summaries[g][0] >= 2]
    if partial:
        test = "not tested: a centre withheld a cell"
    elif len(groups) >= 2 and len(testable) == len(groups):
        p_value, test = _tests_from_summaries(testable)
    elif len(groups) < 2:
        test = "one group: no test"
    else:
        test = "too few values: no test"
    return Table1Row(variable, None, shown, p_value, test), numbers


def _tests_from_summaries(groups: list[tuple[int, float, float]]) -> tuple[float | None, str]:
    """Student's t (two groups) or one-way ANOVA from each group's n, mean and SD: the same statistics the tests
    compute from the values. scipy has ttest_ind_from_stats; the F test from summaries is written out (between-
    and within-group sums of squares)."""
    if len(groups) == 2:
        (n1, m1, s1), (n2, m2, s2) = groups
        result = stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=True)
        return _num(result.pvalue), "Student's t-test (from the pooled means and SDs)"
    n = np.array([g[0] for g in groups], dtype=np.float64)
    mean = np.array([g[1] for g in groups])
    sd = np.array([g[2] for g in groups])
    grand = float((n * mean).sum() / n.sum())
    between = float((n * (mean - grand) ** 2).sum())
    within = float(((n - 1) * sd**2).sum())
    df1, df2 = len(groups) - 1, float(n.sum()) - len(groups)
    if df2 <= 0 or within <= 0:
        return None, "one-way ANOVA: too few values"
    f = (between / df1) / (within / df2)
    return _num(stats.f.sf(f, df1, df2)), "One-way ANOVA (from the pooled means and SDs)"


# -- everything ------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Pooled:
    sites: list[Site]
    warnings: list[str]
    evaluation: dict[str, Any]  # the pooled evaluation (evaluate_arrays shape + comparators + subgroups)
    multicentre: dict[str, Any]  # centres (their own evaluations), pooled, meta
    flow: dict[str, Any]
    flows: dict[str, dict[str, Any]]
    table1: list[tuple[str, Any]]
    table1_numbers: dict[str, Any]
    medians: dict[str, Any]
    decision_curves: dict[str, dict[str, list[dict[str, Any]]]]  # model -> decision -> rows
    accuracy: dict[str, dict[str, Any]]  # model -> class -> sensitivity, specificity, ppv, npv (Wilson)
    comparator_meta: dict[str, dict[str, Any]]
    exactness: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        from f2b_study.stats.evaluation import to_document

        comparators = {}
        for key, comp in (self.evaluation.get("comparators") or {}).items():
            comparators[key] = {k: v for k, v in comp.items() if k != "evaluation"}
            comparators[key]["evaluation"] = to_document(comp["evaluation"]) if comp.get("evaluation") else None
        return {
            "sites": [{"site": s.name, "file": s.path.name, "checksum": s.doc["checksum"]["value"],
                       "created": s.doc.get("created"), "settings": s.doc.get("settings")} for s in self.sites],
            "provenance": self.sites[0].doc["provenance"],
            "warnings": self.warnings,
            "exactness": self.exactness,
            "flow": self.flow,
            "flows": self.flows,
            "table1": self.table1_numbers,
            "medians_per_centre": self.medians,
            "evaluation": to_document(self.evaluation),
            "auc_bounds": self.evaluation.get("auc_bounds"),
            "ece_pooling": self.evaluation.get("ece_pooling"),
            "comparators": comparators,
            "meta": self.multicentre["meta"],
            "comparator_meta": self.comparator_meta,
            "centres": {name: ev for name, ev in self.multicentre["centres"].items()},
            "decision_curves": self.decision_curves.get("index_test", {}),
            "decision_curves_comparators": {k: v for k, v in self.decision_curves.items() if k != "index_test"},
            "diagnostic_accuracy": self.accuracy,
        }


def pool_sites(sites: Sequence[Site], warnings: Sequence[str] = (), *, replicates: int = REPLICATES,
               seed: int = SEED) -> Pooled:
    """The multi-centre evaluation of the sites' summaries."""
    from f2b_study.stats import comparators as comp

    index_parts = [s.doc["index_test"] for s in sites]
    evaluation = pooled_model(index_parts, probabilities=True, replicates=replicates, seed=seed)
    centres = {s.name: s.doc["index_test"]["evaluation"] for s in sites}
    meta = auc_meta_analyses(centres)  # the same meta-analyses as `study` computes from patient rows

    comparators: dict[str, Any] = {}
    comparator_meta: dict[str, Any] = {}
    curves = {"index_test": pooled_decision_curves(index_parts)}
    accuracy = {"index_test": diagnostic_accuracy(np.asarray(evaluation["confusion_matrix"]))}
    for key in ("osta", "clinical_logit"):
        entries = [s.doc["comparators"].get(key) or {} for s in sites]
        with_eval = [(s, e) for s, e in zip(sites, entries, strict=True) if e.get("evaluation")]
        first = next((e for e in entries if e), {})
        entry: dict[str, Any] = {"label": first.get("label", key), "n": sum(e.get("n") or 0 for _, e in with_eval),
                                 "evaluation": None, "reason": None, "description": first.get("description")}
        missing = [s.name for s, e in zip(sites, entries, strict=True) if not e.get("evaluation")]
        if key == "clinical_logit":
            fitted = {s.name: e.get("fitted_on") for s, e in with_eval}
            entry["description"] = ("multinomial logistic regression on age, sex and BMI, one model per centre ("
                                    + "; ".join(f"{n}: {f}" for n, f in fitted.items()) + "), pooled as such")
        if not with_eval:
            entry["reason"] = "; ".join(f"{s.name}: {e.get('reason')}" for s, e in zip(sites, entries, strict=True))
            comparators[key] = entry
            continue
        if missing:
            entry["reason"] = f"not evaluated at {', '.join(missing)}: pooled over the other centres"
        parts = [e for _, e in with_eval]
        if key == "osta":
            entry["evaluation"] = pooled_model(
                parts, probabilities=False, replicates=replicates, seed=seed,
                no_auc_reasons={0: "not pooled across centres (OSTA gives no counts at probability thresholds): see "
                                   "the meta-analysis of the paired differences", 1: comp.OSTA_NO_AUC,
                                2: "not pooled across centres (OSTA gives no counts at probability thresholds): see "
                                   "the meta-analysis of the paired differences"},
                no_proba_reason=comp.OSTA_NO_PROBABILITIES)
        else:
            entry["evaluation"] = pooled_model(parts, probabilities=True, replicates=replicates, seed=seed)
            curves[key] = pooled_decision_curves(parts)
        accuracy[key] = diagnostic_accuracy(np.asarray(entry["evaluation"]["confusion_matrix"]))
        comparator_meta[key] = _comparator_meta(with_eval)
        entry["comparison"] = {name: _fixed_test(result) for name, result in comparator_meta[key].items()}
        comparators[key] = entry
    evaluation["comparators"] = comparators
    evaluation["subgroups"] = _pooled_subgroups(sites, replicates, seed)
    evaluation["subgroups"]["center"] = centres
    multicentre = {"centres": centres, "pooled": evaluation, "meta": meta,
                   "n": {s.name: s.doc["index_test"]["evaluation"]["n"] for s in sites}}

    flows = {s.name: s.doc["flow"] for s in sites}
    table1, table1_numbers, medians = [], {}, {}
    for by in [b for b in ("bone_status", "sex") if any(b in s.doc["table1"] for s in sites)]:
        parts = [s.doc["table1"][by] for s in sites if by in s.doc["table1"]]
        result, numbers = pooled_table1(parts, by)
        population = "eligible patients, all centres"
        table1.append((f"Table 1 by {by.replace('_', ' ')} ({population}; pooled from site summaries)", result))
        table1_numbers[by] = numbers
        medians[by] = {s.name: {v: {c: ({k: cell.get(k) for k in ("median", "q1", "q3", "n")}
                                         if isinstance(cell, dict) and "withheld" not in cell else None)
                                     for c, cell in (e["groups"].items() if isinstance(e["groups"], dict) else [])}
                                 for v, e in s.doc["table1"][by]["variables"].items() if e["kind"] == "continuous"}
                       for s in sites if by in s.doc["table1"]}
    pooled = Pooled(sites=list(sites), warnings=list(warnings), evaluation=evaluation, multicentre=multicentre,
                    flow=pooled_flow(list(flows.values())), flows=flows, table1=table1,
                    table1_numbers=table1_numbers, medians=medians, decision_curves=curves, accuracy=accuracy,
                    comparator_meta=comparator_meta, exactness=[])
    pooled.exactness = exactness(pooled)
    return pooled


def _comparator_meta(with_eval: Sequence[tuple[Site, Mapping[str, Any]]]) -> dict[str, Any]:
    """Per class (and macro): the meta-analysis of the centres' paired DeLong differences (index − comparator),
    and of each of the two AUCs on the comparator's patients (SEs from the paired covariance)."""
    out = {}
    names = [s.name for s, _ in with_eval]
    keys = []
    for _, e in with_eval:
        keys += [k for k, v in (e.get("comparison") or {}).items() if v and k not in keys]
    for key in keys:
        tests = [(e.get("comparison") or {}).get(key) for _, e in with_eval]
        result = meta_analysis(names, [t["difference"] if t else None for t in tests],
                               [t["se"] if t else None for t in tests], clip=False)
        aucs = []
        for j in (0, 1):
            estimates, ses = [], []
            for _, e in with_eval:
                paired = e.get("paired") or {}
                cov = paired.get("covariance")
                thetas = paired.get("aucs")
                if key == "macro" or cov is None:
                    estimates.append(None)
                    ses.append(None)
                    continue
                column = CLASSES.index(key) + j * K
                var = cov[column][column]
                estimates.append(thetas[column])
                ses.append(math.sqrt(var) if var is not None and var >= 0 else None)
            aucs.append(meta_analysis(names, estimates, ses))
        result["aucs"] = aucs
        out[key] = result
    return out


def _fixed_test(result: Mapping[str, Any]) -> dict[str, Any] | None:
    fixed = result.get("fixed")
    if not fixed:
        return None
    z = fixed["estimate"] / fixed["se"] if fixed["se"] else None
    aucs = [(a.get("fixed") or {}).get("estimate") for a in result.get("aucs") or []] or [None, None]
    return {"aucs": aucs if len(aucs) == 2 else [None, None], "difference": fixed["estimate"], "se": fixed["se"],
            "ci": fixed["ci"], "z": z, "p": float(2 * stats.norm.sf(abs(z))) if z is not None else None}


def _pooled_subgroups(sites: Sequence[Site], replicates: int, seed: int) -> dict[str, Any]:
    """Per subgroup column and level: the confusion-matrix figures of the summed tables of the centres that showed
    the level (those that withheld it are named)."""
    out: dict[str, Any] = {}
    columns: list[str] = []
    for s in sites:
        columns += [c for c in s.doc["subgroups"] if c not in columns]
    for column in columns:
        levels: list[str] = []
        for s in sites:
            levels += [lv for lv in s.doc["subgroups"].get(column, {}) if lv not in levels]
        out[column] = {}
        for level in ordered_levels(column, levels):
            shown = [(s, s.doc["subgroups"][column][level]) for s in sites
                     if level in s.doc["subgroups"].get(column, {})]
            parts = [doc for _, doc in shown if "withheld" not in doc]
            withheld = [s.name for s, doc in shown if "withheld" in doc]
            if not parts:
                continue
            ev = pooled_model(parts, probabilities=False, replicates=replicates, seed=seed,
                              no_auc_reasons={k: "per centre only (not pooled for subgroups)" for k in range(K)},
                              no_proba_reason="per centre only (not pooled for subgroups)")
            ev["notes"]["overall.auc_macro_ovr"] = "per centre only (not pooled for subgroups)"
            if withheld:
                ev["notes"]["n"] = (f"partial: {', '.join(withheld)} withheld this level (a cell below min_cell); "
                                    "their patients are left out")
            ev.pop("curves", None)
            out[column][level] = ev
    return out


# -- what is exact ---------------------------------------------------------------------------------------------------

def exactness(pooled: Pooled) -> list[dict[str, str]]:
    """One row per pooled figure: how it was pooled, whether it equals what a run on all patients' data gives, and
    by how much it can differ where it does not."""
    sites = pooled.sites
    ev = pooled.evaluation
    merged_flow = [s.name for s in sites if any(m["where"].startswith("flow.") for m in s.doc["privacy"]["merged"])]
    withheld_t1 = [s.name for s in sites if any(w["where"].startswith("table1.") for w in s.doc["privacy"]["withheld"])]
    withheld_sub = [s.name for s in sites if any(w["where"].startswith("subgroups.")
                                                 for w in s.doc["privacy"]["withheld"])]
    ece = ev.get("ece_pooling") or {}
    bounds = ev.get("auc_bounds") or {}
    rows = [
        ("Participant flow, per centre and in total", "sums of the centres' counts",
         (EXACT, "") if not merged_flow else
         (PARTIAL, f"totals exact; reasons below min_cell merged into 'other' at {', '.join(merged_flow)}")),
        ("Table 1: n, mean, SD", "from each centre's n, mean and SD (pooled sum of squares)",
         (EXACT, "") if not withheld_t1 else (PARTIAL, f"cells withheld at {', '.join(withheld_t1)} (marked †)")),
        ("Table 1: tests", "t-test / ANOVA from the pooled means and SDs; χ² / Fisher on the summed counts",
         (EXACT, "mean ± SD for every continuous variable; the Shapiro–Wilk rule (median (IQR), Mann–Whitney, "
                 "Kruskal–Wallis) needs single patients' values")),
        ("Table 1: medians and quartiles", "per centre only, rounded to one decimal", (UNAVAILABLE, "not pooled")),
        ("Per-centre figures (each centre's evaluation with its CIs)", "computed at each centre by the code `study` "
         "uses", (EXACT, "")),
        ("Meta-analysis of the AUCs (fixed, random effects, I²)", "from each centre's AUC and DeLong SE",
         (EXACT, "")),
        ("Confusion matrix and its figures (accuracy, precision, recall, F1, κ, sensitivity, specificity, PPV, NPV)",
         "sum of the centres' tables", (EXACT, "")),
        ("Wilson 95% CIs of sensitivity, specificity, PPV, NPV", "statsmodels on the summed counts", (EXACT, "")),
        ("Bootstrap 95% CIs of the confusion-matrix figures", "the pooled table's cells resampled (seeded)",
         (APPROXIMATE, "the same resampling distribution as a patient bootstrap, other random draws: the bounds "
                       "differ by Monte-Carlo error")),
        ("Brier scores", "sums of squared errors", (EXACT, "")),
        ("ECE", "sums of confidences and correct predictions per bin",
         (EXACT, "") if ece.get("exact", True) else
         (APPROXIMATE, f"{ece['patients_in_withheld_bins']} patient(s) in bins whose sum of confidences a centre "
                       f"withheld: the exact ECE lies in [{ece['interval'][0]:.4f}, {ece['interval'][1]:.4f}]")),
        ("CIs of ECE and Brier", "—", (UNAVAILABLE, "need single patients' values")),
        ("Hosmer–Lemeshow tests", "Σ (O − E)²/E over every centre's own decile groups, df = G − 2",
         (APPROXIMATE, "another grouping than the deciles of all patients: a different test, not an estimate of "
                       "the same number")),
        ("AUC of all patients together (per class, macro)", "each centre's exact AUC for pairs within a centre, "
         "0.01-wide probability bins for pairs across centres",
         (APPROXIMATE, "largest possible error: " + ", ".join(f"{k} ±{v:.4f}" for k, v in bounds.items())
          + "; no DeLong CI (see the meta-analysis)")),
        ("Decision curves (net benefit)", "TP/n − FP/n·t/(1 − t) from the summed counts", (EXACT, "")),
        ("Comparator tests (DeLong, index test − comparator)", "per centre exact; pooled by meta-analysis of the "
         "centres' paired differences", (EXACT, "per centre and as a meta-analysis; the DeLong test on all patients "
                                                "together needs single patients")),
        ("Clinical model", "each centre's own model (fitted on its training split or given), pooled as such",
         (APPROXIMATE, "`study` fits one model on all centres' training rows")),
        ("Subgroups (sex, age band): confusion-matrix figures", "sums of the centres' subgroup tables",
         (EXACT, "") if not withheld_sub else
         (PARTIAL, f"levels withheld at {', '.join(withheld_sub)} (small cells): their patients are left out")),
        ("Subgroups: AUC, calibration", "—", (UNAVAILABLE, "per centre only")),
    ]
    return [{"figure": f, "how": how, "status": status, "detail": detail} for f, how, (status, detail) in rows]
