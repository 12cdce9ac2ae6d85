"""`f2b-study site-summary`: one centre validates a shared model on its own patients and writes a summary with no
patient-level data, for a coordinating centre to pool with `f2b-study pool` (docs/multicentre.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, cache_folder, load_study_args, print_json


def register(sub: Any) -> None:
    parser = add_command(
        sub, "site-summary", help="validate a model at one centre -> a shareable summary without patient data",
        description="Run this centre's own chain with a given model (label the cohort, standardise the faces with "
        "the study's [qc], predict, evaluate exactly as `study` evaluates a centre) and write one human-readable "
        "JSON file of aggregates: the participant flow, Table 1 summaries, the centre's results with their CIs, "
        "and the counts, bins and DeLong covariances from which `f2b-study pool` builds the multi-centre report. "
        "No patient ID, photo name, path or single patient's value is written; counts and groups below "
        "[privacy] min_cell (default 5) are merged or withheld, and the file lists where. Evaluated patients: the "
        "cohort's validation split when it has a split column (its training rows fit the clinical comparator), "
        "else every analysed patient (external validation). Patient-level outputs (the predictions) stay in "
        "--work on this machine.",
        examples="  f2b-study site-summary cohorts/centre_a.toml --model runs/consortium --out centre-a.json\n"
        "  f2b-study site-summary cohorts/centre_b.toml --model runs/consortium --out centre-b.json "
        "--min-cell 10\n"
        "  f2b-study pool centre-a.json centre-b.json --out reports/pooled      # at the coordinating centre\n")
    parser.add_argument("config", help="this centre's cohort config (.toml) or table (.csv/.xlsx)")
    parser.add_argument("--model", help="the shared model: a run folder or checkpoint (default: the config's "
                        "[model] path, else the newest run in runs/)")
    parser.add_argument("--out", type=Path, required=True, help="the summary to write (e.g. centre-a.json)")
    parser.add_argument("--work", type=Path, help="folder for this centre's patient-level outputs, kept here "
                        "(default reports/<centre>/site-summary)")
    parser.add_argument("--min-cell", type=int, help="smallest count shown (default: the config's [privacy] "
                        "min_cell, else 5)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap replicates of the centre's CIs (default: the "
                        "config's [report], else 2000)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--batch-size", type=int, help="images per batch")
    parser.add_argument("--preprocess-workers", type=int, default=1, help="processes for face standardisation")
    parser.add_argument("--cache", type=Path, help="face cache folder (default .f2b-cache/faces)")
    parser.add_argument("--json", action="store_true", help="print the summary's privacy record and key figures "
                        "as JSON")
    parser.set_defaults(func=run)


FLAGS = {"min_cell": "privacy.min_cell", "bootstrap": "report.bootstrap", "batch_size": "screening.batch_size"}


@dataclasses.dataclass
class SiteRun:
    summary: dict[str, Any]
    predictions: Path  # patient-level, stays at the site
    evaluated: int


def run_site(study: Any, checkpoint: Any, *, work: Path, device: str = "auto", cache_dir: Path | None = None,
             workers: int = 1) -> SiteRun:
    """The centre's chain: cohort (labelled once) -> faces (the study's [qc]) -> the evaluated patients ->
    screening with the shared model -> the site summary (stats.site_summary)."""
    import polars as pl

    from f2b_study import CLASSES
    from f2b_study.cohort.cohort_photos import build_cohort_photos
    from f2b_study.errors import InputError
    from f2b_study.faces.cache import default_cache_dir
    from f2b_study.faces.table import standardise
    from f2b_study.faces.version import PIPELINE_VERSION
    from f2b_study.inference.screen import check_checkpoint, screen
    from f2b_study.stats.predictions import predictions_from_frame
    from f2b_study.stats.site_summary import build_site_summary
    from f2b_study.study import evaluation_rows
    from f2b_study.tables import write_csv
    from f2b_study.training.run import SplitRule, TrainingData
    from f2b_study.training.split import patient_split

    sidecar = check_checkpoint(checkpoint)
    cohort = build_cohort_photos(study.centres, target="bone_status")
    faces = standardise(cohort.photos_of(cohort.patients["patient_id"]), qc=study.qc,
                        cache_dir=cache_dir or default_cache_dir(), workers=workers)
    usable = set(faces.ok()["patient_id"].to_list())
    analysed = cohort.patients.filter(pl.col("patient_id").is_in(list(usable))).sort("patient_id")
    source = ", ".join(str(c.origin) for c in study.centres)
    given = "split" in analysed.columns and analysed["split"].drop_nulls().len() > 0
    if given:
        analysed = patient_split(analysed, "bone_status", source=source)
        evaluated_what = "the cohort's validation split (its split column); the training rows fit the clinical model"
    else:
        analysed = analysed.with_columns(pl.lit("validation").alias("split"))
        evaluated_what = "every analysed patient (no split column: external validation of the model)"
    # the flow exactly as the training stage counts it (photo stage and split added to the labelling flow)
    flow = TrainingData(cohort=cohort, faces=faces, target="bone_status", classes=list(CLASSES), patients=analysed,
                        images=pl.DataFrame(), excluded=dict(cohort.excluded),
                        split_rule=SplitRule("column" if given else "none"), cohort_hash="").flow
    evaluated = analysed.filter(pl.col("split") == "validation")["patient_id"]
    if evaluated.len() == 0:
        raise InputError.at(source, column="split", show_value=False,
                            expected="patients to evaluate: a validation split, or no split column")
    _refuse_training_patients(checkpoint, faces, evaluated, source)
    screened = screen(cohort, faces.subset(evaluated), checkpoint, out=work / "screen", device=device,
                      batch_size=study.screening.batch_size, bf16=study.screening.bf16, patient_ids=evaluated)
    predictions = evaluation_rows(screened.patients, analysed)
    path = work / "predictions.csv"
    write_csv(predictions, path)
    ps = predictions_from_frame(predictions, str(path))
    clinical, clinical_source = (None, None) if ps.train.height else _development_clinical_model(checkpoint)
    metadata = sidecar.get("metadata") or {}
    provenance = {
        "model_sha256": sidecar["weights_sha256"],
        "model_arch": sidecar["arch"],
        "classes": list(sidecar["classes"]),
        "tool_version": _tool_version(),
        "face_pipeline_version": PIPELINE_VERSION,
        "model_face_pipeline_version": sidecar.get("preprocessing_version"),
        "training_cohort_hash": sidecar.get("training_cohort_hash"),
        "facenet_weights": (sidecar.get("facenet_weights") or {}).get("source"),
        "config_sha256": study.digest(),
        "simulated_labels": bool(study.report.simulated_labels or metadata.get("simulated_labels")),
    }
    settings = {
        "qc": dataclasses.asdict(study.qc),
        "rules": dataclasses.asdict(study.centres[0].rules) if len(study.centres) == 1
        else {c.name: dataclasses.asdict(c.rules) for c in study.centres},
        "evaluated": evaluated_what,
    }
    summary = build_site_summary(
        ps, site=study.name, flow=flow.to_dict(), eligible=cohort.rows.filter(pl.col("eligible")),
        provenance=provenance, settings=settings, min_cell=study.privacy.min_cell, by=study.report.subgroups,
        replicates=study.report.bootstrap, seed=study.report.bootstrap_seed, clinical_model=clinical,
        clinical_source=clinical_source)
    return SiteRun(summary=summary, predictions=path, evaluated=ps.evaluated.height)


def _tool_version() -> str:
    from f2b_study import __version__

    return __version__


def _refuse_training_patients(checkpoint: Any, faces: Any, evaluated: Any, source: str) -> None:
    """A model is not validated on the photos it was trained on: when its run folder is here (split.csv,
    preprocess.csv), evaluated photos with the same content as a training photo are refused."""
    import polars as pl

    from f2b_study.errors import InputError

    run_dir = checkpoint.run_dir
    if run_dir is None or not (run_dir / "split.csv").is_file() or not (run_dir / "preprocess.csv").is_file():
        return
    split = pl.read_csv(run_dir / "split.csv", infer_schema=False)
    trained_on = split.filter(pl.col("split") == "train")["patient_id"]
    photos = pl.read_csv(run_dir / "preprocess.csv", infer_schema=False)
    hashes = set(photos.filter(pl.col("patient_id").is_in(trained_on.implode()))["content_hash"].drop_nulls())
    mine = faces.frame.filter(pl.col("patient_id").is_in(evaluated.implode()))
    overlap = mine.filter(pl.col("content_hash").is_in(list(hashes)))["patient_id"].n_unique()
    if overlap:
        raise InputError.at(source, column="split", show_value=False,
                            expected=f"patients the model never trained on: {overlap} evaluated patient(s) have "
                            f"photos the model in {run_dir} was trained on (same file content); give the cohort a "
                            "split column (train / validation) or leave those patients out")


def _development_clinical_model(checkpoint: Any) -> tuple[Any, str | None]:
    """The clinical comparator fitted on the model's development training split (the run folder's
    evaluation.json), for a centre without a training split of its own; (None, None) when it is not there."""
    import numpy as np

    from f2b_study.stats.comparators import ClinicalLogit

    run_dir = checkpoint.run_dir
    path = run_dir / "evaluation.json" if run_dir else None
    if path is None or not path.is_file():
        return None, None
    logit = ((json.loads(path.read_text(encoding="utf-8")).get("comparators") or {}).get("clinical_logit") or {})
    coefficients = logit.get("coefficients")
    if not coefficients:
        return None, None
    described = re.search(r"fitted on (\d+)", logit.get("description") or "")
    model = ClinicalLogit(columns=list(coefficients["columns"][1:]), params=np.asarray(coefficients["params"]),
                          n_train=int(described.group(1)) if described else 0, dropped=[], converged=True)
    return model, f"the model's development training split (from {run_dir.name}/evaluation.json)"


def run(args: argparse.Namespace) -> int:
    from f2b_study.commands.screen import resolve_model
    from f2b_study.stats.site_summary import write_summary

    study = load_study_args([args.config], args, FLAGS)
    checkpoint, how = resolve_model(args.model, study)
    if how != "--model":
        print(f"f2b-study site-summary: using {checkpoint.path} ({how})", file=sys.stderr)
    from f2b_study.outputs import owner_only
    from f2b_study.runlock import run_lock

    work = args.work or Path("reports") / study.name / "site-summary"
    with run_lock(owner_only(work), "site-summary"):  # patient-level files: private, one run at a time
        result = run_site(study, checkpoint, work=work, device=args.device, cache_dir=cache_folder(args),
                          workers=args.preprocess_workers)
    write_summary(result.summary, args.out)
    privacy = result.summary["privacy"]
    overall = result.summary["index_test"]["evaluation"]["overall"]
    if args.json:
        print_json({"summary": str(args.out), "work": str(work), "evaluated": result.evaluated,
                    "privacy": privacy, "overall": overall})
        return 0
    auc = overall.get("auc_macro_ovr")
    print(f"{study.name}: {result.evaluated} patients evaluated; accuracy {overall['accuracy']:.3f}, macro AUC "
          f"{'—' if auc is None else f'{auc:.3f}'}")
    print(f"summary: {args.out} (min_cell {privacy['min_cell']}: {len(privacy['withheld'])} cell(s) withheld, "
          f"{len(privacy['merged'])} table(s) with merged lines; listed in its 'privacy' section)")
    print(f"read it before sending it; the patient-level files in {work} stay here")
    return 0
