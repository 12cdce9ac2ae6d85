"""Table 1 (baseline characteristics) as a report table: the one place its HTML is made (the STARD report and
`f2b-study table1 --out FILE.html`), and its XLSX/CSV rows.

Reads the stats.table1 result as it is: each row's kind (n (%), mean ± SD or median (IQR)) is the row's own
``summary`` field; the numbers are read from the cells stats.table1 wrote and shown with one precision per kind
(DECIMALS), so "168.11 ± 9.79" and "63.0" never sit side by side. The footnote is stats.table1.footnote (which
rows are which summary, and the rule that chose it), plus which test compared the groups.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from f2b_study.present import format as fmt
from f2b_study.present import tabular as tb
from f2b_study.present.labels import level_label

CATEGORICAL, MEAN_SD, MEDIAN_IQR, COUNT = "n (%)", "mean ± SD", "median (IQR)", "n"
DECIMALS = {MEAN_SD: 1, MEDIAN_IQR: 1, CATEGORICAL: 1}  # continuous summaries and percentages: one decimal

_NUMBER = r"[-−]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan"
_MISSING = re.compile(r"\s*\[missing (\d+)\]\s*$")
_MEAN_SD = re.compile(rf"^({_NUMBER}) ± ({_NUMBER})$")
_MEDIAN_IQR = re.compile(rf"^({_NUMBER}) \(({_NUMBER})[–-]({_NUMBER})\)$")
_COUNT_PCT = re.compile(rf"^(\d+) \(({_NUMBER}|–|—)\)$")


def _float(text: str) -> float | None:
    return fmt.finite(text.replace("−", "-"))


def row_kind(row: Any) -> str:
    """The summary a Table 1 row uses: the row's ``summary`` (stats.table1), else read from its cells (n (%) for
    categorical levels, "a ± b" for mean ± SD, "m (q1–q3)" for median (IQR))."""
    summary = getattr(row, "summary", None)
    if summary in (MEAN_SD, MEDIAN_IQR, CATEGORICAL):
        return summary
    if row.variable == "n" and row.level is None:
        return COUNT
    if row.level is not None:
        return CATEGORICAL
    for text in row.groups.values():
        text = _MISSING.sub("", str(text))
        if _MEAN_SD.match(text):
            return MEAN_SD
        if _MEDIAN_IQR.match(text):
            return MEDIAN_IQR
    return MEDIAN_IQR  # no values at all: stats.table1 describes those with median (IQR)


def _cell(text: str, kind: str) -> tb.Cell:
    """A Table 1 cell: the main number as value, its spread as parts, the display in one precision."""
    raw = str(text)
    missing_match = _MISSING.search(raw)
    missing = int(missing_match.group(1)) if missing_match else None
    core = _MISSING.sub("", raw).strip()
    digits = DECIMALS.get(kind, 1)
    suffix = f" [{missing} missing]" if missing else ""
    parts: dict[str, float | None] = {"missing": float(missing)} if missing else {}
    if kind == MEAN_SD and (m := _MEAN_SD.match(core)):
        mean, sd = _float(m.group(1)), _float(m.group(2))
        shown = f"{fmt.number(mean, digits)} ± {fmt.number(sd, digits)}"
        return tb.Cell(value=mean, text=shown + suffix, parts={"SD": sd, **parts})
    if kind == MEDIAN_IQR and (m := _MEDIAN_IQR.match(core)):
        median, q1, q3 = (_float(m.group(i)) for i in (1, 2, 3))
        shown = f"{fmt.number(median, digits)} ({fmt.number(q1, digits)} to {fmt.number(q3, digits)})"
        return tb.Cell(value=median, text=shown + suffix, parts={"Q1": q1, "Q3": q3, **parts})
    if kind in (CATEGORICAL, COUNT) and (m := _COUNT_PCT.match(core)):
        count, pct = int(m.group(1)), _float(m.group(2)) if m.group(2) not in ("–", "—") else None
        shown = f"{count} ({fmt.number(pct, digits)})" if pct is not None else f"{count} ({fmt.DASH})"
        return tb.Cell(value=count, text=shown + suffix, parts={"%": pct, **parts})
    if core.isdigit():
        return tb.Cell(value=int(core), text=core + suffix, parts=parts)
    return tb.Cell(value=None, text=(core if core and core not in ("–", "-") else fmt.DASH) + suffix, parts=parts)


def _label(variable: str, kind: str) -> str:
    from f2b_study.stats.table1 import LABELS

    name = LABELS.get(variable, variable)
    return f"{name}, {kind}" if kind in (MEAN_SD, MEDIAN_IQR, CATEGORICAL) else name


def kinds(result: Any) -> dict[str, str]:
    """{variable: summary kind} in the table's order (the "n" line left out)."""
    out: dict[str, str] = {}
    for row in result.rows:
        kind = row_kind(row)
        if kind != COUNT and row.variable not in out:
            out[row.variable] = kind
    return out


def footnote(result: Any) -> str:
    """stats.table1's footnote (which rows are mean ± SD, median (IQR) or n (%), and why), and the tests used."""
    from f2b_study.stats.table1 import footnote as summaries

    found = set(kinds(result).values())
    tests = []
    if MEAN_SD in found:
        tests.append("Student's t-test or one-way ANOVA for mean ± SD rows")
    if MEDIAN_IQR in found:
        tests.append("the Mann–Whitney U or Kruskal–Wallis test for median (IQR) rows")
    if CATEGORICAL in found:
        tests.append("the chi-square test (Yates' correction on 2×2 tables) or Fisher's exact test when an expected "
                     "count is below 5 for n (%) rows")
    compared = f" Groups compared by {'; '.join(tests)}; each row names its test." if tests else ""
    return (summaries(result) + compared).strip()


def table1_table(result: Any, caption: str, key: str = "table1") -> tb.Table:
    """The report table of a stats.table1 result: Characteristic, Overall, one column per group, P, Test."""
    from f2b_study.stats.table1 import OVERALL

    groups = [OVERALL, *result.group_names]
    n_row = next((r for r in result.rows if row_kind(r) == COUNT), None)
    columns = [tb.Column("Characteristic", tb.TEXT)]
    for group in groups:
        shown = group if group == OVERALL else level_label(result.by, group)
        n = n_row.groups.get(group) if n_row else None
        columns.append(tb.Column(shown, tb.NUMBER, digits=1, parts=("%", "SD", "Q1", "Q3", "missing"),
                                 subheader=f"n = {n}" if n is not None else ""))
    columns += [tb.Column("P", tb.P), tb.Column("Test", tb.TEXT)]
    rows: list[tb.Row] = []
    seen: set[str] = set()
    for row in result.rows:
        kind = row_kind(row)
        if kind == COUNT:
            continue
        first = row.variable not in seen
        seen.add(row.variable)
        values = [_cell(row.groups.get(g, ""), kind) for g in groups]
        test = [tb.Cell(value=row.p), tb.text(row.test or "")]
        if kind == CATEGORICAL:
            if first:
                rows.append(tb.Row([tb.text(_label(row.variable, kind)), *[tb.Cell() for _ in groups], *test],
                                   kind="heading"))
            label = "missing" if row.level == "missing" else level_label(row.variable, row.level)
            rows.append(tb.Row([tb.text(label), *values, tb.Cell(), tb.text("")], kind="level"))
        else:
            rows.append(tb.Row([tb.text(_label(row.variable, kind)), *values, *test]))
    for row in rows:  # heading rows and the levels under them leave their empty cells empty, not "—"
        for j, cell in enumerate(row.cells[1:], start=1):
            if cell.value is None and cell.text is None and columns[j].kind != tb.TEXT:
                cell.text = ""
    notes = [note for note in [footnote(result)] if note] + [str(n) for n in result.notes]
    return tb.Table(key=key, caption=caption, columns=columns, rows=rows, notes=notes, id=None)


def table1_page(result: Any, title: str, caption: str) -> str:
    """A standalone HTML page of one Table 1 (what `f2b-study table1 --out FILE.html` writes)."""
    from markupsafe import Markup

    from f2b_study.present.tabular import Footnotes, html_view
    from f2b_study.report.stard import environment

    footnotes = Footnotes()
    view = html_view(table1_table(result, caption), footnotes)
    css = (Path(__file__).parent / "templates" / "report.css").read_text(encoding="utf-8")
    return environment().get_template("table1.html.j2").render(title=title, table=view, footnotes=footnotes.items,
                                                               css=Markup(css))


def write_table1(result: Any, out: Path, caption: str) -> None:
    """Table 1 to ``out``: .csv (the flat display rows), .xlsx (numbers as numbers) or .html (a page titled
    ``caption``)."""
    import polars as pl

    from f2b_study.atomic import write_text
    from f2b_study.errors import InputError
    from f2b_study.stats.table1 import to_records
    from f2b_study.tables import write_csv

    suffix = out.suffix.lower()
    if suffix == ".csv":
        write_csv(pl.DataFrame(to_records(result)), out)
    elif suffix == ".xlsx":
        tb.write_xlsx([table1_table(result, caption)], out)
    elif suffix in {".html", ".htm"}:
        write_text(out, table1_page(result, caption, caption))
    else:
        raise InputError.at(out, expected="an output file ending in .csv, .xlsx or .html", show_value=False)
