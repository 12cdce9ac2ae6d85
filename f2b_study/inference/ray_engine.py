"""`screen --engine ray`: the scoring stage of screening on a Ray cluster with Ray Data (optional extra `cluster`).

    photo paths (a Ray dataset, blocks of BLOCK photos)
      -> map_batches(standardise_batch): CPU tasks; the faces pipeline through the content-hash cache
         (`faces.preprocess.iter_processed`), QC, and the face at the model's input size for photos still to score
      -> map_batches(Predictor): an actor pool (one GPU each when the cluster has GPUs), the checkpoint loaded once
         per actor, an explicit batch size
      -> write_parquet: shards under OUT/.ray-shards/<model>/run-*/, one row per photo keyed by content hash

The driver then merges the shards into the same tables as the single-machine path (`screen.py` writes them):
metadata from this run's rows (deduplicated by path), probabilities from every run's rows for this model
(deduplicated by content hash). A job that was retried (Ray re-runs failed tasks, whose shard may then be written
twice) or restarted after a crash therefore yields exactly one row per photo, and a restart scores only the photos
no earlier run of the same model scored. The shards are removed once the outputs are written.

Paths (photos, --cache, --model, --out) must resolve on every node: on a cluster, a shared file system.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study import CLASSES
from f2b_study.errors import InputError

log = logging.getLogger(__name__)

SHARDS_DIR = ".ray-shards"
BLOCK = 32  # photos per dataset block: the unit of a standardisation task
MIN_BLOCKS = 8  # fewer photos make smaller blocks, so that tasks and actors still run side by side
MAX_BLOCKS = 4096  # more photos make larger blocks: the driver tracks every block
STANDARDISE_BATCH = 16
STANDARDISE_MEMORY = 512 << 20  # bytes
SHARD_ROWS = 4096  # photos per Parquet shard at most: what a lost shard costs a restart
LOCAL_OBJECT_STORE = 512 << 20  # bytes, for a Ray instance started here: faces at 224 px are 150 kB each
PROBA = tuple(f"p_{c}" for c in CLASSES)


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError("--engine ray needs Ray Data, the optional extra `cluster`: pip install '.[cluster]' "
                         "(or pip install 'f2b-study[cluster]')") from None
    return ray


def shards_root(out: Path, sidecar: dict[str, Any]) -> Path:
    """Shards of one model (weights hash): a restart never mixes in another model's probabilities."""
    return out / SHARDS_DIR / sidecar["weights_sha256"][:20]


# -- the two stages (run inside Ray workers) ---------------------------------------------------------------------

def standardise_batch(batch: dict[str, np.ndarray], *, cache_dir: str, size: int, thresholds: Any,
                      done: frozenset[str]) -> dict[str, Any]:
    """CPU task: cache entry (computed on a miss), QC status, and the face to score (zeros when not scored)."""
    import cv2

    from f2b_study.faces.cache import load_face
    from f2b_study.faces.preprocess import iter_processed
    from f2b_study.faces.table import passes_qc

    cv2.setNumThreads(1)  # one core per task: the tasks are the parallelism
    paths = [str(p) for p in batch["path"]]
    metas: list[dict[str, Any]] = [{}] * len(paths)
    for index, meta, _ in iter_processed(paths, cache_dir, workers=1):
        metas[index] = meta
    faces = np.zeros((len(paths), size, size, 3), np.uint8)
    score = np.zeros(len(paths), bool)
    for i, meta in enumerate(metas):
        if passes_qc(meta, thresholds) and meta.get("content_hash") not in done:
            faces[i] = load_face(meta["face_path"], size)[0]
            score[i] = True
    return {"path": np.array(paths, dtype=object),
            "content_hash": np.array([m.get("content_hash") or "" for m in metas], dtype=object),
            "meta": np.array([json.dumps(m) for m in metas], dtype=object), "score": score, "face": faces}


class Predictor:
    """Actor: the checkpoint loaded once; each call scores the batch's faces that need it."""

    def __init__(self, model_path: str, device: str, batch_size: int, bf16: bool) -> None:
        import torch

        from f2b_study.models.runtime import prepare_model, resolve_checkpoint

        self.device = torch.device(device)  # Ray makes the actor's GPU the only visible one: cuda = cuda:0
        checkpoint = resolve_checkpoint(model_path)
        self.model = prepare_model(checkpoint.load(self.device), self.device)
        self.transform = checkpoint.transform
        self.batch_size = batch_size
        self.bf16 = bf16

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from f2b_study.models.runtime import predict_faces

        score = np.asarray(batch["score"], bool)
        probabilities = np.full((len(score), len(PROBA)), np.nan, np.float32)
        if score.any():
            faces = np.asarray(batch["face"])[score]
            probabilities[score] = predict_faces(self.model, faces, transform=self.transform, device=self.device,
                                                 batch_size=self.batch_size, bf16=self.bf16)
        out = {key: batch[key] for key in ("path", "content_hash", "meta")}
        out.update({name: probabilities[:, i] for i, name in enumerate(PROBA)})
        return out


# -- the job and the merge (driver) -----------------------------------------------------------------------------

def run_job(paths: list[str], *, model_path: Path, sidecar: dict[str, Any], out: Path, cache_dir: Path,
            input_size: int, device: str = "auto", batch_size: int | None = None, workers: int | None = None,
            bf16: bool = True, address: str | None = None, progress: bool | None = None,
            thresholds: Any) -> Path:
    """Run the Ray Data pipeline over ``paths`` with the study's QC ``thresholds``; returns this run's shard
    folder."""
    import pyarrow as pa

    ray = import_ray()
    root = shards_root(out, sidecar)
    done = frozenset(scored_hashes(root))
    run_dir = root / f"run-{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    started_here = not ray.is_initialized()
    if started_here:
        init_ray(ray, address)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = sys.stderr.isatty() if progress is None else progress
        if not logging.getLogger("f2b_study").isEnabledFor(logging.INFO):
            logging.getLogger("ray.data").setLevel(logging.WARNING)  # its plan and timing notes, unless -v
        gpus = int(ray.cluster_resources().get("GPU", 0))
        use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
        if use_gpu and gpus == 0:
            raise InputError.at("--device", value=device, expected="a Ray cluster with GPUs for --device cuda")
        workers = workers or (gpus if use_gpu else 1)
        batch_size = batch_size or (256 if use_gpu else 32)
        cpus = float(ray.cluster_resources().get("CPU", 1))
        # on CPUs the actors leave at least one core to the standardisation tasks, or the pipeline would starve
        actor_cpus = 1.0 if use_gpu or workers <= cpus - 1 else max(cpus - 1, 0.5) / workers
        size = max(min(BLOCK, -(-len(paths) // MIN_BLOCKS)), -(-len(paths) // MAX_BLOCKS), 1)
        blocks = [pa.table({"path": paths[i:i + size]}) for i in range(0, len(paths), size)]
        dataset = ray.data.from_arrow(blocks)
        dataset = dataset.map_batches(
            # memory: what a face landmarker and a photo in flight take; unlike the actors' request, so Ray does
            # not fuse this stage into them (it stays on CPU tasks, apart from the GPUs' work)
            standardise_batch, batch_size=STANDARDISE_BATCH, batch_format="numpy", num_cpus=1,
            memory=STANDARDISE_MEMORY,
            fn_kwargs={"cache_dir": str(Path(cache_dir).resolve()), "size": input_size,
                       "thresholds": thresholds, "done": done})
        dataset = dataset.map_batches(
            Predictor, batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=1 if use_gpu else 0, num_cpus=actor_cpus,
            fn_constructor_kwargs={"model_path": str(Path(model_path).resolve()),
                                   "device": "cuda" if use_gpu else "cpu", "batch_size": batch_size,
                                   "bf16": bf16})
        dataset.write_parquet(str(run_dir), max_rows_per_file=SHARD_ROWS)
    finally:
        if started_here:
            ray.shutdown()
    return run_dir


def init_ray(ray: Any, address: str | None) -> None:
    """Join ``address`` (ray://HOST:10001, HOST:6379 or auto), or start a small local instance. The SIGTERM handler
    in place before (the CLI's: SIGTERM is a clean interrupt, exit 130) is kept: ray.init replaces it with its own
    sys.exit(15), which would skip the CLI's message and exit code."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        _init_ray(ray, address)
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _init_ray(ray: Any, address: str | None) -> None:
    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise InputError.at("--ray-address", value=address,
                                expected=f"a running Ray cluster ({type(error).__name__}: {error})"[:300]) from None
        return
    ray.init(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE, logging_level=logging.WARNING,
             log_to_driver=False)


def scored_hashes(root: Path) -> list[str]:
    """Content hashes that some run of this model already scored (shards left by an interrupted job)."""
    files = sorted(root.glob("run-*/*.parquet")) if root.exists() else []
    if not files:
        return []
    frame = pl.scan_parquet(files).filter(pl.col(PROBA[0]).is_not_nan() & pl.col(PROBA[0]).is_not_null())
    return frame.select(pl.col("content_hash").unique()).collect()["content_hash"].to_list()


def merge(root: Path, run_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """(path -> cache metadata from this run, content hash -> probabilities from any run of this model)."""
    current = (pl.scan_parquet(sorted(run_dir.glob("*.parquet"))).select("path", "meta")
               .unique(subset="path", keep="first", maintain_order=True).collect())
    metas = {path: json.loads(meta) for path, meta in current.iter_rows()}
    scored = (pl.scan_parquet(sorted(root.glob("run-*/*.parquet")))
              .filter(pl.col(PROBA[0]).is_not_nan() & pl.col(PROBA[0]).is_not_null())
              .select("content_hash", *PROBA).sort("content_hash", *PROBA)
              .unique(subset="content_hash", keep="first", maintain_order=True).collect())
    by_hash = {row[0]: np.asarray(row[1:], np.float32) for row in scored.iter_rows()}
    return metas, by_hash
