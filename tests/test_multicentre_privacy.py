"""Privacy proof of site summaries (issue 18): the scanner finds no patient ID, pseudonym, photo name, path, single
patient's value, small aggregate or per-patient list in a summary; and it does find each of them when planted, so
the check can fail. The demo cohort's real summaries are scanned in test_multicentre_demo.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from f2b_study import CLASSES
from f2b_study.privacy import pseudonym
from f2b_study.stats.predictions import predictions_from_frame
from f2b_study.stats.site_summary import build_site_summary, seal, write_summary
from tests.multicentre_support import PROVENANCE, SETTINGS, privacy_leaks, synthetic_site

MIN_CELL = 5


def _values(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    evaluated = frame.filter(pl.col("split") != "train")
    proba = evaluated.select(f"p_{c}" for c in CLASSES).to_numpy()
    return {"probability": proba.ravel(), "1 − p(normal)": 1 - proba[:, 0], "top probability": proba.max(axis=1),
            "BMI": frame["bmi"].to_numpy(), "age": frame["age_years"].to_numpy(),
            "weight": frame["weight_kg"].to_numpy()}


@pytest.fixture(scope="module")
def site(module_tmp) -> tuple[Path, pl.DataFrame, Path]:
    folder = module_tmp("privacy")
    frame, flow = synthetic_site(np.random.default_rng(3), "delta", 70, 140)
    summary = build_site_summary(predictions_from_frame(frame, str(folder / "predictions.csv")), site="delta",
                                 flow=flow, eligible=frame, provenance=PROVENANCE, settings=SETTINGS,
                                 min_cell=MIN_CELL, replicates=50)
    return write_summary(summary, folder / "delta.json"), frame, folder


def _scan(path: Path, frame: pl.DataFrame, folder: Path, min_cell: int = MIN_CELL) -> list[str]:
    ids = frame["patient_id"].to_list()
    return privacy_leaks(path, ids=ids, photo_names=[f"{i}.jpg" for i in ids], folders=[folder],
                         patient_values=_values(frame), min_cell=min_cell)


def test_a_summary_holds_no_patient_data(site) -> None:
    path, frame, folder = site
    assert _scan(path, frame, folder) == []
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["privacy"]["min_cell"] == MIN_CELL and doc["privacy"]["rules"]
    assert "errors" not in json.dumps(doc["index_test"]["evaluation"])  # the most confident errors name patients


def _plant(path: Path, target: Path, change) -> Path:
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    return write_summary(seal(doc), target)


@pytest.mark.parametrize("leak", ["id", "pseudonym", "photo", "path", "probability", "bmi", "small_group",
                                  "small_bin", "list", "t_score_field"])
def test_the_scanner_finds_each_kind_of_leak(site, tmp_path: Path, leak: str) -> None:
    path, frame, folder = site
    first = frame.filter(pl.col("split") != "train").row(0, named=True)

    def change(doc: dict) -> None:
        notes = doc["index_test"]["evaluation"]["notes"]
        if leak == "id":
            notes["x"] = f"row of {first['patient_id']}"
        elif leak == "pseudonym":
            notes["x"] = pseudonym(first["patient_id"], b"k" * 16)
        elif leak == "photo":
            notes["x"] = f"{first['patient_id']}.jpg unreadable"
        elif leak == "path":
            notes["x"] = f"read from {folder}/predictions.csv"
        elif leak == "probability":
            doc["index_test"]["ece_bins"][-1]["sum_confidence"] = first["p_normal"]
        elif leak == "bmi":
            doc["table1"]["sex"]["variables"]["bmi"]["groups"]["Overall"]["mean"] = first["bmi"]
        elif leak == "small_group":
            doc["table1"]["bone_status"]["variables"]["age_years"]["groups"]["normal"]["n"] = MIN_CELL - 1
        elif leak == "small_bin":
            doc["index_test"]["hosmer_lemeshow_groups"]["normal"][0]["n"] = 1
        elif leak == "list":
            doc["index_test"]["p"] = [0.5] * 100
        elif leak == "t_score_field":
            doc["table1"]["sex"]["variables"]["lowest_t_score"] = {"kind": "continuous", "groups": {}}

    planted = _plant(path, tmp_path / "planted.json", change)
    assert _scan(planted, frame, folder), f"the planted {leak} was not found"


def test_without_min_cell_a_single_patients_probability_shows(tmp_path: Path) -> None:
    """min_cell = 1 turns disclosure control off: a bin of one patient then gives that patient's probability away,
    and the scanner says so (with min_cell 5 the same site passes)."""
    frame, flow = synthetic_site(np.random.default_rng(11), "epsilon", 30, 60, separation=3.0)
    ps = predictions_from_frame(frame, "epsilon")
    leaks = {}
    for min_cell in (1, MIN_CELL):
        summary = build_site_summary(ps, site="epsilon", flow=flow, eligible=frame, provenance=PROVENANCE,
                                     settings=SETTINGS, min_cell=min_cell, replicates=0)
        path = write_summary(summary, tmp_path / f"epsilon-{min_cell}.json")
        leaks[min_cell] = _scan(path, frame, tmp_path, min_cell=MIN_CELL)
    assert any("of one patient" in leak for leak in leaks[1])
    assert leaks[MIN_CELL] == []
