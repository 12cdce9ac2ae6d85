"""`f2b-study evaluate`: every statistic (docs/methods.md) of a predictions file, as JSON and a STARD-style report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, json_safe, print_json

DEFAULT_BY = "sex,center,age_band"


def register(sub: Any) -> None:
    parser = add_command(
        sub, "evaluate", help="accuracy, AUC, calibration and subgroups of a predictions file, with 95%% CIs",
        description="Evaluate predictions against the reference standard (docs/methods.md): accuracy, per-class "
        "(one-vs-rest) precision, recall, F1, AUC with DeLong CIs, Cohen's kappa, ECE, Brier, Hosmer–Lemeshow, "
        "patient-level bootstrap CIs, subgroups, and the clinical comparators (OSTA, and a multinomial logistic "
        "model on age, sex and BMI fitted on the training split) where the covariates are there; decision curves, "
        "calibration intercept and slope, sensitivity/specificity/PPV/NPV with Wilson CIs, screening operating "
        "points, weighted kappa and tests of subgroup differences. Rows with "
        "split = train are not evaluated; they fit the comparator. Writes, under OUT/shareable/ (aggregates and "
        "pseudonyms only), evaluation.json, comparators.json, decision_curves.svg, calibration_curves.svg and "
        "report.html (STARD-style, what a predictions file can fill, with tables.xlsx and figures). With "
        "--compare, also compares the models on the same patients: comparison.json, comparison.csv and "
        "comparison.svg (paired DeLong tests per class and macro, difference in net benefit).",
        examples="  f2b-study evaluate reports/demo/private/predictions.csv --out reports/demo-evaluation\n"
        "  f2b-study evaluate predictions.csv --out reports/a --json --by sex,age_band\n"
        "  f2b-study evaluate test_predictions.csv --out reports/b --train train_covariates.csv\n"
        "  f2b-study evaluate runs/resnet34/val_predictions.csv --compare runs/vit/val_predictions.csv --out cmp\n"
        "  f2b-study evaluate predictions.csv --out r --threshold osteoporosis=0.2 --threshold low_bone_mass=0.5\n")
    parser.add_argument("predictions", type=Path, help="CSV/XLSX: patient_id, bone_status, p_normal, p_osteopenia, "
                        "p_osteoporosis (+ optional split, sex, center, age_years, weight_kg, height_cm, bmi)")
    parser.add_argument("--out", type=Path, required=True, help="folder for evaluation.json, comparators.json, "
                        "report.html")
    parser.add_argument("--json", action="store_true", help="print the evaluation JSON to stdout")
    parser.add_argument("--by", default=None, help=f"subgroup columns, comma-separated (default: those of "
                        f"{DEFAULT_BY} present; '' for none)")
    parser.add_argument("--train", type=Path, help="training patients (patient_id, bone_status, age_years, sex, "
                        "bmi or height/weight) to fit the clinical comparator; replaces the file's split = train rows")
    parser.add_argument("--config", type=Path, help="the study's cohort config (.toml): its [report] (bootstrap, seed, "
                        "title, simulated labels), [screening] (pre-specified thresholds) and [privacy] (the "
                        "pseudonym key) apply; flags override them")
    parser.add_argument("--bootstrap", type=int, default=None, metavar="B",
                        help="bootstrap replicates (default 2000; 0 = none)")
    parser.add_argument("--seed", type=int, default=None, help="bootstrap seed (default 42)")
    parser.add_argument("--key-file", help="the study's pseudonym key (default: the key store's key of the study "
                        "named by --config, else of the predictions file's folder)")
    parser.add_argument("--compare", type=Path, nargs="+", metavar="B.csv",
                        help="other models' predictions on the same patients: compared with the first file")
    parser.add_argument("--threshold", action="append", default=[], metavar="DECISION=T",
                        help="a pre-specified screening threshold (osteoporosis=T or low_bone_mass=T; repeatable), "
                        "reported as a pre-specified operating point")
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    parser.add_argument("--title", help="report title")
    parser.add_argument("--simulated-labels", action="store_const", const=True,
                        help="the labels are simulated (the demo): the report says so in a banner")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from f2b_study.atomic import write_text
    from f2b_study.errors import InputError
    from f2b_study.stats.evaluation import evaluate_predictions, subgroup_values, to_document
    from f2b_study.stats.predictions import read_predictions, read_training_rows

    study = resolve_settings(args)
    replicates, seed = study.report.bootstrap, study.report.bootstrap_seed
    prespecified = {name: value for name, value in (("osteoporosis", study.screening.osteoporosis_threshold),
                                                    ("low_bone_mass", study.screening.low_bone_mass_threshold))
                    if value is not None}
    prespecified.update(parse_thresholds(args.threshold))
    ps = read_predictions(args.predictions)
    others = [read_predictions(path) for path in args.compare or []]
    if others:
        from f2b_study.stats.compare import align

        align([ps, *others])  # same patients and classes, or exit 2 naming the file, before any work
    if args.train:
        ps.train = read_training_rows(args.train)
    if args.by is None:
        by = [c for c in DEFAULT_BY.split(",") if subgroup_values(ps, c) is not None]
    else:
        by = [c.strip() for c in args.by.split(",") if c.strip()]
        for column in by:
            if column != "age_band" and column not in ps.evaluated.columns:
                raise InputError.at(args.predictions, column=column, show_value=False,
                                    expected=f"a '{column}' column for --by (or age_band from age_years)")

    from f2b_study.outputs import prepare_outputs
    from f2b_study.runlock import run_lock

    with run_lock(args.out, "evaluate"), tqdm(desc="evaluate", unit="step", file=sys.stderr, leave=False,
                                               disable=not sys.stderr.isatty()) as bar:
        shared = prepare_outputs(args.out).shareable  # aggregates and pseudonyms only

        def step(message: str) -> None:
            bar.set_postfix_str(message)
            bar.update(1)

        full = evaluate_predictions(ps, by=by, replicates=replicates, seed=seed, prespecified=prespecified,
                                    progress=step)
        document = to_document(full)
        write_text(shared / "evaluation.json", _dumps(document))
        write_text(shared / "comparators.json", _dumps(comparators_document(full)))
        step("figures")
        write_clinical_figures(shared, full, document)
        comparison = None
        if others:
            step("model comparison")
            comparison = write_comparison(shared, [args.predictions, *args.compare], [ps, *others], replicates,
                                          seed)
        if not args.no_report:
            step("report")
            from f2b_study.report.stard import write_stard_report

            write_stard_report(build_report(args, study, ps, full), shared / "report.html")
    if args.json:
        print_json(document)
    else:
        print(summary(document, shared, not args.no_report))
        if comparison:
            print(comparison_summary(comparison, shared))
    return 0


def write_clinical_figures(out: Path, full: dict[str, Any], document: dict[str, Any]) -> None:
    """decision_curves.svg (index test, comparators, refer-all/none) and calibration_curves.svg (spline curves with
    bootstrap bands over the reliability bins)."""
    from f2b_study import CLASSES
    from f2b_study.atomic import write_text
    from f2b_study.report.clinical_figures import decision_curves_svg, flexible_calibration_svg

    labels = {"osta": "OSTA (fixed rule)", "clinical_logit": "Clinical model (age, sex, BMI)"}
    models = {"Index test (face model)": document["decision_curves"]}
    models.update({labels.get(k, k): v for k, v in document["decision_curves_comparators"].items() if v})
    figures = {"decision_curves.svg": decision_curves_svg(models, "dc"),
               "calibration_curves.svg": flexible_calibration_svg(
                   full.get("curves", {}).get("flexible_calibration", {}), CLASSES, "fc",
                   reliability=full.get("curves", {}).get("reliability"), per_class=document["per_class"])}
    for name, svg in figures.items():
        if svg:
            write_text(out / name, svg + "\n")


def parse_thresholds(items: list[str]) -> dict[str, float]:
    """--threshold osteoporosis=0.2 --threshold low_bone_mass=0.5 -> {decision: threshold}."""
    from f2b_study.errors import InputError
    from f2b_study.stats.decision import DECISIONS

    out: dict[str, float] = {}
    for item in items:
        decision, _, value = item.partition("=")
        decision = decision.strip()
        try:
            threshold = float(value)
        except ValueError:
            threshold = float("nan")
        if decision not in DECISIONS or not 0.0 <= threshold <= 1.0:
            raise InputError.at("--threshold", value=item,
                                expected=f"DECISION=T with DECISION one of {', '.join(DECISIONS)} and T from 0 to 1")
        if decision in out:
            raise InputError.at("--threshold", value=item, expected=f"one threshold per decision ({decision} twice)")
        out[decision] = threshold
    return out


def write_comparison(out: Path, paths: list[Path], sets: list[Any], replicates: int, seed: int) -> dict[str, Any]:
    """comparison.json, comparison.csv and comparison.svg for the models of ``paths`` (the first is the reference)."""
    import polars as pl

    from f2b_study.atomic import write_text
    from f2b_study.report.clinical_figures import model_comparison_svg
    from f2b_study.stats.compare import align, compare_models, comparison_rows, model_names
    from f2b_study.tables import write_csv

    names = model_names([str(p) for p in paths])
    _ids, y, probas = align(sets)
    comparison = compare_models(names, y, probas, replicates=replicates, seed=seed)
    comparison["files"] = {name: str(path) for name, path in zip(names, paths, strict=True)}
    write_text(out / "comparison.json", _dumps(comparison))
    write_csv(pl.DataFrame(comparison_rows(comparison), infer_schema_length=None), out / "comparison.csv")
    write_text(out / "comparison.svg", model_comparison_svg(comparison, "cmp") + "\n")
    return comparison


def comparison_summary(comparison: dict[str, Any], out: Path) -> str:
    lines = [f"compared {len(comparison['models'])} models on {comparison['n']} patients -> "
             f"{out / 'comparison.csv'}, {out / 'comparison.json'}, {out / 'comparison.svg'}"]
    for name, model in comparison["models"].items():
        macro = model["auc"]["macro"]
        text = f"  {name}: macro AUC {macro['auc']:.3f}" if macro["auc"] is not None else f"  {name}: macro AUC —"
        test = (comparison["versus"].get(name) or {}).get("delong_paired", {}).get("macro")
        if test and test["p"] is not None:
            text += f"  ({comparison['reference']} − {name}: {test['difference']:+.3f}, p = {test['p']:.3g})"
        lines.append(text)
    return "\n".join(lines)


def _dumps(value: Any) -> str:
    return json.dumps(json_safe(value), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def comparators_document(full: dict[str, Any]) -> dict[str, Any]:
    from f2b_study.stats.evaluation import to_document

    out = {}
    for key, comp in (full.get("comparators") or {}).items():
        out[key] = {"label": comp["label"], "description": comp.get("description"), "n": comp["n"],
                    "reason": comp.get("reason"),
                    "evaluation": to_document(comp["evaluation"]) if comp.get("evaluation") else None,
                    "delong_vs_model": comp.get("comparison")}
        if "coefficients" in comp:
            out[key]["coefficients"] = comp["coefficients"]
    return out


def resolve_settings(args: argparse.Namespace) -> Any:
    """The study's [report], [screening] and [privacy] from --config (or the defaults), with the flags over them;
    the study's name keys its pseudonyms."""
    from f2b_study.config import load_study

    flags = {"report": {"bootstrap": args.bootstrap, "bootstrap_seed": args.seed, "title": args.title,
                        "simulated_labels": args.simulated_labels},
             "privacy": {"key_file": args.key_file}}
    if args.config is not None:
        return load_study([args.config], flags)
    # no config: a study of the predictions file alone, named after its folder (reports/NAME/predictions.csv)
    return load_study([args.predictions], flags)


def build_report(args: argparse.Namespace, study: Any, ps: Any, full: dict[str, Any]) -> Any:
    import polars as pl

    from f2b_study import CLASSES
    from f2b_study.privacy import study_key
    from f2b_study.report.stard import StudyReportInput
    from f2b_study.stats.table1 import table1

    splits = {}
    by_class: dict[str, dict[str, int]] = {}
    rows = pl.concat([ps.train.select("split", "bone_status"),
                      ps.evaluated.select(pl.col("split").fill_null("evaluated"), "bone_status")])
    for (split,), group in rows.group_by("split", maintain_order=True):
        splits[str(split)] = group.height
        counts = dict(group.group_by("bone_status").len().iter_rows())
        by_class[str(split)] = {c: counts[c] for c in CLASSES if c in counts}
    blocks = []
    variables = [v for v in ("sex", "age_years", "height_cm", "weight_kg", "bmi")
                 if ps.evaluated[v].null_count() < ps.evaluated.height]
    if variables:
        blocks.append(("Evaluated patients by bone status", table1(ps.evaluated, "bone_status", variables)))
        if len(splits) > 1:
            both = pl.concat([ps.train.select("split", "bone_status", *variables),
                              ps.evaluated.select(pl.col("split").fill_null("evaluated"), "bone_status", *variables)],
                             how="vertical_relaxed")
            blocks.append(("Patients by split", table1(both, "split", ["bone_status", *variables])))
    flow: dict[str, Any] = {"split": splits, "by_class": by_class}
    if ps.excluded:
        kept = ps.train.height + ps.evaluated.height
        flow.update(enrolled=kept + sum(ps.excluded.values()), excluded=ps.excluded, eligible=kept,
                    labels={"enrolled": "Rows in the predictions file", "excluded": "Left out",
                            "eligible": "WHO class and prediction"})
    study = StudyReportInput(
        title=study.report.title or f"Diagnostic accuracy of {args.predictions.name}",
        evaluation=full,
        flow=flow,
        table1=blocks,
        simulated_labels=study.report.simulated_labels,
        pseudonym_key=study_key(study.name if args.config else args.predictions.resolve().parent.name,
                                key_file=study.privacy.key_file, outputs=args.out),
        source_note=f"Evaluated from the predictions file {args.predictions.name} by f2b-study evaluate: the "
                    "participant flow before prediction and the model's provenance are not in such a file.",
    )
    return study


def summary(document: dict[str, Any], out: Path, report: bool) -> str:
    o = document["overall"]

    def f(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    ci = document["ci"]

    def c(key: str) -> str:
        from f2b_study.present.format import interval

        text = interval(ci.get(key))
        return f" ({text})" if text else ""

    lines = [f"evaluated {document['n']} patients -> {out / 'evaluation.json'}"
             + (f", {out / 'report.html'}" if report else ""),
             f"  accuracy {f(o['accuracy'])}{c('accuracy')}  macro AUC {f(o['auc_macro_ovr'])}{c('auc_macro_ovr')}  "
             f"kappa {f(o['kappa'])}{c('kappa')}",
             f"  F1 macro {f(o['f1_macro'])}  F1 weighted {f(o['f1_weighted'])}  ECE {f(o['ece'])}  "
             f"Brier {f(o['brier'])}"]
    lines.append(f"  weighted kappa linear {f(o['kappa_linear'])}{c('kappa_linear')}  quadratic "
                 f"{f(o['kappa_quadratic'])}{c('kappa_quadratic')}")
    for name, pc in document["per_class"].items():
        lines.append(f"  {name:<13} recall {f(pc['recall'])}  precision {f(pc['precision'])}  AUC {f(pc['auc'])}  "
                     f"calibration slope {f(pc['calibration_slope'])}")
    for decision, points in document["operating_points"].items():
        for point in points or []:
            basis = point["basis"] if point["target_sensitivity"] is None else \
                f"{point['basis']}, sensitivity ≥ {point['target_sensitivity']:.2f}"
            lines.append(f"  refer for {decision.replace('_', ' ')} at p ≥ {point['threshold']:.3g} ({basis}): "
                         f"{point['referrals_per_1000']:.0f} DXA referrals and {point['missed_per_1000']:.0f} missed "
                         f"cases per 1,000, specificity {f(point['specificity'])}")
    from f2b_study.report.degenerate import assess

    degenerate = assess(document).console_line()
    if degenerate:
        lines.insert(1, f"  {degenerate}")
    if document["notes"]:
        lines.append(f"  {len(document['notes'])} note(s) (why a value is null, how it was computed): see "
                     "evaluation.json 'notes'")
    return "\n".join(lines)
