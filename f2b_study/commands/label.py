"""`f2b-study label`: WHO/ISCD labels and eligibility for every row of a cohort."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, print_json, warn


def register(sub: Any) -> None:
    parser = add_command(
        sub, "label", help="WHO/ISCD bone-status labels and eligibility, every row kept with a reason",
        description="Label bone status by the WHO criteria on the lowest T-score (ISCD rule), apply the "
        "inclusion and exclusion rules, and write the cohort back with bone_status, lowest_t_score, "
        "lowest_t_site, eligible and exclusion_reason added. Rows are never dropped.",
        examples="  f2b-study label cohorts/demo.toml\n"
        "  f2b-study label dxa_export.xlsx --out reports/centre_a/labelled.csv --json\n")
    parser.add_argument("cohort", help="cohort table (.csv/.xlsx) or cohort config (.toml)")
    parser.add_argument("--out", type=Path, help="labelled CSV to write (default reports/<cohort>/labelled.csv)")
    parser.add_argument("--json", action="store_true", help="print counts by status and reason as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from f2b_study.cohort.label import label
    from f2b_study.cohort.schema import ROW, load_cohort
    from f2b_study.tables import write_csv

    cohort = load_cohort(args.cohort)
    labelled = label(cohort)
    out = args.out or Path("reports") / cohort.name / "labelled.csv"
    write_csv(labelled.drop(ROW), out)
    summary = summarise(labelled)
    summary.update(input=str(cohort.config.table), output=str(out), warnings=cohort.warnings)
    for message in cohort.warnings:
        warn("label", message)
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def summarise(labelled: Any) -> dict[str, Any]:
    import polars as pl

    from f2b_study import CLASSES

    eligible = labelled.filter(pl.col("eligible"))
    status_counts = dict(eligible.group_by("bone_status").len().iter_rows())
    ordered = [c for c in CLASSES if c in status_counts] + sorted(
        str(k) for k in status_counts if k not in CLASSES)
    reasons = labelled.filter(~pl.col("eligible")).group_by("exclusion_reason").len().sort(
        ["len", "exclusion_reason"], descending=[True, False])
    return {
        "n_rows": labelled.height,
        "eligible": eligible.height,
        "excluded": labelled.height - eligible.height,
        "by_status": {k: status_counts[k] for k in ordered},
        "by_reason": dict(reasons.iter_rows()),
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"labelled {summary['n_rows']} rows of {summary['input']} -> {summary['output']}",
             f"eligible  {summary['eligible']:>7}"]
    lines += [f"  {status:<30} {n:>7}" for status, n in summary["by_status"].items()]
    lines.append(f"excluded  {summary['excluded']:>7}")
    lines += [f"  {reason:<30} {n:>7}" for reason, n in summary["by_reason"].items()]
    return "\n".join(lines)
