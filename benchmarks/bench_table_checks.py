"""What refusing short rows and duplicate columns costs when reading a large cohort CSV (issue 14).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_table_checks.py [--rows 1000000]
Prints one table: seconds for the field-count check alone (the streaming polars pass, and Python's csv module that
it falls back to when a value spans lines), and for reading the table eagerly (`read_table`) and streaming
(`scan_cohort`, as `label` does) with and without the check, measured in this run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from f2b_study import tables
from f2b_study.cohort import scan
from f2b_study.cohort.schema import scan_cohort


def generate(rows: int, path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    height = np.round(np.clip(rng.normal(162, 9, rows), 140, 200), 1)
    weight = np.round(np.clip(rng.normal(64, 11, rows), 40, 150), 1)
    pl.DataFrame({
        "patient_id": [f"P{i:07d}" for i in range(rows)],
        "center": rng.choice(["north", "south, annex"], rows),  # a value with the separator: quoted
        "sex": rng.choice(["F", "M"], rows), "age_years": rng.integers(35, 90, rows),
        "height_cm": height, "weight_kg": weight, "bmi": np.round(weight / (height / 100) ** 2, 2),
        **{c: np.round(np.clip(rng.normal(-1.3, 1.1, rows), -9, 9), 2)
           for c in ("t_spine_l1_l4", "t_femoral_neck", "t_total_hip", "z_spine_l1_l4", "z_femoral_neck",
                     "z_total_hip")},
        "consent": rng.choice(["yes", "no"], rows), "site_code": rng.choice(["a", "b"], rows),
    }).write_csv(path)


def seconds(step: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cohort.csv"
        generate(args.rows, path)
        width = len(pl.read_csv(path, n_rows=1).columns)
        measured = {
            "field-count check, streaming polars pass": seconds(lambda: tables.check_csv_shape(path, ",")),
            "field-count check, csv module (fallback)": seconds(
                lambda: tables._check_shape_exactly(path, ",", width), repeat=1),
        }
        original = tables.check_csv_shape
        for label, check in (("with the check", original), ("without the check", lambda *_: None)):
            tables.check_csv_shape = check
            scan.check_csv_shape = check
            measured[f"read_table, {label}"] = seconds(lambda: tables.read_table(path))
            measured[f"scan_cohort + collect (label), {label}"] = seconds(
                lambda: scan_cohort(path, require_dxa=False).frame.collect(engine="streaming"))
        tables.check_csv_shape = original
        scan.check_csv_shape = original
        size = path.stat().st_size / 1e6
    print(f"\n{args.rows:,} rows, {size:.0f} MB\n")
    print("| step | seconds | rows/s |")
    print("|---|---:|---:|")
    for step, value in measured.items():
        print(f"| {step} | {value:.2f} | {args.rows / value:,.0f} |")


if __name__ == "__main__":
    main()
