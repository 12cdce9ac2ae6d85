"""Streaming labels (issue 9): `scan_cohort` + `label_frame` on a LazyFrame give the eager path's rows, warnings and
error messages (the eager path now runs the same lazy queries on an in-memory frame)."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

from f2b_study.cohort import scan
from f2b_study.cohort.label import label, label_frame
from f2b_study.cohort.schema import load_cohort, scan_cohort
from f2b_study.errors import InputError
from f2b_study.tables import read_table

COLUMNS = ["patient_id", "center", "sex", "age_years", "menopausal_status", "height_cm", "weight_kg", "bmi",
           "t_spine_l1_l4", "t_femoral_neck", "t_total_hip", "z_total_hip", "consent", "bedridden", "notes"]
BAD = {"age_years": ["sixty", "-1", "nan"], "sex": ["X", ""], "menopausal_status": ["maybe"], "bmi": ["q", "2"],
       "t_spine_l1_l4": ["abc", "11"], "height_cm": ["20"], "consent": ["perhaps"], "patient_id": ["", "DUP"]}


def cohort_text(rng: random.Random, rows: int, bad: int) -> str:
    use = [c for c in COLUMNS if c in ("patient_id", "sex", "age_years", "t_spine_l1_l4") or rng.random() < 0.8]
    records = []
    for i in range(rows):
        records.append({
            "patient_id": f"P{i}", "center": rng.choice(["a", ""]), "sex": rng.choice(["F", "m", "female"]),
            "age_years": rng.choice(["45", "51", "66", ""]), "menopausal_status": rng.choice(["post", "pre", ""]),
            "height_cm": rng.choice(["160", "158,5", ""]), "weight_kg": rng.choice(["60", "81.2", ""]),
            "bmi": rng.choice(["", "24.1", "31"]), "t_spine_l1_l4": rng.choice(["-1.0", "−2,6", "", "-3"]),
            "t_femoral_neck": rng.choice(["-2.5", "0", ""]), "t_total_hip": rng.choice(["-1.2", ""]),
            "z_total_hip": rng.choice(["-2", ""]), "consent": rng.choice(["", "yes", "no"]),
            "bedridden": rng.choice(["", "0"]), "notes": rng.choice(["", "x y", "ü"])})
    for _ in range(bad):
        column, row = rng.choice(list(BAD)), rng.randrange(rows)
        value = rng.choice(BAD[column])
        records[row][column] = records[(row + 1) % rows]["patient_id"] if value == "DUP" else value
    separator = rng.choice([",", ";"])
    return separator.join(use) + "\n" + "".join(separator.join(r[c] for c in use) + "\n" for r in records)


def outcome(load) -> tuple[str, object]:
    try:
        return "ok", load()
    except InputError as error:
        return "error", str(error)


def test_streaming_and_eager_agree_on_rows_warnings_and_errors(tmp_path: Path) -> None:
    rng = random.Random(3)
    errors = 0
    for case in range(40):
        path = tmp_path / f"c{case}.csv"
        prefix = b"\xef\xbb\xbf" if case % 3 == 0 else b""
        path.write_bytes(prefix + cohort_text(rng, rng.randint(1, 9), rng.choice([0, 0, 1, 2])).encode())
        eager = outcome(lambda path=path: load_cohort(path))
        lazy = outcome(lambda path=path: scan_cohort(path))
        assert eager[0] == lazy[0], (eager, lazy)
        if eager[0] == "error":
            errors += 1
            assert eager[1] == lazy[1]
            continue
        cohort, streamed = eager[1], lazy[1]
        assert isinstance(streamed.frame, pl.LazyFrame)
        assert streamed.warnings == cohort.warnings and streamed.extra_columns == cohort.extra_columns
        assert label_frame(streamed.frame, streamed.config.rules).collect().equals(label(cohort))
    assert 5 < errors < 35  # both kinds of case were exercised


def test_bad_utf8_is_found_across_read_blocks(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("patient_id,sex,age_years,t_spine_l1_l4,t_femoral_neck\nA,F,60,-1,-1\nJosé,F,61,-1,-1\n"
                     .encode("latin-1"))
    with pytest.raises(InputError) as eager:
        read_table(path)
    for block in (1, 3, 7, 1 << 20):
        monkeypatch.setattr(scan, "BLOCK", block)
        with pytest.raises(InputError) as streamed:
            scan.scan_table(path)
        assert str(streamed.value) == str(eager.value) and "row 3" in str(eager.value)


def test_malformed_csv_is_the_eager_readers_error(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('patient_id,sex,age_years,t_spine_l1_l4,t_femoral_neck\n"A,F,60,-1,-1\n', encoding="utf-8")
    with pytest.raises(InputError) as eager:
        read_table(path)
    with pytest.raises(InputError) as streamed:
        scan_cohort(path)
    assert str(streamed.value) == str(eager.value) and "well-formed CSV" in str(eager.value)
