"""The report's clinical-utility tables (beyond the paper): diagnostic accuracy with Wilson intervals, calibration
intercept and slope, the screening operating points and the tests of subgroup differences. Every number comes
from the evaluation (`stats.evaluation`); a null carries its reason from the evaluation's notes."""

from __future__ import annotations

from typing import Any

from f2b_study import CLASSES
from f2b_study.present import tabular as tb
from f2b_study.present.labels import column_label, level_label

DECISIONS = {"osteoporosis": "Osteoporosis (p_osteoporosis ≥ t)",
             "low_bone_mass": "Low bone mass (1 − p_normal ≥ t)"}


def _note(ev: dict[str, Any], path: str) -> str | None:
    return (ev.get("notes") or {}).get(path)


def diagnostic_table(ev: dict[str, Any]) -> tb.Table:
    """Sensitivity, specificity, PPV and NPV per class (one-vs-rest on the predicted class), Wilson 95% CIs."""
    keys = ("sensitivity", "specificity", "ppv", "npv")
    rows = []
    for name in CLASSES:
        pc = ev["per_class"][name]
        rows.append(tb.Row([tb.text(level_label("bone_status", name)),
                            *[tb.num(pc.get(k), pc.get(f"{k}_ci"), _note(ev, f"per_class.{name}.{k}")) for k in keys]]))
    columns = [tb.Column("Class (vs rest)", tb.TEXT),
               *[tb.Column(h, ci=True) for h in ("Sensitivity", "Specificity", "PPV", "NPV")]]
    return tb.Table(key="diagnostic_accuracy", caption="Diagnostic accuracy of the predicted class, one-vs-rest "
                    "(STARD item 24), with Wilson 95% confidence intervals", columns=columns, rows=rows,
                    id="diagnostic-accuracy")


def calibration_slope_table(ev: dict[str, Any]) -> tb.Table:
    """Calibration-in-the-large (intercept) and calibration slope per class, 95% Wald CIs."""
    rows = []
    for name in CLASSES:
        pc = ev["per_class"][name]
        rows.append(tb.Row([
            tb.text(level_label("bone_status", name)),
            tb.num(pc.get("calibration_intercept"), pc.get("calibration_intercept_ci"),
                   _note(ev, f"per_class.{name}.calibration_intercept")),
            tb.num(pc.get("calibration_slope"), pc.get("calibration_slope_ci"),
                   _note(ev, f"per_class.{name}.calibration_slope"))]))
    columns = [tb.Column("Class (vs rest)", tb.TEXT), tb.Column("Calibration intercept", ci=True),
               tb.Column("Calibration slope", ci=True)]
    return tb.Table(key="calibration_slope", caption="Calibration intercept (0 = predicted risks right on average) "
                    "and slope (1 = neither too extreme nor too modest), one-vs-rest, with 95% Wald intervals",
                    columns=columns, rows=rows, id="calibration-slope")


def operating_points_table(ev: dict[str, Any]) -> tb.Table | None:
    """Each decision's operating points: pre-specified thresholds, or those reaching sensitivity 0.90 / 0.95."""
    rows = []
    for decision, points in (ev.get("operating_points") or {}).items():
        for point in points or []:
            target = point.get("target_sensitivity")
            basis = point["basis"] + (f", sensitivity ≥ {target:.2f}" if target is not None else "")
            rows.append(tb.Row([
                tb.text(DECISIONS.get(decision, decision)), tb.text(basis), tb.num(point.get("threshold")),
                tb.num(point.get("sensitivity"), point.get("sensitivity_ci")),
                tb.num(point.get("specificity"), point.get("specificity_ci")),
                tb.num(point.get("referrals_per_1000")), tb.num(point.get("missed_per_1000")),
                tb.num(point.get("scans_avoided_per_1000"))]))
    if not rows:
        return None
    columns = [tb.Column("Decision", tb.TEXT), tb.Column("Threshold basis", tb.TEXT), tb.Column("t", digits=3),
               tb.Column("Sensitivity", ci=True), tb.Column("Specificity", ci=True),
               tb.Column("DXA referrals per 1,000", digits=0), tb.Column("Missed cases per 1,000", digits=0),
               tb.Column("Scans avoided per 1,000 (vs refer-all)", digits=0)]
    return tb.Table(key="operating_points", caption="Screening operating points: refer to DXA when the model's "
                    "probability reaches t. Data-derived thresholds are chosen on these patients and are optimistic; "
                    "pre-specified ones come from the study's [screening] configuration", columns=columns,
                    rows=rows, id="operating-points")


def subgroup_tests_table(ev: dict[str, Any]) -> tb.Table | None:
    """AUC differences between subgroup levels (DeLong for two independent ROC curves) or their heterogeneity."""
    rows = []
    for column, tests in (ev.get("subgroup_tests") or {}).items():
        if not isinstance(tests, dict):
            continue
        group = column_label(column)
        levels = [level_label(column, level) for level in tests.get("levels") or []]
        for name in (*CLASSES, "macro"):
            test = tests.get(name)
            label = "macro OvR" if name == "macro" else f"{level_label('bone_status', name)} vs rest"
            reason = _note(ev, f"subgroup_tests.{column}.{name}")
            if not test:
                rows.append(tb.Row([tb.text(group), tb.text(label), tb.text("", note=reason or "not defined"),
                                    tb.Cell(), tb.Cell(), tb.Cell()]))
                continue
            if "auc_difference" in test:
                what = f"{levels[0]} − {levels[1]}" if len(levels) == 2 else "difference"
                rows.append(tb.Row([tb.text(group), tb.text(label), tb.text(what),
                                    tb.num(test["auc_difference"], test.get("auc_difference_ci")),
                                    tb.num(test.get("z")), tb.num(test.get("p"))]))
            else:
                rows.append(tb.Row([tb.text(group), tb.text(label),
                                    tb.text(f"heterogeneity over {len(levels)} levels (Cochran's Q)"),
                                    tb.Cell(), tb.num(test.get("q")), tb.num(test.get("p"))]))
    if not rows:
        return None
    columns = [tb.Column("Subgroup", tb.TEXT), tb.Column("AUC", tb.TEXT), tb.Column("Comparison", tb.TEXT),
               tb.Column("AUC difference", ci=True), tb.Column("Statistic", digits=2), tb.Column("p", tb.P)]
    return tb.Table(key="subgroup_tests", caption="Do the subgroups differ? AUC differences between two levels by "
                    "DeLong's test for two independent ROC curves (t statistic, as R pROC's roc.test), heterogeneity "
                    "across more levels by Cochran's Q", columns=columns, rows=rows, id="subgroup-tests")


def clinical_figures(ev: dict[str, Any], model_name: str) -> dict[str, Any]:
    """Decision curves of the index test and each comparator; the flexible calibration curves."""
    from f2b_study.report.clinical_figures import decision_curves_svg, flexible_calibration_svg

    out: dict[str, Any] = {}
    curves = {model_name: ev.get("decision_curves") or {}}
    for comp in (ev.get("comparators") or {}).values():
        cev = comp.get("evaluation")
        if cev and cev.get("decision_curves"):
            curves[comp["label"]] = cev["decision_curves"]
    if any(curves.values()):
        out["decision_curves"] = decision_curves_svg(curves, "dca")
    flexible = (ev.get("curves") or {}).get("flexible_calibration")
    if flexible:
        out["flexible_calibration"] = flexible_calibration_svg(
            flexible, CLASSES, "flex", reliability=(ev.get("curves") or {}).get("reliability"),
            per_class=ev.get("per_class"))
    return {k: v for k, v in out.items() if v}
