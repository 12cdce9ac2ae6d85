"""A study's cohort, built once: every centre's rows validated and labelled, the participant flow, and the photo
join. Every later stage (faces, training, screening, explanation, the report) takes this object instead of going
back to the raw files.

    cohort = build_cohort_photos(centres, target="bone_status")
    cohort.rows        every row of every centre (labelled when the centre has DXA), nothing dropped
    cohort.patients    the patients usable for the target (eligible with a WHO class, or a target value)
    cohort.photos      every joined photo (patient_id, photo, path, source, center)
    cohort.flow        enrolled -> excluded by reason -> eligible by class (later stages add their counts)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from f2b_study import CLASSES
from f2b_study.cohort.centre import CohortConfig, read_centre
from f2b_study.cohort.label import label
from f2b_study.cohort.photos import join_photos
from f2b_study.cohort.schema import ROW, Cohort, has_dxa, load_cohort
from f2b_study.errors import InputError

COVARIATES = ("center", "sex", "age_years", "height_cm", "weight_kg", "bmi")
NOT_WHO_CLASS = "bone status outside the WHO classes"


def in_class_order(counts: dict[str, int]) -> dict[str, int]:
    """Counts keyed by class, the WHO classes first in their fixed order."""
    order = [*CLASSES, *sorted(str(k) for k in counts if k not in CLASSES)]
    return {k: counts[k] for k in order if k in counts}


@dataclasses.dataclass(frozen=True)
class ParticipantFlow:
    """The STARD participant flow. The cohort stage fills the labelling counts; the face stage and the split add
    theirs with `dataclasses.replace`. `to_dict` gives the report's flow mapping."""

    enrolled: int
    excluded: dict[str, int]  # labelling exclusions by reason
    eligible: int
    eligible_by_class: dict[str, int]
    by_centre: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # centre -> enrolled, eligible
    no_photo: int | None = None  # eligible patients without any photo
    photo_qc_excluded: dict[str, int] = dataclasses.field(default_factory=dict)  # patients: reason -> n
    photo_flags: dict[str, int] = dataclasses.field(default_factory=dict)  # analysed photos: flag -> n
    analysed: int | None = None
    analysed_by_class: dict[str, int] = dataclasses.field(default_factory=dict)
    split: dict[str, int] = dataclasses.field(default_factory=dict)
    by_class: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # split -> class -> n

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class CohortPhotos:
    """Labelled rows, usable patients, joined photos and the flow of one study's centres."""

    centres: tuple[CohortConfig, ...]
    target: str | None  # None: no target (screening), every row is a patient
    rows: pl.DataFrame
    patients: pl.DataFrame  # patient_id, target, bone_status, split (when given), covariates
    photos: pl.DataFrame  # patient_id, photo, path, source, center: every joined photo of every row
    excluded: dict[str, int]  # patients left out for the target, by reason (labelling, not a WHO class, no value)
    flow: ParticipantFlow
    join_log: tuple[str, ...]
    warnings: tuple[str, ...]
    labelled: bool  # every centre had DXA columns, so every row carries bone_status and eligibility
    rows_per_centre: dict[str, int] = dataclasses.field(default_factory=dict)  # config name -> rows of its table

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.centres]

    def photos_of(self, patient_ids: Sequence[str] | pl.Series) -> pl.DataFrame:
        ids = patient_ids if isinstance(patient_ids, pl.Series) else pl.Series(list(patient_ids), dtype=pl.String)
        return self.photos.filter(pl.col("patient_id").is_in(ids.implode()))

    def with_target(self, target: str) -> CohortPhotos:
        """The same cohort (rows, photos, flow: nothing relabelled or joined again) with ``target``'s patients:
        every row with a value, whatever its eligibility (e.g. sex, a label faces really carry)."""
        if target not in self.rows.columns:
            raise InputError(f"the cohort has no '{target}' column to learn")
        missing = self.rows.filter(pl.col(target).is_null()).height
        keep = [c for c in ("patient_id", target, "bone_status", "split", *COVARIATES) if c in self.rows.columns]
        patients = (self.rows.filter(pl.col(target).is_not_null()).select(list(dict.fromkeys(keep)))
                    .with_columns(pl.col(target).cast(pl.String)))
        return dataclasses.replace(self, target=target, patients=patients,
                                   excluded={f"no {target} value": missing} if missing else {})

    def unmatched_photos(self) -> int:
        return sum(1 for line in self.join_log if "matches no patient" in line)


def load_centres(sources: Sequence[str | Path | CohortConfig], *, require_dxa: bool = True) -> list[Cohort]:
    """Every centre's validated cohort; a patient ID may appear in one centre only."""
    cohorts = [load_cohort(s if isinstance(s, CohortConfig) else read_centre(s), require_dxa=require_dxa)
               for s in sources]
    seen: dict[str, str] = {}
    for cohort in cohorts:
        for patient_id in cohort.frame["patient_id"].to_list():
            if patient_id in seen:
                raise InputError(f"{cohort.config.table}: column 'patient_id': value {patient_id!r}: expected IDs "
                                 f"unique across centres (also in centre {seen[patient_id]!r})")
            seen[patient_id] = cohort.name
    return cohorts


def label_flow(rows: pl.DataFrame) -> ParticipantFlow:
    """Enrolled -> excluded by reason -> eligible by class, from labelled rows."""
    eligible = rows.filter(pl.col("eligible"))
    reasons = rows.filter(~pl.col("eligible")).group_by("exclusion_reason").len().sort(
        ["len", "exclusion_reason"], descending=[True, False])
    return ParticipantFlow(
        enrolled=rows.height,
        excluded=dict(reasons.iter_rows()),
        eligible=eligible.height,
        eligible_by_class=in_class_order(dict(eligible.group_by("bone_status").len().iter_rows())),
    )


def build_cohort_photos(sources: Sequence[str | Path | CohortConfig], *, photos: Path | None = None,
                        target: str | None = "bone_status", require_dxa: bool = True) -> CohortPhotos:
    """Validate, label and photo-join every centre once. ``photos`` replaces every centre's photo folder.
    Screening (``target=None, require_dxa=False``) accepts centres without T-scores (their rows are not labelled)
    and keeps every row as a patient."""
    centres = tuple(s if isinstance(s, CohortConfig) else read_centre(s) for s in sources)
    cohorts = load_centres(list(centres), require_dxa=require_dxa)
    labelled = all(has_dxa(c.frame) for c in cohorts)
    if target is not None and not labelled:
        raise InputError.at(next(c.config.table for c in cohorts if not has_dxa(c.frame)), column="t_spine_l1_l4",
                            show_value=False, expected="DXA T-score columns to label the patients")
    rows_parts, usable_parts, photo_parts, log_lines, warnings = [], [], [], [], []
    excluded: dict[str, int] = {}
    per_centre: dict[str, int] = {}
    flow_by_centre: dict[str, dict[str, int]] = {}

    def count(reason: str, n: int) -> None:
        if n:
            excluded[reason] = excluded.get(reason, 0) + n

    for cohort in cohorts:
        frame = label(cohort) if has_dxa(cohort.frame) else cohort.frame
        if target is not None and target not in frame.columns:
            raise InputError.at(cohort.config.table, column=target, show_value=False,
                                expected=f"the target column '{target}' (--target)")
        warnings += cohort.warnings
        if target is None:
            usable = frame
        elif target == "bone_status":
            for reason, n in frame.filter(~pl.col("eligible")).group_by("exclusion_reason").len().iter_rows():
                count(reason, n)
            eligible = frame.filter(pl.col("eligible"))
            count(NOT_WHO_CLASS, eligible.filter(~pl.col("bone_status").is_in(list(CLASSES))).height)
            usable = eligible.filter(pl.col("bone_status").is_in(list(CLASSES)))
        else:
            count(f"no {target} value", frame.filter(pl.col(target).is_null()).height)
            usable = frame.filter(pl.col(target).is_not_null())
        root = photos if photos is not None else cohort.config.default_photos
        # every row is joined, so that an excluded patient's photos are not listed as matching no patient
        joined = join_photos(frame, root, table=cohort.config.table)
        log_lines += [f"[{cohort.name}] {line}" for line in joined.log_lines()]
        if target is not None:
            keep = [c for c in ("patient_id", target, "bone_status", "split", *COVARIATES) if c in usable.columns]
            usable = usable.select(list(dict.fromkeys(keep))).with_columns(pl.col(target).cast(pl.String))
        usable_parts.append(usable.drop(ROW, strict=False))
        photo_parts.append(joined.photos.with_columns(pl.lit(cohort.name).alias("_centre")))
        rows_parts.append(frame.drop(ROW))
        per_centre[cohort.name] = frame.height
        if labelled:
            flow_by_centre[cohort.name] = {"enrolled": frame.height, "eligible": int(frame["eligible"].sum())}
    rows = pl.concat(rows_parts, how="diagonal_relaxed")
    flow = (dataclasses.replace(label_flow(rows), by_centre=flow_by_centre if len(centres) > 1 else {})
            if labelled else ParticipantFlow(enrolled=rows.height, excluded={}, eligible=rows.height,
                                             eligible_by_class={}))
    return CohortPhotos(
        centres=centres, target=target, rows=rows,
        patients=pl.concat(usable_parts, how="diagonal_relaxed"),
        photos=pl.concat(photo_parts, how="diagonal_relaxed").drop("_centre"),
        excluded=excluded, flow=flow, join_log=tuple(log_lines), warnings=tuple(warnings), labelled=labelled,
        rows_per_centre=per_centre)
