"""The canonical cohort schema (DESIGN §3): read a centre's table, map its columns, validate every value.

Validation is vectorised (polars) so a million-row table checks in about a second; the first bad value of
each kind is reported as one line naming file, row, column, value and what was expected.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import polars as pl

from f2b_study.config import CohortConfig, load_config
from f2b_study.errors import InputError
from f2b_study.tables import FIRST_DATA_ROW, read_table

log = logging.getLogger(__name__)

T_COLUMNS = ("t_spine_l1_l4", "t_femoral_neck", "t_total_hip")
Z_COLUMNS = ("z_spine_l1_l4", "z_femoral_neck", "z_total_hip")
SITES = ("spine_l1_l4", "femoral_neck", "total_hip")
SPINE_T = ("t_spine_l1_l4",)
HIP_T = ("t_femoral_neck", "t_total_hip")
EXCLUSION_FLAGS = (
    "consent",
    "prior_spine_hip_surgery",
    "ankylosing_spondylitis",
    "bedridden",
    "cognitive_impairment",
    "facial_surgery",
    "facial_skin_disease",
)

# canonical numeric columns and their plausible range (inclusive); outside it is an input error
NUMERIC_RANGES: dict[str, tuple[float, float, str]] = {
    "age_years": (0, 130, "an age in years from 0 to 130"),
    "height_cm": (30, 260, "a height in cm from 30 to 260"),
    "weight_kg": (2, 500, "a weight in kg from 2 to 500"),
    "bmi": (5, 150, "a BMI in kg/m² from 5 to 150"),
    **{c: (-10, 10, "a T-score from -10 to 10") for c in T_COLUMNS},
    **{c: (-10, 10, "a Z-score from -10 to 10") for c in Z_COLUMNS},
}
CANONICAL_COLUMNS = (
    "patient_id", "center", "sex", "age_years", "menopausal_status", "height_cm", "weight_kg", "bmi",
    *T_COLUMNS, *Z_COLUMNS, "photo", "split", *EXCLUSION_FLAGS,
)
REQUIRED = ("patient_id", "sex", "age_years")

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


def load_cohort(source: str | Path | CohortConfig, *, require_dxa: bool = True) -> Cohort:
    """Read, map and validate a cohort given as a CSV/XLSX path, a `.toml` config path or a loaded config.
    ``require_dxa=False`` accepts a table without T-score columns (screening a population without DXA)."""
    config = source if isinstance(source, CohortConfig) else load_config(source)
    raw = read_table(config.table)
    return validate(raw, config, require_dxa=require_dxa)


def has_dxa(frame: pl.DataFrame) -> bool:
    return "t_spine_l1_l4" in frame.columns and any(c in frame.columns for c in HIP_T)


def validate(raw: pl.DataFrame, config: CohortConfig, *, require_dxa: bool = True) -> Cohort:
    file = config.table
    frame = _map_columns(raw, config)
    frame = frame.with_columns(pl.int_range(FIRST_DATA_ROW, FIRST_DATA_ROW + frame.height, dtype=pl.Int64).alias(ROW))
    for column in REQUIRED:
        if column not in frame.columns:
            raise InputError.at(file, column=column, show_value=False,
                                expected=f"a '{column}' column (map yours in the cohort config's [columns])")
    if require_dxa and not has_dxa(frame):
        missing = "t_spine_l1_l4" if "t_spine_l1_l4" not in frame.columns else "t_femoral_neck or t_total_hip"
        raise InputError.at(file, column=missing, show_value=False,
                            expected="DXA T-score columns: t_spine_l1_l4 and t_femoral_neck and/or t_total_hip")
    warnings: list[str] = []
    frame = _check_ids(frame, file)
    frame = _parse_numbers(frame, file)
    frame = _parse_sex(frame, file)
    frame = _parse_menopause(frame, file)
    frame = _parse_flags(frame, file)
    frame, bmi_warnings = _derive_bmi(frame)
    warnings += bmi_warnings
    if "center" not in frame.columns:
        frame = frame.with_columns(pl.lit(config.name).alias("center"))
    else:
        frame = frame.with_columns(pl.col("center").fill_null(config.name))
    if "menopausal_status" not in raw.columns and "menopausal_status" not in config.columns:
        warnings.append("no menopausal_status column: women are labelled by the rules' menopause_age, or excluded "
                        "as 'menopausal status unknown' where it is not set")
    canonical = set(CANONICAL_COLUMNS) | {ROW}
    extras = [c for c in frame.columns if c not in canonical]
    return Cohort(frame=frame, config=config, warnings=warnings, extra_columns=extras)


def _map_columns(raw: pl.DataFrame, config: CohortConfig) -> pl.DataFrame:
    renames: dict[str, str] = {}
    for canonical, theirs in config.columns.items():
        if theirs not in raw.columns:
            raise InputError.at(config.table, column=theirs, show_value=False,
                                expected=f"the column that the config maps to '{canonical}' "
                                f"(found: {', '.join(raw.columns[:12])})")
        renames[theirs] = canonical
    # unmapped columns whose names match a canonical one but for case and spaces count as that column
    taken = set(renames.values())
    lowered = {c.lower(): c for c in CANONICAL_COLUMNS}
    for column in raw.columns:
        key = column.strip().lower().replace(" ", "_")
        if column not in renames and key in lowered and lowered[key] not in taken:
            renames[column] = lowered[key]
            taken.add(lowered[key])
    return raw.rename(renames)


def _first_bad(frame: pl.DataFrame, bad: pl.Expr, column: str) -> tuple[int, object] | None:
    hit = frame.filter(bad).select(ROW, column).head(1)
    if hit.height == 0:
        return None
    return hit.item(0, 0), hit.item(0, 1)


def _check_ids(frame: pl.DataFrame, file: Path) -> pl.DataFrame:
    frame = frame.with_columns(pl.col("patient_id").cast(pl.String))
    empty = _first_bad(frame, pl.col("patient_id").is_null(), "patient_id")
    if empty:
        raise InputError.at(file, row=empty[0], column="patient_id", value=None, expected="a patient ID")
    dup = frame.filter(pl.col("patient_id").is_duplicated())
    if dup.height:
        first_id = dup.sort(ROW).item(0, "patient_id")
        rows = dup.filter(pl.col("patient_id") == first_id).sort(ROW)[ROW].to_list()
        raise InputError(f"{file}: rows {rows[0]} and {rows[1]}, column 'patient_id': value {first_id!r}: "
                         "expected each patient ID once (one row per patient)")
    return frame


def parse_number_expr(column: str) -> pl.Expr:
    """Text -> float, accepting a decimal comma and the Unicode minus sign (common in European exports)."""
    text = pl.col(column).cast(pl.String).str.replace_all("−", "-").str.replace(r"^(-?\d+),(\d+)$", "$1.$2")
    return text.cast(pl.Float64, strict=False)


def _parse_numbers(frame: pl.DataFrame, file: Path) -> pl.DataFrame:
    for column, (low, high, expected) in NUMERIC_RANGES.items():
        if column not in frame.columns:
            continue
        parsed = frame.select(parse_number_expr(column).alias("v"), pl.col(column).alias("raw"), pl.col(ROW))
        not_number = parsed.filter(pl.col("raw").is_not_null() & (pl.col("v").is_null() | pl.col("v").is_nan()))
        if not_number.height:
            raise InputError.at(file, row=not_number.item(0, ROW), column=column, value=not_number.item(0, "raw"),
                                expected=f"a number ({expected})")
        out_of_range = parsed.filter((pl.col("v") < low) | (pl.col("v") > high))
        if out_of_range.height:
            raise InputError.at(file, row=out_of_range.item(0, ROW), column=column,
                                value=out_of_range.item(0, "raw"), expected=expected)
        frame = frame.with_columns(parsed["v"].alias(column))
    return frame


def _parse_sex(frame: pl.DataFrame, file: Path) -> pl.DataFrame:
    code = pl.col("sex").cast(pl.String).str.to_lowercase().replace_strict(SEX_CODES, default=None)
    bad = _first_bad(frame.with_columns(code.alias("_code")), pl.col("_code").is_null(), "sex")
    if bad:
        raise InputError.at(file, row=bad[0], column="sex", value=bad[1], expected="F or M (also female/male)")
    return frame.with_columns(code.alias("sex"))


def _parse_menopause(frame: pl.DataFrame, file: Path) -> pl.DataFrame:
    if "menopausal_status" not in frame.columns:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias("menopausal_status"))
    text = pl.col("menopausal_status").cast(pl.String).str.to_lowercase()
    code = text.replace_strict(MENOPAUSE_CODES, default=None)
    checked = frame.with_columns(code.alias("_code"))
    bad = _first_bad(checked, pl.col("menopausal_status").is_not_null() & pl.col("_code").is_null(),
                     "menopausal_status")
    if bad:
        raise InputError.at(file, row=bad[0], column="menopausal_status", value=bad[1],
                            expected="post, pre or empty (also postmenopausal/premenopausal)")
    return frame.with_columns(code.alias("menopausal_status"))


def _parse_flags(frame: pl.DataFrame, file: Path) -> pl.DataFrame:
    for column in EXCLUSION_FLAGS:
        if column not in frame.columns:
            continue
        text = pl.col(column).cast(pl.String).str.to_lowercase()
        parsed = (pl.when(text.is_in(list(TRUE_WORDS))).then(True)
                  .when(text.is_in(list(FALSE_WORDS))).then(False)
                  .otherwise(None))
        checked = frame.with_columns(parsed.alias("_flag"))
        bad = _first_bad(checked, pl.col(column).is_not_null() & pl.col("_flag").is_null(), column)
        if bad:
            raise InputError.at(file, row=bad[0], column=column, value=bad[1],
                                expected="true/false (also yes/no, 1/0) or empty")
        frame = frame.with_columns(parsed.alias(column))
    return frame


def _derive_bmi(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    if "height_cm" not in frame.columns or "weight_kg" not in frame.columns:
        if "bmi" not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("bmi"))
        return frame, []
    computed = pl.col("weight_kg") / (pl.col("height_cm") / 100) ** 2
    if "bmi" not in frame.columns:
        return frame.with_columns(computed.round(2).alias("bmi")), []
    off = frame.filter((pl.col("bmi") - computed).abs() > BMI_TOLERANCE)
    warnings = []
    if off.height:
        first = off.row(0, named=True)
        warnings.append(f"{off.height} row(s) give a BMI more than {BMI_TOLERANCE:g} kg/m² from weight/height², "
                        f"first at row {first[ROW]} (bmi {first['bmi']:g}); the given BMI is kept")
    return frame.with_columns(pl.col("bmi").fill_null(computed.round(2))), warnings
