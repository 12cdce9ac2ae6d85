"""`f2b-study train`: cohort -> faces -> patient-level split -> the paper's recipe -> checkpoint + validation.

A run folder holds everything needed to inspect, resume or reuse a run:

    run.json            what was asked (arch, target, settings, cohort hash) and how it ended
    split.csv           one row per patient: patient_id, split, the target and the covariates
    preprocess.csv      one row per photo: QC status and the cached face
    state.pt            resume state after the last finished epoch
    best/model.*        the best epoch's checkpoint (safetensors + JSON sidecar): what `screen --model` loads
    metrics.csv/.json   one row per epoch; training_curve.svg
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES, __version__
from f2b_study.atomic import write_text
from f2b_study.errors import InputError
from f2b_study.tables import write_csv

log = logging.getLogger(__name__)

MIN_PATIENTS = 10
RUN_FILE = "run.json"
STATE_NAME = "state.pt"
COVARIATES = ("center", "sex", "age_years", "height_cm", "weight_kg", "bmi")
NO_USABLE_PHOTO = "no usable photo"
NOT_WHO_CLASS = "bone status outside the WHO classes"


@dataclasses.dataclass
class TrainingData:
    """Patients and images ready to train on, with everything that was left out and why."""

    target: str
    classes: list[str]
    patients: pl.DataFrame  # patient_id, target, split, covariates, bone_status
    images: pl.DataFrame  # patient_id, photo, face_path, content_hash, label, split
    excluded: dict[str, int]  # reason -> patients
    preprocess: pl.DataFrame
    cohort_hash: str
    sources: list[str]


def labelled_with_photos(sources: Sequence[Any], photos: Path | None, target: str, log: list[str] | None = None
                         ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Labelled rows usable for ``target`` and their joined photos (all centres). ``log`` receives the photo
    join's listing (photos that match no patient of the cohort, patients without photos)."""
    from f2b_study.cohort.label import label
    from f2b_study.cohort.photos import join_photos
    from f2b_study.study import load_centres

    rows, photo_frames = [], []
    excluded: dict[str, int] = {}
    for cohort in load_centres(list(sources)):
        labelled = label(cohort)
        if target not in labelled.columns:
            raise InputError.at(cohort.config.table, column=target, show_value=False,
                                expected=f"the target column '{target}' (--target)")
        if target == "bone_status":
            for reason, n in labelled.filter(~pl.col("eligible")).group_by("exclusion_reason").len().iter_rows():
                excluded[reason] = excluded.get(reason, 0) + n
            eligible = labelled.filter(pl.col("eligible"))
            outside = eligible.filter(~pl.col("bone_status").is_in(list(CLASSES)))
            if outside.height:
                excluded[NOT_WHO_CLASS] = excluded.get(NOT_WHO_CLASS, 0) + outside.height
            usable = eligible.filter(pl.col("bone_status").is_in(list(CLASSES)))
        else:
            missing = labelled.filter(pl.col(target).is_null()).height
            if missing:
                excluded[f"no {target} value"] = missing
            usable = labelled.filter(pl.col(target).is_not_null())
        root = photos if photos is not None else cohort.config.default_photos
        # join every row, so that an excluded patient's photos are not listed as matching no patient
        joined = join_photos(labelled, root, table=cohort.config.table)
        if log is not None:
            log.extend(f"[{cohort.name}] {line}" for line in joined.log_lines())
        keep = [c for c in ("patient_id", target, "bone_status", "split", *COVARIATES) if c in usable.columns]
        rows.append(usable.select(list(dict.fromkeys(keep))).with_columns(pl.col(target).cast(pl.String)))
        photo_frames.append(joined.photos.filter(pl.col("patient_id").is_in(usable["patient_id"].implode())))
    return pl.concat(rows, how="diagonal_relaxed"), pl.concat(photo_frames), excluded


def prepare(sources: Sequence[Any], *, photos: Path | None, target: str, run_dir: Path, cache_dir: Path,
            workers: int = 1, qc: dict[str, Any] | None = None) -> TrainingData:
    """Label, join photos, standardise faces (through the cache) and split the patients."""
    from f2b_study.faces.preprocess import preprocess_photos
    from f2b_study.faces.qc import QCThresholds
    from f2b_study.training.split import patient_split

    join_log: list[str] = []
    patients, photo_rows, excluded = labelled_with_photos(sources, photos, target, join_log)
    write_text(run_dir / "photos.log", "".join(f"{line}\n" for line in join_log))
    thresholds = QCThresholds.from_mapping(qc) if qc else None
    result = preprocess_photos(photo_rows, run_dir, cache_dir=cache_dir, workers=workers, thresholds=thresholds)
    ok = result.frame.filter(pl.col("status") == "ok").select("patient_id", "photo", "face_path", "content_hash")
    with_faces = set(ok["patient_id"].to_list())
    without = patients.filter(~pl.col("patient_id").is_in(list(with_faces)))
    if without.height:
        excluded[NO_USABLE_PHOTO] = without.height
    patients = patients.filter(pl.col("patient_id").is_in(list(with_faces)))
    source = ", ".join(str(s) for s in sources)
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
    patients = patient_split(patients.sort("patient_id"), target, source=source)
    train_counts = dict(patients.filter(pl.col("split") == "train").group_by(target).len().iter_rows())
    missing = [c for c in classes if not train_counts.get(c)]
    if missing:
        raise InputError.at(source, column=target, value=", ".join(missing),
                            expected="every class among the training split's patients (a given split column "
                            "leaves this class out of training)")
    label_index = {name: i for i, name in enumerate(classes)}
    images = ok.join(patients.select("patient_id", target, "split"), on="patient_id", how="inner").with_columns(
        pl.col(target).replace_strict(label_index, return_dtype=pl.Int64).alias("label")).sort("patient_id", "photo")
    return TrainingData(target=target, classes=classes, patients=patients, images=images, excluded=excluded,
                        preprocess=result.frame, cohort_hash=cohort_hash(patients, images, target),
                        sources=[str(s) for s in sources])


def cohort_hash(patients: pl.DataFrame, images: pl.DataFrame, target: str) -> str:
    """sha256 of the training split's (patient, label) pairs and their photos' content hashes."""
    train = images.filter(pl.col("split") == "train").sort("patient_id", "content_hash")
    digest = hashlib.sha256()
    for patient_id, label, content in train.select("patient_id", target, "content_hash").iter_rows():
        digest.update(f"{patient_id}\t{label}\t{content}\n".encode())
    return digest.hexdigest()


# -- one run --------------------------------------------------------------------------------------------------

def preflight(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Before any work: a folder holding another run (or other files) needs --resume or --overwrite."""
    run_file = out / RUN_FILE
    if run_file.exists():
        if not resume and not overwrite:
            previous = json.loads(run_file.read_text())
            raise InputError.at(out, show_value=False,
                                expected=f"a folder without a run (it holds a {previous.get('arch')} run of "
                                f"{previous.get('created')}; --resume continues it, --overwrite replaces it)")
    elif out.exists() and any(out.iterdir()) and not overwrite and not resume:
        raise InputError.at(out, show_value=False,
                            expected="an empty or new --out folder (this one holds other files; pass --overwrite "
                            "to use it anyway)")


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
    previous = json.loads(run_file.read_text())
    differs = [k for k in ("arch", "target", "settings", "model_config", "cohort_hash")
               if previous.get("request", {}).get(k) != request.get(k)]
    if differs:
        raise InputError.at(out, show_value=False,
                            expected="--resume with the same settings as the run there "
                            f"(differs: {', '.join(differs)})")


def train_one(data: TrainingData, *, arch: str, out: Path, settings: Any, model_config: dict[str, Any],
              facenet_weights: str | None = None, imagenet_weights: str | None = None, resume: bool = False,
              overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``arch`` on ``data``; write the run folder; return run.json's content."""
    import torch

    from f2b_study.faces.version import PIPELINE_VERSION
    from f2b_study.models.checkpoint import save_checkpoint
    from f2b_study.models.facenet import provenance
    from f2b_study.models.registry import create_model, get_spec, preprocessing
    from f2b_study.training.data import load_faces
    from f2b_study.training.distributed import current
    from f2b_study.training.loop import Trainer, predict_probabilities, seed_everything, write_history

    context = current()
    spec = get_spec(arch)
    request = json.loads(json.dumps({"arch": arch, "target": data.target, "settings": settings.to_json(),
                                     "model_config": model_config, "cohort_hash": data.cohort_hash}))

    def claim_folder() -> None:
        check_out_dir(out, request, resume=resume, overwrite=overwrite)
        out.mkdir(parents=True, exist_ok=True)

    context.main_first(claim_folder, others=lambda: None)
    seed_everything(settings.seed)
    weights_kwargs = ({"facenet_weights": facenet_weights} if spec.family == "face2bone"
                      else {"weights": imagenet_weights})
    model = create_model(arch, num_classes=len(data.classes), **weights_kwargs, **model_config)
    pre = preprocessing(model)
    faces = load_faces(data.images["face_path"].to_list(), pre["input_size"], progress=progress)
    labels = data.images["label"].to_numpy()
    split = data.images["split"].to_numpy()
    train_index, val_index = np.flatnonzero(split == "train"), np.flatnonzero(split != "train")
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    run = {"request": request, "arch": arch, "target": data.target, "classes": data.classes, "created": created,
           "package_version": __version__, "preprocessing_version": PIPELINE_VERSION, "sources": data.sources,
           "cohort_hash": data.cohort_hash, "facenet_weights": provenance(model).get("facenet"),
           "n_patients": {s: int((data.patients["split"] == s).sum()) for s in ("train", "validation")},
           "n_images": {"train": len(train_index), "validation": len(val_index)}, "excluded": data.excluded,
           "status": "training"}
    if context.enabled:
        run["processes"] = context.world_size
    if resume and (out / RUN_FILE).exists():
        run["created"] = json.loads((out / RUN_FILE).read_text()).get("created", created)
    if context.is_main:
        write_text(out / RUN_FILE, json.dumps(run, indent=2))
        write_csv(data.patients, out / "split.csv")
        write_csv(data.preprocess, out / "preprocess.csv")

    def save_best(trained: torch.nn.Module, info: dict[str, Any]) -> None:
        save_checkpoint(trained, out / "best", preprocessing_version=PIPELINE_VERSION, seed=settings.seed,
                        training_cohort_hash=data.cohort_hash, classes=data.classes,
                        metadata={"target": data.target, **info, "run": out.name})

    trainer = Trainer(model, faces=faces, labels=labels, patients=data.images["patient_id"].to_list(),
                      train_index=train_index, val_index=val_index, mean=pre["mean"], std=pre["std"],
                      settings=settings, out=out, save_best=save_best, progress=progress)
    history = trainer.fit(resume=resume, on_epoch=lambda record: write_history(trainer.history, out))
    if not context.is_main:
        return run
    write_history(history, out)
    curve_figure(history, out / "training_curve.svg", title=f"{arch} · {data.target}")

    # validation predictions from the best epoch's weights
    from f2b_study.models.checkpoint import load_checkpoint

    best, _ = load_checkpoint(out / "best", map_location=trainer.device)
    embeddings = trainer.embeddings[val_index] if trainer.embeddings is not None else None
    probabilities = predict_probabilities(best, faces[val_index], pre["mean"], pre["std"], trainer.device,
                                          settings.eval_batch_size, embeddings, settings.bf16)
    predictions = validation_predictions(data, val_index, probabilities)
    write_csv(predictions["images"], out / "val_predictions_images.csv")
    write_csv(predictions["patients"], out / "val_predictions.csv")
    evaluation = evaluate_validation(predictions["patients"], data)
    write_text(out / "evaluation.json", json.dumps(evaluation, indent=1, allow_nan=False))
    run.update(status="finished", epochs_run=len(history), best_epoch=trainer.best_epoch,
               best_val_accuracy=trainer.best_accuracy if trainer.best_epoch >= 0 else None,
               stopped_early=len(history) < settings.epochs, summary=evaluation.get("summary", {}))
    write_text(out / RUN_FILE, json.dumps(run, indent=2))
    return run


def validation_predictions(data: TrainingData, val_index: np.ndarray, probabilities: np.ndarray
                           ) -> dict[str, pl.DataFrame]:
    """Per image and per patient (mean of the patient's image probabilities); train patients carry covariates."""
    columns = [f"p_{c}" for c in data.classes]
    images = data.images[val_index].select("patient_id", "photo").with_columns(
        pl.Series(c, probabilities[:, i]) for i, c in enumerate(columns))
    per_patient = images.group_by("patient_id", maintain_order=True).agg(
        *[pl.col(c).mean() for c in columns], pl.len().alias("n_photos"))
    names = np.array(data.classes)
    per_patient = per_patient.with_columns(
        pl.Series("predicted", names[per_patient.select(columns).to_numpy().argmax(axis=1)]))
    patients = data.patients.join(per_patient, on="patient_id", how="left")
    return {"images": images, "patients": patients}


def evaluate_validation(patients: pl.DataFrame, data: TrainingData) -> dict[str, Any]:
    """Bone status: the statistics module's full evaluation. Other targets: accuracy, macro F1, AUC (DeLong CI
    for two classes)."""
    from f2b_study.commands._common import json_safe

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


def curve_figure(history: Sequence[Any], path: Path, title: str) -> None:
    """Loss and accuracy per epoch (train and validation) as an SVG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.epoch + 1 for h in history]
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.2))
    loss_ax.plot(epochs, [h.train_loss for h in history], label="train")
    loss_ax.plot(epochs, [h.val_loss for h in history], label="validation")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_ax.plot(epochs, [h.train_accuracy for h in history], label="train (images)")
    acc_ax.plot(epochs, [h.val_accuracy for h in history], label="validation (patients)")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    write_text(path, buffer.getvalue())
