"""Real face photos for the face-standardisation tests: ../shared/data/faces (454 public portraits), else the
demo cohort's copies of them; the tests that need them skip when neither is there."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_PHOTOS = REPO / "cohorts" / "demo" / "photos"
CANDIDATES = (REPO.parent / "shared" / "data" / "faces", DEMO_PHOTOS)


def photo_dir() -> Path:
    for folder in CANDIDATES:
        if folder.is_dir() and any(folder.glob("*.jpg")):
            return folder
    pytest.skip("no real face photos (../shared/data/faces or cohorts/demo/photos)")


def all_photos() -> list[Path]:
    return sorted(photo_dir().glob("*.jpg"))


def sample_photos(n: int = 40, *, bundled: bool = False) -> list[Path]:
    """n photos spread over the whole set (every k-th), the same ones on every run. ``bundled``: always the demo
    cohort's re-encoded copies, for tests whose constructed photos must not depend on which copy is present."""
    photos = sorted((DEMO_PHOTOS if bundled else photo_dir()).glob("*.jpg"))
    step = max(1, len(photos) // n)
    return photos[::step][:n]


def photo_frame(paths: list[Path]) -> pl.DataFrame:
    """The photos as preprocess input (patient_id = file stem)."""
    return pl.DataFrame({"patient_id": [p.stem for p in paths], "photo": [p.name for p in paths],
                         "path": [str(p) for p in paths]})
