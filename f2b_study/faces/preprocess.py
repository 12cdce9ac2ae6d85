"""`preprocess`: every photo -> a standardised face in the cache, or a named reason why not (docs/methods.md).

Work happens in a process pool (spawned processes, one FaceAnalyzer each, created on the first cache miss);
with one worker it runs in this process. Each task reads the photo's bytes, hashes them and returns the
cache entry when there is one, so a rerun does no model work for finished photos and an interrupted run
loses only the photos in flight. `preprocess.csv` is rebuilt from the join at the end, one row per photo,
so rows are never lost or duplicated. QC thresholds are applied on the way out (`qc.py`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from f2b_study.cohort.images import IMAGE_EXTENSIONS, ImageError, load_rgb
from f2b_study.faces.cache import FaceCache, content_hash, encode_face
from f2b_study.faces.qc import QCThresholds, evaluate

# measurements written to preprocess.csv (`measure.py`), so that a study can audit every threshold
MEASURE_COLUMNS = ("sharpness", "luma_median", "contrast", "clipped_fraction", "lens_luma_ratio", "bridge_edges",
                   "forehead_dark", "background_edges")

CSV_NAME = "preprocess.csv"
SCHEMA: dict[str, Any] = {
    "photo": pl.String, "patient_id": pl.String, "status": pl.String, "reason": pl.String, "detail": pl.String,
    "flags": pl.String, "detection_score": pl.Float64, "detector": pl.String, "n_faces": pl.Int64,
    "yaw": pl.Float64, "pitch": pl.Float64, "roll": pl.Float64, "interocular_px": pl.Float64,
    "eye_blink": pl.Float64, "smile": pl.Float64, "face_path": pl.String, "content_hash": pl.String,
    # added with the protocol checks (docs/quality-control.md): every excluding finding, and the measurements
    "reasons": pl.String, "other_face_ratio": pl.Float64, "pose_source": pl.String,
    **{name: pl.Float64 for name in MEASURE_COLUMNS},
}
CHUNK = 4  # photos per task: small enough for a smooth progress bar, large enough to amortise the IPC
MIN_PHOTOS_FOR_POOL = 64  # fewer photos take less time in this process than spawning workers (~1-2 s)

_state: dict[str, Any] = {}  # per process: the cache and the lazily created analyser


@dataclasses.dataclass
class PreprocessResult:
    frame: pl.DataFrame  # one row per input photo, columns SCHEMA
    csv_path: Path
    computed: int  # distinct photo files processed in this run (cache misses)
    from_cache: int  # distinct photo files whose entry was already in the cache

    def summary(self) -> dict[str, Any]:
        """`faces.table.qc_summary` of the photos, and where preprocess.csv is."""
        from f2b_study.faces.table import qc_summary

        return {**qc_summary(self.frame, self.computed, self.from_cache), "output": str(self.csv_path)}


def photos_from_folder(root: str | Path) -> pl.DataFrame:
    """Every image under ``root`` (top level and one folder deep) as photos to preprocess, without a cohort.
    patient_id is the folder name for ``root/<id>/*``, else the file name's stem up to its first '_'
    (``P001_front.jpg`` -> ``P001``), the same rules as the cohort join (docs/methods.md, Photos)."""
    from f2b_study.cohort.photos import safe_photo_path
    from f2b_study.errors import InputError

    root_path = Path(os.path.realpath(root))
    if not root_path.is_dir():
        raise InputError.at(root, expected="a folder of photos (--photos)", show_value=False)
    records: list[tuple[str, str, str, str]] = []
    for entry in sorted(os.scandir(root_path), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            names = sorted(e.name for e in os.scandir(entry.path) if _is_image(e.name) and e.is_file())
            for name in names:
                path = safe_photo_path(root_path, f"{entry.name}/{name}", file=root_path, column="photo folder")
                records.append((entry.name, f"{entry.name}/{name}", str(path), "folder"))
        elif _is_image(entry.name) and entry.is_file():
            path = safe_photo_path(root_path, entry.name, file=root_path, column="photo folder")
            stem = entry.name.rsplit(".", 1)[0]
            patient = stem.split("_", 1)[0] if not stem.startswith("_") else stem
            records.append((patient, entry.name, str(path), "folder"))
    return pl.DataFrame(records, schema=["patient_id", "photo", "path", "source"], orient="row")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def preprocess_photos(photos: pl.DataFrame, out_dir: str | Path, *, cache_dir: str | Path | None = None,
                      workers: int = 1, thresholds: QCThresholds | None = None, progress: bool | None = None,
                      csv_name: str = CSV_NAME) -> PreprocessResult:
    """`faces.table.standardise` plus ``out_dir/preprocess.csv``, for scripts and tests. Faces live in
    ``cache_dir`` (default ``out_dir/cache``, private to this output; the commands all share `.f2b-cache/faces`)."""
    from f2b_study.faces.table import standardise

    table = standardise(photos, qc=thresholds or QCThresholds(), cache_dir=cache_dir or Path(out_dir) / "cache",
                        workers=workers, progress=progress)
    csv_path = table.write_csv(Path(out_dir) / csv_name)
    return PreprocessResult(frame=table.frame, csv_path=csv_path, computed=table.computed,
                            from_cache=table.from_cache)


def photo_row(photo: str, patient_id: str, meta: dict[str, Any], thresholds: QCThresholds) -> tuple[Any, ...]:
    """One preprocess.csv row from a cache entry's metadata."""
    qc = evaluate(meta, thresholds)
    blend = meta.get("blendshapes") or {}

    def number(key: str) -> float | None:
        value = meta.get(key)
        return None if value is None or not math.isfinite(value) else round(float(value), 2)

    measures = meta.get("measures") or {}
    return (
        photo, patient_id, qc.status, qc.reason, qc.detail, ";".join(qc.flags) or None,
        None if meta.get("score") is None else round(meta["score"], 4), meta.get("detector"), qc.n_faces,
        number("yaw"), number("pitch"), number("roll"), number("interocular_px"),
        round(min(blend.get("eyeBlinkLeft", 0), blend.get("eyeBlinkRight", 0)), 3) if blend else None,
        round(max(blend.get("mouthSmileLeft", 0), blend.get("mouthSmileRight", 0)), 3) if blend else None,
        meta.get("face_path") if qc.status == "ok" else None, meta.get("content_hash"),
        ";".join(qc.reasons) or None, qc.other_face_ratio, meta.get("pose_source"),
        *(None if measures.get(name) is None else float(measures[name]) for name in MEASURE_COLUMNS),
    )


def iter_processed(paths: Sequence[str], cache_dir: str | Path, workers: int = 1
                   ) -> Iterator[tuple[int, dict[str, Any], bool]]:
    """(index into ``paths``, cache metadata, whether it was a cache miss) for every path, in completion order."""
    cache_dir = str(cache_dir)
    if workers <= 1 or len(paths) < max(MIN_PHOTOS_FOR_POOL, 2 * CHUNK):
        _init_state(cache_dir)
        for index, path in enumerate(paths):
            yield (index, *process_photo(path))
        return
    yield from _pooled(paths, cache_dir, workers)


def _pooled(paths: Sequence[str], cache_dir: str, workers: int, task: Callable[..., Any] | None = None
            ) -> Iterator[tuple[int, dict[str, Any], bool]]:
    """The pool, with a worker that dies in native code (a crash, not an exception) handled: the unfinished
    photos are retried one at a time in a one-process pool, so the photo that kills it is identified and
    recorded, and every other photo still gets its row."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")  # fork would copy polars' and the models' threads
    task = task or _process_many
    pending = list(range(len(paths)))
    size, chunk = workers, CHUNK
    while pending:
        done: set[int] = set()
        crashed = False
        # workers learn this process's PID so that they die with it (see _init_worker)
        with ProcessPoolExecutor(size, mp_context=context, initializer=_init_worker,
                                 initargs=(cache_dir, os.getpid())) as pool:
            chunks = [pending[i:i + chunk] for i in range(0, len(pending), chunk)]
            futures = {pool.submit(task, [(i, paths[i]) for i in part]) for part in chunks}
            try:
                while futures:
                    finished, futures = wait(futures, return_when=FIRST_COMPLETED)
                    for future in finished:
                        for index, meta, computed in future.result():
                            done.add(index)
                            yield index, meta, computed
            except BrokenProcessPool:
                crashed = True
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        remaining = [i for i in pending if i not in done]
        if crashed and size == 1 and chunk == 1 and remaining:
            culprit = remaining.pop(0)
            yield culprit, {"error": "unreadable", "detail": "the face models crashed on this photo"}, True
        elif crashed:
            size, chunk = 1, 1
        pending = remaining


def _init_state(cache_dir: str) -> None:
    if _state.get("cache_dir") != cache_dir:
        _state["cache_dir"] = cache_dir
        _state["cache"] = FaceCache(cache_dir)


def _init_worker(cache_dir: str, parent: int | None = None) -> None:
    """Set up a pool worker. With ``parent`` (the pool owner's PID) the worker ends when that process dies, however
    it dies (kill -9 included): a worker blocked on the task queue would otherwise wait forever, holding its face
    models (~280 MB) and keeping multiprocessing's resource tracker alive. Linux: the kernel sends SIGKILL
    (prctl PR_SET_PDEATHSIG, armed for the thread that started the worker: `_pooled`'s, which owns the pool for its
    whole life); elsewhere a thread watches the parent PID."""
    import ctypes
    import signal
    import threading
    import time

    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    if parent is not None:
        armed = False
        if sys.platform.startswith("linux"):
            try:
                pr_set_pdeathsig = 1  # <linux/prctl.h>
                armed = ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0
            except (OSError, AttributeError):
                armed = False
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
        if not armed:
            def watch() -> None:
                while os.getppid() == parent:
                    time.sleep(1.0)
                os._exit(1)

            threading.Thread(target=watch, name="f2b-parent-watch", daemon=True).start()
    cv2.setNumThreads(1)  # one core per worker: the pool is the parallelism
    _init_state(cache_dir)


def _analyzer() -> Any:
    if "analyzer" not in _state:
        import threading

        from f2b_study.faces.landmarker import FaceAnalyzer

        analyzer = FaceAnalyzer()
        _state["analyzer"] = analyzer
        # Close it at exit while mediapipe's dispatcher threads still run: plain atexit handlers come after the
        # thread pools' shutdown (close then fails), and a teardown __del__ prints tracebacks. Hooks registered
        # here run before those of concurrent.futures, which registered earlier (reverse order).
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            register(_close_analyzer)
    return _state["analyzer"]


def _close_analyzer() -> None:
    analyzer = _state.pop("analyzer", None)
    if analyzer is not None:
        analyzer.close()


def analyzer_calls() -> int:
    """Photos analysed by this process's models so far (0 when they were never loaded)."""
    return _state["analyzer"].calls if "analyzer" in _state else 0


def _process_many(items: list[tuple[int, str]]) -> list[tuple[int, dict[str, Any], bool]]:
    return [(index, *process_photo(path)) for index, path in items]


def process_photo(path: str) -> tuple[dict[str, Any], bool]:
    """The cache entry of one photo, computing it on a miss: (metadata, whether it was a miss)."""
    cache: FaceCache = _state["cache"]
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return {"error": "unreadable", "detail": f"cannot read the file ({error.strerror or error})"}, True
    digest = content_hash(data)
    hit = cache.load(digest)
    if hit is not None:
        return hit, False
    try:
        meta, arrays, face = analyse_photo(path)
    except Exception as error:  # a row is never lost; not cached, so a fixed pipeline redoes the photo
        return {"error": "unreadable", "detail": f"processing failed ({type(error).__name__}: {error})"[:200],
                "content_hash": digest}, True
    return cache.save(digest, meta, arrays, face), True


def analyse_photo(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
    """Decode, detect, landmark, standardise and measure one photo: (metadata, arrays, encoded face or None)."""
    try:
        rgb = load_rgb(path)
    except ImageError as error:
        if error.reason in ("unreadable", "unsupported_format"):  # named reasons of their own
            return {"error": error.reason, "detail": error.detail}, {}, None
        return {"error": "unreadable", "detail": f"{error.reason}: {error.detail}"}, {}, None
    return analyse_rgb(rgb)


def analyse_rgb(rgb: np.ndarray, analyzer: Any = None) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes | None]:
    """`analyse_photo` on decoded pixels (an upright (H, W, 3) uint8 RGB photo); ``analyzer`` defaults to this
    process's FaceAnalyzer."""
    from f2b_study.faces.measure import background_measurements, face_measurements
    from f2b_study.faces.pose import checked_pose, head_pose
    from f2b_study.faces.standardise import alignment, compact_face

    analysis = (analyzer or _analyzer()).analyze(rgb)
    meta: dict[str, Any] = {
        "image_size": list(analysis.image_size),
        "detector": analysis.detector,
        "detections": [[round(d.score, 5), *d.box] for d in analysis.detections],
        "via_crop": analysis.via_crop,
        "score": analysis.score,
        "landmarks": analysis.landmarks is not None,
    }
    if analysis.landmarks is None:
        return meta, {}, None
    if analysis.matrix is None:  # requested from the landmarker, so never absent unless mediapipe changed
        raise RuntimeError("the landmarker returned no facial transformation matrix")
    affine, landmarks, angle, interocular = alignment(analysis.landmarks)
    stored = compact_face(rgb, affine, landmarks)
    yaw, pitch, roll, source = checked_pose(analysis.matrix, analysis.landmarks)
    m_yaw, m_pitch, m_roll = head_pose(analysis.matrix)
    points = analysis.landmarks[:, :2]
    low, high = points.min(axis=0), points.max(axis=0)
    try:
        measures = face_measurements(stored, landmarks, affine, analysis.image_size)
        measures.update(background_measurements(rgb, (*low, *(high - low))))
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as error:  # e.g. a degenerate mesh
        measures = {"why_not": f"{type(error).__name__}: {error}"[:120]}
    meta.update(yaw=yaw, pitch=pitch, roll=roll, pose_source=source, matrix_pose=[m_yaw, m_pitch, m_roll],
                interocular_px=interocular, eye_angle_deg=angle,
                scale=float(np.sqrt(abs(np.linalg.det(affine[:, :2])))), stored_px=stored.shape[0],
                blendshapes=analysis.blendshapes, measures=measures)
    arrays = {"landmarks": landmarks, "landmarks_photo": analysis.landmarks, "affine": affine,
              "matrix": analysis.matrix}
    return meta, arrays, encode_face(stored)
