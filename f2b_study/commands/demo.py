"""`f2b-study demo`: the whole chain on the bundled demo cohort (its labels are simulated)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command, print_json, warn

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "cohorts" / "demo.toml"
SIMULATED = ("The demo's bone labels are SIMULATED: real face photos paired with other people's real DXA records "
             "by age and sex. Its numbers say nothing about screening from faces.")


def register(sub: Any) -> None:
    parser = add_command(
        sub, "demo", help="the whole chain on the bundled demo cohort",
        description="Run the study chain on cohorts/demo.toml (454 public portraits paired with NHANES DXA "
        "records; SIMULATED bone labels) and write everything to reports/demo/.",
        examples="  f2b-study demo\n  f2b-study demo --out /tmp/demo --json\n")
    parser.add_argument("--out", type=Path, default=Path("reports") / "demo", help="output folder")
    parser.add_argument("--json", action="store_true", help="print the flow counts and files as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from f2b_study.errors import InputError
    from f2b_study.study import run_study

    if not DEMO_CONFIG.exists():
        raise InputError.at(DEMO_CONFIG, show_value=False,
                            expected="the demo cohort of a source checkout (run from the f2b-study repository)")
    result = run_study([DEMO_CONFIG], args.out)
    for message in result.warnings:
        warn("demo", message)
    summary = {"flow": result.flow, "files": {k: str(v) for k, v in result.files.items()}, "note": SIMULATED}
    if args.json:
        print_json(summary)
        return 0
    flow = result.flow
    print(f"demo cohort: {flow['enrolled']} enrolled, {flow['eligible']} eligible "
          f"({', '.join(f'{k} {v}' for k, v in flow['eligible_by_class'].items())}), "
          f"{flow['no_photo']} eligible without a photo")
    for reason, n in flow["excluded"].items():
        print(f"  excluded: {reason}: {n}")
    for name, path in result.files.items():
        print(f"  {name}: {path}")
    print(SIMULATED)
    return 0
