"""Patient-level stratified split (docs/methods.md): 8:2, seed 42; all of a patient's photos stay in one split."""

from __future__ import annotations

import polars as pl
from sklearn.model_selection import train_test_split

from f2b_study.errors import InputError

SPLIT_SEED = 42
VALIDATION_FRACTION = 0.2
SPLITS = ("train", "validation")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                 "valid": "validation", "test": "validation"}


def patient_split(patients: pl.DataFrame, target: str, *, seed: int = SPLIT_SEED,
                  validation_fraction: float = VALIDATION_FRACTION, source: str = "cohort") -> pl.DataFrame:
    """``patients`` (one row per patient: patient_id, target, optional split) with a ``split`` column.

    A given ``split`` column is honoured (train/validation; also val/valid/test for validation); otherwise the
    split is drawn with scikit-learn's stratified ``train_test_split`` on the target.
    """
    if "split" in patients.columns and patients["split"].drop_nulls().len() > 0:
        given = patients.with_columns(
            pl.col("split").cast(pl.String).str.to_lowercase().replace_strict(SPLIT_ALIASES, default=None)
            .alias("_split"))
        bad = given.filter(pl.col("_split").is_null())
        if bad.height:
            raise InputError.at(source, column="split", value=bad.item(0, "split"),
                                expected="train or validation for every patient when a split column is given")
        return given.with_columns(pl.col("_split").alias("split")).drop("_split")
    ids = patients["patient_id"].to_list()
    labels = patients[target].to_list()
    train_ids, _ = train_test_split(ids, test_size=validation_fraction, stratify=labels, random_state=seed)
    chosen = set(train_ids)
    return patients.with_columns(
        pl.when(pl.col("patient_id").is_in(list(chosen))).then(pl.lit("train")).otherwise(pl.lit("validation"))
        .alias("split"))
