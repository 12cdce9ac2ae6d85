"""`f2b-study study`: the whole chain for one or more centres, ending in one STARD report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, cache_folder, load_study_args, print_json, warn


def register(sub: Any) -> None:
    parser = add_command(
        sub, "study", help="the whole chain for one or more centres -> one STARD report",
        description="Label every centre's cohort once, describe it (Table 1), standardise the faces once with the "
        "study's [qc], split patients (the cohort's split column, else stratified 8:2 with seed 42), train the "
        "study's [train] model, predict the validation split once, evaluate per centre and pooled (forest plot of "
        "AUC, I²), explain the model by facial region and concept ([explain]), and write OUT/report.html "
        "(STARD 2015), whose methods say which rules ran. The study-wide sections may sit in any centre's config; "
        "two centres giving one section differently are refused.",
        examples="  f2b-study study cohorts/centre_a.toml cohorts/centre_b.toml --out reports/consortium\n"
        "  f2b-study study cohorts/demo.toml --epochs 3 --no-explain\n")
    parser.add_argument("configs", nargs="+", help="cohort configs (.toml) or tables (.csv/.xlsx), one per centre")
    parser.add_argument("--out", type=Path, help="output folder (default reports/<first cohort name>)")
    add_run_options(parser)
    parser.set_defaults(func=run)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", help="registry model (default: the config's [train] arch, else face2bone)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the config's, else 150)")
    parser.add_argument("--facenet-weights", help="VGGFace2 weights for the FaceNet branch: a file or 'vggface2'")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--preprocess-workers", type=int, default=1, help="processes for face standardisation")
    parser.add_argument("--bootstrap", type=int, help="bootstrap replicates (default: the config's [report], else "
                        "2000)")
    parser.add_argument("--no-explain", dest="explain", action="store_const", const=False,
                        help="skip the explanations")
    parser.add_argument("--include-faces", action="store_const", const=True,
                        help="allow face images in the private outputs")
    parser.add_argument("--cache", type=Path, help="face cache folder (default .f2b-cache/faces)")
    parser.add_argument("--key-file", help="the study's pseudonym key (share one file between the centres of a "
                        "study; default: the key store, ~/.config/f2b-study/keys)")
    parser.add_argument("--json", action="store_true", help="print the flow, timings and files as JSON")


FLAGS = {"arch": "train.arch", "epochs": "train.epochs", "facenet_weights": "train.facenet_weights",
         "bootstrap": "report.bootstrap", "explain": "explain.enabled", "include_faces": "report.include_faces",
         "key_file": "privacy.key_file"}


def run_chain(configs: list[Path | str], args: argparse.Namespace) -> Any:
    from f2b_study.study import run_study

    study = load_study_args(configs, args, FLAGS)
    out = args.out or Path("reports") / study.centres[0].name
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    return run_study(study, out, device=args.device, preprocess_workers=args.preprocess_workers,
                     cache_dir=cache_folder(args), progress=progress)


def report_result(result: Any, args: argparse.Namespace, note: str | None = None) -> int:
    for message in result.warnings:
        warn(args.command, message)
    if args.json:
        print_json({"flow": result.flow.to_dict(), "timings_s": result.timings, "pipeline_check": result.pipeline_check,
                    "files": {k: str(v) for k, v in result.files.items()}, "note": note})
        return 0
    flow = result.flow
    print(f"{flow.enrolled} enrolled, {flow.eligible} eligible, {flow.analysed or 0} analysed "
          f"({', '.join(f'{k} {v}' for k, v in flow.split.items())})")
    overall = (result.evaluation or {}).get("overall", {})
    if overall:
        auc = overall.get("auc_macro_ovr")
        print(f"validation: accuracy {overall.get('accuracy', 0):.3f}, macro AUC "
              f"{auc if auc is None else f'{auc:.3f}'}, kappa {overall.get('kappa', 0):.3f}")
    from f2b_study.report.degenerate import assess

    degenerate = assess(result.evaluation or {}).console_line() if result.evaluation else ""
    if degenerate:
        print(degenerate)
    check = result.pipeline_check
    if check and check.get("auc") is not None:
        low, high = check["auc_ci"]
        print(f"pipeline check ({check['target']}, a label faces really carry): held-out AUC {check['auc']:.3f} "
              f"(95% CI {low:.3f} to {high:.3f}), accuracy {check['accuracy']:.3f}, "
              f"{check['n_patients']['validation']} patients")
    stages = ", ".join(f"{k} {v:.0f}" for k, v in result.timings.items())
    print(f"time: {sum(result.timings.values()):.0f} s ({stages})")
    print(f"report: {result.files['report']}")
    if note:
        print(note)
    return 0


def run(args: argparse.Namespace) -> int:
    return report_result(run_chain(args.configs, args), args)
