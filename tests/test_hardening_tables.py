"""Tables in and out (issue 14): formulas neutralised in CSV and XLSX, real .xlsx files, `--out` checks in the
ground-floor writer, and the readers refusing what they used to accept silently (short rows, duplicate columns,
duplicate prediction IDs, one photo claimed by two patients)."""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from f2b_study.atomic import atomic_path, write_text
from f2b_study.cli import main
from f2b_study.cohort.photos import join_photos
from f2b_study.cohort.schema import load_cohort, scan_cohort
from f2b_study.errors import InputError
from f2b_study.stats.predictions import read_predictions
from f2b_study.tables import read_table, write_csv, write_table, write_xlsx

REPO = Path(__file__).resolve().parent.parent
HOSTILE = ["=HYPERLINK(\"http://x\",\"click\")", "+cmd|' /C calc'!A0", "@SUM(A1:A2)", "-2+3", "\tTAB", "\rCR",
           "=1+1"]
PLAIN = ["-2.5", "+3", "1e5", "-1,5", "P-001", "a=b", "'already quoted", ""]


def _frame() -> pl.DataFrame:
    text = HOSTILE + PLAIN
    return pl.DataFrame({"patient_id": text, "t_score": [-2.5 + i for i in range(len(text))],
                         "n": list(range(-3, len(text) - 3))})


# -- formulas ---------------------------------------------------------------------------------------------------
def test_csv_cells_that_a_spreadsheet_would_run_get_a_quote(tmp_path: Path) -> None:
    write_csv(_frame(), tmp_path / "out.csv")
    raw = pl.read_csv(tmp_path / "out.csv", infer_schema=False)
    for original, written in zip(_frame()["patient_id"], raw["patient_id"], strict=True):
        if original in HOSTILE:
            assert written == "'" + original
        else:
            assert written in (original, None if original == "" else original)
    text = (tmp_path / "out.csv").read_text()
    assert "'-" not in text.split("patient_id")[1].replace("'-2+3", "")  # numeric columns are never quoted
    assert pl.read_csv(tmp_path / "out.csv")["t_score"].dtype == pl.Float64


def test_our_readers_undo_the_quote(tmp_path: Path) -> None:
    write_csv(_frame(), tmp_path / "out.csv")
    back = read_table(tmp_path / "out.csv")
    expected = [value.strip() or None for value in _frame()["patient_id"]]
    assert back["patient_id"].to_list() == expected


def test_xlsx_is_a_real_workbook_with_numbers_as_numbers_and_no_formulas(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    write_xlsx(_frame(), tmp_path / "out.xlsx")
    assert zipfile.is_zipfile(tmp_path / "out.xlsx")
    sheet = load_workbook(tmp_path / "out.xlsx").active
    rows = list(sheet.iter_rows(values_only=False))
    assert [c.value for c in rows[0]] == ["patient_id", "t_score", "n"]
    for row, original in zip(rows[1:], _frame()["patient_id"], strict=True):
        assert row[0].data_type != "f"  # never a formula cell
        # (XML stores a carriage return as a line feed: Excel shows the same)
        assert row[0].value == ("'" + original.replace("\r", "\n") if original in HOSTILE else (original or None))
        assert isinstance(row[1].value, float) and isinstance(row[2].value, int)
    back = read_table(tmp_path / "out.xlsx")
    assert back["patient_id"].to_list() == [v.strip() or None for v in _frame()["patient_id"]]
    assert back["t_score"].cast(pl.Float64).to_list() == _frame()["t_score"].to_list()


def test_a_csv_writer_cannot_write_a_file_named_xlsx(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"ending in \.csv"):
        write_csv(_frame(), tmp_path / "out.xlsx")
    assert not (tmp_path / "out.xlsx").exists()
    with pytest.raises(InputError, match=r"\.csv"), atomic_path(tmp_path / "t.xlsx", suffix=".csv"):
        pass
    write_table(_frame(), tmp_path / "ok.xlsx")
    assert zipfile.is_zipfile(tmp_path / "ok.xlsx")
    with pytest.raises(InputError, match=r"\.csv or \.xlsx"):
        write_table(_frame(), tmp_path / "out.txt")


# -- where output goes -------------------------------------------------------------------------------------------
def test_out_that_is_a_folder_or_unwritable_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="existing folder"):
        write_text(tmp_path / "folder", "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="can be written"):
        write_csv(_frame(), tmp_path / "file" / "out.csv")  # a parent that is a file
    with pytest.raises(InputError, match="can be written"):
        write_text("/proc/f2b-study-test/out.csv", "x")  # unwritable even for root
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="can be written"):
            write_text(locked / "out.csv", "x")


def test_table1_out_is_a_folder_exits_2(tmp_path: Path) -> None:
    (tmp_path / "table1.csv").mkdir()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["table1", str(REPO / "cohorts" / "demo" / "cohort.csv"), "--by", "sex", "--out",
                     str(tmp_path / "table1.csv")])
    assert code == 2 and "existing folder" in err.getvalue() and "Traceback" not in err.getvalue()


# -- readers refuse -------------------------------------------------------------------------------------------------
HEADER = ("patient_id,center,sex,age_years,menopausal_status,height_cm,weight_kg,bmi,t_spine_l1_l4,t_femoral_neck,"
          "t_total_hip,z_spine_l1_l4,z_femoral_neck,z_total_hip,photo,split,consent")
ROW = "P{i},A,F,60,post,160,60,23.4,-1,-1,-1,0,0,0,,,yes"


def _cohort(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("reader", [read_table, load_cohort, scan_cohort])
def test_a_row_with_4_of_17_fields_is_refused_naming_file_and_row(tmp_path: Path, reader) -> None:
    path = _cohort(tmp_path / "c.csv", [ROW.format(i=1), ROW.format(i=2), "P3,A,F,60", ROW.format(i=4)])
    with pytest.raises(InputError) as error:
        reader(path)
    assert str(error.value).startswith(f"{path}, row 4") and "17 fields" in str(error.value)
    assert "found 4" in str(error.value)


def test_a_row_with_too_many_fields_and_quoted_line_breaks(tmp_path: Path) -> None:
    path = _cohort(tmp_path / "c.csv", [ROW.format(i=1), ROW.format(i=2) + ",extra"])
    with pytest.raises(InputError, match=r"row 3.*found 18"):
        read_table(path)
    # a value with a quoted line break is one field, wherever it sits; a short row after it is still row 4
    multi = 'P2,"Centre\nNorth",F,60,post,160,60,23.4,-1,-1,-1,0,0,0,,,yes'
    path = _cohort(tmp_path / "m.csv", [ROW.format(i=1), multi])
    assert read_table(path).height == 2 and scan_cohort(path).frame.collect().height == 2
    path = _cohort(tmp_path / "n.csv", [ROW.format(i=1), multi, "P3,A"])
    for reader in (read_table, scan_cohort):
        with pytest.raises(InputError, match=r"row 4.*found 2"):
            reader(path)


def test_blank_lines_and_trailing_empty_columns_are_not_ragged(tmp_path: Path) -> None:
    # a blank line is a record of empty fields, as polars has always read it (the row checks then name it)
    path = _cohort(tmp_path / "c.csv", [ROW.format(i=1) + ",,", "", ROW.format(i=2) + ",,"], header=HEADER + ",,")
    assert read_table(path).height == 3


@pytest.mark.parametrize("reader", [read_table, load_cohort, scan_cohort])
def test_two_columns_of_one_name_are_refused_naming_both(tmp_path: Path, reader) -> None:
    path = _cohort(tmp_path / "c.csv", [ROW.format(i=1) + ",M"], header=HEADER + ",sex")
    with pytest.raises(InputError) as error:
        reader(path)
    assert "columns 3 (C) and 18 (R) are both named 'sex'" in str(error.value)


def test_two_columns_of_one_name_in_a_workbook(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["patient_id", "sex", "age_years", "sex"])
    book.active.append(["P1", "F", 60, "M"])
    book.save(tmp_path / "c.xlsx")
    with pytest.raises(InputError, match=r"columns 2 \(B\) and 4 \(D\) are both named 'sex'"):
        read_table(tmp_path / "c.xlsx")


def test_columns_that_both_become_sex_are_refused(tmp_path: Path) -> None:
    path = _cohort(tmp_path / "c.csv", [ROW.format(i=1) + ",M"], header=HEADER + ",Sex")
    with pytest.raises(InputError, match=r"columns 'sex' and 'Sex' both give the column 'sex'"):
        load_cohort(path)
    config = tmp_path / "c.toml"
    config.write_text('name = "c"\ncsv = "c2.csv"\n[columns]\nsex = "Gender"\n')
    _cohort(tmp_path / "c2.csv", [ROW.format(i=1) + ",M"], header=HEADER + ",Gender")
    with pytest.raises(InputError, match=r"'Gender' \(the config maps it to 'sex'\) and 'sex'"):
        load_cohort(config)


PREDICTIONS = "patient_id,bone_status,p_normal,p_osteopenia,p_osteoporosis,split\n"


def test_duplicate_patient_ids_in_predictions_are_refused_naming_both_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(PREDICTIONS + "A,normal,0.6,0.3,0.1,validation\nB,osteopenia,0.2,0.5,0.3,validation\n"
                    "A,normal,0.6,0.3,0.1,validation\n")
    with pytest.raises(InputError, match=r"rows 2 and 4, column 'patient_id': value 'A'.*once"):
        read_predictions(path)
    path.write_text(PREDICTIONS + "A,normal,,,,train\nA,normal,0.6,0.3,0.1,validation\n")  # train + validation: a leak
    with pytest.raises(InputError, match=r"rows 2 and 3"):
        read_predictions(path)


def test_a_prediction_row_with_missing_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(PREDICTIONS + "A,normal,0.6,0.3,0.1,validation\nB,osteopenia,0.2\n")
    with pytest.raises(InputError, match=r"row 3.*6 fields.*found 3"):
        read_predictions(path)


def _photo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)


def test_one_photo_claimed_by_two_patients_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _photo(root / "shared.jpg")
    _photo(root / "b.jpg")
    frame = pl.DataFrame({"patient_id": ["P1", "P2"], "photo": ["shared.jpg", "b.jpg;shared.jpg"], "_row": [2, 3]})
    with pytest.raises(InputError) as error:
        join_photos(frame, root, table="cohort.csv")
    message = str(error.value)
    assert "'shared.jpg'" in message and "'P1' (row 2" in message and "'P2' (row 3" in message
    # by file names: patient X_1 takes X_1_b.jpg by prefix, and so does patient X_1_b by its exact name
    _photo(root / "X_1_b.jpg")
    frame = pl.DataFrame({"patient_id": ["X_1", "X_1_b"], "_row": [2, 3]})
    with pytest.raises(InputError, match=r"'X_1_b\.jpg' is claimed by patients 'X_1'.*and 'X_1_b'"):
        join_photos(frame, root, table="cohort.csv")


def test_the_same_photo_listed_twice_for_one_patient_is_one_photo(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _photo(root / "a.jpg")
    frame = pl.DataFrame({"patient_id": ["P1"], "photo": ["a.jpg;a.jpg"], "_row": [2]})
    assert join_photos(frame, root, table="cohort.csv").photos.height == 1


def test_a_full_disk_is_an_input_error_and_leaves_nothing(tmp_path: Path) -> None:
    import errno

    with pytest.raises(InputError, match="room to write"), atomic_path(tmp_path / "out.csv") as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []
