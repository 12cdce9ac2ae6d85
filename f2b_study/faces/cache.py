"""The face cache: one file per photo content (sha256 of the file's bytes) and pipeline version.

    CACHE/<first two hex digits>/<sha256>.<PIPELINE_VERSION>.npz

holding `meta` (JSON text: detections, pose, blendshapes, ...), and for photos with a face `face_png` (the
standardised face as PNG bytes, at the photo's own resolution, see `standardise.compact_face`; pixels only,
no EXIF), `landmarks` (478x2, 512 frame), `landmarks_photo` (478x3), `matrix` (4x4) and `affine` (2x3).
That file is a row's `face_path`; read it with `load_face`. One file, not a PNG and a sidecar, because every
file created costs time and a second one would put a half-written entry within reach of an interruption.

It is written atomically: an interrupted run leaves no half entry. A changed photo has another hash and is
redone; a new PIPELINE_VERSION redoes everything. Photos without a face (unreadable, no face) get an entry
too, so reruns skip them. The measurements are threshold-free: QC (`qc.py`) is applied on reading, so a
changed [qc] needs no recomputation. The cache folder is the only place standardised faces are written.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from f2b_study.atomic import atomic_path
from f2b_study.faces.standardise import SIZE, expand_face, to_frame
from f2b_study.faces.version import PIPELINE_VERSION

# The one face cache every command uses by default: $F2B_CACHE, else .f2b-cache/faces in the working directory.
CACHE_VARIABLE = "F2B_CACHE"
DEFAULT_CACHE = Path(".f2b-cache") / "faces"


def default_cache_dir() -> Path:
    """$F2B_CACHE when set, else `.f2b-cache/faces` (relative to the working directory)."""
    import os

    return Path(os.environ[CACHE_VARIABLE]) if os.environ.get(CACHE_VARIABLE) else DEFAULT_CACHE


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FaceCache:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.{PIPELINE_VERSION}.npz"

    def load(self, digest: str) -> dict[str, Any] | None:
        """The entry's metadata (with ``face_path`` when it has a face), or None when there is no entry."""
        path = self.path(digest)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                has_face = "face_png" in data.files
        except (OSError, KeyError, ValueError):  # missing, or damaged by something outside this program
            return None
        if meta.get("version") != PIPELINE_VERSION or (meta.get("landmarks") and not has_face):
            return None
        if has_face:
            meta["face_path"] = str(path)
        return meta

    def save(self, digest: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
             face_png: bytes | None = None) -> dict[str, Any]:
        """Store one entry; returns the metadata as ``load`` would."""
        path = self.path(digest)
        meta = {**meta, "version": PIPELINE_VERSION, "content_hash": digest}
        if face_png is not None:
            arrays = {**arrays, "face_png": np.frombuffer(face_png, dtype=np.uint8)}
        buffer = io.BytesIO()
        try:
            np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
        except ValueError as error:
            # Ctrl-C inside zipfile's write surfaces as "Can't close the ZIP file...": keep it an interrupt
            if isinstance(error.__context__, KeyboardInterrupt):
                raise KeyboardInterrupt from None
            raise
        with atomic_path(path, suffix=".npz") as tmp:
            tmp.write_bytes(buffer.getvalue())
        if face_png is not None:
            meta["face_path"] = str(path)
        return meta


def encode_png(rgb: np.ndarray) -> bytes:
    """A fast lossless PNG of an RGB array (zlib level 1, 'up' filter, run-length strategy)."""
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
                                cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


def load_face(face_path: str | Path, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A cached standardised face: ((size, size, 3) uint8 RGB, (478, 2) float32 landmarks in that frame).
    The default is the paper's 512 frame; ask for the model's input size (e.g. 224) to skip a second resize."""
    import cv2

    try:
        with np.load(face_path, allow_pickle=False) as data:
            png = np.asarray(data["face_png"])
            landmarks = np.asarray(data["landmarks"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as error:
        raise FileNotFoundError(f"{face_path}: not a cached face ({error}); rerun f2b-study preprocess") from None
    bgr = cv2.imdecode(png, cv2.IMREAD_COLOR)
    rgb = expand_face(np.ascontiguousarray(bgr[:, :, ::-1]), landmarks, size)
    return rgb, to_frame(landmarks, size).astype(np.float32)


def load_measurements(face_path: str | Path) -> dict[str, Any]:
    """Everything stored with a cached face but its pixels: landmarks_photo, matrix, affine, ... and `meta`."""
    with np.load(face_path, allow_pickle=False) as data:
        out: dict[str, Any] = {key: np.asarray(data[key]) for key in data.files if key not in ("meta", "face_png")}
        out["meta"] = json.loads(str(data["meta"]))
    return out


def load_faces(face_paths: Sequence[str], size: int, progress: bool = False) -> np.ndarray:
    """Cached faces at ``size`` as one (N, size, size, 3) uint8 array."""
    from tqdm import tqdm

    out = np.empty((len(face_paths), size, size, 3), np.uint8)
    for i, path in enumerate(tqdm(face_paths, desc="loading faces", unit="face", disable=not progress, leave=False)):
        out[i] = load_face(path, size)[0]
    return out
