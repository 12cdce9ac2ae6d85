"""The whole chain for one or more centres (DESIGN §2 `study`, `demo`): label -> photos -> Table 1 -> ... -> report.

Each stage writes its outputs under the study folder and adds what it counted to the participant flow, so the
report is drawn from the real counts.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import polars as pl

from f2b_study.cohort.label import label
from f2b_study.cohort.photos import join_photos
from f2b_study.cohort.schema import ROW, Cohort, load_cohort
from f2b_study.config import CohortConfig, load_config
from f2b_study.errors import InputError
from f2b_study.tables import write_csv

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StudyResult:
    out: Path
    labelled: pl.DataFrame
    flow: dict[str, Any]
    files: dict[str, Path]
    warnings: list[str]


def load_centres(sources: list[str | Path | CohortConfig]) -> list[Cohort]:
    cohorts = [load_cohort(s if isinstance(s, CohortConfig) else load_config(s)) for s in sources]
    seen: dict[str, str] = {}
    for cohort in cohorts:
        for patient_id in cohort.frame["patient_id"].to_list():
            if patient_id in seen:
                raise InputError(f"{cohort.config.table}: column 'patient_id': value {patient_id!r}: expected IDs "
                                 f"unique across centres (also in centre {seen[patient_id]!r})")
            seen[patient_id] = cohort.name
    return cohorts


def label_centres(cohorts: list[Cohort]) -> pl.DataFrame:
    """All centres' labelled rows in one frame (columns a centre lacks are empty)."""
    frames = [label(c).drop(ROW).with_columns(pl.col(pl.Boolean).cast(pl.String)) for c in cohorts]
    return pl.concat(frames, how="diagonal_relaxed")


def flow_from_labels(labelled: pl.DataFrame) -> dict[str, Any]:
    eligible = labelled.filter(pl.col("eligible") == "true")
    reasons = labelled.filter(pl.col("eligible") != "true").group_by("exclusion_reason").len().sort(
        ["len", "exclusion_reason"], descending=[True, False])
    return {
        "enrolled": labelled.height,
        "excluded": dict(reasons.iter_rows()),
        "eligible": eligible.height,
        "eligible_by_class": _in_class_order(dict(eligible.group_by("bone_status").len().iter_rows())),
    }


def _in_class_order(counts: dict[str, int]) -> dict[str, int]:
    from f2b_study import CLASSES

    return {k: counts[k] for k in [*CLASSES, *sorted(k for k in counts if k not in CLASSES)] if k in counts}


def run_study(sources: list[str | Path | CohortConfig], out: Path) -> StudyResult:
    """Run the chain on the given cohorts and write everything under ``out``."""
    from f2b_study.commands.table1 import write_table1
    from f2b_study.stats.table1 import table1

    cohorts = load_centres(sources)
    out.mkdir(parents=True, exist_ok=True)
    warnings = [w for c in cohorts for w in c.warnings]
    labelled = label_centres(cohorts)
    files = {"labelled": out / "labelled.csv"}
    write_csv(labelled, files["labelled"])
    flow = flow_from_labels(labelled)

    photo_log: list[str] = []
    with_photos = 0
    for cohort in cohorts:
        eligible_ids = label(cohort).filter(pl.col("eligible"))
        joined = join_photos(eligible_ids, cohort.config.default_photos, table=cohort.config.table)
        with_photos += joined.counts()["patients_with_photos"]
        photo_log += [f"[{cohort.name}] {line}" for line in joined.log_lines()]
    flow["no_photo"] = flow["eligible"] - with_photos
    files["photo_log"] = out / "photos.log"
    from f2b_study.atomic import write_text

    write_text(files["photo_log"], "\n".join(photo_log) + ("\n" if photo_log else ""))

    eligible = labelled.filter(pl.col("eligible") == "true")
    for by in ("bone_status", "sex"):
        result = table1(eligible, by)
        files[f"table1_{by}"] = out / f"table1_{by}.html"
        write_table1(result, files[f"table1_{by}"], Path(f"{', '.join(c.name for c in cohorts)}"))
        write_table1(result, out / f"table1_{by}.csv", Path(""))
    return StudyResult(out=out, labelled=labelled, flow=flow, files=files, warnings=warnings)
