"""The whole chain for one or more centres (DESIGN §2 `study`, `demo`):

    label -> Table 1 -> faces (QC, cache) -> patient split -> train -> screen the validation split
          -> evaluate (per centre and pooled) -> explain -> STARD report

Each stage writes its outputs under the study folder and adds what it counted to the participant flow, so the
report is drawn from the real counts. A rerun reuses the face cache and continues (or reuses) the training run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from f2b_study import CLASSES
from f2b_study.atomic import write_text
from f2b_study.cohort.label import label
from f2b_study.cohort.schema import ROW, Cohort, load_cohort
from f2b_study.config import CohortConfig, load_config
from f2b_study.errors import InputError
from f2b_study.faces.cache import DEFAULT_CACHE
from f2b_study.tables import write_csv

log = logging.getLogger(__name__)



def load_centres(sources: list[str | Path | CohortConfig], *, require_dxa: bool = True) -> list[Cohort]:
    """Every centre's validated cohort; a patient ID may appear in one centre only."""
    cohorts = [load_cohort(s if isinstance(s, CohortConfig) else load_config(s), require_dxa=require_dxa)
               for s in sources]
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


def _in_class_order(counts: dict[str, int]) -> dict[str, int]:
    return {k: counts[k] for k in [*CLASSES, *sorted(str(k) for k in counts if k not in CLASSES)] if k in counts}


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


@dataclasses.dataclass
class StudySettings:
    """How the chain runs; read from the first cohort config's [train], [screen], [explain], [report] sections."""

    arch: str = "face2bone"
    epochs: int = 150
    batch_size: int = 32
    patience: int = 10
    seed: int = 42
    model_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    augment: str | None = None
    facenet_weights: str | None = None
    device: str = "auto"
    preprocess_workers: int = 1
    replicates: int = 2000
    explain: bool = True
    include_faces: bool = False
    simulated_labels: bool = False
    title: str | None = None
    cache_dir: Path = DEFAULT_CACHE

    @classmethod
    def from_config(cls, config: CohortConfig, **overrides: Any) -> StudySettings:
        train, report = config.section("train"), config.section("report")
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in train.items():
            name = {"model": "model_config"}.get(key, key)
            if name not in known and name != "input_size":
                raise InputError.at(config.source or config.table, column=f"train.{key}", value=key,
                                    expected=f"one of {sorted(known)}")
            values[name] = value
        if "input_size" in values:
            values["model_config"] = {**values.get("model_config", {}), "input_size": values.pop("input_size")}
        values.update({k: v for k, v in {"simulated_labels": report.get("simulated_labels"),
                                         "title": report.get("title"),
                                         "include_faces": report.get("include_faces")}.items() if v is not None})
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclasses.dataclass
class StudyResult:
    out: Path
    flow: dict[str, Any]
    files: dict[str, Path]
    warnings: list[str]
    evaluation: dict[str, Any] | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)


def run_study(sources: list[str | Path | CohortConfig], out: Path, settings: StudySettings | None = None,
              progress: Callable[[str], None] | None = None) -> StudyResult:
    """Run the chain on the given cohorts and write everything under ``out``."""
    step = progress or (lambda message: log.info(message))
    configs = [s if isinstance(s, CohortConfig) else load_config(s) for s in sources]
    settings = settings or StudySettings.from_config(configs[0])
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    step("labelling")
    cohorts = load_centres(configs)
    out.mkdir(parents=True, exist_ok=True)
    warnings = [w for c in cohorts for w in c.warnings]
    labelled = label_centres(cohorts)
    files = {"labelled": out / "labelled.csv"}
    write_csv(labelled, files["labelled"])
    flow = flow_from_labels(labelled)
    eligible = labelled.filter(pl.col("eligible") == "true")
    tables = [(f"Table 1 by {by.replace('_', ' ')} (eligible patients)", by) for by in ("bone_status", "sex")]
    table1s = _write_table1s(eligible, tables, out, files)
    lap("label")

    step("faces and split")
    from f2b_study.training.loop import TrainSettings
    from f2b_study.training.run import prepare, train_one

    run_dir = out / "model"
    data = prepare(configs, photos=None, target="bone_status", run_dir=run_dir, cache_dir=settings.cache_dir,
                   workers=settings.preprocess_workers, qc=configs[0].section("qc"))
    flow.update(_photo_flow(data))
    from f2b_study.faces.figures import regions_figure

    files["regions_figure"] = out / "regions.png"
    ok_faces = data.preprocess.filter(pl.col("status") == "ok")["face_path"].to_list()
    regions_figure(ok_faces, files["regions_figure"], title="Facial regions on the mean standardised face")
    table1s += _write_table1s(data.patients, [("Table 1 by split (analysed patients)", "split")], out, files)
    lap("faces")

    step("training")
    from f2b_study.training.augment import AugmentConfig

    train_settings = TrainSettings(epochs=settings.epochs, batch_size=settings.batch_size,
                                   patience=settings.patience, seed=settings.seed, device=settings.device,
                                   augment=AugmentConfig.from_names(settings.augment))
    run = train_one(data, arch=settings.arch, out=run_dir, settings=train_settings,
                    model_config=settings.model_config, facenet_weights=settings.facenet_weights, resume=True,
                    progress=progress is not None)
    files["model"] = run_dir / "best"
    lap("train")

    step("screening the validation split")
    from f2b_study.inference.screen import screen

    validation_ids = data.patients.filter(pl.col("split") == "validation")["patient_id"].to_list()
    screened = screen(configs, model_path=run_dir / "best", out=out / "screen", cache_dir=settings.cache_dir,
                      patients=validation_ids, device=settings.device, progress=False)
    files["predictions"] = out / "predictions.csv"
    predictions = evaluation_rows(screened.patients, data.patients)
    write_csv(predictions, files["predictions"])
    files["screening_report"] = screened.files["report"]
    lap("screen")

    step("evaluating")
    evaluation, multicentre = _evaluate(predictions, settings)
    from f2b_study.commands._common import json_safe
    from f2b_study.stats.evaluation import to_document

    files["evaluation"] = out / "evaluation.json"
    write_text(files["evaluation"], json.dumps(json_safe(to_document(evaluation)), indent=1, allow_nan=False))
    lap("evaluate")

    sections = []
    if settings.explain:
        step("explaining")
        sections = _explain(configs, run_dir, out, settings, files)
        lap("explain")

    step("report")
    files["report"] = out / "report.html"
    _write_report(files["report"], configs, settings, run, evaluation, multicentre, flow, table1s, sections)
    lap("report")
    write_text(out / "study.json", json.dumps({"flow": flow, "timings_s": timings,
                                               "files": {k: str(v) for k, v in files.items()}}, indent=1))
    return StudyResult(out=out, flow=flow, files=files, warnings=warnings, evaluation=evaluation, timings=timings)


def _write_table1s(frame: pl.DataFrame, tables: list[tuple[str, str]], out: Path, files: dict[str, Path]
                   ) -> list[tuple[str, Any]]:
    from f2b_study.commands.table1 import write_table1
    from f2b_study.stats.table1 import table1

    results = []
    for caption, by in tables:
        result = table1(frame, by)
        files[f"table1_{by}"] = out / f"table1_{by}.html"
        write_table1(result, files[f"table1_{by}"], Path(caption))
        write_table1(result, out / f"table1_{by}.csv", Path(caption))
        results.append((caption, result))
    return results


def _photo_flow(data: Any) -> dict[str, Any]:
    """Photo join and QC counts of the eligible (WHO-class) patients, and the analysed split by class."""
    photos = data.preprocess
    analysed = data.patients
    eligible_ids = set(analysed["patient_id"].to_list())
    per_patient = photos.group_by("patient_id").agg(
        (pl.col("status") == "ok").any().alias("usable"),
        pl.col("reason").drop_nulls().mode().sort().first().alias("reason"))
    failed = per_patient.filter(~pl.col("usable") & ~pl.col("patient_id").is_in(list(eligible_ids)))
    qc_reasons = dict(failed.group_by("reason").len().iter_rows()) if failed.height else {}
    without_photo = data.excluded.get("no usable photo", 0) - failed.height
    by_class = {s: _in_class_order(dict(analysed.filter(pl.col("split") == s).group_by("bone_status").len()
                                        .iter_rows())) for s in ("train", "validation")}
    return {
        "no_photo": max(without_photo, 0),
        "photo_qc_excluded": qc_reasons,
        "analysed": analysed.height,
        "analysed_by_class": _in_class_order(dict(analysed.group_by("bone_status").len().iter_rows())),
        "split": {s: int((analysed["split"] == s).sum()) for s in ("train", "validation")},
        "by_class": by_class,
    }


def evaluation_rows(screened: pl.DataFrame, patients: pl.DataFrame) -> pl.DataFrame:
    """The predictions file `evaluate` reads: validation patients with probabilities (split = validation) and the
    training patients with covariates only (split = train: they fit the clinical comparator)."""
    validation = screened.join(patients.select("patient_id", "split"), on="patient_id", how="left")
    train = patients.filter(pl.col("split") == "train")
    return pl.concat([validation, train], how="diagonal_relaxed")


def _evaluate(predictions: pl.DataFrame, settings: StudySettings) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from f2b_study.stats.evaluation import evaluate_predictions
    from f2b_study.stats.meta import multicentre_summary
    from f2b_study.stats.predictions import predictions_from_frame

    by = ("sex", "center", "age_band")
    centres = predictions["center"].drop_nulls().unique().sort().to_list() if "center" in predictions.columns else []
    if len(centres) > 1:
        per_centre = {c: predictions.filter(pl.col("center") == c) for c in centres}
        multicentre = multicentre_summary(per_centre, by=by, replicates=settings.replicates, seed=settings.seed)
        return multicentre["pooled"], multicentre
    ps = predictions_from_frame(predictions, "study predictions")
    return evaluate_predictions(ps, by=by, replicates=settings.replicates, seed=settings.seed), None


def _explain(configs: list[CohortConfig], run_dir: Path, out: Path, settings: StudySettings,
             files: dict[str, Path]) -> list[Any]:
    """Region Shapley values, pixel maps and CRAFT on the validation split, as report sections."""
    import dataclasses as dc

    from f2b_study.explain.run import run_explain, settings_from_config
    from f2b_study.explain.section import explanation_sections

    explain_settings = settings_from_config(configs[0].section("explain"), configs[0].source or configs[0].table)
    explain_settings = dc.replace(explain_settings, device=settings.device)
    result, _ = run_explain(configs, photos=None, model_path=run_dir, out=out / "explain", settings=explain_settings,
                            cache=settings.cache_dir, qc=configs[0].section("qc"), progress=False)
    files["explain"] = out / "explain"
    return explanation_sections(result.document, result.figures)


def _write_report(target: Path, configs: list[CohortConfig], settings: StudySettings, run: dict[str, Any],
                  evaluation: dict[str, Any], multicentre: dict[str, Any] | None, flow: dict[str, Any],
                  table1s: list[tuple[str, Any]], sections: list[Any]) -> None:
    from f2b_study.cohort.label import METHODS_TEXT
    from f2b_study.privacy import study_key
    from f2b_study.report.stard import StudyReportInput, write_stard_report

    facenet = run.get("facenet_weights") or {}
    warnings = []
    provenance = {
        "architecture": run["arch"],
        "FaceNet weights": facenet.get("source", "none (no FaceNet branch)"),
        "training cohort hash": run.get("cohort_hash"),
        "face pipeline": run.get("preprocessing_version"),
        "package version": run.get("package_version"),
        "epochs run": f"{run.get('epochs_run')} of {settings.epochs} (best epoch {run.get('best_epoch', 0) + 1})",
        "warnings": warnings,
    }
    rules = configs[0].rules
    model_text = json.dumps(settings.model_config) if settings.model_config else "default configuration"
    settings_text = (f"Model {run['arch']} ({model_text}), trained with CrossEntropy, Adam and OneCycleLR "
                     f"(max lr 1e-3, 30% warm-up, anneal to 1e-6), batch {settings.batch_size}, up to "
                     f"{settings.epochs} epochs, early stopping on validation accuracy (patience "
                     f"{settings.patience}, counted from the end of the warm-up; equal accuracy with lower validation "
                     f"loss counts as better), seed {settings.seed}; patient-level "
                     "stratified 8:2 split (seed 42). Faces standardised with MediaPipe (face landmarker, 478 "
                     "landmarks; elliptical face region on black, eye line horizontal).")
    study = StudyReportInput(
        title=settings.title or f"Validation report: {', '.join(c.name for c in configs)}",
        evaluation=evaluation,
        cohorts=[c.name for c in configs],
        model_name=run["arch"],
        methods_labelling=METHODS_TEXT.format(men_min_age=rules.men_min_age),
        methods_extra=[settings_text],
        flow=flow,
        table1=table1s,
        multicentre=multicentre,
        provenance=provenance,
        explanations=sections,
        simulated_labels=settings.simulated_labels,
        include_faces=settings.include_faces,
        pseudonym_key=study_key(target.parent),
    )
    write_stard_report(study, target)
