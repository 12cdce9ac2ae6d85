"""`f2b-study screen`: run a trained model over a whole cohort, in GPU batches when there is a GPU."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, cache_folder, load_study_args, print_json


def register(sub: Any) -> None:
    parser = add_command(
        sub, "screen", help="screen a cohort with a trained model: per photo and per patient predictions",
        description="Standardise every photo (through the cache, with the config's [qc]), run the model in "
        "batches (GPU with bf16 when present) and write, under OUT/private/, predictions_images.csv (one row per "
        "photo), predictions.csv (one row per patient: mean of the patient's image probabilities, predicted class, "
        "the paper's pathway, by [screening]'s pre-specified thresholds when given; bone_status carried through "
        "when the cohort has DXA, so `evaluate` reads it directly), preprocess.csv and screen.log, and under "
        "OUT/shareable/ the screening report (aggregates only). An interrupted run continues where it stopped "
        "when rerun.",
        examples="  f2b-study screen cohort.csv                      # photos beside the CSV, newest run in runs/\n"
        "  f2b-study screen cohorts/centre_a.toml --model runs/demo --out reports/centre-a\n"
        "  f2b-study screen cohort.csv --photos photos/ --model runs/demo/best --parquet --json\n"
        "  f2b-study screen cohort.csv --model runs/demo --engine ray --workers 2          # a local Ray instance\n"
        "  f2b-study screen cohort.csv --model runs/demo --engine ray --ray-address ray://HEAD:10001\n"
        "\n--engine ray (pip install '.[cluster]') standardises photos in Ray CPU tasks and scores them in GPU "
        "actors (Ray Data); photos, --cache, --model and --out must be paths every node sees.\n")
    parser.add_argument("cohort", nargs="+", help="cohort table(s) (.csv/.xlsx) or config(s) (.toml)")
    parser.add_argument("--photos", type=Path, help="photo folder (default: the config's, else the table's folder)")
    parser.add_argument("--model", help="run folder or checkpoint (default: the config's [model] path, else the "
                        "newest run in runs/)")
    parser.add_argument("--out", type=Path, help="output folder (default reports/<cohort name>)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--batch-size", type=int, help="images per batch (default 256 on a GPU, 32 on the CPU)")
    parser.add_argument("--workers", type=int, help="local engine: face-loading workers (default: cores − 1 on a "
                        "GPU host); ray engine: inference actors (default: the cluster's GPUs, else 1)")
    parser.add_argument("--preprocess-workers", type=int, default=1, help="processes for face standardisation")
    parser.add_argument("--no-bf16", dest="bf16", action="store_const", const=False,
                        help="run in float32 on the GPU")
    parser.add_argument("--parquet", action="store_true", help="also write the predictions as Parquet")
    parser.add_argument("--cache", type=Path, help="face cache folder (default .f2b-cache/faces)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this machine (default); ray: a Ray cluster (the optional extra 'cluster')")
    parser.add_argument("--ray-address", help="Ray cluster to join: ray://HEAD:10001, HEAD:6379 or auto (default: "
                        "start a local Ray instance)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


FLAGS = {"batch_size": "screening.batch_size", "bf16": "screening.bf16"}


def resolve_model(model: str | None, study: Any) -> tuple[Any, str]:
    """(checkpoint, how it was chosen): --model, else the config's [model] path, else the newest run in runs/."""
    from f2b_study.errors import InputError
    from f2b_study.models.runtime import newest_run, resolve_checkpoint

    if model is not None:
        return resolve_checkpoint(model), "--model"
    configured = study.model_path()
    if configured is not None:
        return resolve_checkpoint(configured), f"the model named in {study.section_files['model']}"
    newest = newest_run()
    if newest is None:
        raise InputError("no trained model found: train one with `f2b-study train COHORT --out runs/NAME`, or pass "
                         "--model runs/NAME")
    return resolve_checkpoint(newest), "the newest run in runs/"


def run(args: argparse.Namespace) -> int:
    from f2b_study.inference.screen import check_checkpoint
    from f2b_study.runlock import run_lock

    study = load_study_args(args.cohort, args, FLAGS)
    checkpoint, how = resolve_model(args.model, study)
    check_checkpoint(checkpoint)  # a refused model stops before any photo is processed
    if how != "--model":
        print(f"f2b-study screen: using {checkpoint.path} ({how})", file=sys.stderr)
    if args.engine == "ray":
        from f2b_study.inference.ray_engine import import_ray

        import_ray()  # a missing extra fails before any work
    out = args.out or Path("reports") / study.name
    with run_lock(out, "screen"):
        return _screen(args, study, checkpoint, out)


def _screen(args: argparse.Namespace, study: Any, checkpoint: Any, out: Path) -> int:
    from f2b_study.cohort.cohort_photos import build_cohort_photos
    from f2b_study.faces.table import standardise
    from f2b_study.inference.screen import ray_faces_and_scores, screen
    from f2b_study.outputs import prepare_outputs
    from f2b_study.report.screening import write_screening_report

    outputs = prepare_outputs(out)
    cohort = build_cohort_photos(study.centres, photos=args.photos, target=None, require_dxa=False)
    cache = cache_folder(args)
    settings = study.screening
    if args.engine == "ray":
        faces, probabilities = ray_faces_and_scores(
            cohort, qc=study.qc, checkpoint=checkpoint, out=outputs.private, cache_dir=cache, device=args.device,
            batch_size=settings.batch_size, workers=args.workers, bf16=settings.bf16, address=args.ray_address,
            progress=None)
    else:
        faces = standardise(cohort.photos, qc=study.qc, cache_dir=cache, workers=args.preprocess_workers)
        probabilities = None
    result = screen(cohort, faces, checkpoint, out=outputs.private, device=args.device,
                    batch_size=settings.batch_size, workers=args.workers, bf16=settings.bf16, parquet=args.parquet,
                    probabilities=probabilities, thresholds=settings)
    write_screening_report(result, outputs.shareable, study.report.title)
    if args.json:
        print_json({**result.summary, "files": {k: str(v) for k, v in result.files.items()}})
        return 0
    s = result.summary
    print(f"screened {s['patients']} patients: {s['patients_with_prediction']} with a prediction, from "
          f"{s['photos_used']} of {s['photos']} photos usable ({checkpoint.path})")
    for name, n in s["by_predicted_class"].items():
        print(f"  predicted {name:<13} {n:>6}")
    for reason, n in s["no_prediction"].items():
        print(f"  no prediction: {reason}: {n}")
    for name, path in result.files.items():
        print(f"  {name}: {path}")
    return 0
