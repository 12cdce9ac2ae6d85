"""The STARD 2015 validation report: one self-contained HTML file (inline SVG, no external fetch, prints to PDF),
and beside it the same tables in tables.xlsx and tables/*.csv and every figure as figures/*.svg and 300-dpi PNG.

Every number comes from the evaluation dicts (f2b_study.stats.evaluation); tables are built as data first
(present.tabular: typed cells with value, CI and note) and rendered to HTML, XLSX and CSV from the same object.
Methods are prose built from MethodsFacts (report.methods); the formulas sit in a collapsible appendix. When the
index test is degenerate (report.degenerate) the report says so at the top. Text from the data (centre names,
levels, reasons) is escaped by Jinja's autoescape; only our own SVG figures and the explanation hook's fragments
are trusted HTML. Patient IDs appear only as pseudonyms (f2b_study.privacy.pseudonym); no face image appears
unless asked for.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from f2b_study import CLASSES, DISCLAIMER, __version__
from f2b_study.present import tabular as tb
from f2b_study.present.format import SMALL_N
from f2b_study.present.labels import column_label, level_label
from f2b_study.present.section import ReportSection
from f2b_study.present.tabular import Footnotes  # noqa: F401  (re-exported: older callers import it from here)
from f2b_study.report.methods import MethodsFacts

TEMPLATE = "stard.html.j2"
SMALL_N_NOTE = f"fewer than {SMALL_N} patients: the estimates are unstable"


@dataclasses.dataclass
class StudyReportInput:
    """Everything the report shows. Only ``title`` and ``evaluation`` are required; any missing piece is simply
    not drawn (and the checklists say who must supply it).

    evaluation: ``evaluate_predictions`` output for the index test (with subgroups and comparators).
    methods: the facts of the methods paragraphs (report.methods.MethodsFacts); without it the report uses
      ``methods_labelling`` (default: the WHO rule) and ``methods_extra`` as paragraphs.
    flow: {"enrolled", "excluded": {reason: n}, "eligible", "eligible_by_class": {class: n}, "no_photo",
      "photo_qc_excluded": {reason: n}, "analysed", "analysed_by_class", "split": {name: n},
      "by_class": {split: {class: n}}, "labels": {"enrolled" | "excluded" | "eligible": box title}}.
    table1: [(caption, f2b_study.stats.table1.Table1)], e.g. by split and by bone status.
    multicentre: ``multicentre_summary`` output. provenance: {name: value} of the model (arch, FaceNet weights,
    training cohort hash, version...); ``provenance["warnings"]`` lists are shown as loud warnings.
    simulated_labels: the reference-standard labels are simulated (a loud banner at the top).
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
    methods: MethodsFacts | None = None
    pooled_sections: list[ReportSection] = dataclasses.field(default_factory=list)
    pipeline_check: dict[str, Any] | None = None  # study's positive control: target, auc, auc_ci, accuracy, n


# -- tables in the paper's forms -----------------------------------------------------------------------------------

HEADERS = {"accuracy": "Accuracy", "precision_weighted": "Precision (weighted)", "recall_weighted":
           "Recall (weighted)", "f1_weighted": "F1 (weighted)", "precision_macro": "Precision (macro)",
           "recall_macro": "Recall (macro)", "f1_macro": "F1 (macro)", "auc_macro_ovr": "AUC (macro OvR)",
           "kappa": "Cohen's κ", "ece": "ECE", "brier": "Brier (multiclass)"}
TABLE2_WEIGHTED = ("accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "auc_macro_ovr", "kappa")
TABLE2_MACRO = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auc_macro_ovr", "kappa")
TABLE4_KEYS = TABLE2_WEIGHTED
SUBGROUP_LABELS = {"sex": "Sex", "center": "Centre", "age_band": "Age band (years)"}


def _metric_columns(first: str, keys: Sequence[str]) -> list[tb.Column]:
    return [tb.Column(first, tb.TEXT), tb.Column("n", tb.INT), *[tb.Column(HEADERS[k], ci=True) for k in keys]]


def _models(study: StudyReportInput) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """(label, evaluation, reason) for the index test and each comparator."""
    rows: list[tuple[str, dict[str, Any] | None, str | None]] = [(study.model_name, study.evaluation, None)]
    for comp in (study.evaluation.get("comparators") or {}).values():
        rows.append((comp["label"], comp.get("evaluation"), comp.get("reason")))
    return rows


def _overall_row(label: str, ev: dict[str, Any] | None, reason: str | None, keys: Sequence[str]) -> tb.Row:
    if ev is None:
        return tb.Row([tb.text(label, note=reason), tb.Cell(), *[tb.Cell() for _ in keys]])
    n = ev["n"]
    cells = [tb.text(label, note=reason), tb.num(n)]
    for key in keys:
        note = ev["notes"].get(f"overall.{key}") or ev["notes"].get(f"ci.{key}")
        cells.append(tb.num(ev["overall"][key], ev["ci"].get(key), note, n=n))
    return tb.Row(cells, mark=SMALL_N_NOTE if 0 < n < SMALL_N else None)


def table2(study: StudyReportInput, keys: Sequence[str], caption: str, key: str, id_: str) -> tb.Table:
    rows = [_overall_row(label, ev, reason, keys) for label, ev, reason in _models(study)]
    return tb.Table(key=key, caption=caption, columns=_metric_columns("Model", keys), rows=rows, id=id_)


def table3(ev: dict[str, Any], caption: str) -> tb.Table:
    n_all = ev["n"]
    rows = []
    for name in CLASSES:
        pc = ev["per_class"][name]
        cells = [tb.text(name), tb.num(ev["support"][CLASSES.index(name)])]
        for key in ("accuracy", "precision", "recall", "f1"):
            cells.append(tb.num(pc[key], ev["ci"].get(f"{name}.{key}"), ev["notes"].get(f"per_class.{name}.{key}"),
                                n=n_all))
        cells.append(tb.num(pc["auc"], pc["auc_ci"], ev["notes"].get(f"per_class.{name}.auc")
                            or ev["notes"].get(f"per_class.{name}.auc_ci"), n=n_all))
        cells.append(tb.num(pc["kappa"], ev["ci"].get(f"{name}.kappa"), ev["notes"].get(f"per_class.{name}.kappa"),
                            n=n_all))
        cells.append(tb.num(pc["brier"], ev["ci"].get(f"{name}.brier"), ev["notes"].get(f"per_class.{name}.brier"),
                            n=n_all))
        hl = pc["hosmer_lemeshow"]
        cells.append(tb.num(hl["statistic"], note=ev["notes"].get(f"per_class.{name}.hosmer_lemeshow")))
        cells.append(tb.num(hl["df"]))
        cells.append(tb.num(hl["p"]))
        rows.append(tb.Row(cells))
    columns = [tb.Column("Class (vs rest)", tb.TEXT), tb.Column("n", tb.INT),
               *[tb.Column(h, ci=True) for h in ("Accuracy (OvR)", "Precision", "Recall", "F1",
                                                 "AUC (DeLong 95% CI)", "Cohen's κ (OvR)", "Brier")],
               tb.Column("HL χ²", digits=2), tb.Column("df", tb.INT), tb.Column("HL p", tb.P)]
    return tb.Table(key="table3_per_class", caption=caption, columns=columns, rows=rows, id="table3")


def calibration_table(study: StudyReportInput) -> tb.Table:
    """The paper's Fig. 9 numbers: ECE, Brier, multinomial HL, overall and by subgroup."""
    rows = []

    def add(label: str, ev: dict[str, Any]) -> None:
        hl = ev["hosmer_lemeshow_multinomial"]
        n = ev["n"]
        rows.append(tb.Row([
            tb.text(label), tb.num(n),
            tb.num(ev["overall"]["ece"], ev["ci"].get("ece"), ev["notes"].get("overall.ece"), n=n),
            tb.num(ev["overall"]["brier"], ev["ci"].get("brier"), ev["notes"].get("overall.brier"), n=n),
            tb.num(hl["statistic"], note=ev["notes"].get("hosmer_lemeshow_multinomial")),
            tb.num(hl["df"]), tb.num(hl["p"])], mark=SMALL_N_NOTE if 0 < n < SMALL_N else None))

    add("Overall", study.evaluation)
    for column, levels in (study.evaluation.get("subgroups") or {}).items():
        for level, ev in levels.items():
            add(f"{SUBGROUP_LABELS.get(column, column_label(column))}: {level_label(column, level)}", ev)
    columns = [tb.Column("Group", tb.TEXT), tb.Column("n", tb.INT), tb.Column("ECE", ci=True),
               tb.Column("Brier", ci=True), tb.Column("HL χ² (multinomial)", digits=2), tb.Column("df", tb.INT),
               tb.Column("p", tb.P)]
    return tb.Table(key="calibration", caption="Calibration of the index test (the paper's Fig. 9): ECE, multiclass "
                    "Brier score and the multinomial Hosmer–Lemeshow test, overall and by subgroup",
                    columns=columns, rows=rows, id="calibration-table")


def table4(study: StudyReportInput, column: str, levels: dict[str, Any]) -> tb.Table:
    rows = [_overall_row("Overall", study.evaluation, None, TABLE4_KEYS)]
    for level, ev in levels.items():
        rows.append(_overall_row(level_label(column, level), ev, None, TABLE4_KEYS))
    label = SUBGROUP_LABELS.get(column, column_label(column))
    return tb.Table(key=f"subgroup_{column}", caption=f"Index test by {label.lower()} (the paper's Table 4 form; "
                    "weighted means)", columns=_metric_columns(label, TABLE4_KEYS), rows=rows,
                    id=f"subgroup-{re.sub(r'[^a-z0-9]+', '-', column.lower())}")


def comparison_table(study: StudyReportInput) -> tb.Table | None:
    rows = []
    for comp in (study.evaluation.get("comparators") or {}).values():
        for name, test in (comp.get("comparison") or {}).items():
            label = f"{comp['label']}: {'macro OvR' if name == 'macro' else name + ' vs rest'}"
            if test is None:
                rows.append(tb.Row([tb.text(label, note="one of the two classes is absent"), tb.Cell(), tb.Cell(),
                                    tb.Cell(), tb.Cell(), tb.Cell()]))
                continue
            aucs = test.get("aucs") or [None, None]
            rows.append(tb.Row([tb.text(label), tb.num(aucs[0]), tb.num(aucs[1]),
                                tb.num(test["difference"], test["ci"]), tb.num(test["z"]), tb.num(test["p"])]))
    if not rows:
        return None
    columns = [tb.Column("Comparison", tb.TEXT), tb.Column(study.model_name), tb.Column("Comparator"),
               tb.Column("Difference", ci=True), tb.Column("z", digits=2), tb.Column("p", tb.P)]
    return tb.Table(key="comparators_delong", caption=f"AUC of {study.model_name} against each comparator on the "
                    "same patients (DeLong's test for two correlated AUCs; difference with its 95% CI)",
                    columns=columns, rows=rows, id="comparison")


def centre_tables(multi: dict[str, Any]) -> list[tb.Table]:
    rows = [_overall_row(name, ev, None, TABLE4_KEYS) for name, ev in multi["centres"].items()]
    rows.append(_overall_row("Pooled (all patients)", multi["pooled"], None, TABLE4_KEYS))
    per_centre = tb.Table(key="centres", caption="Index test per centre and pooled",
                          columns=_metric_columns("Centre", TABLE4_KEYS), rows=rows, id="centres")
    meta_rows = []
    for metric, meta in multi["meta"].items():
        label = "AUC (macro OvR)" if metric == "auc_macro_ovr" else f"AUC {metric} vs rest"
        fixed, random = meta.get("fixed"), meta.get("random")
        reason = meta.get("reason")
        meta_rows.append(tb.Row([
            tb.text(label), tb.num(len(meta["studies"])),
            tb.num(fixed["estimate"], fixed["ci"]) if fixed else tb.Cell(note=reason),
            tb.num(random["estimate"], random["ci"]) if random else tb.Cell(note=reason),
            tb.num(meta["q"]), tb.num(meta["df"]), tb.num(meta["p_heterogeneity"]), tb.num(meta["i2"]),
            tb.num(meta["tau2"])]))
    meta_table = tb.Table(
        key="meta_analysis", caption="Meta-analysis of per-centre AUCs (DeLong SEs; fixed effect = inverse "
        "variance; random effects = DerSimonian–Laird); heterogeneity by Cochran's Q and I²",
        columns=[tb.Column("Metric", tb.TEXT), tb.Column("Centres", tb.INT), tb.Column("Fixed effect", ci=True),
                 tb.Column("Random effects", ci=True), tb.Column("Q", digits=2), tb.Column("df", tb.INT),
                 tb.Column("p (Q)", tb.P), tb.Column("I²", tb.PERCENT, digits=1), tb.Column("τ²", digits=4)],
        rows=meta_rows, id="meta")
    return [per_centre, meta_table]


def errors_table(study: StudyReportInput, key: bytes) -> tb.Table | None:
    from f2b_study.privacy import pseudonym

    errors = study.evaluation.get("errors") or []
    if not errors:
        return None
    rows = [tb.Row([tb.text(pseudonym(e["patient_id"], key)), tb.text(e["reference"]), tb.text(e["predicted"]),
                    tb.num(e["confidence"])]) for e in errors]
    return tb.Table(key="misclassifications", caption=f"The {len(rows)} most confident misclassifications "
                    "(pseudonymised IDs), for review",
                    columns=[tb.Column("Patient (pseudonym)", tb.TEXT), tb.Column("Reference standard", tb.TEXT),
                             tb.Column("Predicted", tb.TEXT), tb.Column("Probability of the predicted class")],
                    rows=rows, id="errors")


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

def _figures(study: StudyReportInput) -> dict[str, Any]:
    from f2b_study.report import figures as fig

    ev = study.evaluation
    out: dict[str, Any] = {}
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
    return {k: v for k, v in out.items() if v}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "figure"


def _section_table(table: Any, section: str, i: int) -> tb.Table:
    if isinstance(table, tb.Table):
        return table
    caption = str(table.get("caption", ""))
    match = re.match(r"\s*Table\s+(\w+)", caption)
    key = f"table{match.group(1).lower()}" if match else f"{_slug(section)}_{i + 1}"
    return tb.from_dict(table, key)


# -- rendering -------------------------------------------------------------------------------------------------------

def build_context(study: StudyReportInput) -> dict[str, Any]:
    """The template's context. ``export_tables`` (present.tabular.Table, in report order) and ``export_figures``
    ({name: SvgFigure}) are what the exports write."""
    from f2b_study.cohort.centre import LabelRules
    from f2b_study.report import clinical, methods
    from f2b_study.report.checklist import checklist, tripod_checklist
    from f2b_study.report.degenerate import assess
    from f2b_study.report.table1 import table1_table
    from f2b_study.stats.methods import methods_definitions

    ev = study.evaluation
    notes = tb.Footnotes()
    key = study.pseudonym_key or secrets.token_bytes(16)
    everything: list[tb.Table] = []

    def view(table: tb.Table | None) -> dict[str, Any] | None:
        if table is None:
            return None
        everything.append(table)
        return tb.html_view(table, notes)

    table1_views = [view(table1_table(result, caption, key=f"table1_{result.by}"))
                    for caption, result in study.table1]
    tables = {
        "table2": view(table2(study, TABLE2_WEIGHTED, "Index test and clinical comparators (the paper's Table 2 form; "
                              "precision, recall and F1 are support-weighted means)", "table2_weighted", "table2")),
        "table2_macro": view(table2(study, TABLE2_MACRO, "The same, with macro (unweighted) means of precision, "
                                    "recall and F1", "table2_macro", "table2-macro")),
        "table3": view(table3(ev, "Index test by bone status, one-vs-rest (the paper's Table 3 form)")),
    }
    tables["errors"] = view(errors_table(study, key))
    tables["diagnostic"] = view(clinical.diagnostic_table(ev))
    tables["calibration"] = view(calibration_table(study))
    tables["calibration_slope"] = view(clinical.calibration_slope_table(ev))
    tables["operating_points"] = view(clinical.operating_points_table(ev))
    tables["subgroup_tests"] = view(clinical.subgroup_tests_table(ev))
    subgroup_tables = [view(table4(study, column, levels))
                       for column, levels in (ev.get("subgroups") or {}).items() if levels]
    tables["comparison"] = view(comparison_table(study))
    multicentre_tables = [view(t) for t in centre_tables(study.multicentre)] if study.multicentre else []

    figures = {**_figures(study), **clinical.clinical_figures(ev, study.model_name)}
    export_figures = dict(figures)
    sections = []
    for section in study.explanations:
        hidden = section.contains_faces  # the report is shareable: faces go to the private outputs only
        names = list(section.figure_names) + [f"{_slug(section.title)}_{i + 1}"
                                              for i in range(len(section.figure_names), len(section.figures))]
        if not hidden:
            for name, svg in zip(names, section.figures, strict=False):
                export_figures[name] = svg
        sections.append({"title": section.title, "html": _trusted(section.html),
                         "figures": [] if hidden else [_trusted(f) for f in section.figures],
                         "tables": [view(_section_table(t, section.title, i)) for i, t in enumerate(section.tables)],
                         "hidden_note": "Figures with faces are left out: this report may be shared (with "
                                        "--include-faces they go to the private outputs only)." if hidden else ""})
    labelling = study.methods_labelling or methods.labelling_text([("", LabelRules())])
    facts = study.methods
    if facts is not None and study.simulated_labels and not facts.simulated_labels:
        facts = dataclasses.replace(facts, simulated_labels=True)
    undefined = sorted(ev.get("notes", {}).items())
    degenerate = assess(ev)
    return {
        "title": study.title,
        "disclaimer": DISCLAIMER,
        "version": __version__,
        "generated": study.generated or _dt.date.today().isoformat(),
        "cohorts": study.cohorts,
        "model_name": study.model_name,
        "simulated": study.simulated_labels,
        "degenerate": degenerate,
        "include_faces": study.include_faces,
        "source_note": study.source_note,
        "provenance": {k: v for k, v in (study.provenance or {}).items() if k != "warnings"},
        "provenance_warnings": _provenance_warnings(study.provenance),
        "methods": methods.methods_paragraphs(facts, ev, labelling=labelling, extra=study.methods_extra),
        "definitions": methods.statistical_definitions(ev) + methods_definitions(ev),
        "comparators": methods.comparators(ev),
        "flow": study.flow,
        "n": ev["n"],
        "support": dict(zip(CLASSES, ev.get("support", []), strict=False)),
        "figures": figures,
        "tables": tables,
        "subgroup_tables": subgroup_tables,
        "multicentre": study.multicentre,
        "multicentre_tables": multicentre_tables,
        "table1": table1_views,
        "explanations": sections,
        "pipeline_check": _pipeline_check(study.pipeline_check),
        "pooled_sections": [{"title": p.title, "html": _trusted(p.html), "figures": [_trusted(f) for f in p.figures],
                             "tables": [view(_section_table(t, p.title, i)) for i, t in enumerate(p.tables)]}
                            for p in study.pooled_sections],
        "undefined": undefined,
        "footnotes": notes.items,
        "checklist": checklist(study),
        "tripod": tripod_checklist(study),
        "pseudonym_stable": study.pseudonym_key is not None,
        "exports": None,
        "export_tables": everything,
        "export_figures": export_figures,
    }


def _pipeline_check(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """The positive control's banner text (None when there was none or it has no AUC)."""
    from f2b_study.present.format import interval, number

    if not check or check.get("auc") is None:
        return None
    ci = interval(check.get("auc_ci"))
    return {"target": check["target"], "auc_text": number(check["auc"]) + (f" (95% CI {ci})" if ci else ""),
            "accuracy_text": number(check.get("accuracy")), "n": (check.get("n_patients") or {}).get("validation"),
            "epochs": check.get("epochs_run")}


def _trusted(fragment: str) -> Any:
    from markupsafe import Markup

    return Markup(fragment)


def environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _render(context: dict[str, Any]) -> str:
    from f2b_study.report.screening import stylesheet

    shown = dict(context)
    from f2b_study.present.style import svg_width_pt

    shown["figures"] = {k: _trusted(v) for k, v in context["figures"].items() if v}
    shown["widths"] = {k: f"{svg_width_pt(v) or 300:.0f}" for k, v in context["figures"].items() if v}
    shown["css"] = _trusted(stylesheet())
    return environment().get_template(TEMPLATE).render(**shown)


def render_stard_report(study: StudyReportInput) -> str:
    """The report as one HTML string (no files written beside it)."""
    return _render(build_context(study))


EXPORT_NAMES = {"xlsx": "tables.xlsx", "csv": "tables", "figures": "figures"}


def write_exports(context: dict[str, Any], folder: Path) -> dict[str, Path]:
    """tables.xlsx (a sheet per table), tables/<key>.csv and figures/<name>.svg + .png (300 dpi) under ``folder``."""
    from f2b_study.atomic import write_bytes, write_text
    from f2b_study.present.style import standalone_svg

    written: dict[str, Path] = {}
    tables: list[tb.Table] = context["export_tables"]
    if tables:
        written["tables_xlsx"] = tb.write_xlsx(tables, folder / EXPORT_NAMES["xlsx"])
        for table, stem in zip(tables, tb.file_stems(tables), strict=True):
            target = folder / EXPORT_NAMES["csv"] / f"{stem}.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_text(target, tb.csv_text(table))
            written[f"table_{stem}"] = target
    for name, svg in context["export_figures"].items():
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", name)
        target = folder / EXPORT_NAMES["figures"] / f"{stem}.svg"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text(target, standalone_svg(svg))
        written[f"figure_{stem}_svg"] = target
        png = svg.png() if hasattr(svg, "png") else None
        if png:
            write_bytes(target.with_suffix(".png"), png)
            written[f"figure_{stem}_png"] = target.with_suffix(".png")
    return written


def write_stard_report(study: StudyReportInput, target: str | Path, exports: bool = True) -> Path:
    """The report at ``target`` and, with ``exports``, its tables and figures beside it (write_exports)."""
    from f2b_study.atomic import write_text

    target = Path(target)
    context = build_context(study)
    if exports:
        target.parent.mkdir(parents=True, exist_ok=True)
        written = write_exports(context, target.parent)
        context["exports"] = {"xlsx": EXPORT_NAMES["xlsx"] if "tables_xlsx" in written else None,
                              "csv": EXPORT_NAMES["csv"] + "/" if any(k.startswith("table_") for k in written)
                              else None,
                              "figures": EXPORT_NAMES["figures"] + "/" if any(k.startswith("figure_") for k in written)
                              else None}
    write_text(target, _render(context))
    return target
