"""The training stage: a study's cohort and face table -> a patient-level split -> the paper's recipe ->
a run folder with the best checkpoint and the validation split's predictions.

    data = training_data(cohort, faces, settings)          # split + checks; data.flow adds the photo stage
    run = train_one(data, settings, out=Path("runs/x"))    # run.record (run.json), run.validation (predictions)

A run folder holds everything needed to inspect, resume or reuse a run:

    run.json            what was asked (the resolved settings and where each came from) and how it ended
    split.csv           one row per patient: patient_id, split, the target and the covariates
    preprocess.csv      one row per photo: QC status and the cached face
    photos.log          the photo join's listing (photos matching no patient, patients without photos)
    state.pt            resume state after the last finished epoch
    best/model.*        the best epoch's checkpoint (safetensors + JSON sidecar): what `screen --model` loads
    metrics.csv/.json   one row per epoch
    val_predictions.csv per patient (train rows carry covariates only), the format `evaluate` reads
    evaluation.json     the validation evaluation (bone status: the statistics module's; other targets: AUC etc.)

Under torchrun (`distributed.py`) every rank runs `train_one`; rank 0 alone checks and writes the folder, which
must sit on storage every machine sees (the other ranks read state.pt from it on --resume).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES, __version__
from f2b_study.atomic import write_text
from f2b_study.cohort.cohort_photos import CohortPhotos, ParticipantFlow, in_class_order
from f2b_study.errors import InputError
from f2b_study.faces.table import FaceTable
from f2b_study.jsonutil import dumps, json_safe
from f2b_study.tables import write_csv
from f2b_study.training.settings import TrainSettings

log = logging.getLogger(__name__)

MIN_PATIENTS = 10
RUN_FILE = "run.json"
STATE_NAME = "state.pt"
NO_USABLE_PHOTO = "no usable photo"
SPLITS = ("train", "validation")


@dataclasses.dataclass(frozen=True)
class SplitRule:
    """How patients were split: the cohort's own `split` column, or stratified at random with a seed."""

    kind: str  # "column" | "stratified"
    validation_fraction: float | None = None
    seed: int | None = None

    def describe(self) -> str:
        if self.kind == "column":
            return "the split given in the cohort's split column"
        train = round(100 * (1 - (self.validation_fraction or 0.2)))
        return (f"a patient-level split stratified by class, {train}:{100 - train} at random (seed {self.seed}); "
                "all of a patient's photos in one split")


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """Patients and images ready to train on, with everything that was left out and why."""

    cohort: CohortPhotos
    faces: FaceTable
    target: str
    classes: list[str]
    patients: pl.DataFrame  # patient_id, target, split, covariates, bone_status
    images: pl.DataFrame  # patient_id, photo, face_path, content_hash, target, split, label
    excluded: dict[str, int]  # reason -> patients
    split_rule: SplitRule
    cohort_hash: str

    @property
    def sources(self) -> list[str]:
        return [str(c.source or c.table) for c in self.cohort.centres]

    @property
    def flow(self) -> ParticipantFlow:
        """The cohort's flow with the photo stage (no photo, photo QC by reason) and the split added."""
        wanted = self.cohort.patients["patient_id"]
        with_photos = set(self.cohort.photos_of(wanted)["patient_id"].to_list())
        _, qc_reasons = self.faces.patient_outcomes(wanted.to_list())
        analysed = self.patients
        flags: dict[str, int] = {}
        used = self.faces.frame.filter((pl.col("status") == "ok") & pl.col("patient_id").is_in(
            analysed["patient_id"].implode()))
        for value in used["flags"].drop_nulls():
            for flag in (f for f in value.split(";") if f):
                flags[flag] = flags.get(flag, 0) + 1
        return dataclasses.replace(
            self.cohort.flow,
            no_photo=sum(1 for p in wanted.to_list() if p not in with_photos),
            photo_qc_excluded=qc_reasons,
            photo_flags=flags,
            analysed=analysed.height,
            analysed_by_class=in_class_order(dict(analysed.group_by(self.target).len().iter_rows())),
            split={s: int((analysed["split"] == s).sum()) for s in SPLITS},
            by_class={s: in_class_order(dict(analysed.filter(pl.col("split") == s).group_by(self.target).len()
                                             .iter_rows())) for s in SPLITS})


def training_data(cohort: CohortPhotos, faces: FaceTable, settings: TrainSettings) -> TrainingData:
    """Patients with a usable face, split (the cohort's split column, else stratified 8:2 with the seed)."""
    from f2b_study.training.split import patient_split

    if cohort.target is None:
        raise ValueError("training needs a cohort built with a target")
    target = cohort.target
    excluded = dict(cohort.excluded)
    ok = faces.ok()
    with_faces = set(ok["patient_id"].to_list())
    patients = cohort.patients
    without = patients.filter(~pl.col("patient_id").is_in(list(with_faces)))
    if without.height:
        excluded[NO_USABLE_PHOTO] = without.height
    patients = patients.filter(pl.col("patient_id").is_in(list(with_faces)))
    source = ", ".join(str(c.source or c.table) for c in cohort.centres)
    if patients.height < MIN_PATIENTS:
        raise InputError.at(source, column=target, show_value=False,
                            expected=f"at least {MIN_PATIENTS} patients with a {target} label and a usable photo "
                            f"(found {patients.height}; left out: {excluded or 'none'})")
    classes = list(CLASSES) if target == "bone_status" else sorted(patients[target].unique().to_list())
    if len(classes) < 2:
        raise InputError.at(source, column=target, value=classes[0] if classes else None,
                            expected="at least two classes to train on")
    counts = dict(patients.group_by(target).len().iter_rows())
    for name in classes:
        if counts.get(name, 0) < 2:
            raise InputError.at(source, column=target, value=name,
                                expected=f"at least 2 patients of every class to split and train on; class "
                                f"{name!r} has {counts.get(name, 0)} (classes: {counts})")
    given = "split" in patients.columns and patients["split"].drop_nulls().len() > 0
    rule = (SplitRule("column") if given
            else SplitRule("stratified", settings.validation_fraction, settings.split_seed))
    patients = patient_split(patients.sort("patient_id"), target, seed=settings.split_seed,
                             validation_fraction=settings.validation_fraction, source=source)
    train_counts = dict(patients.filter(pl.col("split") == "train").group_by(target).len().iter_rows())
    missing = [c for c in classes if not train_counts.get(c)]
    if missing:
        raise InputError.at(source, column=target, value=", ".join(missing),
                            expected="every class among the training split's patients (a given split column "
                            "leaves this class out of training)")
    label_index = {name: i for i, name in enumerate(classes)}
    images = ok.join(patients.select("patient_id", target, "split"), on="patient_id", how="inner").with_columns(
        pl.col(target).replace_strict(label_index, return_dtype=pl.Int64).alias("label")).sort("patient_id", "photo")
    return TrainingData(cohort=cohort, faces=faces, target=target, classes=classes, patients=patients, images=images,
                        excluded=excluded, split_rule=rule, cohort_hash=cohort_hash(images, target))


def cohort_hash(images: pl.DataFrame, target: str) -> str:
    """sha256 of the training split's (patient, label) pairs and their photos' content hashes."""
    train = images.filter(pl.col("split") == "train").sort("patient_id", "content_hash")
    digest = hashlib.sha256()
    for patient_id, label, content in train.select("patient_id", target, "content_hash").iter_rows():
        digest.update(f"{patient_id}\t{label}\t{content}\n".encode())
    return digest.hexdigest()


# -- the run record ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RunRecord:
    """run.json: what was asked, with every resolved setting and where it came from, and how the run ended."""

    request: dict[str, Any]  # arch, target, settings (the resolved [train]), model_config, cohort_hash
    arch: str
    target: str
    classes: list[str]
    created: str
    sources: list[str]
    cohort_hash: str
    n_patients: dict[str, int]
    n_images: dict[str, int]
    excluded: dict[str, int]
    split_rule: dict[str, Any]
    settings: dict[str, Any]  # {section: {key: {"value", "from"}}}: train, qc and the centres' rules
    simulated_labels: bool = False
    facenet_weights: dict[str, Any] | None = None
    package_version: str = __version__
    preprocessing_version: str | None = None
    status: str = "training"
    processes: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    stopped_early: bool | None = None
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k in ("facenet_weights",)}

    def write(self, out: Path) -> None:
        write_text(out / RUN_FILE, dumps(self.to_json(), indent=2))

    @classmethod
    def read(cls, out: Path) -> RunRecord:
        try:
            data = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
            known = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (OSError, ValueError, TypeError) as error:
            raise InputError.at(out / RUN_FILE, show_value=False,
                                expected=f"a run record written by f2b-study ({type(error).__name__})") from None


@dataclasses.dataclass
class TrainRun:
    """A finished (or, on ranks other than 0, joined) run: its record, the validation split's predictions
    computed once from the best checkpoint, and their evaluation."""

    out: Path
    record: RunRecord
    validation_images: pl.DataFrame | None = None  # patient_id, photo, p_<class>...
    validation_patients: pl.DataFrame | None = None  # every analysed patient; validation rows with p_<class>
    evaluation: dict[str, Any] | None = None


# -- one run --------------------------------------------------------------------------------------------------

def preflight(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Before any work: a folder holding another run (or other files) needs --resume or --overwrite."""
    run_file = out / RUN_FILE
    if run_file.exists():
        if not resume and not overwrite:
            previous = RunRecord.read(out)
            raise InputError.at(out, show_value=False,
                                expected=f"a folder without a run (it holds a {previous.arch} run of "
                                f"{previous.created}; --resume continues it, --overwrite replaces it)")
    elif out.exists() and any(not p.name.startswith(".f2b.lock") for p in out.iterdir()) and not overwrite \
            and not resume:
        raise InputError.at(out, show_value=False,
                            expected="an empty or new --out folder (this one holds other files; pass --overwrite "
                            "to use it anyway)")


RECIPE_KEYS = ("arch", "target", "recipe", "model_config", "cohort_hash")


def check_out_dir(out: Path, request: dict[str, Any], *, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: --resume needs the same request as the run there; --overwrite clears it first."""
    run_file = out / RUN_FILE
    if not run_file.exists():
        return
    preflight(out, resume=resume, overwrite=overwrite)
    if overwrite:
        for name in ("best", STATE_NAME, RUN_FILE, "metrics.csv", "metrics.json", "evaluation.json"):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return
    previous = RunRecord.read(out).request
    differs = [k for k in RECIPE_KEYS if previous.get(k) != request.get(k)]
    if differs:
        raise InputError.at(out, show_value=False,
                            expected="--resume with the same settings as the run there "
                            f"(differs: {', '.join(differs)})")


def train_one(data: TrainingData, settings: TrainSettings, *, out: Path, device: str = "auto",
              resume: bool = False, overwrite: bool = False, progress: bool = True,
              settings_record: dict[str, Any] | None = None, simulated_labels: bool = False) -> TrainRun:
    """Train ``settings.arch`` on ``data``; write the run folder; return the run with its validation predictions.
    ``settings_record``: the resolved study settings with their origins (`StudyConfig.describe`), for run.json."""
    import torch

    from f2b_study.faces.version import PIPELINE_VERSION
    from f2b_study.models.checkpoint import load_checkpoint, save_checkpoint
    from f2b_study.models.facenet import provenance
    from f2b_study.models.registry import create_model, get_spec
    from f2b_study.models.runtime import InputTransform, predict_faces
    from f2b_study.training.distributed import current
    from f2b_study.training.loop import Trainer, seed_everything, write_history

    context = current()
    spec = get_spec(settings.arch)
    model_config = settings.model_config()
    request = json.loads(dumps({"arch": settings.arch, "target": data.target, "settings": settings.to_json(),
                                "recipe": settings.recipe(), "model_config": model_config,
                                "cohort_hash": data.cohort_hash}))

    def claim_folder() -> None:
        check_out_dir(out, request, resume=resume, overwrite=overwrite)
        out.mkdir(parents=True, exist_ok=True)

    context.main_first(claim_folder, others=lambda: None)
    seed_everything(settings.seed)
    weights_kwargs = ({"facenet_weights": settings.facenet_weights} if spec.family == "face2bone"
                      else {"weights": settings.imagenet_weights})
    model = create_model(settings.arch, num_classes=len(data.classes), **weights_kwargs, **model_config)
    transform = InputTransform.of(model)
    faces = transform.load(data.images["face_path"].to_list(), progress=progress)
    labels = data.images["label"].to_numpy()
    split = data.images["split"].to_numpy()
    train_index, val_index = np.flatnonzero(split == "train"), np.flatnonzero(split != "train")
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if resume and (out / RUN_FILE).exists():
        created = RunRecord.read(out).created
    record = RunRecord(
        request=request, arch=settings.arch, target=data.target, classes=data.classes, created=created,
        sources=data.sources, cohort_hash=data.cohort_hash,
        n_patients={s: int((data.patients["split"] == s).sum()) for s in SPLITS},
        n_images={"train": len(train_index), "validation": len(val_index)}, excluded=data.excluded,
        split_rule=dataclasses.asdict(data.split_rule), settings=settings_record or {},
        simulated_labels=simulated_labels, facenet_weights=provenance(model).get("facenet"),
        preprocessing_version=PIPELINE_VERSION, processes=context.world_size if context.enabled else None)
    if context.is_main:
        record.write(out)
        write_csv(data.patients, out / "split.csv")
        data.faces.write_csv(out / "preprocess.csv")
        write_text(out / "photos.log", "".join(f"{line}\n" for line in data.cohort.join_log))

    def save_best(trained: torch.nn.Module, info: dict[str, Any]) -> None:
        save_checkpoint(trained, out / "best", preprocessing_version=PIPELINE_VERSION, seed=settings.seed,
                        training_cohort_hash=data.cohort_hash, classes=data.classes,
                        metadata={"target": data.target, **info, "run": out.name,
                                  "simulated_labels": simulated_labels})

    trainer = Trainer(model, faces=faces, labels=labels, patients=data.images["patient_id"].to_list(),
                      train_index=train_index, val_index=val_index, transform=transform, settings=settings,
                      device=device, out=out, save_best=save_best, progress=progress)
    history = trainer.fit(resume=resume, on_epoch=lambda _: write_history(trainer.history, out))
    if not context.is_main:
        return TrainRun(out=out, record=record)
    write_history(history, out)

    # the validation split's predictions, once, from the best epoch's weights
    best, _ = load_checkpoint(out / "best", map_location=trainer.device)
    embeddings = trainer.embeddings[val_index] if trainer.embeddings is not None else None
    probabilities = predict_faces(best, faces[val_index], transform=transform, device=trainer.device,
                                  batch_size=settings.eval_batch_size, embeddings=embeddings, bf16=settings.bf16)
    images, patients = validation_predictions(data, val_index, probabilities)
    write_csv(images, out / "val_predictions_images.csv")
    write_csv(patients, out / "val_predictions.csv")
    evaluation = evaluate_validation(patients, data)
    write_text(out / "evaluation.json", dumps(evaluation))
    record.status = "finished"
    record.epochs_run = len(history)
    record.best_epoch = trainer.best_epoch
    record.best_val_accuracy = trainer.best_accuracy if trainer.best_epoch >= 0 else None
    record.stopped_early = len(history) < settings.epochs
    record.summary = evaluation.get("summary", {})
    record.write(out)
    return TrainRun(out=out, record=record, validation_images=images, validation_patients=patients,
                    evaluation=evaluation)


def validation_predictions(data: TrainingData, val_index: np.ndarray, probabilities: np.ndarray
                           ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per image, per patient): a patient's probabilities are the mean of its images'; training patients keep
    their covariates only (they fit the clinical comparator)."""
    from f2b_study.models.runtime import patient_means

    columns = [f"p_{c}" for c in data.classes]
    images = data.images[val_index].select("patient_id", "photo").with_columns(
        pl.Series(c, probabilities[:, i]) for i, c in enumerate(columns))
    ids, means, counts = patient_means(probabilities, images["patient_id"].to_list())
    names = np.array(data.classes)
    per_patient = pl.DataFrame({"patient_id": ids, **{c: means[:, i] for i, c in enumerate(columns)},
                                "n_photos": counts.astype(np.int64),
                                "predicted": names[means.argmax(axis=1)] if len(ids) else []},
                               schema_overrides={"patient_id": pl.String, "predicted": pl.String})
    return images, data.patients.join(per_patient, on="patient_id", how="left")


def evaluate_validation(patients: pl.DataFrame, data: TrainingData) -> dict[str, Any]:
    """Bone status: the statistics module's full evaluation. Other targets: accuracy, macro F1, AUC (DeLong CI
    for two classes)."""
    validation = patients.filter(pl.col("split") != "train")
    if data.target == "bone_status":
        from f2b_study.stats.evaluation import evaluate_predictions, to_document
        from f2b_study.stats.predictions import predictions_from_frame

        full = evaluate_predictions(predictions_from_frame(patients, "validation predictions"), by=("sex",))
        document = to_document(full)
        overall = document["overall"]
        summary = {k: overall[k] for k in ("accuracy", "f1_macro", "auc_macro_ovr", "kappa")}
        comparators = full.get("comparators") or {}
        document["comparators"] = comparators
        summary["comparators"] = {name: ((c.get("evaluation") or {}).get("overall") or {}).get("auc_macro_ovr")
                                  for name, c in comparators.items() if isinstance(c, dict)}
        return json_safe({**document, "summary": summary})
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    from f2b_study.stats.auc import delong_auc

    y = validation[data.target].to_numpy()
    index = np.array([data.classes.index(v) for v in y])
    proba = validation.select([f"p_{c}" for c in data.classes]).to_numpy()
    predicted = proba.argmax(axis=1)
    summary: dict[str, Any] = {"n": len(y), "accuracy": float(accuracy_score(index, predicted)),
                               "f1_macro": float(f1_score(index, predicted, average="macro"))}
    if len(data.classes) == 2:
        result = delong_auc(proba[:, 1], index == 1)
        summary.update(auc=float(result.auc), auc_ci=[float(result.ci[0]), float(result.ci[1])],
                       positive_class=data.classes[1])
    else:
        summary["auc_macro_ovr"] = float(roc_auc_score(index, proba, multi_class="ovr", average="macro"))
    return json_safe({"target": data.target, "classes": data.classes, "summary": summary})
