"""`f2b-study table1`: the paper's Table 1 on any table with a grouping column."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, print_json


def register(sub: Any) -> None:
    parser = add_command(
        sub, "table1", help="baseline characteristics (Table 1) by split, bone status, sex or centre",
        description="Baseline table in the paper's form: an overall column and one per group; n (%) for "
        "categorical variables, mean ± SD or median (IQR) by Shapiro–Wilk; each p-value names its test. "
        "Works on any table with the grouping column (a labelled cohort, a split file, a predictions file). "
        "When the table has an 'eligible' column, only eligible rows are described unless --all-rows.",
        examples="  f2b-study table1 reports/demo/labelled.csv --by bone_status\n"
        "  f2b-study table1 runs/demo/split.csv --by split --out reports/demo/table1_split.html\n"
        "  f2b-study table1 cohort.csv --by sex --vars age_years,bmi,center --json\n")
    parser.add_argument("table", help="a CSV/XLSX table, or a cohort config (.toml: its table is labelled first)")
    parser.add_argument("--by", required=True, help="grouping column, e.g. split, bone_status, sex, center")
    parser.add_argument("--vars", help="comma-separated variables (default: sex, bone_status, age_years, "
                        "height_cm, weight_kg, bmi, those present)")
    parser.add_argument("--out", type=Path, help="write the table to FILE.csv, FILE.xlsx or FILE.html")
    parser.add_argument("--all-rows", action="store_true", help="include rows with eligible = false")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from f2b_study.errors import InputError
    from f2b_study.stats.table1 import ROW, footnote, table1, to_records
    from f2b_study.tables import FIRST_DATA_ROW, read_table

    source = Path(args.table)
    if source.suffix.lower() == ".toml":
        from f2b_study.cohort.label import label
        from f2b_study.cohort.schema import load_cohort
        from f2b_study.config import load_study

        # keeps the spreadsheet row of each record for error messages
        frame = label(load_cohort(load_study([source]).centres[0]))
    else:
        frame = read_table(source).with_row_index(ROW, offset=FIRST_DATA_ROW)
    if args.by not in frame.columns:
        raise InputError.at(source, column=args.by, show_value=False,
                            expected=f"the grouping column '{args.by}' (columns: {', '.join(frame.columns[:15])})")
    variables = [v.strip() for v in args.vars.split(",") if v.strip()] if args.vars else None
    for variable in variables or []:
        if variable not in frame.columns:
            raise InputError.at(source, column=variable, show_value=False, expected="a column of the table (--vars)")
    notes = []
    if "eligible" in frame.columns and not args.all_rows:
        eligible = pl.col("eligible").cast(pl.String).str.to_lowercase().is_in(["true", "1", "yes"])
        left_out = frame.filter(~eligible).height
        frame = frame.filter(eligible)
        if left_out:
            notes.append(f"{left_out} row(s) with eligible = false left out (--all-rows includes them)")
    result = table1(frame, args.by, variables, source=str(source))
    result.notes = notes + result.notes
    if args.out:
        from f2b_study.report.table1 import write_table1

        write_table1(result, args.out, f"Table 1 by {result.by} ({source.name})")
    if args.json:
        print_json(result.to_json())
    else:
        records = to_records(result)
        print(format_text(records))
        for note in [footnote(result), *result.notes]:
            if not note:
                continue
            print(f"note: {note}")
    return 0


def format_text(records: list[dict[str, str]]) -> str:
    if not records:
        return ""
    columns = list(records[0].keys())
    rows = [[r[c] for c in columns] for r in records]
    header = ["" if c in ("variable", "level") else c for c in columns]
    widths = [max(len(str(x)) for x in [h, *[row[i] for row in rows]]) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header)] + [line(r) for r in rows])
