"""The face models shipped inside the package, each pinned by its sha256 (checked before every load)."""

from __future__ import annotations

import hashlib
import zipfile
from functools import cache
from pathlib import Path

from f2b_study.errors import InputError

ASSETS = Path(__file__).resolve().parent.parent / "assets"

LANDMARKER = "face_landmarker.task"
FULL_RANGE_DETECTOR = "face_detection_full_range_sparse.tflite"
SHA256 = {
    LANDMARKER: "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    FULL_RANGE_DETECTOR: "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
}
SHORT_RANGE_MEMBER = "face_detector.tflite"  # BlazeFace short-range, inside the landmarker bundle


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def model_bytes(name: str, folder: Path = ASSETS) -> bytes:
    """The model file's bytes after its sha256 matched the pinned one; InputError when it is missing or altered."""
    if name not in SHA256:
        raise ValueError(f"unknown model {name!r}")
    path = folder / name
    if not path.is_file():
        raise InputError.at(path, expected="the face model shipped with f2b-study (reinstall the package)",
                            show_value=False)
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != SHA256[name]:
        raise InputError.at(path, value=f"sha256 {found}",
                            expected=f"sha256 {SHA256[name]} (the file was altered or corrupted; reinstall)")
    return data


@cache
def short_range_detector_bytes(folder: Path = ASSETS) -> bytes:
    """The BlazeFace short-range detector, read from the checked landmarker bundle (a zip archive)."""
    import io

    with zipfile.ZipFile(io.BytesIO(model_bytes(LANDMARKER, folder))) as bundle:
        return bundle.read(SHORT_RANGE_MEMBER)
