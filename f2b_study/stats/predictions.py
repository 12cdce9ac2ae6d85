"""Prediction files (`screen` output, or any model's): read and validate for `evaluate` and the study report.

Columns: patient_id, bone_status, p_normal, p_osteopenia, p_osteoporosis; optional split, sex, center,
age_years, weight_kg, height_cm, bmi. Rows whose split is ``train`` are not evaluated: they fit the clinical
comparator (and need bone_status and covariates only; their probabilities may be empty). Every other row is
evaluated and needs probabilities in [0, 1] summing to 1 ± 1e-3. Bad values are one-line InputErrors naming
file, row, column and value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl

from f2b_study import CLASSES
from f2b_study.cohort.schema import NUMERIC_RANGES, SEX_CODES, parse_number_expr
from f2b_study.errors import InputError
from f2b_study.tables import FIRST_DATA_ROW, read_table

PROBA_COLUMNS = tuple(f"p_{c}" for c in CLASSES)
REQUIRED = ("patient_id", "bone_status", *PROBA_COLUMNS)
COVARIATES = ("age_years", "weight_kg", "height_cm", "bmi")
SUM_TOLERANCE = 1e-3
SPLITS = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
          "valid": "validation", "test": "test"}
_ROW = "_row"


@dataclasses.dataclass
class PredictionSet:
    """Validated predictions: ``evaluated`` rows are scored, ``train`` rows only fit the comparators.

    Both frames carry patient_id (str), y (class index), split (str or null), sex (F/M or null), center (str or
    null), age_years/weight_kg/height_cm/bmi (float or null); ``evaluated`` also p_normal/p_osteopenia/
    p_osteoporosis (float).
    """

    source: str
    evaluated: pl.DataFrame
    train: pl.DataFrame
    excluded: dict[str, int] = dataclasses.field(default_factory=dict)  # rows left out of the evaluation, by reason

    @property
    def proba(self) -> np.ndarray:
        return self.evaluated.select(PROBA_COLUMNS).to_numpy().astype(np.float64)

    @property
    def y(self) -> np.ndarray:
        return self.evaluated["y"].to_numpy().astype(np.int64)

    @property
    def patient_id(self) -> np.ndarray:
        return self.evaluated["patient_id"].to_numpy()


def read_predictions(path: str | Path) -> PredictionSet:
    return predictions_from_frame(read_table(path), source=str(path))


def predictions_from_frame(frame: pl.DataFrame, source: str = "predictions") -> PredictionSet:
    """Validate a predictions table (any dtypes; text is parsed as the CLI would) into a PredictionSet."""
    frame = _parse_rows(frame, source, REQUIRED)
    is_train = (pl.col("split") == "train").fill_null(False)
    train = frame.filter(is_train & pl.col("y").is_not_null())
    candidates = frame.filter(~is_train)
    # rows `screen` writes for patients it could not score (no usable photo) and rows without a WHO class are
    # left out and counted, not refused; a row with some probabilities but not all is an error
    no_prediction = pl.all_horizontal(_text(c).is_null() | (_text(c) == "") for c in PROBA_COLUMNS)
    why = (pl.when(no_prediction).then(
        pl.format("no prediction ({})", pl.col("reason")) if "reason" in candidates.columns
        else pl.lit("no prediction"))
        .when(pl.col("y").is_null() & (pl.col("bone_status").is_null() | (pl.col("bone_status") == "")))
        .then(pl.lit("no reference-standard class"))
        .when(pl.col("y").is_null()).then(pl.format("not a WHO class ({})", pl.col("bone_status"))))
    candidates = candidates.with_columns(why.fill_null(pl.when(no_prediction).then(pl.lit("no prediction")))
                                         .alias("_why"))
    excluded = dict(candidates.filter(pl.col("_why").is_not_null()).group_by("_why").len().sort("_why").iter_rows())
    evaluated = candidates.filter(pl.col("_why").is_null())
    if evaluated.height == 0:
        left_out = f" ({'; '.join(f'{k}: {v}' for k, v in excluded.items())})" if excluded else ""
        raise InputError.at(source, column="split", show_value=False,
                            expected="at least one row to evaluate: a WHO class and probabilities, split validation, "
                            f"test or empty (train rows only fit the comparators){left_out}")
    evaluated = _parse_probabilities(evaluated, source)
    return PredictionSet(source=source, evaluated=evaluated.select(*KEEP, *PROBA_COLUMNS, _ROW),
                         train=train.select(*KEEP, _ROW), excluded=excluded)


def read_training_rows(path: str | Path) -> pl.DataFrame:
    """A table of training patients (patient_id, bone_status, covariates) for fitting the clinical comparator."""
    frame = _parse_rows(read_table(path), str(path), ("patient_id", "bone_status"))
    return frame.filter(pl.col("y").is_not_null()).with_columns(pl.lit("train").alias("split")).select(*KEEP, _ROW)


KEEP = ("patient_id", "y", "bone_status", "split", "sex", "center", *COVARIATES)


def _parse_rows(frame: pl.DataFrame, source: str, required: tuple[str, ...]) -> pl.DataFrame:
    """Column names, IDs, bone status, split, sex and covariates of every row (probabilities are separate)."""
    known = (*REQUIRED, "split", "sex", "center", *COVARIATES)
    seen: dict[str, str] = {}
    for column in frame.columns:  # two columns that would both be one known column (`sex` and `Sex`): refused
        key = column.strip().lower() if column.strip().lower() in known else column.strip()
        if key in seen:
            raise InputError(f"{source}: columns {seen[key]!r} and {column!r} both give the column {key!r}: "
                             "expected one of them (rename or delete the other)")
        seen[key] = column
    frame = frame.rename({c: c.strip() for c in frame.columns})
    lowered = {c.lower(): c for c in frame.columns}
    frame = frame.rename({lowered[c]: c for c in known if c in lowered and lowered[c] != c})
    for column in required:
        if column not in frame.columns:
            raise InputError.at(source, column=column, show_value=False,
                                expected=f"a '{column}' column (needed: {', '.join(required)})")
    frame = frame.with_columns(pl.int_range(FIRST_DATA_ROW, FIRST_DATA_ROW + frame.height).alias(_ROW))
    frame = _parse_split(frame, source)
    frame = _parse_ids(frame, source)
    frame = _parse_status(frame, source)
    frame = _parse_sex(frame, source)
    frame = _parse_numbers(frame, source, [c for c in COVARIATES if c in frame.columns])
    for column in COVARIATES:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(column))
    frame = frame.with_columns(pl.col("bmi").fill_null(pl.col("weight_kg") / (pl.col("height_cm") / 100) ** 2))
    if "center" in frame.columns:
        return frame.with_columns(_text("center").alias("center"))
    return frame.with_columns(pl.lit(None, dtype=pl.String).alias("center"))


def _first(frame: pl.DataFrame, bad: pl.Expr, column: str) -> tuple[int, object] | None:
    hit = frame.filter(bad.fill_null(False)).select(_ROW, column).head(1)
    return (hit.item(0, 0), hit.item(0, 1)) if hit.height else None


def _text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.String).str.strip_chars()


def _parse_split(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    if "split" not in frame.columns:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias("split"))
    code = _text("split").str.to_lowercase().replace_strict(SPLITS, default=None)
    bad = _first(frame.with_columns(code.alias("_c")), pl.col("split").is_not_null()
                 & (_text("split") != "") & pl.col("_c").is_null(), "split")
    if bad:
        raise InputError.at(source, row=bad[0], column="split", value=bad[1],
                            expected="train, validation, test or empty")
    return frame.with_columns(code.alias("split"))


def _parse_ids(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """IDs present and each once: a patient counted twice would weigh twice in every metric (and one listed as
    train and as validation would leak)."""
    frame = frame.with_columns(_text("patient_id").alias("patient_id"))
    bad = _first(frame, pl.col("patient_id").is_null() | (pl.col("patient_id") == ""), "patient_id")
    if bad:
        raise InputError.at(source, row=bad[0], column="patient_id", value=None, expected="a patient ID")
    repeated = frame.filter(pl.col("patient_id").is_duplicated()).sort(_ROW)
    if repeated.height:
        first = repeated.item(0, "patient_id")
        rows = repeated.filter(pl.col("patient_id") == first)[_ROW].head(2).to_list()
        raise InputError(f"{source}: rows {rows[0]} and {rows[1]}, column 'patient_id': value {first!r}: expected "
                         "each patient ID once (one row per patient; per-photo rows belong in predictions_images.csv)")
    return frame


def _parse_status(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """y = WHO class index; null for an empty status or the ISCD Z-score wording (rows left out, counted)."""
    from f2b_study.cohort.label import Z_BELOW, Z_WITHIN

    text = _text("bone_status").str.to_lowercase()
    index = text.replace_strict({c: i for i, c in enumerate(CLASSES)}, default=None, return_dtype=pl.Int64)
    checked = frame.with_columns(index.alias("y"))
    known = text.is_null() | (text == "") | text.is_in([Z_BELOW, Z_WITHIN])
    bad = _first(checked, pl.col("y").is_null() & ~known, "bone_status")
    if bad:
        raise InputError.at(source, row=bad[0], column="bone_status", value=bad[1],
                            expected=f"one of {', '.join(CLASSES)} (the WHO class from `f2b-study label`)")
    return checked.with_columns(text.alias("bone_status"))


def _parse_sex(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    if "sex" not in frame.columns:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias("sex"))
    text = _text("sex")
    code = text.str.to_lowercase().replace_strict(SEX_CODES, default=None)
    bad = _first(frame.with_columns(code.alias("_c")), text.is_not_null() & (text != "") & pl.col("_c").is_null(),
                 "sex")
    if bad:
        raise InputError.at(source, row=bad[0], column="sex", value=bad[1], expected="F or M (also female/male)")
    return frame.with_columns(code.alias("sex"))


def _parse_numbers(frame: pl.DataFrame, source: str, columns: list[str]) -> pl.DataFrame:
    for column in columns:
        low, high, expected = NUMERIC_RANGES[column]
        parsed = parse_number_expr(column)
        checked = frame.with_columns(parsed.alias("_v"))
        raw_present = pl.col(column).is_not_null() & (_text(column) != "")
        bad = _first(checked, raw_present & (pl.col("_v").is_null() | pl.col("_v").is_nan()), column)
        if bad:
            raise InputError.at(source, row=bad[0], column=column, value=bad[1], expected=f"a number ({expected})")
        bad = _first(checked, (pl.col("_v") < low) | (pl.col("_v") > high), column)
        if bad:
            raise InputError.at(source, row=bad[0], column=column, value=bad[1], expected=expected)
        frame = checked.with_columns(pl.col("_v").alias(column)).drop("_v")
    return frame


def _parse_probabilities(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    for column in PROBA_COLUMNS:
        checked = frame.with_columns(parse_number_expr(column).alias("_v"))
        bad = _first(checked, pl.col("_v").is_null() | pl.col("_v").is_nan(), column)
        if bad:
            raise InputError.at(source, row=bad[0], column=column, value=bad[1],
                                expected="a probability (a number from 0 to 1)")
        bad = _first(checked, (pl.col("_v") < 0) | (pl.col("_v") > 1), column)
        if bad:
            raise InputError.at(source, row=bad[0], column=column, value=bad[1],
                                expected="a probability from 0 to 1")
        frame = checked.with_columns(pl.col("_v").alias(column)).drop("_v")
    total = pl.sum_horizontal(*PROBA_COLUMNS)
    checked = frame.with_columns(total.alias("_sum"))
    bad = _first(checked, (pl.col("_sum") - 1).abs() > SUM_TOLERANCE, "_sum")
    if bad:
        raise InputError.at(source, row=bad[0], column="+".join(PROBA_COLUMNS), value=f"{bad[1]:.6g}",
                            expected=f"probabilities summing to 1 ± {SUM_TOLERANCE:g}")
    return frame
