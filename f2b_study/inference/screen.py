"""The screening stage (docs/methods.md, "Screening"): a cohort's face table and a checkpoint -> per-image and
per-patient predictions with the paper's pathway.

    result = screen(cohort, faces, checkpoint, out=Path("reports/x/screen"))

Scoring is batched and resumable: results are kept in chunk files (each written atomically, keyed by the model's
weights hash and the chunk's photo content hashes), so a run killed at any point and rerun does only the missing
chunks and ends with exactly one row per photo and the same numbers. Final files are written atomically and the
chunk files removed. When the probabilities are already known (the study's validation split, predicted once by
the training stage; or the Ray engine's), they are passed in and nothing is scored again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES
from f2b_study.atomic import atomic_path, write_text
from f2b_study.cohort.cohort_photos import CohortPhotos
from f2b_study.errors import InputError
from f2b_study.faces.table import FaceTable
from f2b_study.inference.pathway import pathway_class, recommendation
from f2b_study.inference.ray_engine import SHARDS_DIR as RAY_SHARDS_DIR  # Ray itself is imported only when used
from f2b_study.tables import write_csv

log = logging.getLogger(__name__)

CHUNK = 2048  # photos per resumable chunk
PARTS_DIR = ".screen-parts"
PROBA = tuple(f"p_{c}" for c in CLASSES)
CARRIED = ("center", "sex", "age_years", "height_cm", "weight_kg", "bmi", "split", "bone_status", "lowest_t_score",
           "eligible", "exclusion_reason")
NO_PHOTO = "no photo"


@dataclasses.dataclass
class ScreenResult:
    images: pl.DataFrame
    patients: pl.DataFrame
    summary: dict[str, Any]
    files: dict[str, Path]


def check_checkpoint(checkpoint: Any) -> dict[str, Any]:
    """The sidecar of a `CheckpointRef`, refusing models trained on faces of another pipeline version or for
    another target (checked before any photo is processed)."""
    from f2b_study.faces.version import PIPELINE_VERSION

    sidecar = checkpoint.sidecar
    version = sidecar.get("preprocessing_version")
    if version != PIPELINE_VERSION:
        raise InputError.at(checkpoint.path, column="preprocessing_version", value=version,
                            expected=f"a model trained on faces of this tool's pipeline ({PIPELINE_VERSION}); "
                            "retrain it with this version")
    if list(sidecar["classes"]) != list(CLASSES):
        raise InputError.at(checkpoint.path, column="classes", value=",".join(sidecar["classes"]),
                            expected=f"a bone-status model ({', '.join(CLASSES)})")
    return sidecar


def screen(cohort: CohortPhotos, faces: FaceTable, checkpoint: Any, *, out: Path, device: str = "auto",
           batch_size: int | None = None, workers: int | None = None, bf16: bool = True, parquet: bool = False,
           progress: bool | None = None, probabilities: pl.DataFrame | None = None,
           patient_ids: pl.Series | None = None, thresholds: Any = None) -> ScreenResult:
    """Predictions for every patient of the cohort (or of ``patient_ids``) from ``faces``, the face table of their
    photos; writes predictions_images.csv, predictions.csv, preprocess.csv, screen.json and screen.log under
    ``out``. ``probabilities``: per-image p_<class> already computed (patient_id, photo, p_...): nothing is scored
    again. ``thresholds``: the study's `ScreeningSettings`; pre-specified thresholds there decide the pathway."""
    sidecar = check_checkpoint(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    qc = faces.frame.select("patient_id", "photo", "status", "reason", "face_path", "content_hash")
    ok = qc.filter(pl.col("status") == "ok").sort("patient_id", "photo")
    if probabilities is None:
        scores = score_faces(ok, checkpoint, out=out, device=device, batch_size=batch_size, workers=workers,
                             bf16=bf16, progress=progress)
    else:
        known = ok.select("patient_id", "photo").join(probabilities.select("patient_id", "photo", *PROBA),
                                                      on=["patient_id", "photo"], how="left")
        if known.select(pl.col(PROBA[0]).is_null().any()).item():
            raise ValueError("given probabilities do not cover every usable face")
        scores = known.select(PROBA).to_numpy()
    cohort_rows = (cohort.rows if patient_ids is None
                   else cohort.rows.filter(pl.col("patient_id").is_in(patient_ids.implode())))
    images = image_table(qc, ok, scores)
    per_patient = patient_table(cohort_rows, images, thresholds)
    files = write_outputs(out, images, per_patient, parquet=parquet)
    files["preprocess"] = faces.write_csv(out / "preprocess.csv")
    summary = summarise(per_patient, images, sidecar, checkpoint.path, cohort)
    write_text(out / "screen.json", json.dumps(summary, indent=1, allow_nan=False))
    files["summary"] = out / "screen.json"
    write_text(out / "screen.log", "".join(f"{line}\n" for line in cohort.join_log))
    files["log"] = out / "screen.log"
    for scratch in (PARTS_DIR, RAY_SHARDS_DIR):  # finished: the resumable parts are no longer needed
        shutil.rmtree(out / scratch, ignore_errors=True)
    return ScreenResult(images=images, patients=per_patient, summary=summary, files=files)


def score_faces(ok: pl.DataFrame, checkpoint: Any, *, out: Path, device: str, batch_size: int | None,
                workers: int | None, bf16: bool, progress: bool | None) -> np.ndarray:
    """Probabilities for the ``ok`` faces (face_path, content_hash) in this process, in resumable chunks."""
    from tqdm import tqdm

    from f2b_study.models.runtime import pick_device, predict_paths, prepare_model

    torch_device = pick_device(device)
    model = prepare_model(checkpoint.load(torch_device), torch_device)
    transform = checkpoint.transform
    parts = out / PARTS_DIR
    parts.mkdir(exist_ok=True)
    face_paths = ok["face_path"].to_list()
    hashes = ok["content_hash"].to_list()
    chunks = []
    bar = tqdm(total=len(face_paths), desc="screen", unit="photo", disable=None if progress is None else not progress)
    for start in range(0, len(face_paths), CHUNK):
        key = hashlib.sha256((checkpoint.sidecar["weights_sha256"] + "\n"
                              + "\n".join(hashes[start:start + CHUNK])).encode())
        part = parts / f"{start // CHUNK:06d}-{key.hexdigest()[:20]}.npy"
        if not part.exists():
            probabilities = np.concatenate(list(predict_paths(
                model, face_paths[start:start + CHUNK], transform=transform, device=torch_device,
                batch_size=batch_size, workers=workers, bf16=bf16)))
            with atomic_path(part, suffix=".npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, probabilities.astype(np.float32), allow_pickle=False)
        chunks.append(part)
        bar.update(min(CHUNK, len(face_paths) - start))
    bar.close()
    return (np.concatenate([np.load(p, allow_pickle=False) for p in chunks]) if chunks
            else np.empty((0, len(CLASSES)), np.float32))


def image_table(qc: pl.DataFrame, ok: pl.DataFrame, probabilities: np.ndarray) -> pl.DataFrame:
    """One row per photo: probabilities for standardised faces, the QC status and reason for every photo."""
    scored = ok.select("patient_id", "photo").with_columns(
        pl.Series(name, probabilities[:, i].astype(np.float64)) for i, name in enumerate(PROBA))
    scored = scored.with_columns(
        pl.Series("predicted", np.array(CLASSES)[probabilities.argmax(axis=1)] if len(probabilities) else [],
                  dtype=pl.String))
    return qc.select("patient_id", "photo", pl.col("status").alias("qc_status"), pl.col("reason").alias("qc_reason")
                     ).join(scored, on=["patient_id", "photo"], how="left").select(
        "patient_id", "photo", *PROBA, "predicted", "qc_status", "qc_reason").sort("patient_id", "photo")


def patient_table(cohort: pl.DataFrame, images: pl.DataFrame, thresholds: Any = None) -> pl.DataFrame:
    """One row per patient: mean of the patient's image probabilities, photos used, class, pathway (by the
    pre-specified thresholds of ``thresholds`` when it has them, else by the predicted class), reason."""
    from f2b_study.models.runtime import patient_means

    scored = images.filter(pl.col("qc_status") == "ok")
    ids, means, counts = patient_means(scored.select(PROBA).to_numpy(), scored["patient_id"].to_list())
    per_patient = pl.DataFrame({"patient_id": ids, **{c: means[:, i] for i, c in enumerate(PROBA)},
                                "n_photos_used": counts.astype(np.int64)},
                               schema_overrides={"patient_id": pl.String, **{c: pl.Float64 for c in PROBA}})
    totals = images.group_by("patient_id").agg(
        pl.len().alias("n_photos"),
        pl.col("qc_reason").drop_nulls().unique().sort().str.join("; ").alias("_qc_reasons"))
    keep = ["patient_id", *[c for c in CARRIED if c in cohort.columns]]
    table = (cohort.select(keep).with_columns(pl.col(pl.Boolean).cast(pl.String))
             .join(totals, on="patient_id", how="left").join(per_patient, on="patient_id", how="left"))
    proba = table.select(PROBA).to_numpy()
    has = ~np.isnan(proba).any(axis=1)
    predicted = np.where(has, np.array(CLASSES)[np.nan_to_num(proba, nan=-1).argmax(axis=1)], None)
    table = table.with_columns(
        pl.col("n_photos").fill_null(0), pl.col("n_photos_used").fill_null(0),
        pl.Series("predicted", predicted.tolist(), dtype=pl.String))
    reason = (pl.when(pl.col("n_photos") == 0).then(pl.lit(NO_PHOTO))
              .when(pl.col("n_photos_used") == 0).then(pl.format("no usable photo ({})", pl.col("_qc_reasons"))))
    rules = {"osteoporosis_threshold": getattr(thresholds, "osteoporosis_threshold", None),
             "low_bone_mass_threshold": getattr(thresholds, "low_bone_mass_threshold", None)}
    chosen = [pathway_class(dict(zip(CLASSES, row[:-1], strict=True)), row[-1], **rules)
              for row in table.select(*PROBA, "predicted").iter_rows()]
    table = table.with_columns(
        pl.Series("recommendation", [recommendation(c) for c, _ in chosen], dtype=pl.String),
        pl.Series("pathway_rule", [rule for _, rule in chosen], dtype=pl.String),
        reason.alias("reason")).drop("_qc_reasons")
    first = ["patient_id", *PROBA, "predicted", "n_photos_used", "n_photos", "recommendation", "pathway_rule",
             "reason"]
    return table.select(first + [c for c in table.columns if c not in first]).sort("patient_id")


def write_outputs(out: Path, images: pl.DataFrame, patients: pl.DataFrame, *, parquet: bool) -> dict[str, Path]:
    files = {"images": out / "predictions_images.csv", "patients": out / "predictions.csv"}
    write_csv(images, files["images"])
    write_csv(patients, files["patients"])
    if parquet:
        for name, frame in (("images_parquet", images), ("patients_parquet", patients)):
            target = files["images" if name.startswith("images") else "patients"].with_suffix(".parquet")
            with atomic_path(target, suffix=".parquet") as tmp:
                frame.write_parquet(tmp)
            files[name] = target
    return files


def summarise(patients: pl.DataFrame, images: pl.DataFrame, sidecar: dict[str, Any], model_path: Path,
              cohort: CohortPhotos) -> dict[str, Any]:
    predicted = dict(patients.group_by("predicted").len().iter_rows())
    reasons = dict(patients.filter(pl.col("predicted").is_null()).group_by("reason").len().iter_rows())
    qc = dict(images.filter(pl.col("qc_status") != "ok").group_by("qc_reason").len().iter_rows())
    by_centre = {}
    if "center" in patients.columns:
        for centre, klass, n in patients.group_by("center", "predicted").len().sort("center").iter_rows():
            by_centre.setdefault(str(centre), {})[str(klass) if klass else "no prediction"] = n
    metadata = sidecar.get("metadata") or {}
    return {
        "patients": patients.height,
        "patients_with_prediction": int(patients["predicted"].is_not_null().sum()),
        "photos": images.height,
        "photos_used": int((images["qc_status"] == "ok").sum()),
        "by_predicted_class": {c: predicted.get(c, 0) for c in CLASSES},
        "no_prediction": reasons,
        "photo_qc_exclusions": qc,
        "by_centre": by_centre,
        "model": {"path": str(model_path), "arch": sidecar["arch"], "created": sidecar.get("created"),
                  "training_cohort_hash": sidecar.get("training_cohort_hash"),
                  "facenet_weights": sidecar.get("facenet_weights"),
                  "preprocessing_version": sidecar.get("preprocessing_version"),
                  "package_version": sidecar.get("package_version"),
                  "simulated_labels": metadata.get("simulated_labels")},  # None: the checkpoint does not say
        # photos under the photo folders that no row of the cohort claims (not photos of unscreened patients)
        "unmatched": cohort.unmatched_photos(),
    }


def ray_faces_and_scores(cohort: CohortPhotos, *, qc: Any, checkpoint: Any, out: Path, cache_dir: Path,
                         device: str, batch_size: int | None, workers: int | None, bf16: bool,
                         address: str | None, progress: bool | None) -> tuple[FaceTable, pl.DataFrame]:
    """Standardisation and scoring on Ray: the face table (the study's QC applied by `faces.table`) and the
    usable faces' probabilities."""
    from f2b_study.faces.table import face_table_from_records
    from f2b_study.inference import ray_engine

    ray_engine.import_ray()  # a missing extra fails before any work
    sidecar = check_checkpoint(checkpoint)
    photos = cohort.photos
    paths = list(dict.fromkeys(photos["path"].to_list()))
    out.mkdir(parents=True, exist_ok=True)
    run_dir = ray_engine.run_job(paths, model_path=checkpoint.path, sidecar=sidecar, out=out, cache_dir=cache_dir,
                                 input_size=checkpoint.transform.input_size, device=device, batch_size=batch_size,
                                 workers=workers, bf16=bf16, address=address, progress=progress, thresholds=qc)
    records, by_hash = ray_engine.merge(ray_engine.shards_root(out, sidecar), run_dir)
    faces = face_table_from_records(photos, records, qc=qc, cache_dir=Path(cache_dir).resolve())
    ok = faces.ok()
    scores = (np.stack([by_hash[h] for h in ok["content_hash"].to_list()]) if ok.height
              else np.empty((0, len(CLASSES)), np.float32))
    probabilities = ok.select("patient_id", "photo").with_columns(
        pl.Series(name, scores[:, i].astype(np.float64)) for i, name in enumerate(PROBA))
    return faces, probabilities
