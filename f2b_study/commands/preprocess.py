"""`f2b-study preprocess`: face standardisation + quality control + cache for every photo of a cohort."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, cache_folder, cores, load_study_args, print_json, warn


def register(sub: Any) -> None:
    parser = add_command(
        sub, "preprocess", help="face standardisation + quality control + cache",
        description="Turn every photo of a cohort into the paper's standardised face (eye line level, elliptical "
        "face region on black, 512x512) or a named reason why not: unreadable, no_face, multiple_faces, "
        "low_confidence, face_too_small, extreme_pose, and the protocol checks (blurred, exposure, sunglasses, "
        "eyeglasses, forehead covered, eyes closed, expression, busy background, another face), which flag the "
        "photo unless the config's [qc] exclude list names them (default: blurred, sunglasses). Writes "
        "OUT/private/preprocess.csv, one row per photo (and OUT/shareable/preprocess_summary.json, the counts); "
        "faces stay in the face cache (.f2b-cache/faces, the one every command uses). Reruns reuse the cache: "
        "only new or changed photos are "
        "processed, and an interrupted run continues where it stopped. Without a cohort, every image in "
        "--photos is a photo and its patient_id is the folder name for DIR/<id>/*, else the file name up to "
        "its first '_' (P001_front.jpg -> P001).",
        examples="  f2b-study preprocess cohorts/demo.toml\n"
        "  f2b-study preprocess dxa.csv --photos photos/ --out reports/centre_a --workers 8 --json\n"
        "  f2b-study preprocess --photos photos/ --out reports/photos_only\n")
    parser.add_argument("cohort", nargs="?", help="cohort table (.csv/.xlsx) or cohort config (.toml); optional")
    parser.add_argument("--photos", type=Path,
                        help="photo folder (default: the config's photos, else the cohort table's folder)")
    parser.add_argument("--out", type=Path, help="output folder (default reports/<cohort name>)")
    parser.add_argument("--cache", type=Path, help="face cache folder (default .f2b-cache/faces)")
    parser.add_argument("--workers", type=int, default=0,
                        help="worker processes, one face model each (default: one per CPU core)")
    parser.add_argument("--json", action="store_true", help="print counts by status, reason and flag as JSON")
    parser.add_argument("--review", action="store_true",
                        help="also write OUT/qc_review.html: thumbnails of every excluded and flagged photo with its "
                        "findings, filterable (PRIVATE: shows identifiable faces; never share it)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from f2b_study.atomic import write_text
    from f2b_study.errors import InputError
    from f2b_study.faces.preprocess import photos_from_folder
    from f2b_study.faces.qc import QCThresholds

    if args.workers < 0:
        raise InputError.at("--workers", value=args.workers, expected="a number of worker processes >= 1")
    workers = args.workers or cores()
    log_lines: list[str] = []
    join_counts: dict[str, int] = {}
    if args.cohort:
        from f2b_study.cohort.cohort_photos import build_cohort_photos

        study = load_study_args(args.cohort, args, {})
        cohort = build_cohort_photos(study.centres, photos=args.photos, target=None, require_dxa=False)
        photos, log_lines, qc = cohort.photos, list(cohort.join_log), study.qc
        join_counts = {"photos": photos.height, "patients_with_photos": photos["patient_id"].n_unique(),
                       "patients_without_photos": sum("patient without photos" in line for line in log_lines),
                       "unmatched_photos": cohort.unmatched_photos(),
                       "missing_files": sum("named in the cohort but missing" in line for line in log_lines)}
        out = args.out or Path("reports") / study.name
    else:
        if args.photos is None:
            raise InputError.at("f2b-study preprocess", show_value=False,
                                expected="a cohort (COHORT.csv / .toml) or --photos DIR (or both)")
        photos = photos_from_folder(args.photos)
        qc = QCThresholds()
        out = args.out or Path("reports") / Path(os.path.realpath(args.photos)).name
    if photos.height == 0:
        warn("preprocess", "no photos to process (see preprocess_log.txt)")
    from f2b_study.jsonutil import dumps
    from f2b_study.outputs import prepare_outputs
    from f2b_study.runlock import run_lock

    with run_lock(out, "preprocess"):
        outputs = prepare_outputs(out)
        summary = _standardise(args, photos, qc, workers, log_lines, join_counts, outputs)
        write_text(outputs.shareable / "preprocess_summary.json", dumps(
            {k: v for k, v in summary.items() if k not in ("output", "log", "review")}))
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def _standardise(args: argparse.Namespace, photos: Any, qc: Any, workers: int, log_lines: list[str],
                 join_counts: dict[str, int], outputs: Any) -> dict[str, Any]:
    """Every photo through the face cache and QC; the per-photo table, the join log and the review sheet go to
    the private outputs (they name photo files, and the sheet shows faces)."""
    from f2b_study.atomic import write_text
    from f2b_study.faces.table import standardise

    private = outputs.private
    faces = standardise(photos, qc=qc, cache_dir=cache_folder(args), workers=workers)
    csv_path = faces.write_csv(private / "preprocess.csv")
    write_text(private / "preprocess_log.txt", "".join(f"{line}\n" for line in log_lines))
    summary = faces.summary()
    summary.update(output=str(csv_path), join=join_counts, workers=workers, log=str(private / "preprocess_log.txt"))
    if args.review:
        from f2b_study.report.qc_review import write_qc_review

        paths = dict(zip(photos["photo"].to_list(), photos["path"].to_list(), strict=True))
        summary["review"] = str(write_qc_review(faces.frame, paths, private))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"preprocessed {summary['photos']} photos -> {summary['output']} "
             f"({summary['computed']} processed, {summary['from_cache']} from the cache)"]
    lines += [f"  {status:<28} {n:>7}" for status, n in summary["by_status"].items()]
    if summary["by_reason"]:
        lines.append("excluded by reason")
        lines += [f"  {reason:<28} {n:>7}" for reason, n in summary["by_reason"].items()]
    if summary["flags"]:
        lines.append("flags (recorded; exclusions only where [qc] says so)")
        lines += [f"  {flag:<28} {n:>7}" for flag, n in summary["flags"].items()]
    join = summary.get("join") or {}
    if join.get("patients_without_photos") or join.get("unmatched_photos") or join.get("missing_files"):
        lines.append(f"photo join: {join.get('patients_without_photos', 0)} patients without photos, "
                     f"{join.get('unmatched_photos', 0)} unmatched photos, {join.get('missing_files', 0)} missing "
                     f"files (listed in {summary['log']})")
    if summary.get("review"):
        lines.append(f"QC review sheet (PRIVATE, identifiable faces): {summary['review']}")
    return "\n".join(lines)
