"""`f2b-study demo`: the whole chain on the bundled demo cohort (its labels are simulated)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from f2b_study.commands._common import add_command
from f2b_study.commands.study import add_run_options, report_result, run_chain

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "cohorts" / "demo.toml"
SIMULATED = ("The demo's bone labels are SIMULATED: real face photos paired with other people's real DXA records "
             "by age and sex. Its numbers say nothing about screening from faces.")


def register(sub: Any) -> None:
    parser = add_command(
        sub, "demo", help="the whole chain on the bundled demo cohort",
        description="Run the study chain on cohorts/demo.toml (454 public portraits paired with NHANES DXA "
        "records; SIMULATED bone labels): label, Table 1, face standardisation, a small fast Face2Bone "
        "configuration trained on the CPU (see [train] in cohorts/demo.toml), screening of the validation split, "
        "evaluation per centre and pooled, explanations, and the STARD report in reports/demo/report.html.",
        examples="  f2b-study demo\n  f2b-study demo --out reports/demo-copy --json\n  f2b-study demo --epochs 5\n")
    parser.add_argument("--out", type=Path, default=Path("reports") / "demo", help="output folder")
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from f2b_study.errors import InputError

    if not DEMO_CONFIG.exists():
        raise InputError.at(DEMO_CONFIG, show_value=False,
                            expected="the demo cohort of a source checkout (run from the f2b-study repository)")
    result = run_chain([DEMO_CONFIG], args)
    return report_result(result, args, note=SIMULATED)
