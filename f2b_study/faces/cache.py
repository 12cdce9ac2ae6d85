"""The face cache: one file per photo content (sha256 of the file's bytes) and pipeline version.

    CACHE/<first two hex digits>/<sha256>.<PIPELINE_VERSION>.npz

holding `meta` (JSON text: detections, pose, blendshapes, QC measurements, ...), and for photos with a face
`face` (the standardised face at the photo's own resolution, see `standardise.compact_face`, losslessly
compressed by `encode_face`; pixels only, no EXIF), `landmarks` (478x2, 512 frame), `landmarks_photo`
(478x3), `matrix` (4x4) and `affine` (2x3). That file is a row's `face_path`; read it with `load_face`. One
file, not an image and a sidecar, because every file created costs time and a second one would put a
half-written entry within reach of an interruption.

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
                has_face = FACE_KEY in data.files
        except (OSError, KeyError, ValueError):  # missing, or damaged by something outside this program
            return None
        if meta.get("version") != PIPELINE_VERSION or (meta.get("landmarks") and not has_face):
            return None
        if has_face:
            meta["face_path"] = str(path)
        return meta

    def save(self, digest: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
             face: bytes | None = None) -> dict[str, Any]:
        """Store one entry (``face``: `encode_face`'s bytes); returns the metadata as ``load`` would."""
        path = self.path(digest)
        if not self.folder.exists():  # faces are health data: the cache is owner-only from the start
            from f2b_study.outputs import owner_only

            owner_only(self.folder)
        meta = {**meta, "version": PIPELINE_VERSION, "content_hash": digest}
        if face is not None:
            arrays = {**arrays, FACE_KEY: np.frombuffer(face, dtype=np.uint8)}
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
        if face is not None:
            meta["face_path"] = str(path)
        return meta


FACE_KEY = "face"


def encode_face(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 face, losslessly: a 12-byte header (height, width, channels as little-endian uint32)
    and zstd level 1 (pyarrow's codec) over the rows' differences from the row above, PNG's "Up" filter. As
    small as a PNG of the same face at a third of its time (0.5 ms against 1.6 ms a face: 7% of a photo's
    whole preprocessing), which is why it is not a PNG."""
    import pyarrow as pa

    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    delta = pixels.copy()
    delta[1:] -= pixels[:-1]  # uint8 arithmetic wraps: decode's cumulative sum undoes it exactly
    header = np.array(pixels.shape, dtype="<u4").tobytes()
    return header + pa.Codec("zstd", compression_level=1).compress(delta.tobytes(), asbytes=True)


def decode_face(data: bytes | np.ndarray) -> np.ndarray:
    """`encode_face`'s inverse: the (H, W, 3) uint8 RGB face."""
    import pyarrow as pa

    data = bytes(data) if isinstance(data, np.ndarray) else data
    shape = tuple(int(v) for v in np.frombuffer(data[:12], dtype="<u4"))
    raw = pa.Codec("zstd").decompress(data[12:], decompressed_size=int(np.prod(shape)), asbytes=True)
    return np.cumsum(np.frombuffer(raw, np.uint8).reshape(shape), axis=0, dtype=np.uint8)


def load_face(face_path: str | Path, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A cached standardised face: ((size, size, 3) uint8 RGB, (478, 2) float32 landmarks in that frame).
    The default is the paper's 512 frame; ask for the model's input size (e.g. 224) to skip a second resize."""
    try:
        with np.load(face_path, allow_pickle=False) as data:
            face = np.asarray(data[FACE_KEY])
            landmarks = np.asarray(data["landmarks"], dtype=np.float32)
        stored = decode_face(face)
    except (OSError, KeyError, ValueError) as error:
        raise FileNotFoundError(f"{face_path}: not a cached face ({error}); rerun f2b-study preprocess") from None
    rgb = expand_face(stored, landmarks, size)
    return rgb, to_frame(landmarks, size).astype(np.float32)


def load_measurements(face_path: str | Path) -> dict[str, Any]:
    """Everything stored with a cached face but its pixels: landmarks_photo, matrix, affine, ... and `meta`."""
    with np.load(face_path, allow_pickle=False) as data:
        out: dict[str, Any] = {key: np.asarray(data[key]) for key in data.files if key not in ("meta", FACE_KEY)}
        out["meta"] = json.loads(str(data["meta"]))
    return out


def load_faces(face_paths: Sequence[str], size: int, progress: bool = False) -> np.ndarray:
    """Cached faces at ``size`` as one (N, size, size, 3) uint8 array."""
    from tqdm import tqdm

    out = np.empty((len(face_paths), size, size, 3), np.uint8)
    for i, path in enumerate(tqdm(face_paths, desc="loading faces", unit="face", disable=not progress, leave=False)):
        out[i] = load_face(path, size)[0]
    return out
