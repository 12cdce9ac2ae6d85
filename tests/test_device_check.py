"""benchmarks/device_check.py --dry-run: every part of the GPU-day script runs at tiny shapes on the CPU and the
table it writes has every part, each row with a number or a clear reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PARTS = ("equality", "throughput-eager", "throughput-compile", "training", "screen", "shapley", "ddp", "ray")


def table_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]


@pytest.mark.slow
def test_dry_run_covers_every_part_with_a_number_or_a_reason(tmp_path: Path) -> None:
    out = tmp_path / "device_check.md"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "device_check.py"), "--dry-run", "--out",
                           str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# device check: dry run") and text in done.stdout  # printed and written alike
    rows = table_rows(text)
    assert {row["part"] for row in rows} == set(PARTS)
    for row in rows:
        has_number = row["value"] != ""
        reason = row["note"]
        assert has_number or reason.startswith("skipped: "), row
        assert not reason.startswith("error"), row  # on the CPU every part must run (or say why it cannot)
    # the parts the dry run can do on the CPU are measured, not skipped
    measured = {row["part"] for row in rows if row["value"]}
    assert measured >= {"equality", "throughput-eager", "training", "shapley"}, measured
    by_item = {row["what"]: row for row in rows}
    assert by_item["torch.compile, every model"]["note"].startswith("skipped: dry run on the CPU")
    assert all(row["note"].startswith("pass") for row in rows if row["part"] == "equality"), rows
    # every registry model and the §13 anchors are in the throughput rows
    throughput = {row["what"] for row in rows if row["part"] == "throughput-eager"}
    assert {"face2bone", "resnet18", "resnet34", "vgg16", "vgg19", "vit_b_16", "facenet@160"} <= throughput
    assert "Total" in text
