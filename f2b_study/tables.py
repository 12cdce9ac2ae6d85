"""Reading the tables users hand us (CSV with `,` or `;`, UTF-8 with or without BOM, Excel .xlsx) and writing ours.

Every column is read as text so that validation can name the row and value that is wrong; the row numbers
users see are those of a spreadsheet (header = row 1, first record = row 2). Refused rather than silently
patched: a record with fewer or more fields than the header (polars would fill the gap with nulls), and two
columns with the same name (polars would rename one `sex_duplicated_0`).

Writing (`write_csv`, `write_xlsx`, `write_table`): every text cell that a spreadsheet would run as a formula,
i.e. one starting with `=`, `+`, `-`, `@`, a tab or a carriage return, gets a leading `'` (OWASP's rule against CSV
injection), except text that is a plain number such as "-2.5" (a spreadsheet reads it as that number, never as a
formula, and quoting it would corrupt the value). Numeric columns are never quoted. The readers here undo the
quote, so IDs survive a round trip through our own files unchanged.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import polars as pl

from f2b_study.atomic import atomic_path
from f2b_study.errors import InputError

FIRST_DATA_ROW = 2  # header is row 1, as in a spreadsheet
FORMULA_START = "=+-@\t\r"  # what a spreadsheet may evaluate at the start of a cell (OWASP)
# text that a spreadsheet reads as a plain number: never a formula, so never quoted
_PLAIN_NUMBER = r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$"
_FORMULA = r"^[=+\-@\t\r]"
_QUOTED_FORMULA = r"^'[=+\-@\t\r\n]"  # \n: a workbook stores a carriage return as a line feed

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


# -- reading -------------------------------------------------------------------------------------------------------
def read_table(path: str | Path) -> pl.DataFrame:
    """Read a CSV or .xlsx file with every column as a string (empty cells -> null)."""
    path = Path(path)
    if not path.exists():
        raise InputError.at(path, expected="an existing file", show_value=False)
    if path.is_dir():
        raise InputError.at(path, expected="a .csv or .xlsx file (this is a folder)", show_value=False)
    if path.suffix.lower() in {".xlsx", ".xlsm"}:
        return _read_excel(path)
    if path.suffix.lower() == ".xls":
        raise InputError.at(path, expected="a .csv or .xlsx file (save the old .xls as .xlsx)", show_value=False)
    return _read_csv(path)


def _read_csv(path: Path) -> pl.DataFrame:
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise InputError.at(path, expected="a header row and at least one record (the file is empty)",
                            show_value=False)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        row = raw[: error.start].count(b"\n") + 1
        raise InputError.at(path, row=row, expected="UTF-8 text (save the file as CSV UTF-8)",
                            value=raw[error.start : error.start + 8]) from None
    head = raw[:4096].decode("utf-8", errors="ignore")
    header = head.splitlines()[0] if head.splitlines() else ""
    separator = ";" if header.count(";") > header.count(",") else ","
    check_csv_shape(path, separator)
    try:
        frame = pl.read_csv(io.BytesIO(raw), separator=separator, infer_schema=False,
                            truncate_ragged_lines=False, encoding="utf8")
    except pl.exceptions.ComputeError as error:
        first = str(error).strip().splitlines()[0]
        raise InputError.at(path, expected=f"a well-formed CSV table ({first})", show_value=False) from None
    frame = frame.rename({c: c.strip() for c in frame.columns})
    frame = _blank_to_null(restore_formulas(frame))
    if frame.height == 0:
        raise InputError.at(path, expected="at least one record below the header", show_value=False)
    return frame


def _read_excel(path: Path) -> pl.DataFrame:
    try:
        # the header is read as a row of its own so that two columns of one name are seen (polars renames them)
        grid = pl.read_excel(path, engine="calamine", has_header=False, infer_schema_length=0)
    except Exception as error:  # fastexcel raises its own types for broken workbooks
        raise InputError.at(path, expected=f"a readable .xlsx workbook ({type(error).__name__})",
                            show_value=False) from None
    if grid.height == 0:
        raise InputError.at(path, expected="a header row and at least one record (the sheet is empty)",
                            show_value=False)
    grid = grid.select(pl.all().cast(pl.String))
    names = [str(name).strip() if name is not None else f"__UNNAMED__{i}" for i, name in enumerate(grid.row(0))]
    check_unique_columns(path, names)
    frame = grid.slice(1).rename(dict(zip(grid.columns, names, strict=True)))
    frame = _blank_to_null(restore_formulas(frame))
    if frame.height == 0:
        raise InputError.at(path, expected="at least one record below the header", show_value=False)
    return frame


def _blank_to_null(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col(c).str.strip_chars().replace("", None) for c in frame.columns if frame.schema[c] == pl.String
    )


def _column_name(index: int) -> str:
    """Column ``index`` (0-based) as users see it: its position and spreadsheet letter."""
    from openpyxl.utils import get_column_letter

    return f"{index + 1} ({get_column_letter(index + 1)})"


def check_unique_columns(path: str | Path, names: Iterable[str]) -> None:
    """An InputError naming both columns when two have the same (stripped) name; unnamed columns are ignored
    (Excel's CSV export adds empty trailing ones)."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        name = name.strip()
        if not name:
            continue
        if name in seen:
            raise InputError(f"{path}: columns {_column_name(seen[name])} and {_column_name(index)} are both named "
                             f"{name!r}: expected each column name once (rename or delete one of them)")
        seen[name] = index


def check_csv_shape(path: str | Path, separator: str) -> None:
    """Refuse duplicate column names and any record whose number of fields differs from the header's, naming the
    first such row (blank lines, which polars reads as empty records, are left to the row checks).

    Polars has no setting that refuses short records (it fills them with nulls), so the count is done here: a
    streaming polars pass over the lines when no value spans lines (fast: about 0.2 s per million rows), else
    Python's csv module, which follows quoted line breaks exactly (about 15x slower)."""
    path = Path(path)
    first = pl.scan_lines(path, name="line").head(1).collect()
    if first.height and "\r" in first.item().rstrip("\r"):
        raise InputError.at(path, row=1, show_value=False,
                            expected="lines ending in LF or CRLF (this file ends them with a bare CR, as old Mac "
                            "exports do; save it as CSV UTF-8)")
    header = _header_fields(path, separator)
    check_unique_columns(path, header)
    expected = len(header)
    lines = pl.scan_lines(path, name="line").with_row_index("i")
    quotes = pl.col("line").str.count_matches('"', literal=True)
    separators = pl.col("line").str.count_matches(separator, literal=True)
    filled = pl.col("line").str.contains(r"[^\s]")  # a blank line is a record of empty fields to polars too
    found = lines.select(
        pl.col("i").filter((quotes == 0) & (separators != expected - 1) & filled).min().alias("bad"),
        (quotes % 2 == 1).any().alias("spans_lines"),
        (quotes > 0).any().alias("quoted"),
    ).collect(engine="streaming").row(0, named=True)
    unsure = found["spans_lines"]
    if found["quoted"] and not unsure:  # separators inside quotes do not count: only quoted lines pay for this
        outside = pl.col("line").str.replace_all(r'"[^"]*"', "").str.count_matches(separator, literal=True)
        unsure = (lines.filter(quotes > 0).select((outside != expected - 1).any())
                  .collect(engine="streaming").item())
    if unsure:
        _check_shape_exactly(path, separator, expected)
    elif found["bad"] is not None:
        line = pl.scan_lines(path, name="line").slice(found["bad"], 1).collect().item()
        got = _fields_in(line.rstrip("\r"), separator)
        _raise_ragged(path, found["bad"] + 1, got, expected, separator)


def _header_fields(path: Path, separator: str) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        try:
            return next(csv.reader(handle, delimiter=separator), [])
        except csv.Error:
            return []


def _fields_in(line: str, separator: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=separator), []))
    except csv.Error:  # a stray carriage return: count the separators
        return line.count(separator) + 1


def _check_shape_exactly(path: Path, separator: str, expected: int) -> None:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=separator, strict=True)
        try:
            for index, record in enumerate(reader):
                if any(field.strip() for field in record) and len(record) != expected:
                    _raise_ragged(path, index + 1, len(record), expected, separator)
        except csv.Error:
            return  # e.g. a quote never closed: left to polars, whose parse error names the problem


def _raise_ragged(path: Path, row: int, got: int, expected: int, separator: str) -> None:
    hint = "a value is missing its separator" if got < expected else f"a value holds an unquoted '{separator}'"
    raise InputError.at(path, row=row, show_value=False,
                        expected=f"{expected} fields as in the header row, found {got} ({hint}?)")


# -- formulas -------------------------------------------------------------------------------------------------------
def _text_columns(schema: pl.Schema) -> list[str]:
    return [name for name, dtype in schema.items() if dtype in (pl.String, pl.Categorical) or dtype == pl.Enum]


def neutralise_formulas(frame: Frame) -> Frame:
    """Text cells a spreadsheet would run as a formula, with a leading `'` (works on a LazyFrame: streams)."""
    columns = _text_columns(frame.collect_schema())
    return frame.with_columns(_neutralised(pl.col(c).cast(pl.String)).alias(c) for c in columns)


def _neutralised(text: pl.Expr) -> pl.Expr:
    risky = text.str.contains(_FORMULA) & ~text.str.contains(_PLAIN_NUMBER)
    return pl.when(risky).then(pl.lit("'") + text).otherwise(text)


def neutralise_text(value: str) -> str:
    """`neutralise_formulas` for one string."""
    import re

    if value and value[0] in FORMULA_START and not re.match(_PLAIN_NUMBER, value):
        return "'" + value
    return value


def restore_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Undo `neutralise_formulas` on text read back from a table (so IDs stay the same across our files)."""
    columns = _text_columns(frame.schema)
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_QUOTED_FORMULA)).then(pl.col(c).str.slice(1)).otherwise(pl.col(c)).alias(c)
        for c in columns)


# -- writing --------------------------------------------------------------------------------------------------------
def write_csv(frame: pl.DataFrame, target: str | Path) -> None:
    """Write a CSV atomically (temporary file + rename), formulas neutralised. A target named .xlsx is refused."""
    with atomic_path(target, suffix=".csv") as tmp:
        neutralise_formulas(frame).write_csv(tmp)


def write_xlsx(frame: pl.DataFrame, target: str | Path, sheet: str = "data") -> None:
    """Write a real .xlsx workbook atomically: numbers as numbers (NaN/inf as empty cells, which a workbook cannot
    hold), text as text cells with formulas neutralised, the header bold and frozen."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    ws = book.create_sheet(sheet[:31])
    ws.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for name in frame.columns:
        cell = WriteOnlyCell(ws, value=neutralise_text(str(name)))
        cell.font = bold
        header.append(cell)
    ws.append(header)
    for row in frame.iter_rows():
        ws.append([_cell(value) for value in row])
    with atomic_path(target, suffix=".xlsx") as tmp:
        book.save(tmp)


def _cell(value: object) -> object:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return neutralise_text(value)
    if hasattr(value, "isoformat"):  # dates and times: openpyxl writes them as Excel dates
        return value
    return neutralise_text(str(value))  # lists, structs: their text


def write_table(frame: pl.DataFrame, target: str | Path) -> None:
    """Write ``frame`` as the target's name says: .csv -> CSV, .xlsx -> a real workbook; else an InputError."""
    suffix = Path(target).suffix.lower()
    if suffix == ".csv":
        write_csv(frame, target)
    elif suffix == ".xlsx":
        write_xlsx(frame, target)
    else:
        raise InputError.at(target, expected="an output file ending in .csv or .xlsx", show_value=False)
