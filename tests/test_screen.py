"""Screening (issue 8): aggregation, pathway, resume after a kill, refusals, patients without usable photos."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from f2b_study import CLASSES
from f2b_study.cli import main
from f2b_study.errors import InputError
from f2b_study.inference.pathway import NO_PREDICTION, PATHWAY, recommendation
from f2b_study.inference.screen import patient_table
from f2b_study.models.checkpoint import seal
from tests.conftest import screen_cohort, train_tiny

pytestmark = [pytest.mark.xdist_group("pipeline"), pytest.mark.filterwarnings("ignore::UserWarning")]


def test_pathway_text_for_each_class() -> None:
    assert "education" in recommendation("normal") and "follow-up" in recommendation("normal")
    assert "DXA" in recommendation("osteopenia") and "FRAX" in recommendation("osteopenia")
    assert "specialist" in recommendation("osteoporosis") and "DXA" in recommendation("osteoporosis")
    assert recommendation(None) == NO_PREDICTION
    assert set(PATHWAY) == set(CLASSES)


def test_patient_aggregation_is_the_mean_of_usable_photos() -> None:
    cohort = pl.DataFrame({"patient_id": ["a", "b", "c"], "sex": ["F", "M", "F"]})
    images = pl.DataFrame({
        "patient_id": ["a", "a", "a", "b"],
        "photo": ["a1", "a2", "a3", "b1"],
        "p_normal": [0.6, 0.2, None, None], "p_osteopenia": [0.3, 0.2, None, None],
        "p_osteoporosis": [0.1, 0.6, None, None],
        "predicted": ["normal", "osteoporosis", None, None],
        "qc_status": ["ok", "ok", "excluded", "excluded"], "qc_reason": [None, None, "no_face", "multiple_faces"]})
    table = patient_table(cohort, images)
    a, b, c = (table.row(i, named=True) for i in range(3))
    assert a["p_normal"] == pytest.approx(0.4) and a["p_osteoporosis"] == pytest.approx(0.35)
    assert a["predicted"] == "normal" and a["n_photos_used"] == 2 and a["n_photos"] == 3
    assert a["recommendation"] == PATHWAY["normal"] and a["reason"] is None
    assert b["predicted"] is None and b["reason"] == "no usable photo (multiple_faces)"
    assert c["reason"] == "no photo" and c["n_photos"] == 0 and c["recommendation"] == NO_PREDICTION
    assert table["sex"].to_list() == ["F", "M", "F"]


@pytest.fixture(scope="module")
def trained(mini_cohort: Path, face_cache: Path, module_tmp) -> Path:
    run = module_tmp("screen-run")
    train_tiny([mini_cohort], run, face_cache)
    return run


def test_screen_outputs_and_patients_without_usable_photos(trained: Path, mini_cohort: Path, face_cache: Path,
                                                            tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    shutil.copytree(mini_cohort.parent, cohort)
    frame = pl.read_csv(cohort / "cohort.csv", infer_schema=False)
    ids = frame["patient_id"].to_list()
    (cohort / f"{ids[0]}.jpg").write_text("not a photo")
    (cohort / f"{ids[1]}.jpg").unlink()
    shutil.copy(cohort / f"{ids[2]}.jpg", cohort / f"{ids[2]}_second.jpg")
    result = screen_cohort([cohort / "cohort.csv"], trained / "best", tmp_path / "out", face_cache, parquet=True)
    images = pl.read_csv(tmp_path / "out" / "predictions_images.csv")
    patients = pl.read_csv(tmp_path / "out" / "predictions.csv")
    assert patients.height == len(ids) and patients["patient_id"].n_unique() == len(ids)
    assert images.height == len(ids)  # one photo missing, one patient with two
    assert patients.filter(pl.col("patient_id") == ids[0])["reason"].to_list() == ["no usable photo (unreadable)"]
    assert patients.filter(pl.col("patient_id") == ids[1])["reason"].to_list() == ["no photo"]
    assert patients.filter(pl.col("patient_id") == ids[2])["n_photos_used"].to_list() == [2]
    assert {"bone_status", "eligible", "recommendation"} <= set(patients.columns)
    scored = patients.filter(pl.col("predicted").is_not_null())
    assert np.allclose(scored.select("p_normal", "p_osteopenia", "p_osteoporosis").sum_horizontal(), 1, atol=1e-5)
    assert (tmp_path / "out" / "predictions.parquet").exists()
    html = (tmp_path / "out" / "screening_report.html").read_text()
    assert "Research use only" in html and "randomly initialised" in html
    for patient_id in ids:
        assert patient_id not in html  # aggregates only
    assert result.summary["no_prediction"] == {"no photo": 1, "no usable photo (unreadable)": 1}
    # predictions.csv is what `evaluate` reads directly
    code = main(["evaluate", str(tmp_path / "out" / "predictions.csv"), "--out", str(tmp_path / "ev"),
                 "--bootstrap", "20", "--no-report", "--by", ""])
    assert code == 0


def test_resume_after_a_kill_has_one_row_per_photo_and_same_numbers(trained: Path, mini_cohort: Path,
                                                                    face_cache: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    import f2b_study.inference.screen as screen_module

    clean = screen_cohort([mini_cohort], trained / "best", tmp_path / "clean", face_cache)
    monkeypatch.setattr(screen_module, "CHUNK", 5)
    import f2b_study.models.runtime as engine

    real = engine.predict_paths
    calls = {"n": 0}

    def dies_on_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "predict_paths", dies_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        screen_cohort([mini_cohort], trained / "best", tmp_path / "resumed", face_cache)
    assert len(list((tmp_path / "resumed" / ".screen-parts").glob("*.npy"))) == 2
    assert not (tmp_path / "resumed" / "predictions.csv").exists()  # nothing half-written
    calls["n"] = -100
    resumed = screen_cohort([mini_cohort], trained / "best", tmp_path / "resumed", face_cache)
    assert calls["n"] == -100 + 2  # only the two missing chunks ran
    assert resumed.images.height == clean.images.height
    assert resumed.images["photo"].is_unique().all()
    for column in ("p_normal", "p_osteopenia", "p_osteoporosis"):
        assert np.allclose(resumed.images[column].to_numpy(), clean.images[column].to_numpy(), atol=1e-6)
    assert not (tmp_path / "resumed" / ".screen-parts").exists()


def test_checkpoint_of_another_face_pipeline_is_refused(trained: Path, mini_cohort: Path, face_cache: Path,
                                                        tmp_path: Path) -> None:
    copy = tmp_path / "old"
    shutil.copytree(trained / "best", copy)
    sidecar = json.loads((copy / "model.json").read_text())
    sidecar["preprocessing_version"] = "faces-0"
    (copy / "model.json").write_text(json.dumps(seal(sidecar)))  # a genuine save by an older pipeline
    with pytest.raises(InputError, match=r"preprocessing_version.*'faces-0'"):
        screen_cohort([mini_cohort], copy, tmp_path / "o", face_cache)


def test_screen_as_typed_uses_defaults(trained: Path, mini_cohort: Path, face_cache: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    shutil.copytree(mini_cohort.parent, work / "site")
    old = Path.cwd()
    os.chdir(work)
    try:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["screen", "site/cohort.csv", "--cache", str(face_cache)])
        assert code == 2 and "no trained model found" in err.getvalue() and "--model" in err.getvalue()
        shutil.copytree(trained, work / "runs" / "mine")
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(["screen", "site/cohort.csv", "--cache", str(face_cache)])
        assert code == 0, err.getvalue()
        assert "runs/mine/best (the newest run in runs/)" in err.getvalue()
        assert (work / "reports" / "cohort" / "private" / "predictions.csv").exists()
        assert (work / "reports" / "cohort" / "shareable" / "screening_report.html").exists()
    finally:
        os.chdir(old)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_give_the_same_classes(trained: Path, mini_cohort: Path, face_cache: Path,
                                            tmp_path: Path) -> None:
    cpu = screen_cohort([mini_cohort], trained / "best", tmp_path / "cpu", face_cache, device="cpu")
    gpu = screen_cohort([mini_cohort], trained / "best", tmp_path / "gpu", face_cache, device="cuda")
    assert cpu.patients["predicted"].to_list() == gpu.patients["predicted"].to_list()


def test_prespecified_thresholds_decide_the_pathway() -> None:
    from f2b_study.inference.settings import ScreeningSettings

    cohort = pl.DataFrame({"patient_id": ["a", "b", "c"]})
    images = pl.DataFrame({
        "patient_id": ["a", "b", "c"], "photo": ["a1", "b1", "c1"],
        "p_normal": [0.70, 0.50, 0.9], "p_osteopenia": [0.05, 0.45, 0.05], "p_osteoporosis": [0.25, 0.05, 0.05],
        "predicted": ["normal", "normal", "normal"], "qc_status": ["ok"] * 3, "qc_reason": [None] * 3})
    by_class = patient_table(cohort, images)
    assert by_class["recommendation"].to_list() == [PATHWAY["normal"]] * 3
    rules = ScreeningSettings(osteoporosis_threshold=0.2, low_bone_mass_threshold=0.4)
    table = patient_table(cohort, images, rules)
    assert table["recommendation"].to_list() == [PATHWAY["osteoporosis"], PATHWAY["osteopenia"], PATHWAY["normal"]]
    assert table["pathway_rule"][0] == "p_osteoporosis ≥ 0.2 (pre-specified)"
