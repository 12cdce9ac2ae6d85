"""What may leave the site lives apart from what may not (issue 14): shareable/ and private/ (0700, files 0600),
one run per output folder, the key never beside the outputs, formulas neutralised in per-patient tables."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from f2b_study.cli import main
from f2b_study.outputs import PRIVATE, SHAREABLE, prepare_outputs
from tests.conftest import REPO
from tests.report_sample import predictions


def cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, err.getvalue()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_prepared_outputs_are_split_and_private_files_owner_only(tmp_path: Path) -> None:
    from f2b_study.atomic import write_text

    outputs = prepare_outputs(tmp_path / "out")
    assert mode(outputs.private) == 0o700 and outputs.shareable.is_dir()
    assert "private/" in (outputs.root / "README.txt").read_text()
    write_text(outputs.private / "deep" / "rows.csv", "a\n")
    write_text(outputs.shareable / "report.html", "<p>")
    assert mode(outputs.private / "deep" / "rows.csv") == 0o600  # owner-only folder: its files stay owner-only
    assert mode(outputs.shareable / "report.html") & 0o044  # shareable: readable as a plain open() makes it


def test_evaluate_writes_only_shareable_outputs_and_keeps_the_key_elsewhere(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("F2B_KEY_STORE", str(tmp_path / "keys"))
    frame = predictions(120, 3, "A", "ZQX-")
    path = tmp_path / "site" / "predictions.csv"
    path.parent.mkdir()
    frame.write_csv(path)
    code, err = cli("evaluate", str(path), "--out", str(tmp_path / "ev"), "--bootstrap", "20")
    assert code == 0, err
    out = tmp_path / "ev"
    assert {p.name for p in out.iterdir()} == {SHAREABLE, PRIVATE, "README.txt"}
    html = (out / SHAREABLE / "report.html").read_text()
    assert not any(pid in html for pid in frame["patient_id"])  # pseudonyms only
    assert not list(out.rglob("*key*")) and list((tmp_path / "keys").glob("*.key"))
    code, err = cli("evaluate", str(path), "--out", str(tmp_path / "ev2"), "--key-file",
                    str(tmp_path / "ev2" / "k.key"))
    assert code == 2 and "outside the output folder" in err


def test_a_second_run_into_a_held_folder_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from f2b_study.runlock import run_lock\n"
         f"with run_lock({str(out)!r}, 'evaluate'):\n    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        frame = predictions(60, 4, "A", "P")
        frame.write_csv(tmp_path / "p.csv")
        code, err = cli("evaluate", str(tmp_path / "p.csv"), "--out", str(out), "--bootstrap", "0")
        assert code == 2 and str(holder.pid) in err, err
        assert not (out / SHAREABLE / "evaluation.json").exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    code, err = cli("evaluate", str(tmp_path / "p.csv"), "--out", str(out), "--bootstrap", "0")  # stale: taken over
    assert code == 0, err


def test_labelled_rows_are_owner_only_and_formulas_cannot_run(tmp_path: Path) -> None:
    table = tmp_path / "c.csv"
    table.write_text('patient_id,sex,age_years,menopausal_status,t_spine_l1_l4,t_femoral_neck,center\n'
                     '"=HYPERLINK(""http://x"")",F,60,post,-1,-1,@SUM(1)\nB2,M,70,,-3,-2,+cmd|calc\n')
    out = tmp_path / "labelled.csv"
    code, err = cli("label", str(table), "--out", str(out))
    assert code == 0, err
    assert mode(out) == 0o600
    rows = pl.read_csv(out, infer_schema=False)
    assert rows["patient_id"][0].startswith("'=") and rows["center"].to_list() == ["'@SUM(1)", "'+cmd|calc"]
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert cli("label", str(table))[0] == 0  # the default lands in the private outputs
        assert mode(tmp_path / "reports" / "c" / PRIVATE) == 0o700
        assert (tmp_path / "reports" / "c" / PRIVATE / "labelled.csv").exists()
    finally:
        os.chdir(old)
