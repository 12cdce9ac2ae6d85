"""Face standardisation (docs/methods.md): MediaPipe landmarks, quality control, facial regions, cache, workers.

Light to import (numpy only); mediapipe, OpenCV and matplotlib load inside the functions that need them.

    load_face(face_path) -> (512x512x3 uint8 RGB, 478x2 float32 landmarks)     # a cached standardised face
    face_mask(landmarks, size) -> (size, size) bool                              # the face ellipse
    region_masks(landmarks, size) -> (5, size, size) bool, in REGIONS order      # disjoint, cover the ellipse
    preprocess_photos(photos, out_dir, workers=...) -> PreprocessResult          # f2b_study.faces.preprocess
"""

from f2b_study.faces.cache import load_face, load_measurements
from f2b_study.faces.qc import FLAGS, REASONS, QCThresholds
from f2b_study.faces.regions import REGION_LANDMARKS, REGIONS, region_labels, region_masks
from f2b_study.faces.standardise import SIZE, face_ellipse, face_mask
from f2b_study.faces.version import PIPELINE_VERSION

__all__ = [
    "FLAGS", "PIPELINE_VERSION", "REASONS", "REGIONS", "REGION_LANDMARKS", "SIZE", "QCThresholds", "face_ellipse",
    "face_mask", "load_face", "load_measurements", "region_labels", "region_masks",
]
