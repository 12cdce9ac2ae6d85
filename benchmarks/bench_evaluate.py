"""Benchmark: `evaluate` on 100,000 predictions with 2,000 patient-level bootstrap replicates (target ≤ 10 s on two
cores, with the clinical-utility figures of issue 15: decision curves and flexible calibration curves) and the STARD
report build (target ≤ 5 s), docs/methods.md. Prints one table; run on a quiet machine (on a shared one, compare the CPU
seconds and the ratios within one run).

    .venv/bin/python benchmarks/bench_evaluate.py [--n 100000] [--replicates 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from f2b_study import CLASSES


def synthetic(n: int, seed: int = 0, covariates: bool = False) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.35, 0.45, 0.2])
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.8
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    data = {"patient_id": [f"P{i:07d}" for i in range(n)], "bone_status": np.array(CLASSES)[y],
            "p_normal": p[:, 0].round(6), "p_osteopenia": p[:, 1].round(6)}
    data["p_osteoporosis"] = (1 - data["p_normal"] - data["p_osteopenia"]).round(6)
    if covariates:
        data.update(sex=rng.choice(["F", "M"], n, p=[0.7, 0.3]), age_years=rng.uniform(51, 90, n).round(1),
                    weight_kg=(68 - 5 * y + rng.normal(0, 8, n)).round(1), height_cm=rng.normal(160, 7, n).round(1),
                    center=rng.choice(["A", "B", "C"], n), split=rng.choice(["train", "test"], n, p=[0.5, 0.5]))
    return pl.DataFrame(data)


def clinical_figures(full: dict) -> list[str]:
    """The issue-15 figures a report of this evaluation draws."""
    from f2b_study.report.clinical_figures import decision_curves_svg, flexible_calibration_svg
    from f2b_study.stats.evaluation import to_document

    document = to_document(full)
    curves = {"Face model": document["decision_curves"], **document["decision_curves_comparators"]}
    return [decision_curves_svg(curves, "dc"),
            flexible_calibration_svg(full["curves"]["flexible_calibration"], CLASSES, "fc",
                                     reliability=full["curves"]["reliability"], per_class=document["per_class"])]


def timed(fn):
    """(wall seconds, CPU seconds of this process, all threads), result. On a shared machine the CPU time shows
    the work itself; children (the CLI run) are counted in wall time only."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return (time.perf_counter() - start, time.process_time() - cpu), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--replicates", type=int, default=2000)
    args = parser.parse_args()

    from f2b_study.report.stard import StudyReportInput, render_stard_report
    from f2b_study.stats.evaluation import evaluate_predictions
    from f2b_study.stats.predictions import predictions_from_frame

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "predictions.csv"
        synthetic(args.n).write_csv(csv)
        t_read, ps = timed(lambda: predictions_from_frame(pl.read_csv(csv, infer_schema=False), str(csv)))
        rows.append(("read + validate predictions", t_read, None))
        t_eval, full = timed(lambda: evaluate_predictions(ps, replicates=args.replicates))
        rows.append((f"evaluate: {args.n:,} rows × {args.replicates} replicates", t_eval, None))
        t_figures, _ = timed(lambda: clinical_figures(full))
        rows.append(("clinical figures (decision curves, flexible calibration)", t_figures, None))
        rows.append(("evaluate + clinical figures", tuple(a + b for a, b in zip(t_eval, t_figures, strict=True)),
                     10.0))
        t_report, _html = timed(lambda: render_stard_report(StudyReportInput(title="benchmark", evaluation=full)))
        rows.append(("report build (STARD HTML, inline SVG)", t_report, 5.0))
        t_cli, run = timed(lambda: subprocess.run(
            [sys.executable, "-m", "f2b_study", "evaluate", str(csv), "--out", str(Path(tmp) / "out"),
             "--bootstrap", str(args.replicates)], capture_output=True, text=True))
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return 1
        rows.append(("f2b-study evaluate (CLI: start-up, read, evaluate, report)", t_cli, None))
        covariates = predictions_from_frame(synthetic(args.n, covariates=True), "covariates")
        t_full, _ = timed(lambda: evaluate_predictions(covariates, by=("sex", "center", "age_band"),
                                                       replicates=args.replicates))
        rows.append((f"… with subgroups + comparators ({covariates.evaluated.height:,} test rows)", t_full, None))

    print(f"f2b-study evaluate benchmark: n = {args.n:,}, replicates = {args.replicates}, "
          f"CPUs = {os.cpu_count()}, numpy {np.__version__}")
    print(f"{'step':<62} {'wall s':>7} {'CPU s':>7} {'target':>7} {'ratio':>6}")
    for name, (wall, cpu), target in rows:
        target_text = f"≤ {target:g}" if target else ""
        ratio = f"{wall / target:.2f}" if target else ""
        cpu_text = f"{cpu:.2f}" if cpu > 0.05 else "–"
        print(f"{name:<62} {wall:>7.2f} {cpu_text:>7} {target_text:>7} {ratio:>6}")
    print("ratio = wall / target; CPU s counts every thread of this process (the CLI runs in a child)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
