"""Training (issue 5): the split, the recipe's machinery, reproducibility, resume and bad input, on a mini cohort of
real demo photos (simulated labels) and a tiny Face2Bone."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from f2b_study.cli import main
from f2b_study.errors import InputError
from f2b_study.training.augment import AugmentConfig, augment
from f2b_study.training.run import train_one
from f2b_study.training.settings import TrainSettings
from f2b_study.training.split import patient_split
from tests.conftest import TINY_FACE2BONE, make_mini_cohort, prepare

pytestmark = [pytest.mark.xdist_group("pipeline"), pytest.mark.filterwarnings("ignore::UserWarning")]


def test_split_is_patient_level_stratified_and_seeded() -> None:
    patients = pl.DataFrame({"patient_id": [f"p{i}" for i in range(100)],
                             "bone_status": ["normal"] * 40 + ["osteopenia"] * 40 + ["osteoporosis"] * 20})
    first, again = patient_split(patients, "bone_status"), patient_split(patients, "bone_status")
    assert first.equals(again)
    counts = dict(first.filter(pl.col("split") == "validation").group_by("bone_status").len().iter_rows())
    assert counts == {"normal": 8, "osteopenia": 8, "osteoporosis": 4}
    other = patient_split(patients, "bone_status", seed=7)
    assert not other["split"].equals(first["split"])


def test_given_split_column_is_honoured_and_checked() -> None:
    patients = pl.DataFrame({"patient_id": ["a", "b", "c"], "bone_status": ["normal"] * 3,
                             "split": ["train", "Val", "test"]})
    assert patient_split(patients, "bone_status")["split"].to_list() == ["train", "validation", "validation"]
    with pytest.raises(InputError, match=r"'split'.*'holdout'"):
        patient_split(patients.with_columns(pl.lit("holdout").alias("split")), "bone_status")


def test_augmentation_depends_only_on_its_generator() -> None:
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    config = AugmentConfig(hflip=1.0, vflip=0.0, affine=1.0, clahe=1.0)
    a = augment(image, config, np.random.default_rng([1, 2, 3]))
    b = augment(image, config, np.random.default_rng([1, 2, 3]))
    assert np.array_equal(a, b) and a.shape == image.shape and a.dtype == np.uint8
    flipped_only = augment(image, AugmentConfig(hflip=1.0, vflip=0.0, affine=0.0, clahe=0.0),
                           np.random.default_rng(0))
    assert np.array_equal(flipped_only, image[:, ::-1])
    assert AugmentConfig.from_names("none").hflip == 0.0
    with pytest.raises(InputError, match="cutout"):
        AugmentConfig.from_names("hflip,cutout")


@pytest.fixture(scope="module")
def data(mini_cohort: Path, face_cache: Path) -> object:
    return prepare([mini_cohort], cache=face_cache)[0]


def same_weights(run_a: Path, run_b: Path) -> bool:
    # tensors, not file bytes: safetensors writes its header metadata in hash-map order
    from safetensors.torch import load_file

    a, b = (load_file(str(run / "best" / "model.safetensors")) for run in (run_a, run_b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def settings(**overrides) -> TrainSettings:
    """The tiny Face2Bone with a short recipe (no augmentation unless asked)."""
    model = {k: v for k, v in TINY_FACE2BONE.items() if k != "input_size"}
    values = {"epochs": 3, "batch_size": 8, "patience": 10, "augment": ("none",), "lr": 3e-3, "model": model,
              "input_size": TINY_FACE2BONE["input_size"]}
    values.update(overrides)
    return TrainSettings(**values)


def test_prepare_counts_and_splits(data) -> None:
    assert data.classes == ["normal", "osteopenia", "osteoporosis"]
    assert data.patients.height + data.excluded.get("no usable photo", 0) == 18
    assert set(data.patients["split"]) == {"train", "validation"}
    # a patient's photos all sit in one split
    assert data.images.group_by("patient_id").agg(pl.col("split").n_unique())["split"].max() == 1
    assert len(data.cohort_hash) == 64


def test_training_reduces_loss_and_seeds_reproduce(data, tmp_path: Path) -> None:
    first = train_one(data, settings(epochs=6), out=tmp_path / "a", progress=False)
    metrics = pl.read_csv(tmp_path / "a" / "metrics.csv")
    assert metrics["train_loss"][-1] < metrics["train_loss"][0]
    train_one(data, settings(epochs=6), out=tmp_path / "b",
              progress=False)
    assert pl.read_csv(tmp_path / "b" / "metrics.csv").drop("seconds", "images_per_second").equals(
        metrics.drop("seconds", "images_per_second"))
    assert same_weights(tmp_path / "a", tmp_path / "b")
    sidecar = json.loads((tmp_path / "a" / "best" / "model.json").read_text())
    assert sidecar["training_cohort_hash"] == data.cohort_hash and sidecar["seed"] == 42
    assert sidecar["facenet_weights"]["source"] == "random-init"
    assert first.record.status == "finished"
    predictions = pl.read_csv(tmp_path / "a" / "val_predictions.csv")
    scored = predictions.filter(pl.col("split") == "validation")
    assert np.allclose(scored.select("p_normal", "p_osteopenia", "p_osteoporosis").sum_horizontal(), 1, atol=1e-5)
    assert (predictions["split"] == "train").sum() > 0  # training rows carry covariates for the comparator
    assert "overall" in json.loads((tmp_path / "a" / "evaluation.json").read_text())
    from f2b_study.report.training_curve import write_training_curve

    assert write_training_curve(tmp_path / "a", "tiny").read_text().startswith("<?xml")


def test_resume_after_a_kill_gives_the_uninterrupted_result(data, tmp_path: Path, monkeypatch) -> None:
    full = tmp_path / "full"
    train_one(data, settings(augment=None), out=full, progress=False)
    killed = tmp_path / "killed"
    import f2b_study.training.loop as loop

    original = loop.Trainer.validate
    calls = {"n": 0}

    def dies_in_epoch_two(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process dies before epoch 2's state is written
        return original(self)

    monkeypatch.setattr(loop.Trainer, "validate", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_one(data, settings(augment=None), out=killed, progress=False)
    monkeypatch.setattr(loop.Trainer, "validate", original)
    assert len(pl.read_csv(killed / "metrics.csv")) == 1  # epoch 1 kept, epoch 2 lost
    with pytest.raises(InputError, match="--resume"):
        train_one(data, settings(augment=None), out=killed, progress=False)
    train_one(data, settings(augment=None), out=killed, resume=True, progress=False)
    a = pl.read_csv(full / "metrics.csv").drop("seconds", "images_per_second")
    b = pl.read_csv(killed / "metrics.csv").drop("seconds", "images_per_second")
    assert a.equals(b)
    assert same_weights(full, killed)
    with pytest.raises(InputError, match="differs: recipe"):
        train_one(data, settings(epochs=4), out=killed,
                  resume=True, progress=False)


def test_target_sex(data, mini_cohort: Path, face_cache: Path, tmp_path: Path) -> None:
    sex = prepare([mini_cohort], cache=face_cache, target="sex")[0]
    assert sex.classes == ["F", "M"]
    run = train_one(sex, settings(epochs=1), out=tmp_path / "sex", progress=False, resume=True)
    summary = json.loads((tmp_path / "sex" / "evaluation.json").read_text())["summary"]
    assert run.record.classes == ["F", "M"] and 0 <= summary["auc"] <= 1 and len(summary["auc_ci"]) == 2


def cli(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(list(args))
    return code, err.getvalue()


def test_bad_input(mini_cohort: Path, face_cache: Path, tmp_path: Path) -> None:
    tiny = json.dumps(TINY_FACE2BONE)
    code, err = cli("train", str(mini_cohort), "--arch", "face3bone", "--out", str(tmp_path / "x"))
    assert code == 2 and "unknown model 'face3bone'" in err
    # a class missing from the cohort
    no_op = make_mini_cohort(tmp_path / "no_op", per_class=6)
    frame = pl.read_csv(no_op, infer_schema=False)
    frame = frame.with_columns(pl.lit("0.5").alias("t_spine_l1_l4"), pl.lit("0.5").alias("t_femoral_neck"),
                               pl.lit("0.5").alias("t_total_hip"))
    frame.write_csv(no_op)
    code, err = cli("train", str(no_op), "--out", str(tmp_path / "y"), "--cache", str(face_cache),
                    "--model-config", tiny, "--epochs", "1")
    assert code == 2 and "class 'osteopenia' has 0" in err
    # fewer than 10 patients
    few = make_mini_cohort(tmp_path / "few", per_class=3)
    code, err = cli("train", str(few), "--out", str(tmp_path / "z"), "--cache", str(face_cache))
    assert code == 2 and "at least 10 patients" in err
    # an out folder that holds other files
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, err = cli("train", str(mini_cohort), "--out", str(busy), "--cache", str(face_cache))
    assert code == 2 and "--overwrite" in err and (busy / "notes.txt").read_text() == "mine"


def test_patient_whose_photos_all_fail_is_left_out_with_a_reason(tmp_path: Path, face_cache: Path) -> None:
    cohort = make_mini_cohort(tmp_path / "c", per_class=5)
    first = pl.read_csv(cohort)["patient_id"][0]
    (tmp_path / "c" / f"{first}.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "c" / "stranger.jpg").write_bytes(b"x")
    data = prepare([cohort], cache=face_cache)[0]
    assert data.cohort.join_log == ("[cohort] photo that matches no patient: stranger.jpg",)
    assert first not in data.patients["patient_id"].to_list()
    assert data.excluded["no usable photo"] >= 1
    row = data.faces.frame.filter(pl.col("patient_id") == first)
    assert row["status"].to_list() == ["excluded"] and row["reason"].to_list() == ["unreadable"]


def test_compare_writes_table(data, mini_cohort: Path, face_cache: Path, tmp_path: Path) -> None:
    code, err = cli("train", str(mini_cohort), "--arch", "face2bone,face2bone-no-kan", "--out", str(tmp_path),
                    "--cache", str(face_cache), "--epochs", "1", "--batch-size", "8", "--augment", "none",
                    "--model-config", json.dumps(TINY_FACE2BONE))
    assert code == 0, err
    table = pl.read_csv(tmp_path / "shareable" / "comparison.csv")
    assert table["method"].to_list() == ["face2bone", "face2bone-no-kan"]
    assert {"accuracy", "f1_macro", "auc_macro_ovr", "kappa"} <= set(table.columns)
    assert "<table>" in (tmp_path / "shareable" / "comparison.html").read_text()
    # paired DeLong on the same patients
    paired = json.loads((tmp_path / "shareable" / "model_comparison.json").read_text())
    assert list(paired["models"]) == ["face2bone", "face2bone-no-kan"]
    assert (tmp_path / "shareable" / "model_comparison.svg").read_text().lstrip().startswith("<svg")
    assert torch.get_num_threads() >= 1
