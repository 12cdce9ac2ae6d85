"""`f2b-study screen`: run a trained model over a whole cohort (DESIGN §9).

cohort -> labels (when it has DXA) -> photo join -> face standardisation through the cache -> batched inference
in chunks -> per image and per patient predictions with the paper's pathway -> screening report.

Resumable and never half-written: inference results are kept in chunk files (each written atomically, keyed by
the model's weights hash and the chunk's photo content hashes), so a run killed at any point and rerun does only
the missing chunks and ends with exactly one row per photo and the same numbers. Final files are written
atomically and the chunk files removed.

``engine="ray"`` runs standardisation and inference on a Ray cluster instead (`ray_engine.py`); everything before
and after that stage is shared, so both engines write the same files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES
from f2b_study.atomic import atomic_path, write_text
from f2b_study.errors import InputError
from f2b_study.inference.pathway import recommendation
from f2b_study.inference.ray_engine import SHARDS_DIR as RAY_SHARDS_DIR  # Ray itself is imported only when used
from f2b_study.tables import write_csv

log = logging.getLogger(__name__)

CHUNK = 2048  # photos per resumable chunk
PARTS_DIR = ".screen-parts"
ENGINES = ("local", "ray")
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


def newest_run(runs_root: Path = Path("runs")) -> Path | None:
    """The most recently finished run under ``runs_root`` that has a best checkpoint (any depth ≤ 2)."""
    sidecars = list(runs_root.glob("*/best/model.json")) + list(runs_root.glob("*/*/best/model.json"))
    return max(sidecars, key=lambda p: p.stat().st_mtime).parent.parent if sidecars else None


def resolve_model(model: str | Path | None, configs: Sequence[Any]) -> tuple[Path, str]:
    """(checkpoint path, how it was chosen): --model, else the config's [model] path, else the newest run."""
    if model is None:
        for config in configs:
            configured = config.section("model").get("path") or config.section("screen").get("model")
            if configured:
                base = config.source.parent if config.source else Path(".")
                model, how = base / configured, f"the model named in {config.source}"
                break
        else:
            newest = newest_run()
            if newest is None:
                raise InputError("no trained model found: train one with `f2b-study train COHORT --arch face2bone "
                                 "--out runs/NAME`, or pass --model runs/NAME")
            model, how = newest, "the newest run in runs/"
    else:
        how = "--model"
    path = Path(model)
    if path.is_dir() and (path / "best" / "model.json").exists():
        path = path / "best"
    return path, how


def check_checkpoint(path: Path) -> dict[str, Any]:
    """The sidecar, refusing models trained on faces of another pipeline version or for another target."""
    from f2b_study.faces.version import PIPELINE_VERSION
    from f2b_study.models.checkpoint import read_sidecar

    sidecar = read_sidecar(path)
    version = sidecar.get("preprocessing_version")
    if version != PIPELINE_VERSION:
        raise InputError.at(path, column="preprocessing_version", value=version,
                            expected=f"a model trained on faces of this tool's pipeline ({PIPELINE_VERSION}); "
                            "retrain it with this version")
    if list(sidecar["classes"]) != list(CLASSES):
        raise InputError.at(path, column="classes", value=",".join(sidecar["classes"]),
                            expected=f"a bone-status model ({', '.join(CLASSES)})")
    return sidecar


def _cohort_rows(sources: Sequence[Any], photos: Path | None, patients: Sequence[str] | None
                 ) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Patients (with labels when the cohort has DXA) and their joined photos, all centres."""
    from f2b_study.cohort.label import label
    from f2b_study.cohort.photos import join_photos
    from f2b_study.cohort.schema import has_dxa
    from f2b_study.study import load_centres

    rows, photo_frames, log_lines = [], [], []
    for cohort in load_centres(list(sources), require_dxa=False):
        frame = label(cohort) if has_dxa(cohort.frame) else cohort.frame
        if patients is not None:
            frame = frame.filter(pl.col("patient_id").is_in(list(patients)))
        root = photos if photos is not None else cohort.config.default_photos
        joined = join_photos(frame, root, table=cohort.config.table)
        log_lines += [f"[{cohort.name}] {line}" for line in joined.log_lines()]
        keep = ["patient_id", *[c for c in CARRIED if c in frame.columns]]
        rows.append(frame.select(keep).with_columns(pl.col(pl.Boolean).cast(pl.String)))
        photo_frames.append(joined.photos)
    return pl.concat(rows, how="diagonal_relaxed"), pl.concat(photo_frames), log_lines


def screen(sources: Sequence[Any], *, model_path: Path, out: Path, photos: Path | None = None,
           cache_dir: Path, patients: Sequence[str] | None = None, device: str = "auto",
           batch_size: int | None = None, workers: int | None = None, preprocess_workers: int = 1,
           parquet: bool = False, bf16: bool = True, progress: bool | None = None, engine: str = "local",
           ray_address: str | None = None) -> ScreenResult:
    """Screen the cohort(s); write predictions_images.csv, predictions.csv, screening_report.html, screen.json.
    ``engine="ray"``: standardisation and inference on Ray (``workers`` = inference actors there)."""
    from f2b_study.faces.preprocess import preprocess_photos

    if engine not in ENGINES:
        raise InputError.at("--engine", value=engine, expected=f"one of {', '.join(ENGINES)}")
    if engine == "ray":
        from f2b_study.inference.ray_engine import import_ray

        import_ray()  # a missing extra fails before any work
    sidecar = check_checkpoint(model_path)
    cohort, photo_rows, join_log = _cohort_rows(sources, photos, patients)
    out.mkdir(parents=True, exist_ok=True)
    if engine == "ray":
        qc, probabilities = _score_with_ray(photo_rows, model_path=model_path, sidecar=sidecar, out=out,
                                            cache_dir=cache_dir, device=device, batch_size=batch_size,
                                            workers=workers, bf16=bf16, address=ray_address, progress=progress)
        ok = qc.filter(pl.col("status") == "ok").sort("patient_id", "photo")
    else:
        prep = preprocess_photos(photo_rows, out, cache_dir=cache_dir, workers=preprocess_workers,
                                 progress=progress)
        qc = prep.frame.select("patient_id", "photo", "status", "reason", "face_path", "content_hash")
        ok = qc.filter(pl.col("status") == "ok").sort("patient_id", "photo")
        probabilities = _score_local(ok, model_path=model_path, sidecar=sidecar, out=out, device=device,
                                     batch_size=batch_size, workers=workers, bf16=bf16, progress=progress)

    images = image_table(qc, ok, probabilities)
    per_patient = patient_table(cohort, images)
    files = write_outputs(out, images, per_patient, parquet=parquet)
    summary = summarise(per_patient, images, sidecar, model_path, join_log)
    write_text(out / "screen.json", json.dumps(summary, indent=1, allow_nan=False))
    files["summary"] = out / "screen.json"
    from f2b_study.report.screening import render_screening_report

    files["report"] = out / "screening_report.html"
    write_text(files["report"], render_screening_report(per_patient, images, summary))
    write_text(out / "screen.log", "\n".join(join_log) + ("\n" if join_log else ""))
    shutil.rmtree(out / (PARTS_DIR if engine == "local" else RAY_SHARDS_DIR), ignore_errors=True)
    return ScreenResult(images=images, patients=per_patient, summary=summary, files=files)


def _score_local(ok: pl.DataFrame, *, model_path: Path, sidecar: dict[str, Any], out: Path, device: str,
                 batch_size: int | None, workers: int | None, bf16: bool, progress: bool | None) -> np.ndarray:
    """Probabilities for the ``ok`` faces in this process, in resumable chunks."""
    from tqdm import tqdm

    from f2b_study.inference.engine import predict_paths, prepare_model
    from f2b_study.models.checkpoint import load_checkpoint
    from f2b_study.models.registry import preprocessing
    from f2b_study.training.loop import pick_device

    torch_device = pick_device(device)
    model, _ = load_checkpoint(model_path, map_location=torch_device)
    model = prepare_model(model, torch_device)
    pre = preprocessing(model)
    parts = out / PARTS_DIR
    parts.mkdir(exist_ok=True)
    face_paths = ok["face_path"].to_list()
    hashes = ok["content_hash"].to_list()
    chunks = []
    bar = tqdm(total=len(face_paths), desc="screen", unit="photo", disable=None if progress is None else not progress)
    for start in range(0, len(face_paths), CHUNK):
        key = hashlib.sha256((sidecar["weights_sha256"] + "\n" + "\n".join(hashes[start:start + CHUNK])).encode())
        part = parts / f"{start // CHUNK:06d}-{key.hexdigest()[:20]}.npy"
        if not part.exists():
            probabilities = np.concatenate(list(predict_paths(
                model, face_paths[start:start + CHUNK], size=pre["input_size"], mean=pre["mean"], std=pre["std"],
                device=torch_device, batch_size=batch_size, workers=workers, bf16=bf16)))
            with atomic_path(part, suffix=".npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, probabilities.astype(np.float32), allow_pickle=False)
        chunks.append(part)
        bar.update(min(CHUNK, len(face_paths) - start))
    bar.close()
    return (np.concatenate([np.load(p, allow_pickle=False) for p in chunks]) if chunks
            else np.empty((0, len(CLASSES)), np.float32))


def _score_with_ray(photo_rows: pl.DataFrame, *, model_path: Path, sidecar: dict[str, Any], out: Path,
                    cache_dir: Path, device: str, batch_size: int | None, workers: int | None, bf16: bool,
                    address: str | None, progress: bool | None) -> tuple[pl.DataFrame, np.ndarray]:
    """The QC table (as preprocess.csv has it, which is written here too) and the ``ok`` faces' probabilities,
    computed on Ray."""
    from f2b_study.faces.preprocess import SCHEMA, photo_row
    from f2b_study.faces.qc import QCThresholds
    from f2b_study.inference import ray_engine
    thresholds = QCThresholds()
    paths = list(dict.fromkeys(photo_rows["path"].to_list()))
    run_dir = ray_engine.run_job(paths, model_path=model_path, sidecar=sidecar, out=out, cache_dir=cache_dir,
                                 input_size=int(sidecar["preprocessing"]["input_size"]), device=device,
                                 batch_size=batch_size, workers=workers, bf16=bf16, address=address,
                                 progress=progress, thresholds=thresholds)
    metas, by_hash = ray_engine.merge(ray_engine.shards_root(out, sidecar), run_dir)
    rows = [photo_row(photo, patient, metas[path], thresholds)
            for patient, photo, path in photo_rows.select("patient_id", "photo", "path").iter_rows()]
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    write_csv(frame, out / "preprocess.csv")
    qc = frame.select("patient_id", "photo", "status", "reason", "face_path", "content_hash")
    ok = qc.filter(pl.col("status") == "ok").sort("patient_id", "photo")
    probabilities = (np.stack([by_hash[h] for h in ok["content_hash"].to_list()]) if ok.height
                     else np.empty((0, len(CLASSES)), np.float32))
    return qc, probabilities


def image_table(qc: pl.DataFrame, ok: pl.DataFrame, probabilities: np.ndarray) -> pl.DataFrame:
    """One row per photo: probabilities for standardised faces, the QC status and reason for every photo."""
    scored = ok.select("patient_id", "photo").with_columns(
        pl.Series(name, probabilities[:, i].astype(np.float64)) for i, name in enumerate(PROBA))
    scored = scored.with_columns(
        pl.Series("predicted", np.array(CLASSES)[probabilities.argmax(axis=1)] if len(probabilities) else []))
    return qc.select("patient_id", "photo", pl.col("status").alias("qc_status"), pl.col("reason").alias("qc_reason")
                     ).join(scored, on=["patient_id", "photo"], how="left").select(
        "patient_id", "photo", *PROBA, "predicted", "qc_status", "qc_reason").sort("patient_id", "photo")


def patient_table(cohort: pl.DataFrame, images: pl.DataFrame) -> pl.DataFrame:
    """One row per patient: mean of the patient's image probabilities, photos used, class, pathway, reason."""
    scored = images.filter(pl.col("qc_status") == "ok")
    means = scored.group_by("patient_id").agg(*[pl.col(c).mean() for c in PROBA], pl.len().alias("n_photos_used"))
    totals = images.group_by("patient_id").agg(
        pl.len().alias("n_photos"),
        pl.col("qc_reason").drop_nulls().unique().sort().str.join("; ").alias("_qc_reasons"))
    table = cohort.join(totals, on="patient_id", how="left").join(means, on="patient_id", how="left")
    proba = table.select(PROBA).to_numpy()
    has = ~np.isnan(proba).any(axis=1)
    predicted = np.where(has, np.array(CLASSES)[np.nan_to_num(proba, nan=-1).argmax(axis=1)], None)
    table = table.with_columns(
        pl.col("n_photos").fill_null(0), pl.col("n_photos_used").fill_null(0),
        pl.Series("predicted", predicted.tolist(), dtype=pl.String))
    reason = (pl.when(pl.col("n_photos") == 0).then(pl.lit(NO_PHOTO))
              .when(pl.col("n_photos_used") == 0).then(pl.format("no usable photo ({})", pl.col("_qc_reasons"))))
    table = table.with_columns(
        pl.col("predicted").map_elements(recommendation, return_dtype=pl.String, skip_nulls=False)
        .alias("recommendation"), reason.alias("reason")).drop("_qc_reasons")
    first = ["patient_id", *PROBA, "predicted", "n_photos_used", "n_photos", "recommendation", "reason"]
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
              join_log: list[str]) -> dict[str, Any]:
    predicted = dict(patients.group_by("predicted").len().iter_rows())
    reasons = dict(patients.filter(pl.col("predicted").is_null()).group_by("reason").len().iter_rows())
    qc = dict(images.filter(pl.col("qc_status") != "ok").group_by("qc_reason").len().iter_rows())
    by_centre = {}
    if "center" in patients.columns:
        for centre, klass, n in patients.group_by("center", "predicted").len().sort("center").iter_rows():
            by_centre.setdefault(str(centre), {})[str(klass) if klass else "no prediction"] = n
    return {
        "patients": patients.height,
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
                  "package_version": sidecar.get("package_version")},
        "unmatched": len([line for line in join_log if "matches no patient" in line]),
    }
