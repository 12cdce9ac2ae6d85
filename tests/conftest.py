"""Shared test fixtures. Torch uses one thread in tests: CI has two cores and pytest runs two workers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _private_face_cache(tmp_path_factory) -> None:
    """Commands run without --cache use a cache of the test session's own, never the repository's; pseudonym
    keys go to a key store of the session's own, never the user's."""
    os.environ["F2B_CACHE"] = str(tmp_path_factory.mktemp("default-face-cache"))
    os.environ["F2B_KEY_STORE"] = str(tmp_path_factory.mktemp("key-store"))


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Iterator[Callable[[str], Path]]:
    """``tmp_path_factory.mktemp`` for a test module's shared fixtures; the folders go when the module ends unless a
    test failed meanwhile. Trained runs and checkpoints take 0.2-0.5 GB each: kept to the session's end they added
    up to 3.5 GB, and CI machines can have little disk."""
    made: list[Path] = []
    failed_before = request.session.testsfailed

    def make(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield make
    if request.session.testsfailed == failed_before:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO_DIR = REPO / "cohorts" / "demo"


@pytest.fixture
def write_csv(tmp_path: Path):
    """Write rows (list of dicts or a header + rows text) to a CSV in tmp_path and return its path."""

    def _write(text: str, name: str = "cohort.csv", encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode(encoding))
        return path

    return _write


TINY_FACE2BONE = {"input_size": 64, "dims": [8, 16, 24, 32], "depths": [1, 1, 1, 1], "heads": [1, 2, 2, 4],
                  "ssam_heads": 2, "kan_hidden": [8], "facenet_size": 80}


def make_mini_cohort(folder: Path, per_class: int = 6, extra: dict[str, list] | None = None) -> Path:
    """A small cohort of real demo photos: ``per_class`` eligible patients of each WHO class (simulated labels),
    written as folder/cohort.csv with the photos beside it. Returns the CSV path."""
    import shutil

    import polars as pl

    from f2b_study.cohort.label import label
    from f2b_study.cohort.schema import load_cohort

    labelled = label(load_cohort(DEMO_DIR.parent / "demo.toml")).filter(pl.col("eligible"))
    picked = pl.concat([labelled.filter(pl.col("bone_status") == c).sort("patient_id").head(per_class)
                        for c in ("normal", "osteopenia", "osteoporosis")])
    source = pl.read_csv(DEMO_DIR / "cohort.csv", infer_schema=False)
    rows = source.filter(pl.col("patient_id").is_in(picked["patient_id"].to_list())).sort("patient_id")
    folder.mkdir(parents=True, exist_ok=True)
    for patient_id in rows["patient_id"]:
        shutil.copy(DEMO_DIR / "photos" / f"{patient_id}.jpg", folder / f"{patient_id}.jpg")
    path = folder / "cohort.csv"
    rows.write_csv(path)
    return path


@pytest.fixture(scope="session")
def mini_cohort(tmp_path_factory) -> Path:
    return make_mini_cohort(tmp_path_factory.mktemp("mini"))


@pytest.fixture(scope="session")
def face_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("face-cache")


def prepare(sources: list, *, cache: Path, target: str = "bone_status", photos: Path | None = None,
            qc: dict | None = None, **train: object):
    """The training stage's input, built as every command builds it: a study config, the cohort once, its faces
    once, the split. ``train``: [train] settings (e.g. epochs=1)."""
    from f2b_study.cohort.cohort_photos import build_cohort_photos
    from f2b_study.config import load_study
    from f2b_study.faces.table import standardise
    from f2b_study.training.run import training_data

    study = load_study(sources, {"train": {"target": target, **train}, "qc": qc or {}})
    cohort = build_cohort_photos(study.centres, photos=photos, target=target)
    faces = standardise(cohort.photos_of(cohort.patients["patient_id"]), qc=study.qc, cache_dir=cache,
                        progress=False)
    return training_data(cohort, faces, study.train), study.train


def train_tiny(sources: list, out: Path, cache: Path, **train: object):
    """A one-epoch tiny Face2Bone run on ``sources`` (the fixtures' trained model)."""
    from f2b_study.training.run import train_one

    values = {"epochs": 1, "batch_size": 8, "augment": [], "model": {k: v for k, v in TINY_FACE2BONE.items()
                                                                     if k != "input_size"},
              "input_size": TINY_FACE2BONE["input_size"], **train}
    data, settings = prepare(sources, cache=cache, **values)
    return train_one(data, settings, out=out, progress=False)


def screen_cohort(sources: list, model: Path, out: Path, cache: Path, *, engine: str = "local", **kwargs: object):
    """`screen` as the command runs it, from Python: the cohort once, its faces, the checkpoint's predictions."""
    from f2b_study.cohort.cohort_photos import build_cohort_photos
    from f2b_study.config import load_study
    from f2b_study.faces.table import standardise
    from f2b_study.inference.screen import ray_faces_and_scores, screen
    from f2b_study.models.runtime import resolve_checkpoint

    study = load_study(sources)
    cohort = build_cohort_photos(study.centres, target=None, require_dxa=False)
    checkpoint = resolve_checkpoint(model)
    probabilities = None
    if engine == "ray":
        faces, probabilities = ray_faces_and_scores(
            cohort, qc=study.qc, checkpoint=checkpoint, out=out, cache_dir=cache, device="cpu",
            batch_size=kwargs.pop("batch_size", None), workers=kwargs.pop("workers", None), bf16=True,
            address=kwargs.pop("address", None), progress=False)
    else:
        faces = standardise(cohort.photos, qc=study.qc, cache_dir=cache, progress=False)
    from f2b_study.report.screening import write_screening_report

    result = screen(cohort, faces, checkpoint, out=out, probabilities=probabilities, progress=False, **kwargs)
    write_screening_report(result, out)
    return result
