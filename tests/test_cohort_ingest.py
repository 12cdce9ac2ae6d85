"""Reading and validating cohort tables: every bad input is one line naming file, row, column and value; exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from f2b_study.cli import main

HEADER = "patient_id,sex,age_years,menopausal_status,t_spine_l1_l4,t_femoral_neck,t_total_hip"
GOOD = "A1,F,66,post,-2.6,-1.1,-0.4"


def label_cli(capsys, path: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["label", str(path), "--out", str(path.with_suffix(".labelled.csv")), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("body", "needles"), [
    (f"{HEADER}\n{GOOD}\nA2,F,sixty,post,-1,-1,-1\n", ["row 3", "'age_years'", "'sixty'", "expected a number"]),
    (f"{HEADER}\n{GOOD}\nA2,F,-1,post,-1,-1,-1\n", ["row 3", "'age_years'", "'-1'", "from 0 to 130"]),
    (f"{HEADER}\nA2,F,60,post,abc,-1,-1\n", ["row 2", "'t_spine_l1_l4'", "'abc'", "T-score"]),
    (f"{HEADER}\nA2,F,60,post,-1,-10.5,-1\n", ["row 2", "'t_femoral_neck'", "'-10.5'", "from -10 to 10"]),
    (f"{HEADER}\nA2,F,60,post,-1,-1,11\n", ["'t_total_hip'", "'11'"]),
    (f"{HEADER}\n{GOOD}\nB,X,60,post,-1,-1,-1\n", ["row 3", "'sex'", "'X'", "F or M"]),
    (f"{HEADER}\n{GOOD}\nB,,60,post,-1,-1,-1\n", ["row 3", "'sex'", "(empty)"]),
    (f"{HEADER}\n{GOOD}\nB,F,60,maybe,-1,-1,-1\n", ["row 3", "'menopausal_status'", "'maybe'"]),
    (f"{HEADER}\n{GOOD}\nB,M,60,,-1,-1,-1\nA1,F,70,post,-1,-1,-1\n", ["rows 2 and 4", "'patient_id'", "'A1'"]),
    (f"{HEADER}\n,F,60,post,-1,-1,-1\n", ["row 2", "'patient_id'", "(empty)"]),
    ("sex,age_years,t_spine_l1_l4,t_femoral_neck\nF,60,-1,-1\n", ["'patient_id'", "expected a 'patient_id' column"]),
    ("patient_id,sex,age_years,t_femoral_neck\nA,F,60,-1\n", ["'t_spine_l1_l4'", "DXA T-score columns"]),
    ("", ["empty"]),
    (f"{HEADER}\n", ["at least one record"]),
    (f"{HEADER},consent\n{GOOD},perhaps\n", ["row 2", "'consent'", "'perhaps'", "true/false"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, body: str, needles: list[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body, encoding="utf-8")
    code, out, err = label_cli(capsys, path)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not path.with_suffix(".labelled.csv").exists()  # nothing half-written


def test_not_utf8_names_the_row(tmp_path, capsys) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"{HEADER}\n{GOOD}\nB,F,60,post,-1,-1,-1\nJos\xe9,F,60,post,-1,-1,-1\n".encode("latin-1"))
    code, _, err = label_cli(capsys, path)
    assert code == 2 and "row 4" in err and "UTF-8" in err


def test_bom_semicolons_and_decimal_commas_are_accepted(tmp_path, capsys) -> None:
    text = HEADER.replace(",", ";") + "\nA1;female;66;Post;−2,6;-1,1;-0,4\nB2;M;70;;-1;-1;\n"
    path = tmp_path / "excel_export.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    code, _, err = label_cli(capsys, path, "--json")
    assert code == 0, err
    out = pl.read_csv(path.with_suffix(".labelled.csv"))
    assert out.columns[0] == "patient_id"
    assert out["sex"].to_list() == ["F", "M"]
    assert out["lowest_t_score"].to_list() == [-2.6, -1.0]
    assert out["bone_status"].to_list() == ["osteoporosis", "normal"]


def test_xlsx_input(tmp_path, capsys) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(HEADER.split(","))
    sheet.append(["A1", "F", 66, "post", -2.6, -1.1, -0.4])
    sheet.append(["A2", "M", 49, None, -1.0, -0.5, None])
    sheet.append(["A3", "F", 61, "post", "n/a", -0.5, None])
    path = tmp_path / "cohort.xlsx"
    book.save(path)
    code, _, err = label_cli(capsys, path)
    assert code == 2 and "row 4" in err and "'n/a'" in err  # the Excel row number
    sheet.delete_rows(4)
    book.save(path)
    code, _, err = label_cli(capsys, path, "--json")
    assert code == 0, err
    out = pl.read_csv(path.with_suffix(".labelled.csv"))
    assert out["bone_status"].to_list() == ["osteoporosis", None]
    assert out["exclusion_reason"].to_list() == [None, "man aged 50 or younger"]


def test_config_maps_columns_and_rules(tmp_path, capsys) -> None:
    (tmp_path / "data.csv").write_text("ID;Geschlecht;Alter;LWS;SH;Gesamt;Notiz\nX1;w;58;-1,2;-0,3;;ok\n"
                                       "X2;m;50;-3;-3;;\n", encoding="utf-8")
    (tmp_path / "centre.toml").write_text(
        'name = "centre-b"\ncsv = "data.csv"\n[columns]\npatient_id = "ID"\nsex = "Geschlecht"\n'
        'age_years = "Alter"\nt_spine_l1_l4 = "LWS"\nt_femoral_neck = "SH"\nt_total_hip = "Gesamt"\n'
        '[rules]\nmenopause_age = 52\nmen_min_age = 49\n', encoding="utf-8")
    out_path = tmp_path / "out.csv"
    code = main(["label", str(tmp_path / "centre.toml"), "--out", str(out_path), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["by_status"] == {"osteopenia": 1, "osteoporosis": 1}
    out = pl.read_csv(out_path)
    assert out["center"].to_list() == ["centre-b", "centre-b"]
    assert out["Notiz"].to_list() == ["ok", None]  # extra column untouched


@pytest.mark.parametrize(("toml", "needle"), [
    ('name = "x"\ncsv = "data.csv"\n[columns]\npatient_id = "Nope"\n', "'Nope'"),
    ('name = "x"\ncsv = "data.csv"\n[columns]\npatient_nr = "ID"\n', "columns.patient_nr"),
    ('name = "x"\ncsv = "data.csv"\n[rules]\nmen_min_age = "fifty"\n', "rules.men_min_age"),
    ('name = "x"\ncsv = "data.csv"\n[rules]\nwomen_min_age = 3\n', "rules.women_min_age"),
    ('name = "x"\n', "'csv'"),
    ('name = "x\ncsv = 1', "valid TOML"),
])
def test_bad_config(tmp_path, capsys, toml: str, needle: str) -> None:
    (tmp_path / "data.csv").write_text(f"{HEADER}\n{GOOD}\n", encoding="utf-8")
    (tmp_path / "c.toml").write_text(toml, encoding="utf-8")
    code = main(["label", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_bmi_derived_and_mismatch_warned(tmp_path, capsys) -> None:
    path = tmp_path / "c.csv"
    path.write_text(f"{HEADER},height_cm,weight_kg,bmi\n{GOOD},160,64,\nB,F,70,post,-1,-1,-1,160,64,30\n")
    code, _, err = label_cli(capsys, path)
    assert code == 0
    out = pl.read_csv(path.with_suffix(".labelled.csv"))
    assert out["bmi"].to_list() == [25.0, 30.0]
    assert "warning" in err and "row 3" in err


def test_json_counts(tmp_path, capsys) -> None:
    path = tmp_path / "c.csv"
    path.write_text(f"{HEADER}\n{GOOD}\nB,M,45,,-1,-1,-1\nC,F,60,,-3,-3,-3\nD,M,70,,-3,,\n")
    code, out, _ = label_cli(capsys, path, "--json")
    summary = json.loads(out)
    assert code == 0
    assert summary["n_rows"] == 4 and summary["eligible"] == 1 and summary["excluded"] == 3
    assert summary["by_status"] == {"osteoporosis": 1}
    assert summary["by_reason"] == {"DXA incomplete": 1, "man aged 50 or younger": 1,
                                    "menopausal status unknown": 1}
