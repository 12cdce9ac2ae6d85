"""`f2b-study label`: WHO/ISCD labels and eligibility for every row of a cohort."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, print_json, warn


def register(sub: Any) -> None:
    parser = add_command(
        sub, "label", help="WHO/ISCD bone-status labels and eligibility, every row kept with a reason",
        description="Label bone status by the WHO criteria on the lowest T-score (ISCD rule), apply the "
        "inclusion and exclusion rules, and write the cohort back with bone_status, lowest_t_score, "
        "lowest_t_site, eligible and exclusion_reason added. Rows are never dropped. A CSV streams through "
        "(polars lazy queries), so tables of tens of millions of rows label in bounded memory.",
        examples="  f2b-study label cohorts/demo.toml\n"
        "  f2b-study label dxa_export.xlsx --out reports/centre_a/labelled.csv --json\n")
    parser.add_argument("cohort", help="cohort table (.csv/.xlsx) or cohort config (.toml)")
    parser.add_argument("--out", type=Path, help="labelled CSV to write, owner-only (default "
                        "reports/<cohort>/private/labelled.csv)")
    parser.add_argument("--json", action="store_true", help="print counts by status and reason as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from f2b_study.atomic import atomic_path
    from f2b_study.cohort.label import label_frame
    from f2b_study.cohort.scan import csv_errors
    from f2b_study.cohort.schema import ROW, scan_cohort
    from f2b_study.config import load_study
    from f2b_study.tables import neutralise_formulas

    centre = load_study([args.cohort]).centres[0]  # the whole config is checked, not only [columns] and [rules]
    cohort = scan_cohort(centre)  # every check has run; nothing is written before this line
    labelled = label_frame(cohort.frame, cohort.config.rules)
    if args.out is None:  # one row per patient: the private outputs (0700)
        from f2b_study.outputs import prepare_outputs

        out = prepare_outputs(Path("reports") / cohort.name).private / "labelled.csv"
    else:
        out = args.out
    rows = neutralise_formulas(labelled.drop(ROW))  # an ID like =HYPERLINK(...) must not run in a spreadsheet
    with csv_errors(cohort.config.table), atomic_path(out, suffix=".csv") as tmp:
        # one streaming pass writes the rows and counts them
        _, counts = pl.collect_all([rows.sink_csv(tmp, lazy=True), status_counts(labelled)], engine="streaming")
    os.chmod(out, 0o600)  # patient-level rows: owner-only wherever they are written
    summary = summarise(counts)
    summary.update(input=str(cohort.config.table), output=str(out), warnings=cohort.warnings)
    for message in cohort.warnings:
        warn("label", message)
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def status_counts(labelled: Any) -> Any:
    """Rows per (eligible, bone_status, exclusion_reason): a LazyFrame, whatever ``labelled`` is."""
    return labelled.lazy().group_by("eligible", "bone_status", "exclusion_reason").len()


def summarise(counts: Any) -> dict[str, Any]:
    """Counts by status and reason from `status_counts` (its result, or a labelled frame to count)."""
    import polars as pl

    from f2b_study import CLASSES

    if "len" not in counts.collect_schema().names():
        counts = status_counts(counts)
    counts = counts.lazy().collect()
    eligible = counts.filter(pl.col("eligible"))
    by_status = dict(eligible.group_by("bone_status").agg(pl.col("len").sum()).iter_rows())
    ordered = [c for c in CLASSES if c in by_status] + sorted(str(k) for k in by_status if k not in CLASSES)
    reasons = counts.filter(~pl.col("eligible")).group_by("exclusion_reason").agg(pl.col("len").sum()).sort(
        ["len", "exclusion_reason"], descending=[True, False])
    n_rows, n_eligible = int(counts["len"].sum()), int(eligible["len"].sum())
    return {
        "n_rows": n_rows,
        "eligible": n_eligible,
        "excluded": n_rows - n_eligible,
        "by_status": {k: by_status[k] for k in ordered},
        "by_reason": dict(reasons.iter_rows()),
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"labelled {summary['n_rows']} rows of {summary['input']} -> {summary['output']}",
             f"eligible  {summary['eligible']:>7}"]
    lines += [f"  {status:<30} {n:>7}" for status, n in summary["by_status"].items()]
    lines.append(f"excluded  {summary['excluded']:>7}")
    lines += [f"  {reason:<30} {n:>7}" for reason, n in summary["by_reason"].items()]
    return "\n".join(lines)
