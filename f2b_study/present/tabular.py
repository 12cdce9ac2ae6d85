"""Report tables as data first: a header of typed columns and rows of typed cells (value, 95% CI, note), rendered
to HTML (the report), XLSX (one sheet per table) and CSV from the same object, so the three never disagree.

    Table(key, caption, columns=[Column(...)], rows=[Row([Cell(...), ...])], notes=[...])
    html_view(table, footnotes) -> the dict the Jinja macro draws
    write_xlsx(tables, path); csv_text(table)

Exports keep numbers as numbers: an interval becomes two columns ("<header> 95% CI lower/upper"), a Table 1
summary its parts ("<header> SD", "Q1", "Q3", "%"), and a cell's note goes to a final "Notes" column. A text cell
that a spreadsheet would run as a formula (=, +, -, @ first) is written as text.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from f2b_study.present import format as fmt

TEXT, INT, NUMBER, P, PERCENT = "text", "int", "number", "p", "percent"
KINDS = (TEXT, INT, NUMBER, P, PERCENT)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclasses.dataclass
class Column:
    """One column: its header, how its cells read (``kind``: text, int, number, p, percent; ``digits`` decimals
    for numbers, the same in every row), whether cells carry a 95% CI, the names of any extra numeric
    ``parts`` its cells export (e.g. Table 1's "SD", "Q1", "Q3", "%"; a part no cell has is not exported), and a
    ``subheader`` line under the header (e.g. "n = 460")."""

    header: str
    kind: str = NUMBER
    digits: int = 3
    ci: bool = False
    parts: tuple[str, ...] = ()
    subheader: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column kind {self.kind!r} is not one of {KINDS}")


@dataclasses.dataclass
class Cell:
    """A value (number or text), its interval, a note (why it is undefined or has no interval), a display text
    that replaces the formatted value in HTML and CSV views (e.g. "63.0 (58.0–70.0)"), extra numeric parts for
    the exports, and ``n`` (an interval from one patient is no interval)."""

    value: Any = None
    ci: Sequence[float] | None = None
    note: str | None = None
    text: str | None = None
    parts: dict[str, float | None] = dataclasses.field(default_factory=dict)
    n: int | None = None


@dataclasses.dataclass
class Row:
    """A line of cells. ``kind``: "data"; "heading" (a variable's own line above its levels); "level" (indented
    under a heading). ``mark``: a note attached to the row's first cell (e.g. "n < 10")."""

    cells: list[Cell]
    kind: str = "data"
    mark: str | None = None


@dataclasses.dataclass
class Table:
    """``key`` names the XLSX sheet and the CSV file; ``caption`` is the title line; ``notes`` print below."""

    key: str
    caption: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = dataclasses.field(default_factory=list)
    id: str | None = None

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row.cells) != len(self.columns):
                raise ValueError(f"table {self.key!r} row {i}: {len(row.cells)} cells for {len(self.columns)} columns")

    # the dict view older callers used ({"caption", "columns", "rows"} of display strings)
    def __getitem__(self, key: str) -> Any:
        if key == "caption":
            return self.caption
        if key == "columns":
            return [c.header for c in self.columns]
        if key == "rows":
            return [[display(c, col) for c, col in zip(r.cells, self.columns, strict=True)] for r in self.rows]
        raise KeyError(key)


def text(value: Any, note: str | None = None) -> Cell:
    return Cell(value=None if value is None else str(value), note=note)


def num(value: Any, ci: Sequence[float] | None = None, note: str | None = None, n: int | None = None) -> Cell:
    return Cell(value=fmt.finite(value), ci=ci, note=note, n=n)


def from_dict(table: dict[str, Any], key: str) -> Table:
    """A plain {"caption", "columns", "rows"} table (values: text or numbers) as a Table: numbers keep three
    decimals (or none for integers), text stays text."""
    columns_raw = list(table["columns"])
    rows_raw = [list(r) for r in table["rows"]]
    columns = []
    for j, header in enumerate(columns_raw):
        values = [r[j] for r in rows_raw if j < len(r) and r[j] is not None]
        numeric = bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        integral = numeric and all(float(v).is_integer() for v in values)
        columns.append(Column(str(header), INT if integral else NUMBER if numeric else TEXT))
    rows = [Row([Cell(value=r[j] if j < len(r) else None) for j in range(len(columns))]) for r in rows_raw]
    return Table(key=key, caption=str(table.get("caption", "")), columns=columns, rows=rows,
                 notes=[str(n) for n in table.get("notes", [])], id=table.get("id"))


# -- display --------------------------------------------------------------------------------------------------------

def display(cell: Cell, column: Column) -> str:
    if cell.text is not None:
        return cell.text
    if column.kind == TEXT:
        return fmt.DASH if cell.value is None else str(cell.value)
    if column.kind == INT:
        return fmt.integer(cell.value)
    if column.kind == P:
        return fmt.p_value(cell.value)
    if column.kind == PERCENT:
        return fmt.percent(cell.value, column.digits)
    return fmt.number(cell.value, column.digits)


def cell_notes(cell: Cell) -> list[str]:
    """The notes a cell carries: its own, and why its interval is not shown."""
    notes = [cell.note] if cell.note else []
    if cell.value is not None and cell.ci is not None:
        why = fmt.interval_note(cell.ci, cell.n)
        if why and why not in notes:
            notes.append(why)
    return notes


class Footnotes:
    """Notes numbered once per report, in order of first use."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, note: str | None) -> int | None:
        if not note:
            return None
        if note not in self.items:
            self.items.append(note)
        return self.items.index(note) + 1


def html_view(table: Table, footnotes: Footnotes) -> dict[str, Any]:
    """What the template draws: columns with their alignment, rows of {text, ci, refs, cls}."""
    columns = [{"header": c.header, "subheader": c.subheader, "cls": "text" if c.kind == TEXT else "num"}
               for c in table.columns]
    rows = []
    for row in table.rows:
        cells = []
        for j, (cell, column) in enumerate(zip(row.cells, table.columns, strict=True)):
            notes = cell_notes(cell) + ([row.mark] if j == 0 and row.mark else [])
            ci = fmt.interval(cell.ci, column.digits, cell.n) if column.ci and cell.value is not None else ""
            cells.append({"text": display(cell, column), "ci": ci,
                          "refs": [footnotes.ref(n) for n in notes],
                          "cls": "text" if column.kind == TEXT else "num"})
        rows.append({"kind": row.kind, "cells": cells})
    return {"key": table.key, "id": table.id, "caption": table.caption, "columns": columns, "rows": rows,
            "notes": table.notes}


# -- exports --------------------------------------------------------------------------------------------------------

def _parts(table: Table, j: int) -> list[str]:
    """The parts of column j that at least one cell has."""
    return [p for p in table.columns[j].parts if any(fmt.finite(r.cells[j].parts.get(p)) is not None
                                                      for r in table.rows)]


def export_header(table: Table) -> list[str]:
    header = []
    for j, column in enumerate(table.columns):
        title = f"{column.header} ({column.subheader})" if column.subheader else column.header
        header.append(title)
        if column.ci:
            header += [f"{column.header} 95% CI lower", f"{column.header} 95% CI upper"]
        header += [f"{column.header} {part}" for part in _parts(table, j)]
    if _has_notes(table):
        header.append("Notes")
    return header


def _has_notes(table: Table) -> bool:
    return any(row.mark or any(cell_notes(c) for c in row.cells) for row in table.rows)


def _export_value(cell: Cell, column: Column) -> Any:
    if column.kind == TEXT:
        return cell.text if cell.text is not None else cell.value
    value = fmt.finite(cell.value)
    if value is None:
        return None
    return round(value) if column.kind == INT else value


def export_rows(table: Table) -> list[list[Any]]:
    """Rows of plain values (str, int, float, None) matching ``export_header``."""
    notes_column = _has_notes(table)
    parts = [_parts(table, j) for j in range(len(table.columns))]
    out = []
    for row in table.rows:
        values: list[Any] = []
        notes: list[str] = []
        for j, (cell, column) in enumerate(zip(row.cells, table.columns, strict=True)):
            values.append(_export_value(cell, column))
            if column.ci:
                shown = cell.value is not None and cell.ci is not None and not fmt.interval_note(cell.ci, cell.n)
                values += [fmt.finite(cell.ci[0]), fmt.finite(cell.ci[1])] if shown else [None, None]
            values += [fmt.finite(cell.parts.get(part)) for part in parts[j]]
            for note in cell_notes(cell) + ([row.mark] if j == 0 and row.mark else []):
                label = f"{column.header}: {note}" if j else note
                if label not in notes:
                    notes.append(label)
        if notes_column:
            values.append("; ".join(notes) or None)
        out.append(values)
    return out


def _number_formats(table: Table) -> list[str | None]:
    formats: list[str | None] = []
    for j, column in enumerate(table.columns):
        if column.kind == TEXT:
            main = None
        elif column.kind == INT:
            main = "0"
        elif column.kind == P:
            main = "0.0000"
        elif column.kind == PERCENT:
            main = "0.0%"
        else:
            main = "0." + "0" * column.digits if column.digits else "0"
        formats.append(main)
        if column.ci:
            formats += [main, main]
        formats += ["0" if part == "missing" else "0.0#" for part in _parts(table, j)]
    if _has_notes(table):
        formats.append(None)
    return formats


def _safe_text(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_text(table: Table) -> str:
    """The table as CSV (UTF-8, header row first; formula-like text prefixed with an apostrophe)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(export_header(table))
    for row in export_rows(table):
        writer.writerow(["" if v is None else _safe_text(v) for v in row])
    return buffer.getvalue()


def sheet_names(tables: Sequence[Table]) -> list[str]:
    """Unique Excel sheet names (≤ 31 characters, none of []:*?/\\)."""
    names: list[str] = []
    for table in tables:
        base = re.sub(r"[\[\]:*?/\\]", "_", table.key)[:31] or "table"
        name, i = base, 2
        while name.lower() in (n.lower() for n in names):
            suffix = f"_{i}"
            name, i = base[: 31 - len(suffix)] + suffix, i + 1
        names.append(name)
    return names


def file_stems(tables: Sequence[Table]) -> list[str]:
    """Unique, portable file names for the CSVs (letters, digits, '_' and '-')."""
    stems: list[str] = []
    for table in tables:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", table.key).strip("_") or "table"
        stem, i = base, 2
        while stem.lower() in (s.lower() for s in stems):
            stem, i = f"{base}_{i}", i + 1
        stems.append(stem)
    return stems


def workbook_bytes(tables: Iterable[Table]) -> bytes:
    """One sheet per table: caption (row 1), header (row 3), rows, then the table's notes."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    tables = list(tables)
    book = Workbook()
    book.remove(book.active)
    for table, name in zip(tables, sheet_names(tables), strict=True):
        sheet = book.create_sheet(name)
        sheet.cell(row=1, column=1, value=table.caption).font = Font(bold=True)
        header = export_header(table)
        for j, title in enumerate(header, start=1):
            cell = sheet.cell(row=3, column=j, value=title)
            cell.font = Font(bold=True)
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        formats = _number_formats(table)
        rows = export_rows(table)
        for i, values in enumerate(rows, start=4):
            for j, value in enumerate(values, start=1):
                cell = sheet.cell(row=i, column=j)
                cell.value = value
                if isinstance(value, str):
                    cell.data_type = "s"  # never a formula, whatever the text starts with
                elif value is not None and formats[j - 1]:
                    cell.number_format = formats[j - 1]
        last = 4 + len(table.rows)
        for k, note in enumerate(table.notes):
            cell = sheet.cell(row=last + 1 + k, column=1, value=note)
            cell.data_type = "s"
        for j, title in enumerate(header, start=1):
            width = max([len(title) // 2 + 2, 10] + [len(str(r[j - 1])) + 2 for r in rows if r[j - 1] is not None])
            sheet.column_dimensions[sheet.cell(row=3, column=j).column_letter].width = min(width, 60)
        sheet.freeze_panes = "B4"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def write_xlsx(tables: Iterable[Table], target: str | Path) -> Path:
    from f2b_study.atomic import write_bytes

    target = Path(target)
    write_bytes(target, workbook_bytes(tables))
    return target
