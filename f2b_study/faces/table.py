"""The face stage's one entry: a cohort's photos -> standardised faces (through the cache) -> the study's quality
control -> a face table. Nothing else in the tool applies QC thresholds.

    faces = standardise(cohort.photos, qc=study.qc, cache_dir=cache, workers=2)
    faces.frame   one row per (patient, photo): status ok/excluded, reason, flags, measurements, face_path
    faces.ok()    the usable faces

The Ray engine standardises on its workers and hands the cache records back to `face_table_from_records`, which
applies the same QC.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from f2b_study.faces.qc import QCThresholds, evaluate


@dataclasses.dataclass(frozen=True)
class FaceTable:
    """One row per (patient, photo) with its QC outcome under ``qc``; faces live in ``cache_dir``."""

    frame: pl.DataFrame
    qc: QCThresholds
    cache_dir: Path
    computed: int | None = 0  # distinct photo files processed in this run (cache misses); None: not known
    from_cache: int | None = 0

    def ok(self) -> pl.DataFrame:
        """The usable faces: patient_id, photo, face_path, content_hash, sorted."""
        return (self.frame.filter(pl.col("status") == "ok")
                .select("patient_id", "photo", "face_path", "content_hash").sort("patient_id", "photo"))

    def subset(self, patient_ids: Sequence[str] | pl.Series) -> FaceTable:
        ids = patient_ids if isinstance(patient_ids, pl.Series) else pl.Series(list(patient_ids), dtype=pl.String)
        return dataclasses.replace(self, frame=self.frame.filter(pl.col("patient_id").is_in(ids.implode())))

    def summary(self) -> dict[str, Any]:
        """Photos by status, exclusions by reason, flags raised, cache hits."""
        flags = Counter(flag for value in self.frame["flags"].drop_nulls() for flag in value.split(";") if flag)
        excluded = self.frame.filter(pl.col("status") == "excluded")
        return {
            "photos": self.frame.height,
            "by_status": dict(Counter(self.frame["status"].to_list()).most_common()),
            "by_reason": dict(Counter(excluded["reason"].to_list()).most_common()),
            "flags": dict(flags.most_common()),
            "computed": self.computed,
            "from_cache": self.from_cache,
        }

    def patient_outcomes(self, patient_ids: Sequence[str]) -> tuple[set[str], dict[str, int]]:
        """(patients with a usable face, {reason: patients}) for ``patient_ids``: a patient none of whose photos
        passed is counted once, under the most frequent reason among its photos (ties: alphabetical)."""
        ids = pl.Series(list(patient_ids), dtype=pl.String)
        photos = self.frame.filter(pl.col("patient_id").is_in(ids.implode()))
        per_patient = photos.group_by("patient_id").agg(
            (pl.col("status") == "ok").any().alias("usable"),
            pl.col("reason").drop_nulls().mode().sort().first().alias("reason"))
        usable = set(per_patient.filter(pl.col("usable"))["patient_id"].to_list())
        failed = per_patient.filter(~pl.col("usable"))
        return usable, dict(failed.group_by("reason").len().iter_rows()) if failed.height else {}

    def write_csv(self, path: Path) -> Path:
        from f2b_study.tables import write_csv

        write_csv(self.frame, path)
        return path


def passes_qc(record: Mapping[str, Any], qc: QCThresholds) -> bool:
    """Whether one cache record's face is usable under the study's QC (the Ray workers' test)."""
    return evaluate(dict(record), qc).status == "ok"


def face_table_from_records(photos: pl.DataFrame, records: Mapping[str, dict[str, Any]], *, qc: QCThresholds,
                            cache_dir: Path) -> FaceTable:
    """The face table of ``photos`` (patient_id, photo, path) from each path's cache record (records made
    elsewhere, e.g. on Ray workers: which were cache hits is not known here)."""
    from f2b_study.faces.preprocess import SCHEMA, photo_row

    values = {path: photo_row("", "", record, qc)[2:] for path, record in records.items()}
    rows = [(photo, patient, *values[path])
            for patient, photo, path in photos.select("patient_id", "photo", "path").iter_rows()]
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    return FaceTable(frame=frame, qc=qc, cache_dir=cache_dir, computed=None, from_cache=None)


def standardise(photos: pl.DataFrame, *, qc: QCThresholds, cache_dir: str | Path, workers: int = 1,
                progress: bool | None = None) -> FaceTable:
    """Standardise every photo of ``photos`` (patient_id, photo, path: `CohortPhotos.photos` or
    `photos_from_folder`) through the cache at ``cache_dir`` and apply ``qc``. ``progress=None`` shows a bar when
    stderr is a terminal."""
    from tqdm import tqdm

    from f2b_study.faces.preprocess import iter_processed, photo_row

    # absolute: face_path must not depend on the directory a later command runs in
    cache = Path(cache_dir).resolve()
    paths = list(dict.fromkeys(photos["path"].to_list()))  # the same file twice is processed once
    # keep each photo's row values, not its whole cache record (landmarks, blendshapes): memory stays small per
    # photo, so 100k photos cost tens of MB
    values: dict[str, tuple[Any, ...]] = {}
    computed = 0
    with tqdm(total=len(paths), desc="faces", unit="photo", file=sys.stderr, dynamic_ncols=True,
              disable=None if progress is None else not progress) as bar:
        for index, record, was_computed in iter_processed(paths, cache, workers):
            values[paths[index]] = photo_row("", "", record, qc)[2:]
            computed += was_computed
            bar.update(1)
    from f2b_study.faces.preprocess import SCHEMA

    rows = [(photo, patient, *values[path])
            for patient, photo, path in photos.select("patient_id", "photo", "path").iter_rows()]
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    return FaceTable(frame=frame, qc=qc, cache_dir=cache, computed=computed, from_cache=len(paths) - computed)
