"""Distributed training (issue 9): `torchrun --nproc_per_node 2 -m f2b_study train` with DDP on the CPU (gloo)
trains the model one process trains, resumes a single-process run, and writes a checkpoint the single-process
code loads.

Tolerance: the two runs see the same global batches in the same order with the same BatchNorm statistics
(synchronised across ranks), so they differ only in floating-point summation order (the gradient all-reduce, the
statistics' sums): about 1e-7 on the per-epoch losses here. 1e-4 leaves room for Adam to amplify that over a few
steps, while a sharding or scaling mistake moves the losses by 1e-3 or more (one image entering one step's
BatchNorm statistics twice already does)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from f2b_study.cli import main
from tests.conftest import TINY_FACE2BONE

pytestmark = [pytest.mark.xdist_group("cluster"), pytest.mark.filterwarnings("ignore::UserWarning")]

COMPARED = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")


def train_args(cohort: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(cohort), "--cache", str(cache), "--out", str(out), "--epochs", "3", "--batch-size", "8",
            "--model-config", json.dumps(TINY_FACE2BONE), *extra]


def in_process(args: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(args)


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "f2b_study", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                          cwd=Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def single(mini_cohort: Path, face_cache: Path, module_tmp) -> Path:
    out = module_tmp("single") / "run"
    assert in_process(train_args(mini_cohort, face_cache, out)) == 0
    return out


def metrics(run: Path) -> pl.DataFrame:
    return pl.read_csv(run / "metrics.csv").select(COMPARED)


def assert_same_run(a: Path, b: Path) -> None:
    left, right = metrics(a), metrics(b)
    assert left.height == right.height == 3
    for column in ("train_accuracy", "val_accuracy", "lr"):
        assert np.allclose(left[column].to_numpy(), right[column].to_numpy(), rtol=0, atol=1e-9), column
    for column in ("train_loss", "val_loss"):
        assert np.allclose(left[column].to_numpy(), right[column].to_numpy(), rtol=0, atol=1e-4), column
    from safetensors.torch import load_file

    wa, wb = (load_file(str(run / "best" / "model.safetensors")) for run in (a, b))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name].float(), wb[name].float(), rtol=0, atol=1e-4), name


@pytest.mark.slow
def test_ddp_on_two_processes_trains_what_one_process_trains(single: Path, mini_cohort: Path, face_cache: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    done = torchrun(train_args(mini_cohort, face_cache, out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(single, out)
    run = json.loads((out / "run.json").read_text())
    assert run["processes"] == 2 and run["status"] == "finished"
    # rank 0 alone reports: one table row for the run
    assert sum(line.startswith("face2bone ") for line in done.stdout.splitlines()) == 1, done.stdout
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no stray temporary files
    # the checkpoint is the plain model's: the single-process code loads it and predicts what the run predicted
    from f2b_study.models.runtime import predict_faces, resolve_checkpoint

    checkpoint = resolve_checkpoint(out)
    model = checkpoint.load("cpu")
    assert not any(key.startswith("module.") for key in model.state_dict())
    images = pl.read_csv(out / "val_predictions_images.csv")
    faces_of = pl.read_csv(out / "preprocess.csv").select("photo", "face_path")
    transform = checkpoint.transform
    faces = transform.load(images.join(faces_of, on="photo", how="left")["face_path"].to_list())
    again = predict_faces(model, faces, transform=transform, device=torch.device("cpu"))
    assert np.allclose(again, images.select("p_normal", "p_osteopenia", "p_osteoporosis").to_numpy(), atol=1e-5)


@pytest.mark.slow
def test_ddp_resumes_a_single_process_run(single: Path, mini_cohort: Path, face_cache: Path, tmp_path: Path,
                                          monkeypatch) -> None:
    import f2b_study.training.loop as loop

    original = loop.Trainer.validate
    calls = {"n": 0}

    def dies_in_epoch_two(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed before epoch 2's state is written
        return original(self)

    monkeypatch.setattr(loop.Trainer, "validate", dies_in_epoch_two)
    out = tmp_path / "killed"
    assert in_process(train_args(mini_cohort, face_cache, out)) == 130
    monkeypatch.setattr(loop.Trainer, "validate", original)
    assert len(pl.read_csv(out / "metrics.csv")) == 1
    done = torchrun(train_args(mini_cohort, face_cache, out, "--resume"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(single, out)


@pytest.mark.slow
def test_batch_not_divisible_by_processes_is_one_clear_error(mini_cohort: Path, face_cache: Path,
                                                              tmp_path: Path) -> None:
    done = torchrun(["train", str(mini_cohort), "--cache", str(face_cache), "--out", str(tmp_path / "odd"),
                     "--batch-size", "7"])
    assert done.returncode != 0
    # each rank stops with the one-line error (the two ranks' lines may interleave on the shared stderr)
    assert done.stderr.count("f2b-study train: error: --batch-size: value '7': expected a multiple of the 2 "
                             "processes") == 2
    assert not (tmp_path / "odd").exists()  # refused before any work


def test_global_batch_shards_and_synchronised_batchnorm() -> None:
    from torch import nn

    from f2b_study.training.data import EpochSampler
    from f2b_study.training.distributed import CpuSyncBatchNorm, DistContext, ShardedBatchSampler, sync_batchnorm

    sampler = EpochSampler(20, seed=1, shuffle=True, indices=list(range(13)))
    whole = list(ShardedBatchSampler(sampler, 6, DistContext()))
    shards = [list(ShardedBatchSampler(sampler, 6, DistContext(rank=r, world_size=4))) for r in range(4)]
    assert [len(b) for b in whole] == [6, 6, 1]
    for step, batch in enumerate(whole):  # the ranks' shares put together are the one-process batch
        if len(batch) >= 4:
            assert [key for shard in shards for key in shard[step]] == batch
    assert [shard[2] for shard in shards] == [whole[2]] * 4  # a last batch of one image: others repeat it...
    counts = [ShardedBatchSampler(sampler, 6, DistContext(rank=r, world_size=4)).step_sizes(2) for r in range(4)]
    assert counts == [(1, 1), (1, 0), (1, 0), (1, 0)]  # ...weighted zero

    # one-rank gloo group: the synchronised BatchNorm computes exactly what nn.BatchNorm2d computes
    torch.distributed.init_process_group("gloo", rank=0, world_size=1, store=torch.distributed.HashStore())
    try:
        torch.manual_seed(0)
        plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None), nn.ReLU())
        synced = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None), nn.ReLU())
        synced.load_state_dict(plain.state_dict())
        restore = sync_batchnorm(synced, torch.device("cpu"))
        assert isinstance(synced[1], CpuSyncBatchNorm)
        x = torch.randn(5, 3, 9, 9) * 3 + 1
        for _ in range(2):
            a, b = plain(x), synced(x)
            assert torch.allclose(a, b, atol=1e-5)
            a.square().sum().backward()
            b.square().sum().backward()
        assert torch.allclose(plain[0].weight.grad, synced[0].weight.grad, rtol=1e-4, atol=1e-5)
        restore()
        assert type(synced[1]) is nn.BatchNorm2d  # the original layer, sharing the trained statistics
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.allclose(getattr(plain[1], name).float(), getattr(synced[1], name).float(), atol=1e-5)
    finally:
        torch.distributed.destroy_process_group()
