"""Face detection and the 478-point mesh with MediaPipe Tasks (IMAGE mode), one analyser per process.

Flow for one photo (docs/methods.md, Faces and quality control):
1. BlazeFace short-range detector (the one inside the landmarker bundle): scores and boxes of every face.
   When it finds none, the BlazeFace full-range sparse detector (the paper's detector) looks for small or
   distant faces.
2. FaceLandmarker (num_faces=2, blendshapes and facial transformation matrix on) on the whole photo; the mesh
   kept is the one that lies on the best detection. When it finds no mesh although a detector found a face
   (small or distant faces), the face is cut out with a margin, scaled up to CROP_SIZE and the landmarker runs
   again on that crop; the landmarks are mapped back to the photo's pixels.
Nothing here decides quality: the measurements go to `qc.py`, which applies the configured thresholds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from f2b_study.faces import assets

DETECTION_FLOOR = 0.3  # detections below this score are not faces at all (QC's low_confidence sits above it)
CROP_MARGIN = 0.6  # crop around a detector box: this fraction of the box's side added on each side
CROP_SIZE = 384  # the crop is resampled to this square size before the landmarker reruns on it


@dataclasses.dataclass
class Detection:
    score: float
    box: tuple[float, float, float, float]  # x, y, width, height in photo pixels

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2


@dataclasses.dataclass
class FaceAnalysis:
    """What the models saw in one upright RGB photo."""

    image_size: tuple[int, int]  # width, height
    detector: str | None  # 'short_range' | 'full_range' | None (no detection above DETECTION_FLOOR)
    detections: list[Detection]  # best score first
    landmarks: np.ndarray | None  # (478, 3) float32: x, y in photo pixels, z in the same scale
    blendshapes: dict[str, float]
    matrix: np.ndarray | None  # (4, 4) facial transformation matrix (canonical face -> camera, cm)
    via_crop: bool = False
    crop_score: float | None = None  # short-range detector's score on the crop, when the crop was used

    @property
    def score(self) -> float | None:
        """The face's detection score. For a face found through a crop, the short-range detector's score on
        that crop, where the face has a normal size: the full-range detector scores small faces far lower
        (0.3-0.7 for faces it finds), which would make one threshold mean two things."""
        if self.crop_score is not None:
            return self.crop_score
        return self.detections[0].score if self.detections else None


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what TFLite/glog print straight to file descriptor 2 while models load (dozens of lines per
    model); Python exceptions still carry their messages."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceAnalyzer:
    """Short-range + full-range detectors and the FaceLandmarker, created once and reused for many photos."""

    def __init__(self) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        self.calls = 0  # photos analysed by the models (tests count cache hits with it)
        with quiet_native_stderr():
            self._landmarker = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_buffer=assets.model_bytes(assets.LANDMARKER)),
                running_mode=vision.RunningMode.IMAGE, num_faces=2,
                min_face_detection_confidence=DETECTION_FLOOR, min_face_presence_confidence=0.5,
                output_face_blendshapes=True, output_facial_transformation_matrixes=True))
            self._short = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=assets.short_range_detector_bytes()),
                running_mode=vision.RunningMode.IMAGE, min_detection_confidence=DETECTION_FLOOR))
            self._full = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=assets.model_bytes(assets.FULL_RANGE_DETECTOR)),
                running_mode=vision.RunningMode.IMAGE, min_detection_confidence=DETECTION_FLOOR))
            # the first inference prints its own native log lines: run it here, silenced
            blank = np.zeros((64, 64, 3), np.uint8)
            self._landmarker.detect(_mp_image(blank))
            self._short.detect(_mp_image(blank))
            self._full.detect(_mp_image(blank))

    def close(self) -> None:
        with quiet_native_stderr():
            for task in (self._landmarker, self._short, self._full):
                task.close()

    def __enter__(self) -> FaceAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def analyze(self, rgb: np.ndarray) -> FaceAnalysis:
        """Detect, then landmark, one upright (H, W, 3) uint8 RGB photo."""
        self.calls += 1
        rgb = np.ascontiguousarray(rgb)
        height, width = rgb.shape[:2]
        image = _mp_image(rgb)
        detector, detections = "short_range", _detections(self._short.detect(image))
        if not detections:
            detector, detections = "full_range", _detections(self._full.detect(image))
        if not detections:
            return FaceAnalysis((width, height), None, [], None, {}, None)
        result = self._landmarker.detect(image)
        face = _pick_face(result, detections[0], width, height)
        via_crop = False
        if face is None:
            face = self._landmark_crop(rgb, detections[0])
            via_crop = face is not None
        if face is None:
            return FaceAnalysis((width, height), detector, detections, None, {}, None)
        landmarks, blendshapes, matrix, crop_score = face if via_crop else (*face, None)
        return FaceAnalysis((width, height), detector, detections, landmarks, blendshapes, matrix, via_crop,
                            crop_score)

    def _landmark_crop(self, rgb: np.ndarray, detection: Detection) -> tuple[Any, ...] | None:
        """Rerun the landmarker on a scaled-up square crop around ``detection``: (landmarks back in photo
        pixels, blendshapes, matrix, short-range score on the crop or None), or None without a mesh."""
        import cv2

        _, _, w, h = detection.box
        cx, cy = detection.center
        side = max(w, h) * (1 + 2 * CROP_MARGIN)
        scale = CROP_SIZE / side
        to_crop = np.array([[scale, 0, CROP_SIZE / 2 - scale * cx], [0, scale, CROP_SIZE / 2 - scale * cy]])
        source, source_affine = rgb, to_crop
        if scale < 0.5:  # shrink with area averaging first: a bilinear warp alone would alias
            source = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            source_affine = np.array([[1.0, 0, to_crop[0, 2]], [0, 1.0, to_crop[1, 2]]])
        crop = cv2.warpAffine(source, source_affine, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        crop_image = _mp_image(crop)
        result = self._landmarker.detect(crop_image)
        crop_detection = Detection(1.0, (0.0, 0.0, float(CROP_SIZE), float(CROP_SIZE)))
        face = _pick_face(result, crop_detection, CROP_SIZE, CROP_SIZE)
        if face is None:
            return None
        landmarks, blendshapes, matrix = face
        landmarks = landmarks.copy()
        landmarks[:, 0] = (landmarks[:, 0] - to_crop[0, 2]) / scale
        landmarks[:, 1] = (landmarks[:, 1] - to_crop[1, 2]) / scale
        landmarks[:, 2] = landmarks[:, 2] / scale
        on_crop = _detections(self._short.detect(crop_image))
        return landmarks, blendshapes, matrix, (on_crop[0].score if on_crop else None)


def _mp_image(rgb: np.ndarray) -> Any:
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))


def _detections(result: Any) -> list[Detection]:
    found = []
    for item in result.detections:
        score = max((c.score for c in item.categories), default=0.0)
        box = item.bounding_box
        if score >= DETECTION_FLOOR and box.width > 0 and box.height > 0:
            found.append(Detection(float(score), (float(box.origin_x), float(box.origin_y),
                                                  float(box.width), float(box.height))))
    return sorted(found, key=lambda d: -d.score)


def _pick_face(result: Any, detection: Detection, width: int, height: int) -> tuple[Any, ...] | None:
    """The landmarker's face whose mesh centre is nearest the detection's centre, or None when it found none
    there (no mesh at all, or only meshes centred outside the detection's box: another face)."""
    if not result.face_landmarks:
        return None
    cx, cy = detection.center
    meshes = [np.array([(p.x * width, p.y * height, p.z * width) for p in points], dtype=np.float32)
              for points in result.face_landmarks]
    centres = [(m[:, :2].min(axis=0) + m[:, :2].max(axis=0)) / 2 for m in meshes]
    best = min(range(len(meshes)), key=lambda i: (centres[i][0] - cx) ** 2 + (centres[i][1] - cy) ** 2)
    _, _, box_width, box_height = detection.box
    if abs(centres[best][0] - cx) > box_width / 2 or abs(centres[best][1] - cy) > box_height / 2:
        return None
    blendshapes = ({c.category_name: float(c.score) for c in result.face_blendshapes[best]}
                   if result.face_blendshapes else {})
    matrix = (np.asarray(result.facial_transformation_matrixes[best], dtype=np.float64)
              if result.facial_transformation_matrixes else None)
    return meshes[best], blendshapes, matrix
