"""The STARD 2015 validation report: one self-contained HTML file (inline SVG, no external fetch, prints to PDF).

Every number comes from the evaluation dicts (f2b_study.stats.evaluation); every definition in the methods is
generated from the constants the statistics code uses. Text from the data (centre names, levels, reasons) is
escaped by Jinja's autoescape; only our own SVG figures and the explanation hook's fragments are trusted HTML.
Patient IDs appear only as pseudonyms (f2b_study.privacy.pseudonym); no face image appears unless asked for.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from f2b_study import CLASSES, DISCLAIMER, __version__

TEMPLATE = "stard.html.j2"


@dataclasses.dataclass
class ReportSection:
    """A section added by another part of the tool (the explainability work): ``html`` is a trusted fragment built
    by our own code with escaping; ``figures`` are trusted inline SVGs (report.figures.to_svg); ``tables`` are
    plain data the template escapes: {"caption": str, "columns": [str], "rows": [[str | float | None]]}.
    A section that ``contains_faces`` shows its figures only when the report includes faces."""

    title: str
    html: str = ""
    figures: list[str] = dataclasses.field(default_factory=list)
    tables: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    contains_faces: bool = False


@dataclasses.dataclass
class StudyReportInput:
    """Everything the report shows. Only ``title`` and ``evaluation`` are required; any missing piece is simply
    not drawn (and the STARD checklist says who must supply it).

    evaluation: ``evaluate_predictions`` output for the index test (with subgroups and comparators).
    flow: {"enrolled", "excluded": {reason: n}, "eligible", "eligible_by_class": {class: n}, "no_photo",
      "photo_qc_excluded": {reason: n}, "analysed", "analysed_by_class", "split": {name: n},
      "by_class": {split: {class: n}}, "labels": {"enrolled" | "excluded" | "eligible": box title}}.
    table1: [(caption, f2b_study.stats.table1.Table1)], e.g. by split and by bone status.
    multicentre: ``multicentre_summary`` output. provenance: {name: value} of the model (arch, FaceNet weights,
    training cohort hash, version...); ``provenance["warnings"]`` lists are shown as loud warnings.
    pooled_sections: sections of a report pooled from site summaries (report.pooled), shown after the
    multi-centre results.
    """

    title: str
    evaluation: dict[str, Any]
    cohorts: list[str] = dataclasses.field(default_factory=list)
    model_name: str = "Face2Bone"
    methods_labelling: str | None = None
    methods_extra: list[str] = dataclasses.field(default_factory=list)
    flow: dict[str, Any] | None = None
    table1: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    multicentre: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    explanations: list[ReportSection] = dataclasses.field(default_factory=list)
    simulated_labels: bool = False
    include_faces: bool = False
    pseudonym_key: bytes | None = None
    source_note: str | None = None
    generated: str | None = None  # date shown in the header; today when None
    pooled_sections: list[ReportSection] = dataclasses.field(default_factory=list)


# -- formatting ----------------------------------------------------------------------------------------------------

class Footnotes:
    """Reasons of undefined values, numbered once per report."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, reason: str | None) -> int | None:
        if not reason:
            return None
        if reason not in self.items:
            self.items.append(reason)
        return self.items.index(reason) + 1


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def cell(value: float | None, ci: Sequence[float] | None = None, note: str | None = None,
         notes: Footnotes | None = None, digits: int = 3) -> dict[str, Any]:
    interval = f"({ci[0]:.{digits}f}–{ci[1]:.{digits}f})" if value is not None and ci else ""
    ref = notes.ref(note) if notes is not None and note else None
    return {"text": fmt(value, digits), "ci": interval, "ref": ref}


def text_cell(text: Any) -> dict[str, Any]:
    return {"text": "" if text is None else str(text), "ci": "", "ref": None}


# -- tables in the paper's forms -----------------------------------------------------------------------------------

def _models(study: StudyReportInput) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """(label, evaluation, reason) for the index test and each comparator."""
    rows: list[tuple[str, dict[str, Any] | None, str | None]] = [(study.model_name, study.evaluation, None)]
    for comp in (study.evaluation.get("comparators") or {}).values():
        rows.append((comp["label"], comp.get("evaluation"), comp.get("reason")))
    return rows


def _overall_row(label: str, ev: dict[str, Any] | None, reason: str | None, keys: Sequence[str],
                 notes: Footnotes) -> list[dict[str, Any]]:
    if ev is None:
        return [text_cell(label), cell(None, note=reason, notes=notes), *[cell(None) for _ in keys]]
    row = [cell(None, note=reason, notes=notes) | {"text": label}, text_cell(ev["n"])]
    for key in keys:
        path = f"overall.{key}"
        row.append(cell(ev["overall"][key], ev["ci"].get(key), ev["notes"].get(path) or ev["notes"].get(f"ci.{key}"),
                        notes))
    return row


TABLE2_WEIGHTED = ("accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "auc_macro_ovr", "kappa")
TABLE2_MACRO = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auc_macro_ovr", "kappa")
HEADERS = {"accuracy": "Accuracy", "precision_weighted": "Precision (weighted)", "recall_weighted":
           "Recall (weighted)", "f1_weighted": "F1 (weighted)", "precision_macro": "Precision (macro)",
           "recall_macro": "Recall (macro)", "f1_macro": "F1 (macro)", "auc_macro_ovr": "AUC (macro OvR)",
           "kappa": "Cohen's κ", "ece": "ECE", "brier": "Brier (multiclass)"}


def table2(study: StudyReportInput, keys: Sequence[str], caption: str, notes: Footnotes) -> dict[str, Any]:
    rows = [_overall_row(label, ev, reason, keys, notes) for label, ev, reason in _models(study)]
    return {"caption": caption, "columns": ["Model", "n", *[HEADERS[k] for k in keys]], "rows": rows}


def table3(ev: dict[str, Any], caption: str, notes: Footnotes) -> dict[str, Any]:
    rows = []
    for name in CLASSES:
        pc = ev["per_class"][name]
        row = [text_cell(name), text_cell(ev["support"][CLASSES.index(name)])]
        for key in ("accuracy", "precision", "recall", "f1"):
            row.append(cell(pc[key], ev["ci"].get(f"{name}.{key}"), ev["notes"].get(f"per_class.{name}.{key}"), notes))
        row.append(cell(pc["auc"], pc["auc_ci"], ev["notes"].get(f"per_class.{name}.auc")
                        or ev["notes"].get(f"per_class.{name}.auc_ci"), notes))
        row.append(cell(pc["kappa"], ev["ci"].get(f"{name}.kappa"), ev["notes"].get(f"per_class.{name}.kappa"), notes))
        row.append(cell(pc["brier"], ev["ci"].get(f"{name}.brier"), ev["notes"].get(f"per_class.{name}.brier"), notes))
        hl = pc["hosmer_lemeshow"]
        hl_note = ev["notes"].get(f"per_class.{name}.hosmer_lemeshow")
        row.append(cell(hl["statistic"], None, hl_note, notes, digits=2))
        row.append(text_cell("—" if hl["df"] is None else hl["df"]))
        row.append(text_cell(fmt_p(hl["p"])))
        rows.append(row)
    return {"caption": caption, "columns": ["Class (vs rest)", "n", "Accuracy (OvR)", "Precision", "Recall", "F1",
                                            "AUC (DeLong 95% CI)", "Cohen's κ (OvR)", "Brier", "HL χ²", "df", "HL p"],
            "rows": rows}


def calibration_table(study: StudyReportInput, notes: Footnotes) -> dict[str, Any]:
    """The paper's Fig. 9 numbers: ECE, Brier, multinomial HL, overall and by subgroup."""
    rows = []

    def add(label: str, ev: dict[str, Any], n: int) -> None:
        hl = ev["hosmer_lemeshow_multinomial"]
        rows.append([text_cell(label), text_cell(n),
                     cell(ev["overall"]["ece"], ev["ci"].get("ece"), ev["notes"].get("overall.ece"), notes),
                     cell(ev["overall"]["brier"], ev["ci"].get("brier"), ev["notes"].get("overall.brier"), notes),
                     cell(hl["statistic"], None, ev["notes"].get("hosmer_lemeshow_multinomial"), notes, digits=2),
                     text_cell("—" if hl["df"] is None else hl["df"]), text_cell(fmt_p(hl["p"]))])

    add("Overall", study.evaluation, study.evaluation["n"])
    for column, levels in (study.evaluation.get("subgroups") or {}).items():
        for level, ev in levels.items():
            shown = LEVEL_LABELS.get(column, {}).get(level, level)
            add(f"{SUBGROUP_LABELS.get(column, column)}: {shown}", ev, ev["n"])
    return {"caption": "Calibration of the index test (the paper's Fig. 9): ECE, multiclass Brier score and the "
                       "multinomial Hosmer–Lemeshow test, overall and by subgroup",
            "columns": ["Group", "n", "ECE", "Brier", "HL χ² (multinomial)", "df", "p"], "rows": rows}


SUBGROUP_LABELS = {"sex": "Sex", "center": "Centre", "age_band": "Age band (years)"}
LEVEL_LABELS = {"sex": {"F": "Female", "M": "Male"}}
TABLE4_KEYS = ("accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "auc_macro_ovr", "kappa")


def table4(study: StudyReportInput, column: str, levels: dict[str, Any], notes: Footnotes) -> dict[str, Any]:
    rows = [_overall_row("Overall", study.evaluation, None, TABLE4_KEYS, notes)]
    for level, ev in levels.items():
        rows.append(_overall_row(LEVEL_LABELS.get(column, {}).get(level, str(level)), ev, None, TABLE4_KEYS, notes))
    label = SUBGROUP_LABELS.get(column, column)
    return {"caption": f"Index test by {label.lower()} (the paper's Table 4 form; weighted means)",
            "columns": [label, "n", *[HEADERS[k] for k in TABLE4_KEYS]], "rows": rows}


def comparison_table(study: StudyReportInput, notes: Footnotes) -> dict[str, Any] | None:
    rows = []
    for comp in (study.evaluation.get("comparators") or {}).values():
        for name, test in (comp.get("comparison") or {}).items():
            label = f"{comp['label']}: {'macro OvR' if name == 'macro' else name + ' vs rest'}"
            if test is None:
                rows.append([text_cell(label), cell(None, note="one of the two classes is absent", notes=notes),
                             cell(None), cell(None), cell(None), text_cell("—")])
                continue
            aucs = test.get("aucs") or [None, None]
            rows.append([text_cell(label), cell(aucs[0]), cell(aucs[1]), cell(test["difference"], test["ci"]),
                         cell(test["z"], digits=2), text_cell(fmt_p(test["p"]))])
    if not rows:
        return None
    return {"caption": f"AUC of {study.model_name} against each comparator on the same patients (DeLong's test for "
                       "two correlated AUCs)",
            "columns": ["Comparison", study.model_name, "Comparator", "Difference (95% CI)", "z", "p"], "rows": rows}


def centre_tables(multi: dict[str, Any], notes: Footnotes) -> list[dict[str, Any]]:
    rows = []
    for name, ev in multi["centres"].items():
        rows.append(_overall_row(name, ev, None, TABLE4_KEYS, notes))
    rows.append(_overall_row("Pooled (all patients)", multi["pooled"], None, TABLE4_KEYS, notes))
    per_centre = {"caption": "Index test per centre and pooled", "columns": ["Centre", "n",
                  *[HEADERS[k] for k in TABLE4_KEYS]], "rows": rows}
    meta_rows = []
    for metric, meta in multi["meta"].items():
        label = "AUC (macro OvR)" if metric == "auc_macro_ovr" else f"AUC {metric} vs rest"
        fixed, random = meta.get("fixed"), meta.get("random")
        reason = meta.get("reason")
        meta_rows.append([
            text_cell(label), text_cell(len(meta["studies"])),
            cell(fixed["estimate"], fixed["ci"]) if fixed else cell(None, note=reason, notes=notes),
            cell(random["estimate"], random["ci"]) if random else cell(None, note=reason, notes=notes),
            cell(meta["q"], digits=2), text_cell("—" if meta["df"] is None else meta["df"]),
            text_cell(fmt_p(meta["p_heterogeneity"])),
            text_cell("—" if meta["i2"] is None else f"{100 * meta['i2']:.1f}%"),
            cell(meta["tau2"], digits=4)])
    meta_table = {"caption": "Meta-analysis of per-centre AUCs (DeLong SEs; fixed effect = inverse variance; random "
                             "effects = DerSimonian–Laird); heterogeneity by Cochran's Q and I²",
                  "columns": ["Metric", "Centres", "Fixed effect (95% CI)", "Random effects (95% CI)", "Q", "df",
                              "p (Q)", "I²", "τ²"], "rows": meta_rows}
    return [per_centre, meta_table]


def errors_table(study: StudyReportInput, key: bytes) -> dict[str, Any] | None:
    from f2b_study.privacy import pseudonym

    errors = study.evaluation.get("errors") or []
    if not errors:
        return None
    rows = [[text_cell(pseudonym(e["patient_id"], key)), text_cell(e["reference"]), text_cell(e["predicted"]),
             cell(e["confidence"])] for e in errors]
    return {"caption": f"The {len(rows)} most confident misclassifications (pseudonymised IDs), for review",
            "columns": ["Patient (pseudonym)", "Reference standard", "Predicted", "Probability of the predicted class"],
            "rows": rows}


# -- methods text, generated from the constants in use --------------------------------------------------------------

def methods_statistics(ev: dict[str, Any]) -> list[str]:
    from f2b_study.stats.calibration import ECE_BINS, HL_GROUPS, RELIABILITY_BINS
    from f2b_study.stats.predictions import SUM_TOLERANCE
    from f2b_study.stats.subgroups import AGE_BAND_ORDER

    boot = ev.get("bootstrap", {})
    level = round(100 * boot.get("level", 0.95))
    classes = ", ".join(CLASSES)
    return [
        f"Index test result: the class with the highest predicted probability (pre-specified; a tie goes to the "
        f"first class in the order {classes}); probabilities must sum to 1 ± {SUM_TOLERANCE:g}.",
        "Accuracy = correct predictions / N. Per class, one-vs-rest (OvR): precision = TP/(TP+FP), recall "
        "(sensitivity) = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN), OvR accuracy = (TP+TN)/N and Cohen's κ of the OvR 2×2 "
        "table. Macro = unweighted mean over the classes present in the reference standard; weighted = mean "
        "weighted by each class's number of reference-standard patients (so weighted recall equals accuracy); a "
        "class present but never predicted counts with precision 0. Overall Cohen's κ on the 3×3 table.",
        "AUC: per class OvR, the Mann–Whitney statistic (ties count ½), higher probability = that class; "
        f"{level}% CI = AUC ± {_z(level):.2f}·SE with DeLong's variance, clipped to [0, 1] (as R pROC's "
        "ci.auc(method = \"delong\")). Macro AUC = mean of the per-class AUCs, its CI from DeLong's covariance of "
        "the three. AUCs of two models on the same patients are compared by DeLong's test for correlated AUCs.",
        f"All other intervals: patient-level nonparametric bootstrap, {boot.get('replicates', 0)} replicates "
        f"(seed {boot.get('seed')}), percentile {level}% intervals; patients, not rows, are resampled.",
        f"Calibration: expected calibration error (ECE) over {ECE_BINS} equal-width bins [k/{ECE_BINS}, "
        f"(k+1)/{ECE_BINS}) of the top-label confidence (1.0 in the last bin), Σ (n_b/N)·|accuracy_b − "
        "confidence_b|; multiclass Brier score = mean over patients of Σ_k (p_k − y_k)², per class the mean of "
        f"(p_k − y_k)². Hosmer–Lemeshow test per class (OvR on p_k) with R ResourceSelection's grouping: breaks = "
        f"unique quantiles of p at 0, 1/{HL_GROUPS}, …, 1; groups (a, b], the first [a, b]; χ² = Σ (O − E)²/E over "
        f"groups and both outcomes; df = G − 2 with G the non-empty groups. Multinomial Hosmer–Lemeshow (Fagerland "
        f"& Hosmer 2008): the same grouping on 1 − p(normal), χ² over groups and all {len(CLASSES)} classes, "
        f"df = (G − 2)({len(CLASSES)} − 1). Reliability diagrams: the ECE's bins for the top label, "
        f"{RELIABILITY_BINS} equal-width bins per class.",
        f"Subgroups (pre-specified): sex, centre, and age bands {', '.join(AGE_BAND_ORDER)} years.",
    ]


def _z(level: int) -> float:
    from scipy import stats

    return float(stats.norm.ppf(0.5 + level / 200))


def methods_comparators(ev: dict[str, Any]) -> list[str]:
    lines = []
    for comp in (ev.get("comparators") or {}).values():
        text = f"{comp['label']}: {comp.get('description') or 'not fitted'}"
        if comp.get("reason"):
            text += f" ({comp['reason']})"
        lines.append(text + ".")
    if lines:
        lines.append("OSTA gives categories, not probabilities, and no ranking of the middle class: its calibration "
                     "measures and osteopenia AUC are not defined; its macro AUC averages normal and osteoporosis "
                     "only.")
    return lines


def _provenance_warnings(provenance: dict[str, Any] | None) -> list[str]:
    if not provenance:
        return []
    warnings = [str(w) for w in provenance.get("warnings", []) or []]
    for key, value in provenance.items():
        if "facenet" in key.lower() and "random" in str(value).lower():
            warnings.append(f"The FaceNet branch was randomly initialised ({key}: {value}): no pretrained VGGFace2 "
                            "weights. The face-supervised attention did not see a trained face embedding.")
    return warnings


# -- figures ---------------------------------------------------------------------------------------------------------

def _figures(study: StudyReportInput) -> dict[str, str]:
    from f2b_study.report import figures as fig

    ev = study.evaluation
    out: dict[str, str] = {}
    if study.flow:
        out["flow"] = fig.flow_svg(study.flow, "flow", CLASSES)
    out["confusion"] = fig.confusion_matrix_svg(ev["confusion_matrix"], CLASSES, study.model_name, "cm")
    for key, comp in (ev.get("comparators") or {}).items():
        if comp.get("evaluation"):
            out[f"confusion_{key}"] = fig.confusion_matrix_svg(comp["evaluation"]["confusion_matrix"], CLASSES,
                                                               comp["label"], f"cm-{key}", "Predicted (comparator)")
    curves = {study.model_name: ev.get("curves", {}).get("roc", {})}
    aucs = {study.model_name: {c: ev["per_class"][c]["auc"] for c in CLASSES}}
    for comp in (ev.get("comparators") or {}).values():
        cev = comp.get("evaluation")
        if cev and cev.get("curves"):
            curves[comp["label"]] = cev["curves"]["roc"]
            aucs[comp["label"]] = {c: cev["per_class"][c]["auc"] for c in CLASSES}
    if any(curves.values()):
        out["roc"] = fig.roc_svg(curves, aucs, CLASSES, "roc")
    reliability = ev.get("curves", {}).get("reliability")
    if reliability:
        out["reliability"] = fig.reliability_svg(reliability, CLASSES, "rel")
    if study.multicentre:
        out["forest"] = fig.forest_svg(study.multicentre["meta"]["auc_macro_ovr"], "AUC (macro OvR) by centre",
                                       "forest")
    return out


# -- rendering -------------------------------------------------------------------------------------------------------

def build_context(study: StudyReportInput) -> dict[str, Any]:
    from f2b_study.cohort.centre import LabelRules
    from f2b_study.report.checklist import checklist
    from f2b_study.report.methods import labelling_text
    from f2b_study.stats.table1 import OVERALL, to_records

    ev = study.evaluation
    notes = Footnotes()
    key = study.pseudonym_key or secrets.token_bytes(16)
    tables = {
        "table2": table2(study, TABLE2_WEIGHTED, "Index test and clinical comparators (the paper's Table 2 form; "
                         "precision, recall and F1 are support-weighted means)", notes),
        "table2_macro": table2(study, TABLE2_MACRO, "The same, with macro (unweighted) means of precision, recall "
                               "and F1", notes),
        "table3": table3(ev, "Index test by bone status, one-vs-rest (the paper's Table 3 form)", notes),
        "calibration": calibration_table(study, notes),
        "comparison": comparison_table(study, notes),
        "errors": errors_table(study, key),
    }
    subgroup_tables = [table4(study, column, levels, notes)
                       for column, levels in (ev.get("subgroups") or {}).items() if levels]
    multicentre_tables = centre_tables(study.multicentre, notes) if study.multicentre else []
    table1_blocks = []
    for caption, result in study.table1:
        columns = [OVERALL, *result.group_names]
        table1_blocks.append({"caption": caption, "columns": columns, "records": to_records(result),
                              "n": result.rows[0].groups if result.rows else {}, "notes": result.notes})
    sections = []
    for section in study.explanations:
        hidden = section.contains_faces and not study.include_faces
        sections.append({"title": section.title, "html": _trusted(section.html),
                         "figures": [] if hidden else [_trusted(f) for f in section.figures],
                         "tables": section.tables,
                         "hidden_note": "Figures with faces are left out (the report was built without "
                                        "--include-faces)." if hidden else ""})
    labelling = study.methods_labelling or labelling_text([("", LabelRules())])
    undefined = sorted(ev.get("notes", {}).items())
    return {
        "title": study.title,
        "disclaimer": DISCLAIMER,
        "version": __version__,
        "generated": study.generated or _dt.date.today().isoformat(),
        "cohorts": study.cohorts,
        "model_name": study.model_name,
        "simulated": study.simulated_labels,
        "include_faces": study.include_faces,
        "source_note": study.source_note,
        "provenance": {k: v for k, v in (study.provenance or {}).items() if k != "warnings"},
        "provenance_warnings": _provenance_warnings(study.provenance),
        "labelling": labelling,
        "methods_extra": study.methods_extra,
        "statistics": methods_statistics(ev),
        "comparators": methods_comparators(ev),
        "flow": study.flow,
        "n": ev["n"],
        "support": dict(zip(CLASSES, ev.get("support", []), strict=False)),
        "figures": _figures(study),
        "tables": tables,
        "subgroup_tables": subgroup_tables,
        "multicentre": study.multicentre,
        "multicentre_tables": multicentre_tables,
        "table1": table1_blocks,
        "explanations": sections,
        "pooled_sections": [{"title": p.title, "html": _trusted(p.html), "figures": [_trusted(f) for f in p.figures],
                             "tables": p.tables} for p in study.pooled_sections],
        "undefined": undefined,
        "footnotes": notes.items,
        "checklist": checklist(study),
        "pseudonym_stable": study.pseudonym_key is not None,
    }


def _trusted(fragment: str) -> Any:
    from markupsafe import Markup

    return Markup(fragment)


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_stard_report(study: StudyReportInput) -> str:
    """The report as one HTML string."""
    context = build_context(study)
    context["figures"] = {k: _trusted(v) for k, v in context["figures"].items() if v}
    return _environment().get_template(TEMPLATE).render(**context)


def write_stard_report(study: StudyReportInput, target: str | Path) -> Path:
    from f2b_study.atomic import write_text

    target = Path(target)
    write_text(target, render_stard_report(study))
    return target
