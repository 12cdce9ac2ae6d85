"""`label` and `table1` on a generated cohort (default 1,000,000 rows); target ≤ 10 s each on 2 cores.

    .venv/bin/python benchmarks/bench_cohort.py [--rows 1000000]
Prints one table: seconds per step and rows per second, measured in this run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from f2b_study.cli import main as cli


def generate(rows: int, path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], rows, p=[0.7, 0.3])
    age = rng.integers(35, 90, rows)
    meno = np.where(sex == "F", np.where(age >= 52, "post", "pre"), "")

    def t(missing: float) -> pl.Series:
        values = pl.Series(np.round(rng.normal(-1.3, 1.1, rows), 2))
        return values.scatter(np.flatnonzero(rng.random(rows) < missing), None)

    pl.DataFrame({
        "patient_id": [f"P{i:07d}" for i in range(rows)],
        "sex": sex, "age_years": age, "menopausal_status": meno,
        "height_cm": np.round(rng.normal(162, 9, rows), 1), "weight_kg": np.round(rng.normal(64, 11, rows), 1),
        "t_spine_l1_l4": t(0.05), "t_femoral_neck": t(0.1), "t_total_hip": t(0.1),
        "site_code": rng.choice(["a", "b", "c"], rows),
    }).write_csv(path)


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli(args)
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"command failed: {args}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cohort, labelled = Path(tmp) / "cohort.csv", Path(tmp) / "labelled.csv"
        generate(args.rows, cohort)
        results = [
            ("label", timed(["label", str(cohort), "--out", str(labelled), "--json"])),
            ("table1 --by bone_status", timed(["table1", str(labelled), "--by", "bone_status", "--json"])),
            ("table1 --by sex", timed(["table1", str(labelled), "--by", "sex", "--json"])),
        ]
    print(f"\n{'step':<26}{'rows':>10}{'seconds':>10}{'rows/s':>12}{'target':>10}")
    for name, seconds in results:
        print(f"{name:<26}{args.rows:>10,}{seconds:>10.2f}{args.rows / seconds:>12,.0f}{'≤ 10 s':>10}")


if __name__ == "__main__":
    main()
