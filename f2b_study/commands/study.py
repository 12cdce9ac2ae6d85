"""`f2b-study study`: the whole chain for one or more centres, ending in one STARD report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, print_json, warn


def register(sub: Any) -> None:
    parser = add_command(
        sub, "study", help="the whole chain for one or more centres -> one STARD report",
        description="Label every centre's cohort, describe it (Table 1), standardise the faces, split patients "
        "8:2 (stratified, seed 42), train the model of the first config's [train] section, screen the validation "
        "split, evaluate per centre and pooled (forest plot of AUC, I²), explain the model by facial region and "
        "concept, and write OUT/report.html (STARD 2015).",
        examples="  f2b-study study cohorts/centre_a.toml cohorts/centre_b.toml --out reports/consortium\n"
        "  f2b-study study cohorts/demo.toml --epochs 3 --no-explain\n")
    parser.add_argument("configs", nargs="+", help="cohort configs (.toml) or tables (.csv/.xlsx), one per centre")
    parser.add_argument("--out", type=Path, help="output folder (default reports/<first cohort name>)")
    add_run_options(parser)
    parser.set_defaults(func=run)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", help="registry model (default: the config's [train] arch, else face2bone)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the config's, else 150)")
    parser.add_argument("--facenet-weights", help="VGGFace2 weights file for the FaceNet branch")
    parser.add_argument("--device", help="auto, cpu or cuda[:N]")
    parser.add_argument("--preprocess-workers", type=int, help="processes for face standardisation")
    parser.add_argument("--bootstrap", type=int, help="bootstrap replicates (default 2000)")
    parser.add_argument("--no-explain", action="store_true", help="skip the explanations")
    parser.add_argument("--include-faces", action="store_true", help="allow face images in the report")
    parser.add_argument("--cache", type=Path, help="face cache folder (default .f2b-cache/faces)")
    parser.add_argument("--json", action="store_true", help="print the flow, timings and files as JSON")


def run_chain(configs: list[Path | str], args: argparse.Namespace) -> Any:
    from f2b_study.config import load_config
    from f2b_study.study import StudySettings, run_study

    loaded = [load_config(c) for c in configs]
    overrides = {"arch": args.arch, "epochs": args.epochs, "facenet_weights": args.facenet_weights,
                 "device": args.device, "preprocess_workers": args.preprocess_workers,
                 "replicates": args.bootstrap, "explain": False if args.no_explain else None,
                 "include_faces": True if args.include_faces else None, "cache_dir": args.cache}
    settings = StudySettings.from_config(loaded[0], **overrides)
    out = args.out or Path("reports") / loaded[0].name
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    return run_study(loaded, out, settings, progress=progress)


def report_result(result: Any, args: argparse.Namespace, note: str | None = None) -> int:
    for message in result.warnings:
        warn(args.command, message)
    if args.json:
        print_json({"flow": result.flow, "timings_s": result.timings,
                    "files": {k: str(v) for k, v in result.files.items()}, "note": note})
        return 0
    flow = result.flow
    print(f"{flow['enrolled']} enrolled, {flow['eligible']} eligible, {flow.get('analysed', 0)} analysed "
          f"({', '.join(f'{k} {v}' for k, v in flow.get('split', {}).items())})")
    overall = (result.evaluation or {}).get("overall", {})
    if overall:
        auc = overall.get("auc_macro_ovr")
        print(f"validation: accuracy {overall.get('accuracy', 0):.3f}, macro AUC "
              f"{auc if auc is None else f'{auc:.3f}'}, kappa {overall.get('kappa', 0):.3f}")
    stages = ", ".join(f"{k} {v:.0f}" for k, v in result.timings.items())
    print(f"time: {sum(result.timings.values()):.0f} s ({stages})")
    print(f"report: {result.files['report']}")
    if note:
        print(note)
    return 0


def run(args: argparse.Namespace) -> int:
    return report_result(run_chain(args.configs, args), args)
