"""Cohort tables as polars LazyFrames, so that a table of millions of rows streams through validation and labelling
without being held in memory: the lazy twin of `f2b_study/tables.py:read_table`, with the same rules (`,` or `;`
sniffed from the header line, UTF-8 with or without BOM, every column as text, blank cells -> null, column names
stripped) and the same one-line errors. Excel workbooks are read eagerly (the format has no streaming reader)."""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from f2b_study.errors import InputError
from f2b_study.tables import check_csv_shape, read_table

BOM = b"\xef\xbb\xbf"
BLOCK = 8 << 20  # bytes per read when checking the encoding


def scan_table(path: str | Path) -> pl.LazyFrame:
    """A CSV (or .xlsx) file as a LazyFrame of text columns; the file's encoding and header are checked now."""
    path = Path(path)
    if not path.exists() or path.suffix.lower() in {".xlsx", ".xlsm", ".xls"}:
        return read_table(path).lazy()  # its errors, or the eager Excel reader
    header = _check_text(path)
    separator = ";" if header.count(";") > header.count(",") else ","
    check_csv_shape(path, separator)  # short records and duplicate column names: polars would accept both
    frame = pl.scan_csv(path, separator=separator, infer_schema=False, truncate_ragged_lines=False,
                        encoding="utf8")
    with csv_errors(path):
        names = frame.collect_schema().names()
        frame = frame.rename({c: c.strip() for c in names})
        frame = frame.with_columns(_blank_to_null(c.strip()) for c in names)
        # head(1) can stop before a malformed line; a table that seems empty is read whole to tell the two apart
        if frame.head(1).collect().height == 0 and frame.collect(engine="streaming").height == 0:
            raise InputError.at(path, expected="at least one record below the header", show_value=False)
    return frame


def _blank_to_null(column: str) -> pl.Expr:
    """Stripped text, empty -> null (tables.py's `.replace("", None)`, which does not stream: it holds the column)."""
    text = pl.col(column).str.strip_chars()
    return pl.when(text != "").then(text).alias(column)


@contextlib.contextmanager
def csv_errors(path: Path) -> Iterator[None]:
    """A malformed CSV surfaces when a query first reads it: the same one-line error as the eager reader."""
    try:
        yield
    except pl.exceptions.ComputeError as error:
        first = str(error).strip().splitlines()[0]
        raise InputError.at(path, expected=f"a well-formed CSV table ({first})", show_value=False) from None


def _check_text(path: Path) -> str:
    """Stream through the file once: not empty, valid UTF-8 (else the row of the first bad byte); the header line
    (sniffed from the first 4 KiB, as the eager reader does)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    head = b""
    seen_text = False
    lines_before = 0  # newlines in the blocks already decoded
    with open(path, "rb") as handle:
        start = handle.read(len(BOM))
        block = (b"" if start == BOM else start) + handle.read(BLOCK)
        while True:
            pending = decoder.getstate()[0]  # the undecoded tail of the previous block (part of one character)
            final = not block
            try:
                decoder.decode(block, final=final)
            except UnicodeDecodeError as error:
                row = lines_before + block[:max(error.start - len(pending), 0)].count(b"\n") + 1
                shown = (pending + block + handle.read(8))[error.start:error.start + 8]
                raise InputError.at(path, row=row, expected="UTF-8 text (save the file as CSV UTF-8)",
                                    value=shown) from None
            if final:
                break
            if len(head) < 4096:
                head += block[:4096 - len(head)]
            seen_text = seen_text or bool(block.strip())
            lines_before += block.count(b"\n")
            block = handle.read(BLOCK)
    if not seen_text:
        raise InputError.at(path, expected="a header row and at least one record (the file is empty)",
                            show_value=False)
    lines = head.decode("utf-8", errors="ignore").splitlines()
    return lines[0] if lines else ""
