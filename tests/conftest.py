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
