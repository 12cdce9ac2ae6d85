"""The multi-centre STARD report from site summaries (`f2b-study pool`): the standard STARD report filled from the
pooled evaluation (stats.pooling), plus the sections only a pooled report has: which figures are exact pools and
which are approximations, the flow per centre, per-centre medians, Wilson intervals, comparator tests pooled
across centres, calibration from the pooled bins and the decision curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from f2b_study import CLASSES
from f2b_study.present.format import number as fmt
from f2b_study.present.format import p_value as fmt_p
from f2b_study.report.stard import ReportSection, StudyReportInput, write_stard_report

DECISION_LABELS = {"osteoporosis": "osteoporosis (refer when p(osteoporosis) ≥ t)",
                   "low_bone_mass": "low bone mass (refer when 1 − p(normal) ≥ t)"}
TABLE_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
STATUS_LABELS = {"exact": "EXACT", "approximate": "APPROXIMATE", "partial": "PARTIAL", "not available": "NOT AVAILABLE"}


def _ci(entry: Mapping[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "—"
    lo, hi = entry["ci"]
    return f"{entry['value']:.3f} ({lo:.3f}–{hi:.3f}) [{entry['count']}/{entry['total']}]"


def _estimate(result: Mapping[str, Any] | None) -> str:
    if not result:
        return "—"
    lo, hi = result["ci"]
    return f"{result['estimate']:.3f} ({lo:.3f} to {hi:.3f})"


def exactness_section(pooled: Any) -> ReportSection:
    sites = pooled.sites
    rows = [[row["figure"], row["how"], STATUS_LABELS.get(row["status"], row["status"]), row["detail"] or "—"]
            for row in pooled.exactness]
    intro = ("<p>Built by <code>f2b-study pool</code> from the summaries of "
             f"{len(sites)} centre(s); no patient-level record left any centre. Each summary was checked (format, "
             "schema version, checksum) and all come from one model and one version of the tool. The table says, "
             "figure by figure, whether the pooled number is exactly what a run on all centres' patient data gives "
             "(EXACT), an approximation (APPROXIMATE, with how far it can be off), a pool that leaves out cells a "
             "centre withheld for privacy (PARTIAL), or not computable from summaries (NOT AVAILABLE).</p>")
    return ReportSection(title="Exact and approximate pooled figures", html=intro, tables=[{
        "id": "exactness", "caption": "Which pooled figures are exact pools and which are approximations",
        "columns": ["Figure", "How it was pooled", "Pooled exactly?", "Difference from pooling patient data"],
        "rows": rows, "text_columns": [0, 1, 2, 3]}])


def sites_section(pooled: Any) -> ReportSection:
    rows = []
    for s in pooled.sites:
        doc = s.doc
        clinical = (doc["comparators"].get("clinical_logit") or {})
        rows.append([s.name, str(doc["index_test"]["evaluation"]["n"]), doc["settings"].get("evaluated", "—"),
                     str(doc["privacy"]["min_cell"]), str(len(doc["privacy"]["withheld"])),
                     str(len(doc["privacy"]["merged"])), clinical.get("fitted_on") or clinical.get("reason") or "—",
                     str(doc.get("created", "—")), doc["checksum"]["value"][:16]])
    html = "".join(f"<p class='meta'>Warning: {_escape(w)}</p>" for w in pooled.warnings)
    return ReportSection(title="Centres and their summaries", html=html, tables=[{
        "caption": "The site summaries pooled (withheld cells and merged lines are listed in each summary's "
                   "'privacy' section)",
        "columns": ["Centre", "Evaluated", "Evaluated patients", "min_cell", "Cells withheld", "Tables merged",
                    "Clinical model fitted on", "Written", "sha256 (first 16)"],
        "rows": rows, "text_columns": [0, 2, 6, 7, 8]}])


def flow_section(pooled: Any) -> ReportSection:
    names = list(pooled.flows)
    flows = [pooled.flows[n] for n in names] + [pooled.flow]
    rows: list[list[str]] = []

    def line(label: str, get: Any) -> None:
        values = [get(f) for f in flows]
        if any(v not in (None, 0) for v in values):
            rows.append([label, *["—" if v is None else str(v) for v in values]])

    def reasons(key: str) -> list[str]:
        """Every centre's reasons under ``key``, in first-seen order."""
        return list(dict.fromkeys(r for f in flows for r in f.get(key) or {}))

    line("Enrolled", lambda f: f.get("enrolled"))
    for reason in reasons("excluded"):
        line(f"Excluded: {reason}", lambda f, r=reason: (f.get("excluded") or {}).get(r, 0))
    line("Eligible", lambda f: f.get("eligible"))
    line("No photo", lambda f: f.get("no_photo"))
    for reason in reasons("photo_qc_excluded"):
        line(f"No usable photo: {reason}", lambda f, r=reason: (f.get("photo_qc_excluded") or {}).get(r, 0))
    line("Analysed", lambda f: f.get("analysed"))
    for split in ("train", "validation"):
        line(f"  {split}", lambda f, s=split: (f.get("split") or {}).get(s))
    for name in CLASSES:
        line(f"  evaluated, {name}", lambda f, c=name: ((f.get("by_class") or {}).get("validation") or {}).get(c))
    return ReportSection(title="Participant flow per centre", tables=[{
        "caption": "Participant flow per centre and in total (sums of the centres' counts)",
        "columns": ["Stage", *names, "Total"], "rows": rows, "text_columns": [0]}])


def medians_section(pooled: Any) -> ReportSection | None:
    from f2b_study.stats.table1 import LABELS

    tables = []
    for by, per_site in pooled.medians.items():
        names = list(per_site)
        rows = []
        variables: list[str] = []
        for site in per_site.values():
            variables += [v for v in site if v not in variables]
        for variable in variables:
            columns: list[str] = []
            for site in per_site.values():
                columns += [c for c in site.get(variable, {}) if c not in columns]
            for column in columns:
                cells = []
                for name in names:
                    cell = per_site[name].get(variable, {}).get(column)
                    cells.append("withheld" if cell is None else
                                 f"{cell['median']:.1f} ({cell['q1']:.1f}–{cell['q3']:.1f})"
                                 if cell.get("median") is not None else "—")
                rows.append([LABELS.get(variable, variable), column, *cells])
        tables.append({"caption": f"Median (IQR) per centre, by {by.replace('_', ' ')} (medians cannot be pooled "
                                  "from summaries; rounded to one decimal at the centre)",
                       "columns": ["Variable", "Group", *names], "rows": rows, "text_columns": [0, 1]})
    return ReportSection(title="Per-centre medians and quartiles (not pooled)", tables=tables) if tables else None


def accuracy_section(pooled: Any) -> ReportSection:
    rows = []
    labels = {"index_test": pooled.sites[0].doc["provenance"].get("model_arch", "index test")}
    for key, comp in (pooled.evaluation.get("comparators") or {}).items():
        labels[key] = comp["label"]
    for key, per_class in pooled.accuracy.items():
        for name in CLASSES:
            entry = per_class[name]
            rows.append([labels.get(key, key), name, _ci(entry["sensitivity"]), _ci(entry["specificity"]),
                         _ci(entry["ppv"]), _ci(entry["npv"])])
    return ReportSection(title="Sensitivity, specificity, PPV and NPV (pooled)", tables=[{
        "caption": "Per class, one-vs-rest on the predicted class, from the pooled confusion matrices; Wilson 95% "
                   "CIs [count/total]",
        "columns": ["Model", "Class", "Sensitivity", "Specificity", "PPV", "NPV"], "rows": rows,
        "text_columns": [0, 1]}])


def comparator_section(pooled: Any) -> ReportSection | None:
    rows = []
    for key, per_class in pooled.comparator_meta.items():
        label = pooled.evaluation["comparators"][key]["label"]
        for name, meta in per_class.items():
            fixed = meta.get("fixed")
            p = None
            if fixed and fixed["se"]:
                from scipy import stats

                p = float(2 * stats.norm.sf(abs(fixed["estimate"] / fixed["se"])))
            rows.append([f"{label}: {'macro OvR' if name == 'macro' else name + ' vs rest'}",
                         str(len(meta["studies"])), _estimate(fixed), fmt_p(p), _estimate(meta.get("random")),
                         "—" if meta["i2"] is None else f"{100 * meta['i2']:.1f}%",
                         meta.get("reason") or "—"])
    if not rows:
        return None
    return ReportSection(title="Comparator tests pooled across centres", tables=[{
        "caption": "Difference in AUC (index test − comparator) on the same patients: each centre's DeLong "
                   "difference and SE, pooled by inverse variance (fixed) and DerSimonian–Laird (random)",
        "columns": ["Comparison", "Centres", "Fixed effect (95% CI)", "p (fixed)", "Random effects (95% CI)", "I²",
                    "Note"], "rows": rows, "text_columns": [0, 6]}])


def calibration_section(pooled: Any) -> ReportSection:
    ev = pooled.evaluation
    rows = []
    ece = ev.get("ece_pooling") or {}
    rows.append(["ECE", fmt(ev["overall"]["ece"], 4), "—", "—",
                 "exact (summed bins)" if ece.get("exact", True) else
                 f"sums of confidences withheld at a centre for small bins: exact ECE in "
                 f"[{ece['interval'][0]:.4f}, {ece['interval'][1]:.4f}]"])
    rows.append(["Brier (multiclass)", fmt(ev["overall"]["brier"], 4), "—", "—", "exact (summed squared errors)"])
    for name in CLASSES:
        hl = ev["per_class"][name]["hosmer_lemeshow"]
        rows.append([f"Hosmer–Lemeshow, {name} vs rest", fmt(hl["statistic"], 2),
                     "—" if hl["df"] is None else str(hl["df"]), fmt_p(hl["p"]),
                     ev["notes"].get(f"per_class.{name}.hosmer_lemeshow", "")])
    multi = ev["hosmer_lemeshow_multinomial"]
    rows.append(["Hosmer–Lemeshow, multinomial", fmt(multi["statistic"], 2),
                 "—" if multi["df"] is None else str(multi["df"]), fmt_p(multi["p"]),
                 ev["notes"].get("hosmer_lemeshow_multinomial", "")])
    return ReportSection(title="Calibration from the pooled bins", tables=[{
        "caption": "Index test calibration over all centres (reliability diagrams above are drawn from the same "
                   "pooled bins)",
        "columns": ["Measure", "Value", "df", "p", "How pooled"], "rows": rows, "text_columns": [0, 4]}])


def decision_section(pooled: Any) -> ReportSection:
    curves = pooled.decision_curves
    labels = {"index_test": pooled.sites[0].doc["provenance"].get("model_arch", "index test")}
    for key, comp in (pooled.evaluation.get("comparators") or {}).items():
        labels[key] = comp["label"]
    tables = []
    for decision in DECISION_LABELS:
        rows = []
        for threshold in TABLE_THRESHOLDS:
            row = [f"{threshold:.2f}"]
            everyone = None
            for model in curves:
                point = next(p for p in curves[model][decision] if abs(p["threshold"] - threshold) < 1e-9)
                row.append(f"{point['net_benefit']:.4f}")
                everyone = point["net_benefit_all"] if model == "index_test" else everyone
            row += [f"{everyone:.4f}" if everyone is not None else "—", "0"]
            rows.append(row)
        tables.append({"caption": f"Net benefit, decision: {DECISION_LABELS[decision]} (pooled counts)",
                       "columns": ["Threshold t", *[labels.get(m, m) for m in curves], "Refer all", "Refer none"],
                       "rows": rows})
    return ReportSection(title="Decision curves (pooled)", figures=[_decision_curves(curves, labels)],
                         html="<p>Net benefit = TP/n − FP/n · t/(1 − t), referring when the score is ≥ t, from the "
                              "counts summed over centres at every threshold 0.01 … 0.99 (exact). The clinical "
                              "model is evaluated on the patients with age, sex and BMI.</p>", tables=tables)


def _decision_curves(curves: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
                     labels: Mapping[str, str]) -> str:
    """The pooled curves drawn like every report's decision curves (the index test first)."""
    from f2b_study.report.clinical_figures import decision_curves_svg

    return decision_curves_svg({labels.get(model, model): dict(per_decision) for model, per_decision in curves.items()},
                               "dca-pooled")


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def pooled_methods(pooled: Any) -> list[str]:
    first = pooled.sites[0].doc
    evaluated = {s.doc["settings"].get("evaluated") for s in pooled.sites}
    min_cells = ", ".join(sorted({str(s.doc["privacy"]["min_cell"]) for s in pooled.sites}))
    return [
        f"Multi-centre validation without moving patient data: each of the {len(pooled.sites)} centres ran "
        "f2b-study site-summary with the same model on its own patients (evaluated: "
        + "; ".join(sorted(e for e in evaluated if e)) + ") and sent only aggregates; this report was built by "
        "f2b-study pool from those summaries.",
        f"Disclosure control at each centre (min_cell {min_cells}): "
        + " ".join(first["privacy"]["rules"]),
        "Pooled confusion-matrix figures come from the summed tables; their 95% CIs resample the pooled table's "
        "cells (the distribution of the patient bootstrap); sensitivity, specificity, PPV and NPV carry Wilson "
        "intervals. The AUC of all patients together is approximated from each centre's exact AUC and the counts "
        "at probability thresholds 0.01 … 0.99 (error bound in the table of exact and approximate figures); the "
        "per-centre AUCs with DeLong CIs are exact and pooled by meta-analysis. Hosmer–Lemeshow tests pool each "
        "centre's own decile groups.",
    ]


def pooled_report_input(pooled: Any, title: str | None = None) -> StudyReportInput:
    from f2b_study.cohort.centre import LabelRules
    from f2b_study.faces.qc import QCThresholds
    from f2b_study.report.methods import labelling_text, qc_text
    from f2b_study.sections import parse_section

    sites = pooled.sites
    first = sites[0].doc
    provenance = first["provenance"]
    rules = []
    for s in sites:
        given = s.doc["settings"].get("rules") or {}
        if given and all(isinstance(v, dict) for v in given.values()):
            rules += [(name, parse_section(LabelRules, v, source=s.path, section="rules")) for name, v in given.items()]
        else:
            rules.append((s.name, parse_section(LabelRules, given, source=s.path, section="rules")))
    methods = pooled_methods(pooled)
    qc = first["settings"].get("qc")
    if qc is not None:
        methods.insert(0, qc_text(QCThresholds.from_mapping(qc, source=sites[0].path)))
    sections = [exactness_section(pooled), sites_section(pooled), flow_section(pooled), medians_section(pooled),
                accuracy_section(pooled), comparator_section(pooled), calibration_section(pooled),
                decision_section(pooled)]
    return StudyReportInput(
        title=title or f"Multi-centre validation: {', '.join(s.name for s in sites)} (pooled from site summaries)",
        evaluation=pooled.evaluation,
        cohorts=[s.name for s in sites],
        model_name=provenance.get("model_arch") or "index test",
        methods_labelling=labelling_text(rules),
        methods_extra=methods,
        flow=pooled.flow,
        table1=pooled.table1,
        multicentre=pooled.multicentre,
        provenance={"architecture": provenance.get("model_arch"), "weights sha256": provenance.get("model_sha256"),
                    "FaceNet weights": provenance.get("facenet_weights") or "none recorded",
                    "training cohort hash": provenance.get("training_cohort_hash"),
                    "face pipeline": provenance.get("face_pipeline_version"),
                    "package version": provenance.get("tool_version"),
                    "configuration sha256 per centre": "; ".join(
                        f"{s.name}: {s.doc['provenance'].get('config_sha256')}" for s in sites),
                    "warnings": list(pooled.warnings)},
        simulated_labels=any(s.doc["provenance"].get("simulated_labels") for s in sites),
        source_note=f"Pooled by f2b-study pool from {len(sites)} site summaries ("
                    + ", ".join(s.path.name for s in sites) + "): no patient-level data was used. See 'Exact and "
                    "approximate pooled figures' for what differs from an analysis of all patients' records.",
        pooled_sections=[s for s in sections if s is not None],
    )


def write_pooled_report(pooled: Any, target: str | Path, title: str | None = None) -> Path:
    return write_stard_report(pooled_report_input(pooled, title), target)
