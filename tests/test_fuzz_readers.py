"""Fuzzing the readers of files users hand us (issue 14): random mutations of valid files (byte flips, truncation,
deleted and duplicated columns and rows, odd encodings, formula cells, huge numbers, NaN/inf text) give a result or
an InputError, never another exception (which the CLI would show as a traceback)."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from f2b_study.cohort.schema import load_cohort, scan_cohort
from f2b_study.config import load_study
from f2b_study.errors import InputError
from f2b_study.stats.predictions import read_predictions

FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

COHORT = """\
patient_id,center,sex,age_years,menopausal_status,height_cm,weight_kg,bmi,t_spine_l1_l4,t_femoral_neck,\
t_total_hip,consent
P001,A,F,61,post,160,60,23.4,-1.2,-0.8,-1.0,yes
P002,A,M,72,,175,80,26.1,-2.7,-2.6,-2.4,yes
P003,B,F,58,post,155,52,21.6,0.3,0.1,0.2,no
P004,B,female,66,postmenopausal,162.5,"70,5",26.7,−1.5,-1.1,-1.3,1
"""
PREDICTIONS = """patient_id,bone_status,p_normal,p_osteopenia,p_osteoporosis,split,sex,age_years,bmi
P001,normal,0.7,0.2,0.1,validation,F,61,23.4
P002,osteoporosis,0.1,0.2,0.7,validation,M,72,26.1
P003,osteopenia,0.2,0.6,0.2,test,F,58,21.6
P004,normal,,,,train,F,66,26.7
"""
CONFIG = """name = "centre-a"
csv = "cohort.csv"
photos = "photos"

[columns]
patient_id = "patient_id"

[rules]
men_min_age = 50
menopause_age = 52

[qc]
min_detection_score = 0.6
"""

ODD_CELLS = ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "@SUM(1)", "-", "1e400", "-1e308", "NaN", "nan",
             "inf", "-Infinity", "99999999999999999999999", "0x1F", "1_000", "", " ", "\"", '""', "'", "\t",
             "√", "😀", "\x00", "P001", "F", "post", "yes", "12,5", "−3", "1.2.3", "7four"]


def _split(text: str) -> list[list[str]]:
    return [line.split(",") for line in text.strip("\n").split("\n")]


@st.composite
def mutated(draw: st.DrawFn, valid: str) -> bytes:
    """``valid`` (a small CSV, no quoted separators in the fields mutated) after a few random mutations."""
    rows = _split(valid)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["cell", "drop_column", "dup_column", "drop_row", "dup_row", "short_row",
                                     "long_row", "header_cell", "swap_separator"]))
        width = max(len(r) for r in rows)
        if kind == "cell" and len(rows) > 1:
            r = draw(st.integers(1, len(rows) - 1))
            c = draw(st.integers(0, len(rows[r]) - 1)) if rows[r] else 0
            if rows[r]:
                rows[r][c] = draw(st.sampled_from(ODD_CELLS) | st.text(max_size=12))
        elif kind == "drop_column" and width > 1:
            c = draw(st.integers(0, width - 1))
            rows = [row[:c] + row[c + 1:] for row in rows]
        elif kind == "dup_column":
            c = draw(st.integers(0, width - 1))
            rows = [row + row[c:c + 1] for row in rows]
        elif kind == "drop_row" and len(rows) > 1:
            del rows[draw(st.integers(0, len(rows) - 1))]
        elif kind == "dup_row" and len(rows) > 1:
            r = draw(st.integers(1, len(rows) - 1))
            rows.insert(r, list(rows[r]))
        elif kind == "short_row" and len(rows) > 1:
            r = draw(st.integers(1, len(rows) - 1))
            rows[r] = rows[r][: draw(st.integers(0, len(rows[r])))]
        elif kind == "long_row" and len(rows) > 1:
            rows[draw(st.integers(1, len(rows) - 1))].append("extra")
        elif kind == "header_cell":
            c = draw(st.integers(0, len(rows[0]) - 1))
            rows[0][c] = draw(st.sampled_from(["sex", "Sex", "", "patient_id", "_row", " age_years ", "=1+1"]))
        elif kind == "swap_separator":
            rows = [[cell.replace(",", ";") for cell in row] for row in rows]
    separator = draw(st.sampled_from([",", ",", ";", "\t"]))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = ending.join(separator.join(row) for row in rows) + draw(st.sampled_from(["", ending, ending * 2]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    for _ in range(draw(st.integers(0, 2))):  # byte-level damage
        kind = draw(st.sampled_from(["flip", "truncate", "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        elif kind == "truncate":
            data = data[:at]
        else:
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return data


def _temp(folder: Path, suffix: str, data: bytes) -> Path:
    path = folder / f"input{suffix}"
    path.write_bytes(data)
    return path


def _result_or_input_error(call) -> object:
    try:
        return call()
    except InputError as error:
        assert str(error) and "\n" not in str(error).strip(), str(error)
        return error


@FUZZ
@given(mutated(COHORT))
def test_cohort_csv_reader_never_raises_anything_but_input_error(tmp_path: Path, data: bytes) -> None:
    from f2b_study.cohort.scan import csv_errors

    path = _temp(tmp_path, ".csv", data)
    eager = _result_or_input_error(lambda: load_cohort(path, require_dxa=False))

    def streamed() -> object:
        with csv_errors(path):  # as `label` collects it
            return scan_cohort(path, require_dxa=False).frame.collect(engine="streaming")

    lazy = _result_or_input_error(streamed)
    # the streaming reader agrees with the eager one on whether the file is acceptable
    assert isinstance(eager, InputError) == isinstance(lazy, InputError), (eager, lazy)


def _workbook(rows: list[list[object]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# what a workbook can hold: no control characters (openpyxl refuses them, as Excel does)
WORKBOOK_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=10)
CELL_VALUES = st.one_of(st.sampled_from([c for c in ODD_CELLS if c.isprintable() or c == ""]), WORKBOOK_TEXT,
                        st.integers(-10**20, 10**20),
                        st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
                        st.dates(), st.datetimes())


@st.composite
def workbooks(draw: st.DrawFn) -> bytes:
    rows: list[list[object]] = [list(r) for r in _split(COHORT)]
    rows[1:] = [[float(c) if c.replace(".", "", 1).lstrip("-").isdigit() else c for c in r] for r in rows[1:]]
    for _ in range(draw(st.integers(0, 5))):
        r = draw(st.integers(0, len(rows) - 1))
        c = draw(st.integers(0, len(rows[r]) - 1))
        rows[r][c] = draw(CELL_VALUES) if r else draw(st.sampled_from(["sex", "", "patient_id", None, 3]))
    if draw(st.booleans()):
        del rows[draw(st.integers(1, len(rows) - 1))]
    data = _workbook(rows)
    if draw(st.integers(0, 3)) == 0:  # now and then a damaged zip
        at = draw(st.integers(0, 10**6)) % len(data)  # the zip's length varies with its timestamps
        data = data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]
    return data


@FUZZ
@given(workbooks())
def test_cohort_xlsx_reader_never_raises_anything_but_input_error(tmp_path: Path, data: bytes) -> None:
    path = _temp(tmp_path, ".xlsx", data)
    _result_or_input_error(lambda: load_cohort(path, require_dxa=False))


@FUZZ
@given(mutated(PREDICTIONS))
def test_predictions_reader_never_raises_anything_but_input_error(tmp_path: Path, data: bytes) -> None:
    path = _temp(tmp_path, ".csv", data)
    result = _result_or_input_error(lambda: read_predictions(path))
    if not isinstance(result, InputError):
        assert result.evaluated["patient_id"].is_unique().all()
        assert result.evaluated.select(pl.col("p_normal").is_finite().all()).item()


CONFIG_VALUES = st.one_of(st.integers(-10**30, 10**30), st.floats(), st.booleans(), st.text(max_size=8),
                          st.lists(st.integers(), max_size=3), st.just("nan"), st.just("inf"))


@st.composite
def configs(draw: st.DrawFn) -> bytes:
    lines = CONFIG.splitlines()
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["value", "drop", "dup", "section", "key"]))
        at = draw(st.integers(0, len(lines) - 1))
        if kind == "value" and "=" in lines[at]:
            key = lines[at].split("=")[0].strip()
            value = draw(CONFIG_VALUES)
            toml = {True: "true", False: "false"}.get(value) if isinstance(value, bool) else None
            if toml is None:
                toml = (f'"{value}"' if isinstance(value, str) else
                        "nan" if value != value else
                        ("inf" if value == float("inf") else "-inf" if value == float("-inf") else repr(value)))
            lines[at] = f"{key} = {toml}"
        elif kind == "drop":
            del lines[at]
        elif kind == "dup":
            lines.insert(at, lines[at])
        elif kind == "section":
            lines.insert(at, draw(st.sampled_from(["[columns]", "[weird]", "[rules]", "[[rules]]", "[qc.x]"])))
        else:
            lines.insert(at, draw(st.sampled_from(["sex = 3", "unknown = 1", "men_min_age = true",
                                                   'columns = "x"', "rules = 5", "include_younger_men = 1",
                                                   'csv = "/etc/passwd"', 'name = ""', "name = 1"])))
    data = "\n".join(lines).encode("utf-8")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + draw(st.binary(min_size=0, max_size=4)) + data[at + 1:]
    return data


@FUZZ
@given(configs())
def test_config_reader_never_raises_anything_but_input_error(tmp_path: Path, data: bytes) -> None:
    path = _temp(tmp_path, ".toml", data)
    _result_or_input_error(lambda: load_study([path]))


@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(["a", "b c", '"x,y"', '"q""r"', "", "1", '"', 'p"q']), min_size=0,
                         max_size=5), min_size=1, max_size=6),
       st.integers(1, 5))
def test_the_fast_shape_check_agrees_with_the_csv_module(tmp_path: Path, rows: list[list[str]], width: int) -> None:
    from f2b_study import tables

    text = ",".join(f"h{i}" for i in range(width)) + "\n" + "\n".join(",".join(row) for row in rows) + "\n"
    path = _temp(tmp_path, ".csv", text.encode())
    fast = _result_or_input_error(lambda: tables.check_csv_shape(path, ","))
    exact = _result_or_input_error(lambda: tables._check_shape_exactly(path, ",", width))
    if isinstance(exact, InputError) or isinstance(fast, InputError):
        assert str(fast) == str(exact)
