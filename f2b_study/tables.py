"""Reading the tables users hand us (CSV with `,` or `;`, UTF-8 with or without BOM, Excel .xlsx) and writing ours.

Every column is read as text so that validation can name the row and value that is wrong; the row numbers
users see are those of a spreadsheet (header = row 1, first record = row 2).
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from f2b_study.atomic import atomic_path
from f2b_study.errors import InputError

FIRST_DATA_ROW = 2  # header is row 1, as in a spreadsheet


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a CSV or .xlsx file with every column as a string (empty cells -> null)."""
    path = Path(path)
    if not path.exists():
        raise InputError.at(path, expected="an existing file", show_value=False)
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
    try:
        frame = pl.read_csv(io.BytesIO(raw), separator=separator, infer_schema=False,
                            truncate_ragged_lines=False, encoding="utf8")
    except pl.exceptions.ComputeError as error:
        first = str(error).strip().splitlines()[0]
        raise InputError.at(path, expected=f"a well-formed CSV table ({first})", show_value=False) from None
    frame = frame.rename({c: c.strip() for c in frame.columns})
    frame = _blank_to_null(frame)
    if frame.height == 0:
        raise InputError.at(path, expected="at least one record below the header", show_value=False)
    return frame


def _read_excel(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_excel(path, engine="calamine", infer_schema_length=0)
    except Exception as error:  # fastexcel raises its own types for broken workbooks
        raise InputError.at(path, expected=f"a readable .xlsx workbook ({type(error).__name__})",
                            show_value=False) from None
    frame = frame.select(pl.all().cast(pl.String))
    frame = frame.rename({c: str(c).strip() for c in frame.columns})
    frame = _blank_to_null(frame)
    if frame.height == 0:
        raise InputError.at(path, expected="at least one record below the header", show_value=False)
    return frame


def _blank_to_null(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col(c).str.strip_chars().replace("", None) for c in frame.columns if frame.schema[c] == pl.String
    )


def write_csv(frame: pl.DataFrame, target: str | Path) -> None:
    """Write a CSV atomically (temporary file + rename)."""
    with atomic_path(target, suffix=".csv") as tmp:
        frame.write_csv(tmp)

