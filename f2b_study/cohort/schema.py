"""The canonical cohort schema (docs/methods.md): read a centre's table, map its columns, validate every value.

Validation is one set of polars expressions run as lazy queries: on an in-memory table (`load_cohort`, `validate`)
or streaming over a CSV too large to hold (`scan_cohort`). The first bad value of each kind is reported as one line
naming file, row, column, value and what was expected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from f2b_study.cohort.centre import CohortConfig, read_centre
from f2b_study.cohort.columns import (
    CANONICAL_COLUMNS,
    EXCLUSION_FLAGS,
    HIP_T,
    REQUIRED,
    T_COLUMNS,
    Z_COLUMNS,
)
from f2b_study.errors import InputError
from f2b_study.tables import FIRST_DATA_ROW, read_table

log = logging.getLogger(__name__)

# canonical numeric columns and their plausible range (inclusive); outside it is an input error
NUMERIC_RANGES: dict[str, tuple[float, float, str]] = {
    "age_years": (0, 130, "an age in years from 0 to 130"),
    "height_cm": (30, 260, "a height in cm from 30 to 260"),
    "weight_kg": (2, 500, "a weight in kg from 2 to 500"),
    "bmi": (5, 150, "a BMI in kg/m² from 5 to 150"),
    **{c: (-10, 10, "a T-score from -10 to 10") for c in T_COLUMNS},
    **{c: (-10, 10, "a Z-score from -10 to 10") for c in Z_COLUMNS},
}

SEX_CODES = {"f": "F", "female": "F", "w": "F", "m": "M", "male": "M"}
MENOPAUSE_CODES = {"post": "post", "postmenopausal": "post", "pre": "pre", "premenopausal": "pre"}
TRUE_WORDS = {"true", "yes", "y", "1", "t"}
FALSE_WORDS = {"false", "no", "n", "0", "f"}
BMI_TOLERANCE = 1.0  # kg/m²: a given BMI further than this from weight/height² is a warning

ROW = "_row"  # spreadsheet row number of each record, carried through every step for error messages


@dataclasses.dataclass
class Cohort:
    """A validated cohort: canonical columns typed, extra columns untouched (as text), one row per record."""

    frame: pl.DataFrame
    config: CohortConfig
    warnings: list[str]
    extra_columns: list[str]

    @property
    def name(self) -> str:
        return self.config.name


@dataclasses.dataclass
class LazyCohort:
    """A validated cohort whose rows have not been read into memory: ``frame`` is the query that yields them."""

    frame: pl.LazyFrame
    config: CohortConfig
    warnings: list[str]
    extra_columns: list[str]

    @property
    def name(self) -> str:
        return self.config.name


def load_cohort(source: str | Path | CohortConfig, *, require_dxa: bool = True) -> Cohort:
    """Read, map and validate a cohort given as a CSV/XLSX path, a `.toml` config path or a loaded config.
    ``require_dxa=False`` accepts a table without T-score columns (screening a population without DXA)."""
    config = source if isinstance(source, CohortConfig) else read_centre(source)
    raw = read_table(config.table)
    return validate(raw, config, require_dxa=require_dxa)


def scan_cohort(source: str | Path | CohortConfig, *, require_dxa: bool = True) -> LazyCohort:
    """`load_cohort` for tables too large to hold: every check runs as a streaming query over the file (a few
    passes, each holding no more than polars' working set) and the typed rows stay a LazyFrame."""
    from f2b_study.cohort.scan import scan_table

    config = source if isinstance(source, CohortConfig) else read_centre(source)
    return validate_lazy(scan_table(config.table), config, require_dxa=require_dxa, from_file=True)


def has_dxa(frame: pl.DataFrame | pl.LazyFrame) -> bool:
    return _has_dxa(frame.collect_schema().names())


def _has_dxa(names: list[str]) -> bool:
    return "t_spine_l1_l4" in names and any(c in names for c in HIP_T)


def validate(raw: pl.DataFrame, config: CohortConfig, *, require_dxa: bool = True) -> Cohort:
    lazy = validate_lazy(raw.lazy(), config, require_dxa=require_dxa)
    return Cohort(frame=lazy.frame.collect(), config=config, warnings=lazy.warnings,
                  extra_columns=lazy.extra_columns)


@dataclasses.dataclass
class _Check:
    """One row-level rule: rows where ``bad`` holds are errors; the first one is reported with ``column``'s text."""

    column: str
    bad: pl.Expr
    expected: str
    show_value: bool = True


def validate_lazy(raw: pl.LazyFrame, config: CohortConfig, *, require_dxa: bool = True,
                  from_file: bool = False) -> LazyCohort:
    """Map and validate ``raw`` (text columns). All row checks run in one aggregation pass (the first bad row of
    each rule), duplicate IDs in one group-by pass; the first failing rule, in a fixed order, is the error.
    ``from_file``: ``raw`` scans a CSV, whose format errors surface in these passes."""
    file = config.table
    frame, names = _map_columns(raw, raw.collect_schema().names(), config)
    row = (pl.col("_f2b_index").cast(pl.Int64) + FIRST_DATA_ROW).alias(ROW)
    frame = frame.with_row_index("_f2b_index").select(
        *[row if c == ROW else pl.col(c) for c in names], *([] if ROW in names else [row]))
    names = [*names, *([] if ROW in names else [ROW])]
    for column in REQUIRED:
        if column not in names:
            raise InputError.at(file, column=column, show_value=False,
                                expected=f"a '{column}' column (map yours in the cohort config's [columns])")
    if require_dxa and not _has_dxa(names):
        missing = "t_spine_l1_l4" if "t_spine_l1_l4" not in names else "t_femoral_neck or t_total_hip"
        raise InputError.at(file, column=missing, show_value=False,
                            expected="DXA T-score columns: t_spine_l1_l4 and t_femoral_neck and/or t_total_hip")
    frame = frame.with_columns(pl.col("patient_id").cast(pl.String))
    reading = _reading(file) if from_file else contextlib.nullcontext()
    with reading:
        checks = _row_checks(names)
        bmi_off = _bmi_off(names)
        aggregations = [pl.col(ROW).filter(check.bad).min().alias(f"check{i}") for i, check in enumerate(checks)]
        # duplicates: distinct 64-bit hashes of the IDs in this pass (small state); the IDs themselves only when
        # some hash repeats (a duplicate, or a collision that the exact check then clears)
        aggregations += [pl.col("patient_id").hash(seed=0).n_unique().alias("distinct_ids"), pl.len().alias("rows")]
        if bmi_off is not None:
            aggregations += [bmi_off.sum().alias("bmi_off"), pl.col(ROW).filter(bmi_off).min().alias("bmi_first")]
        found = (frame.with_columns(_parsed_numbers(names)).select(aggregations).collect(engine="streaming")
                 .row(0, named=True))
        if found["check0"] is not None:  # an empty ID comes before duplicates
            raise InputError.at(file, row=found["check0"], column="patient_id", value=None, expected="a patient ID")
        if found["distinct_ids"] < found["rows"]:
            _check_duplicates(frame, file)
        for i, check in enumerate(checks[1:], start=1):
            first = found[f"check{i}"]
            if first is not None:
                value = _value_at(frame, check.column, first)
                raise InputError.at(file, row=first, column=check.column, value=value, expected=check.expected)
        warnings: list[str] = []
        if bmi_off is not None and found["bmi_off"]:
            bmi = _value_at(frame, parse_number_expr("bmi"), found["bmi_first"])
            warnings.append(f"{found['bmi_off']} row(s) give a BMI more than {BMI_TOLERANCE:g} kg/m² from "
                            f"weight/height², first at row {found['bmi_first']} (bmi {bmi:g}); the given BMI is kept")
    frame = _typed(frame, names, config)
    if "menopausal_status" not in raw.collect_schema().names() and "menopausal_status" not in config.columns:
        warnings.append("no menopausal_status column: women are labelled by the rules' menopause_age, or excluded "
                        "as 'menopausal status unknown' where it is not set")
    canonical = set(CANONICAL_COLUMNS) | {ROW}
    extras = [c for c in frame.collect_schema().names() if c not in canonical]
    return LazyCohort(frame=frame, config=config, warnings=warnings, extra_columns=extras)


def _map_columns(raw: pl.LazyFrame, columns: list[str], config: CohortConfig) -> tuple[pl.LazyFrame, list[str]]:
    renames: dict[str, str] = {}
    for canonical, theirs in config.columns.items():
        if theirs not in columns:
            raise InputError.at(config.table, column=theirs, show_value=False,
                                expected=f"the column that the config maps to '{canonical}' "
                                f"(found: {', '.join(columns[:12])})")
        renames[theirs] = canonical
    # unmapped columns whose names match a canonical one but for case and spaces count as that column; two
    # columns that would both be one canonical column are refused (which one holds the data is a guess)
    source = {canonical: theirs for theirs, canonical in renames.items()}
    lowered = {c.lower(): c for c in CANONICAL_COLUMNS}
    for column in columns:
        key = column.strip().lower().replace(" ", "_")
        if column in renames or key not in lowered:
            continue
        canonical = lowered[key]
        if canonical in source:
            mapped = canonical in config.columns and source[canonical] == config.columns[canonical]
            how = f" (the config maps it to '{canonical}')" if mapped else ""
            raise InputError(f"{config.table}: columns {source[canonical]!r}{how} and {column!r} both give the "
                             f"column '{canonical}': expected one of them (rename or delete the other"
                             f"{', or drop the mapping' if mapped else ''})")
        renames[column] = canonical
        source[canonical] = column
    return raw.rename(renames), [renames.get(c, c) for c in columns]


@contextlib.contextmanager
def _reading(file: Path) -> Iterator[None]:
    from f2b_study.cohort.scan import csv_errors

    with csv_errors(file):
        yield


def _value_at(frame: pl.LazyFrame, column: str | pl.Expr, row: int) -> object:
    """The value of ``column`` on spreadsheet row ``row`` (only asked for once a rule has failed there)."""
    expr = pl.col(column) if isinstance(column, str) else column
    return frame.filter(pl.col(ROW) == row).select(expr).head(1).collect(engine="streaming").item()


def _check_duplicates(frame: pl.LazyFrame, file: Path) -> None:
    """Each patient ID once; the error names the first duplicated ID (by its first row) and its first two rows."""
    firsts = (frame.group_by("patient_id").agg(pl.col(ROW).min().alias("first"), pl.len().alias("n"))
              .filter(pl.col("n") > 1).select(pl.col("first").min()).collect(engine="streaming"))
    first = firsts.item()
    if first is None:
        return
    first_id = _value_at(frame, "patient_id", first)
    rows = (frame.filter(pl.col("patient_id") == first_id).select(ROW).sort(ROW).head(2)
            .collect(engine="streaming")[ROW].to_list())
    raise InputError(f"{file}: rows {rows[0]} and {rows[1]}, column 'patient_id': value {first_id!r}: "
                     "expected each patient ID once (one row per patient)")


def parse_number_expr(column: str) -> pl.Expr:
    """Text -> float, accepting a decimal comma and the Unicode minus sign (common in European exports)."""
    text = pl.col(column).cast(pl.String).str.replace_all("−", "-").str.replace(r"^(-?\d+),(\d+)$", "$1.$2")
    return text.cast(pl.Float64, strict=False)


def _code(column: str, codes: dict[str, str]) -> pl.Expr:
    """Lower-cased text -> its code, else null: `replace_strict(codes, default=None)` as a when-chain, which
    streams (replace_strict holds the whole column)."""
    text = pl.col(column).cast(pl.String).str.to_lowercase()
    out = pl.lit(None, dtype=pl.String)
    for code in reversed(list(dict.fromkeys(codes.values()))):
        words = [word for word, value in codes.items() if value == code]
        out = pl.when(text.is_in(words)).then(pl.lit(code)).otherwise(out)
    return out


def _sex_code() -> pl.Expr:
    return _code("sex", SEX_CODES)


def _menopause_code() -> pl.Expr:
    return _code("menopausal_status", MENOPAUSE_CODES)


def _flag(column: str) -> pl.Expr:
    text = pl.col(column).cast(pl.String).str.to_lowercase()
    return pl.when(text.is_in(list(TRUE_WORDS))).then(True).when(text.is_in(list(FALSE_WORDS))).then(False) \
        .otherwise(None)


def _parsed(column: str) -> str:
    return f"_f2b_number_{column}"


def _parsed_numbers(names: list[str]) -> list[pl.Expr]:
    """Each numeric column parsed once for the checks pass (`_parsed(column)`), not once per rule."""
    return [parse_number_expr(c).alias(_parsed(c)) for c in NUMERIC_RANGES if c in names]


def _row_checks(names: list[str]) -> list[_Check]:
    """The row rules in the order their errors are reported (the first rule is the empty patient ID); numbers are
    read from the `_parsed_numbers` columns."""
    checks = [_Check("patient_id", pl.col("patient_id").is_null(), "a patient ID")]
    for column, (low, high, expected) in NUMERIC_RANGES.items():
        if column not in names:
            continue
        value = pl.col(_parsed(column))
        checks.append(_Check(column, pl.col(column).is_not_null() & (value.is_null() | value.is_nan()),
                             f"a number ({expected})"))
        checks.append(_Check(column, (value < low) | (value > high), expected))
    checks.append(_Check("sex", _sex_code().is_null(), "F or M (also female/male)"))
    if "menopausal_status" in names:
        checks.append(_Check("menopausal_status", pl.col("menopausal_status").is_not_null()
                             & _menopause_code().is_null(),
                             "post, pre or empty (also postmenopausal/premenopausal)"))
    for column in EXCLUSION_FLAGS:
        if column in names:
            checks.append(_Check(column, pl.col(column).is_not_null() & _flag(column).is_null(),
                                 "true/false (also yes/no, 1/0) or empty"))
    return checks


def _bmi_off(names: list[str]) -> pl.Expr | None:
    """Rows whose given BMI is further than BMI_TOLERANCE from weight/height² (a warning, not an error)."""
    if not {"bmi", "height_cm", "weight_kg"} <= set(names):
        return None
    computed = pl.col(_parsed("weight_kg")) / (pl.col(_parsed("height_cm")) / 100) ** 2
    return ((pl.col(_parsed("bmi")) - computed).abs() > BMI_TOLERANCE).fill_null(False)


def _typed(frame: pl.LazyFrame, names: list[str], config: CohortConfig) -> pl.LazyFrame:
    """The checked text columns as typed canonical columns (in the order the columns have always come out)."""
    frame = frame.with_columns(parse_number_expr(c).alias(c) for c in NUMERIC_RANGES if c in names)
    frame = frame.with_columns(_sex_code().alias("sex"))
    if "menopausal_status" in names:
        frame = frame.with_columns(_menopause_code().alias("menopausal_status"))
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("menopausal_status"))
    frame = frame.with_columns(_flag(c).alias(c) for c in EXCLUSION_FLAGS if c in names)
    if "height_cm" not in names or "weight_kg" not in names:
        if "bmi" not in names:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("bmi"))
    else:
        computed = (pl.col("weight_kg") / (pl.col("height_cm") / 100) ** 2).round(2)
        frame = frame.with_columns(computed.alias("bmi") if "bmi" not in names else pl.col("bmi").fill_null(computed))
    if "center" not in names:
        return frame.with_columns(pl.lit(config.name).alias("center"))
    return frame.with_columns(pl.col("center").fill_null(config.name))
