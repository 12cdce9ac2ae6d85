"""The whole chain for one or more centres (`study`, `demo`). It only threads the stages' objects:

    StudyConfig -> CohortPhotos (labelled once) -> Table 1 -> FaceTable (standardised once, the study's [qc])
      -> TrainingData (split) -> train (validation predicted once) -> screening outputs of the validation split
      -> evaluation (per centre and pooled) -> explanations -> STARD report

Every stage uses the one resolved configuration, so the report's methods describe what ran. A rerun reuses the
face cache and continues (or reuses) the training run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from f2b_study.atomic import write_text
from f2b_study.cohort.cohort_photos import CohortPhotos, ParticipantFlow, build_cohort_photos
from f2b_study.config import StudyConfig
from f2b_study.faces.table import FaceTable, standardise
from f2b_study.jsonutil import dumps
from f2b_study.tables import write_csv

log = logging.getLogger(__name__)

STAGES = ("label", "faces", "train", "screen", "evaluate", "explain", "report")


@dataclasses.dataclass
class StudyResult:
    out: Path
    flow: ParticipantFlow
    files: dict[str, Path]
    warnings: list[str]
    evaluation: dict[str, Any] | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    pipeline_check: dict[str, Any] | None = None


def run_study(study: StudyConfig, out: Path, *, device: str = "auto", preprocess_workers: int = 1,
              cache_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> StudyResult:
    """Run the chain on the study's centres and write everything under ``out``: what may leave the site in
    ``out/shareable``, per-patient files in ``out/private`` (faces stay in ``cache_dir``, default the tool's one
    face cache). The folder is locked for the run."""
    from f2b_study.runlock import run_lock

    with run_lock(out, "study"):
        return _run_study(study, out, device=device, preprocess_workers=preprocess_workers, cache_dir=cache_dir,
                          progress=progress)


def _run_study(study: StudyConfig, out: Path, *, device: str, preprocess_workers: int, cache_dir: Path | None,
               progress: Callable[[str], None] | None) -> StudyResult:
    from f2b_study.faces.cache import default_cache_dir
    from f2b_study.outputs import prepare_outputs

    cache_dir = cache_dir or default_cache_dir()
    outputs = prepare_outputs(out)
    shared, private = outputs.shareable, outputs.private
    step = progress or (lambda message: log.info(message))
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    step("labelling")
    cohort = build_cohort_photos(study.centres, target=study.train.target)
    files = {"labelled": private / "labelled.csv"}
    write_csv(cohort.rows, files["labelled"])
    eligible = cohort.rows.filter(pl.col("eligible"))
    table1s = _write_table1s(eligible, [(f"Table 1 by {by.replace('_', ' ')} (eligible patients)", by)
                                        for by in ("bone_status", "sex")], shared, files)
    lap("label")

    step("faces and split")
    from f2b_study.training.run import training_data

    faces = standardise(cohort.photos_of(cohort.patients["patient_id"]), qc=study.qc, cache_dir=cache_dir,
                        workers=preprocess_workers, progress=progress is not None)
    data = training_data(cohort, faces, study.train)
    flow = data.flow
    from f2b_study.faces.figures import regions_figure

    files["regions_figure"] = shared / "regions.png"
    regions_figure(faces.ok()["face_path"].to_list(), files["regions_figure"],
                   title="Facial regions on the mean standardised face")
    table1s += _write_table1s(data.patients, [("Table 1 by split (analysed patients)", "split")], shared, files)
    lap("faces")

    step("training")
    from f2b_study.models.runtime import resolve_checkpoint
    from f2b_study.report.training_curve import write_training_curve
    from f2b_study.training.run import train_one

    run_dir = private / "model"
    run = train_one(data, study.train, out=run_dir, device=device, resume=True, progress=progress is not None,
                    settings_record=study.describe(["train", "qc"]),
                    simulated_labels=study.report.simulated_labels)
    files["training_curve"] = write_training_curve(run_dir, f"{study.train.arch} · {data.target}",
                                                   shared / "training_curve.svg")
    checkpoint = resolve_checkpoint(run_dir)
    files["model"] = checkpoint.path
    lap("train")

    control = None
    if study.report.positive_control:
        step(f"pipeline check: the same model trained on {study.report.positive_control}")
        control = _positive_control(cohort, study, private / "pipeline_check", device, cache_dir, preprocess_workers,
                                    progress is not None)
        timings["pipeline_check"] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()

    step("screening output of the validation split")
    screened = _screen_validation(cohort, faces, data, run, checkpoint, private / "screen", shared, study)
    files["screening_report"] = screened.files["report"]
    files["predictions"] = private / "predictions.csv"
    predictions = evaluation_rows(screened.patients, data.patients)
    write_csv(predictions, files["predictions"])
    lap("screen")

    step("evaluating")
    evaluation, multicentre = _evaluate(predictions, study)
    from f2b_study.stats.evaluation import to_document

    files["evaluation"] = shared / "evaluation.json"
    write_text(files["evaluation"], dumps(to_document(evaluation)))
    lap("evaluate")

    sections = []
    if study.explain.enabled:
        step("explaining")
        from f2b_study.explain.run import run_explain
        from f2b_study.explain.section import explanation_sections

        result, _ = run_explain(cohort, faces, checkpoint, out=shared / "explain", private=private / "explain",
                                settings=study.explain, device=device, progress=False,
                                png=False)  # the report exports every figure as PNG already
        files["explain"] = shared / "explain"
        sections = explanation_sections(result.document, result.figures)
        lap("explain")

    step("report")
    files["report"] = shared / "report.html"
    _write_report(files["report"], study, cohort, data, run, checkpoint, evaluation, multicentre, flow, table1s,
                  sections, control)
    lap("report")
    from f2b_study.report.degenerate import assess

    if study.report.include_faces:
        files.update(_private_faces(faces, data, run, private))
    write_text(shared / "study.json", dumps({"flow": flow.to_dict(), "timings_s": timings, "pipeline_check": control,
                                          "degenerate": assess(to_document(evaluation)).to_json(),
                                          "config": study.describe(),
                                          "config_sha256": study.digest(),
                                          "files": {k: str(v.relative_to(out)) for k, v in files.items()}}))
    return StudyResult(out=out, flow=flow, files=files, warnings=list(cohort.warnings), evaluation=evaluation,
                       timings=timings, pipeline_check=control)


def _positive_control(cohort: CohortPhotos, study: StudyConfig, out: Path, device: str, cache_dir: Path,
                      workers: int, progress: bool) -> dict[str, Any]:
    """The same model and recipe trained on a label faces really carry (the config's positive_control): every
    patient with a value and a usable face, split 8:2 as usual; its held-out result."""
    from f2b_study.training.run import train_one, training_data

    target = study.report.positive_control
    control = cohort.with_target(target)
    faces = standardise(control.photos_of(control.patients["patient_id"]), qc=study.qc, cache_dir=cache_dir,
                        workers=workers, progress=progress)
    # the same model and recipe; its own epoch budget (a check that the machinery learns, not a result)
    settings = dataclasses.replace(study.train, target=target,
                                   epochs=min(study.train.epochs, study.report.positive_control_epochs))
    data = training_data(control, faces, settings)
    run = train_one(data, settings, out=out, device=device, resume=True, progress=progress,
                    settings_record=study.describe(["train", "qc"]))
    summary = run.record.summary or {}
    return {"target": target, "classes": data.classes, "n_patients": run.record.n_patients,
            "epochs_run": run.record.epochs_run, "accuracy": summary.get("accuracy"), "auc": summary.get("auc"),
            "auc_ci": summary.get("auc_ci"), "positive_class": summary.get("positive_class"),
            "folder": str(out)}


def _screen_validation(cohort: CohortPhotos, faces: FaceTable, data: Any, run: Any, checkpoint: Any, out: Path,
                       shared: Path, study: StudyConfig) -> Any:
    """The screening outputs of the validation patients from the probabilities training computed once."""
    from f2b_study.inference.screen import screen
    from f2b_study.report.screening import write_screening_report

    validation_ids = data.patients.filter(pl.col("split") == "validation")["patient_id"]
    screened = screen(cohort, faces.subset(validation_ids), checkpoint, out=out,
                      probabilities=run.validation_images, patient_ids=validation_ids, thresholds=study.screening)
    write_screening_report(screened, shared, study.report.title)
    return screened


def _write_table1s(frame: pl.DataFrame, tables: list[tuple[str, str]], out: Path, files: dict[str, Path]
                   ) -> list[tuple[str, Any]]:
    from f2b_study.report.table1 import write_table1
    from f2b_study.stats.table1 import table1

    results = []
    for caption, by in tables:
        result = table1(frame, by)
        files[f"table1_{by}"] = out / f"table1_{by}.html"
        write_table1(result, files[f"table1_{by}"], caption)
        write_table1(result, out / f"table1_{by}.csv", caption)
        results.append((caption, result))
    return results


def evaluation_rows(screened: pl.DataFrame, patients: pl.DataFrame) -> pl.DataFrame:
    """The predictions file `evaluate` reads: validation patients with probabilities (split = validation) and the
    training patients with covariates only (split = train: they fit the clinical comparator)."""
    validation = screened.drop("split", strict=False).join(patients.select("patient_id", "split"), on="patient_id",
                                                           how="left")
    train = patients.filter(pl.col("split") == "train")
    return pl.concat([validation, train], how="diagonal_relaxed")


def _evaluate(predictions: pl.DataFrame, study: StudyConfig) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from f2b_study.stats.evaluation import evaluate_predictions
    from f2b_study.stats.meta import multicentre_summary
    from f2b_study.stats.predictions import predictions_from_frame

    report = study.report
    by = report.subgroups
    screening = study.screening
    prespecified = {name: value for name, value in (("osteoporosis", screening.osteoporosis_threshold),
                                                    ("low_bone_mass", screening.low_bone_mass_threshold))
                    if value is not None}
    centres = predictions["center"].drop_nulls().unique().sort().to_list() if "center" in predictions.columns else []
    if len(centres) > 1:
        per_centre = {c: predictions.filter(pl.col("center") == c) for c in centres}
        multicentre = multicentre_summary(per_centre, by=by, replicates=report.bootstrap, seed=report.bootstrap_seed,
                                          prespecified=prespecified)
        return multicentre["pooled"], multicentre
    ps = predictions_from_frame(predictions, "study predictions")
    return evaluate_predictions(ps, by=by, replicates=report.bootstrap, seed=report.bootstrap_seed,
                                prespecified=prespecified), None


def _write_report(target: Path, study: StudyConfig, cohort: CohortPhotos, data: Any, run: Any, checkpoint: Any,
                  evaluation: dict[str, Any], multicentre: dict[str, Any] | None, flow: ParticipantFlow,
                  table1s: list[tuple[str, Any]], sections: list[Any], control: dict[str, Any] | None) -> None:
    from f2b_study.privacy import study_key
    from f2b_study.report.methods import CentreFacts, MethodsFacts, labelling_text
    from f2b_study.report.stard import StudyReportInput, write_stard_report

    record = run.record
    facenet = record.facenet_weights or {}
    sidecar = checkpoint.sidecar
    provenance = {
        "architecture": record.arch,
        "FaceNet weights": facenet.get("source", "none (no FaceNet branch)"),
        "training cohort hash": record.cohort_hash,
        "face pipeline": record.preprocessing_version,
        "package version": record.package_version,
        "epochs run": f"{record.epochs_run} of {study.train.epochs} (best epoch {(record.best_epoch or 0) + 1})",
        "configuration sha256": study.digest(),
        "warnings": [],
    }
    facts = MethodsFacts(
        centres=[CentreFacts(c.name, records=cohort.rows_per_centre.get(c.name)) for c in study.centres],
        labelling=labelling_text([(c.name, c.rules) for c in study.centres]),
        simulated_labels=study.report.simulated_labels,
        split=data.split_rule.kind,
        split_ratio=_ratio(data.split_rule.validation_fraction),
        split_seed=data.split_rule.seed,
        photo_qc=dataclasses.asdict(study.qc),
        face_pipeline=record.preprocessing_version,
        arch=record.arch,
        model_config=sidecar["config"],
        training=_training_facts(study, record),
        facenet_weights=record.facenet_weights,
    )
    report = StudyReportInput(
        title=study.report.title or f"Validation report: {', '.join(c.name for c in study.centres)}",
        evaluation=evaluation,
        cohorts=[c.name for c in study.centres],
        model_name=record.arch,
        methods=facts,
        flow=flow.to_dict(),
        table1=table1s,
        multicentre=multicentre,
        provenance=provenance,
        explanations=sections,
        pipeline_check=control,
        simulated_labels=study.report.simulated_labels,
        include_faces=study.report.include_faces,
        # the key stays outside the whole output folder (shareable/ and private/ alike)
        pseudonym_key=study_key(study.name, key_file=study.privacy.key_file, outputs=target.parent.parent),
    )
    write_stard_report(report, target)


def _ratio(validation_fraction: float | None) -> str:
    validation = round(10 * (validation_fraction or 0.2))
    return f"{10 - validation}:{validation}"


def _training_facts(study: StudyConfig, record: Any) -> dict[str, Any]:
    """The recipe as it ran, for the methods paragraph (and TRIPOD+AI items 12-13)."""
    settings = study.train
    augment = settings.augment_config()
    names = [n for n in ("hflip", "vflip", "affine", "clahe") if augment and getattr(augment, n) > 0]
    words = {"hflip": "horizontal flip", "vflip": "vertical flip", "affine": "affine", "clahe": "CLAHE"}
    return {
        "epochs": settings.epochs, "batch_size": settings.batch_size, "patience": settings.patience,
        "seed": settings.seed, "loss": "cross-entropy", "optimizer": "Adam",
        "schedule": f"OneCycleLR (max learning rate {settings.lr:g}, {100 * settings.warmup_fraction:g}% warm-up, "
                    f"annealed to {settings.final_lr:g})",
        "early_stopping": f"Early stopping on the validation patients' accuracy, patience {settings.patience} epochs "
                          "counted from the end of the warm-up (equal accuracy with a lower validation loss counts "
                          "as better)",
        "augment": ", ".join(words[n] for n in names) or "none",
        "epochs_run": record.epochs_run,
        "best_epoch": None if record.best_epoch is None else record.best_epoch + 1,
        "class_imbalance": "none (unweighted cross-entropy, no resampling)",
    }


def _private_faces(faces: FaceTable, data: Any, run: Any, private: Path) -> dict[str, Path]:
    """--include-faces: identifiable faces for the study team, in the private outputs only: the QC review sheet of
    every photo and a sheet of example validation faces per class with their predictions."""
    from f2b_study.report.example_faces import write_example_faces
    from f2b_study.report.qc_review import write_qc_review

    paths = dict(zip(data.cohort.photos["photo"].to_list(), data.cohort.photos["path"].to_list(), strict=True))
    files = {"qc_review": write_qc_review(faces.frame, paths, private)}
    if run.validation_images is not None:
        predicted = run.validation_images.join(data.images.select("patient_id", "photo", "face_path",
                                                                  data.target), on=["patient_id", "photo"])
        files["example_faces"] = write_example_faces(predicted, data.target, private / "example_faces.png")
    return files
