"""Shared test fixtures. Torch uses one thread in tests: CI has two cores and pytest runs two workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

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
