"""`screen --engine ray` (issue 9) on a local Ray instance of 2 CPUs: the same files as the single-machine path, and
exactly one row per photo after a restarted or retried job."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from f2b_study.errors import InputError
from tests.conftest import screen_cohort, train_tiny

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PROBA = ["p_normal", "p_osteopenia", "p_osteoporosis"]
FILES = ("predictions_images.csv", "predictions.csv", "preprocess.csv")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the optional extra 'cluster' is not installed")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 << 20, log_to_driver=False,
             logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def trained(mini_cohort: Path, face_cache: Path, module_tmp) -> Path:
    run = module_tmp("ray-run")
    train_tiny([mini_cohort], run, face_cache)
    return run / "best"


@pytest.fixture(scope="module")
def reference(trained: Path, mini_cohort: Path, face_cache: Path, module_tmp) -> Path:
    out = module_tmp("local-engine")
    screen_cohort([mini_cohort], trained, out, face_cache)
    return out


def assert_same_outputs(local: Path, other: Path) -> None:
    for name in FILES:
        a, b = pl.read_csv(local / name), pl.read_csv(other / name)
        assert a.columns == b.columns and a.height == b.height, name
        numeric = [c for c in PROBA if c in a.columns]
        assert a.drop(numeric).equals(b.drop(numeric)), name  # classes, QC, pathway, covariates
        for column in numeric:
            assert np.allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=0, atol=1e-6, equal_nan=True)
    images = pl.read_csv(other / "predictions_images.csv")
    assert images.select("patient_id", "photo").is_unique().all()


def test_ray_engine_writes_what_the_local_engine_writes(local_ray, trained: Path, reference: Path,
                                                        mini_cohort: Path, face_cache: Path, tmp_path: Path) -> None:
    result = screen_cohort([mini_cohort], trained, tmp_path, face_cache,
                    engine="ray", workers=2)
    assert_same_outputs(reference, tmp_path)
    assert result.summary["photos_used"] == result.images.height > 0
    assert not (tmp_path / ".ray-shards").exists()


def test_restarted_and_retried_job_has_one_row_per_photo(local_ray, trained: Path, reference: Path,
                                                         mini_cohort: Path, face_cache: Path, tmp_path: Path,
                                                         monkeypatch) -> None:
    from f2b_study.inference import ray_engine

    real_merge = ray_engine.merge

    def driver_dies(root: Path, run_dir: Path):
        raise KeyboardInterrupt  # the job wrote its shards; the driver died before merging them

    monkeypatch.setattr(ray_engine, "merge", driver_dies)
    monkeypatch.setattr(ray_engine, "SHARD_ROWS", 4)
    with pytest.raises(KeyboardInterrupt):
        screen_cohort([mini_cohort], trained, tmp_path, face_cache,
               engine="ray", batch_size=4)
    assert not (tmp_path / "predictions.csv").exists()
    shards = sorted((tmp_path / ".ray-shards").glob("*/run-*/*.parquet"))
    assert len(shards) >= 2
    lost = pl.read_parquet(shards[0])
    shards[0].unlink()  # a shard lost with its node
    shutil.copy(shards[1], shards[1].with_name("copy-" + shards[1].name))  # a retried task's second copy
    scored_again = {}

    def counting_merge(root: Path, run_dir: Path):
        rows = pl.read_parquet(sorted(run_dir.glob("*.parquet")))
        scored_again["n"] = rows.filter(pl.col("p_normal").is_not_nan()).height
        return real_merge(root, run_dir)

    monkeypatch.setattr(ray_engine, "merge", counting_merge)
    screen_cohort([mini_cohort], trained, tmp_path, face_cache, engine="ray",
           batch_size=4)
    assert scored_again["n"] == lost.filter(pl.col("p_normal").is_not_nan()).height  # only the lost photos
    assert_same_outputs(reference, tmp_path)
    assert not (tmp_path / ".ray-shards").exists()


def test_without_ray_the_engine_is_one_clear_error(trained: Path, mini_cohort: Path, face_cache: Path,
                                                   tmp_path: Path, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(InputError, match=r"pip install '\.\[cluster\]'"):
        screen_cohort([mini_cohort], trained, tmp_path / "x", face_cache,
               engine="ray")
    assert not (tmp_path / "x").exists()
