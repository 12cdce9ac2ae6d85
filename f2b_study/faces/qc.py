"""Quality control of a standardised face: each failure a named reason, thresholds from the config's [qc].

Reasons, checked in this order (the first that applies is the row's reason):

- unreadable: the file cannot become pixels (empty, truncated, not an image, or over the pixel limit that
  stops decompression bombs; `detail` says which);
- no_face: no detector found a face, or the landmarker found no mesh on it;
- multiple_faces: a second face with score >= multiple_faces_min_score whose box is at least
  multiple_faces_min_size times the main face's width (smaller ones, e.g. a face on a poster, are ignored);
- low_confidence: the main face's detection score < min_detection_score (for small faces found by the
  full-range detector: the short-range detector's score on the scaled-up crop, see `landmarker.py`);
- face_too_small: fewer than min_interocular_px pixels between the eye centres in the photo;
- extreme_pose: |yaw| > max_yaw, |pitch| > max_pitch or |roll| > max_roll (degrees, `pose.py`);
- eyes_closed: both eyeBlink blendshapes >= eyes_closed_min_blink;
- non_neutral_expression: one of expression_blendshapes >= expression_max (default: smile, open jaw, pucker).

eyes_closed and non_neutral_expression are flags by default: recorded in `flags`, the photo kept. They become
exclusions with `exclude_eyes_closed = true` / `exclude_non_neutral_expression = true` (the paper asks for open
eyes and a neutral face; the demo's official portraits mostly smile).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

REASONS = ("unreadable", "no_face", "multiple_faces", "low_confidence", "face_too_small", "extreme_pose",
           "eyes_closed", "non_neutral_expression")
FLAGS = ("eyes_closed", "non_neutral_expression")


def _at_least_zero(default: float) -> Any:
    return dataclasses.field(default=default, metadata={"min": 0})


@dataclasses.dataclass(frozen=True)
class QCThresholds:
    min_detection_score: float = _at_least_zero(0.6)
    multiple_faces_min_score: float = _at_least_zero(0.5)
    multiple_faces_min_size: float = _at_least_zero(0.25)
    # below it the face is upscaled more than ~3.5x into a 224 model input
    min_interocular_px: float = _at_least_zero(20.0)
    max_yaw: float = _at_least_zero(30.0)
    max_pitch: float = _at_least_zero(25.0)
    # roll is levelled by the alignment; only a sideways-lying head is refused
    max_roll: float = _at_least_zero(40.0)
    eyes_closed_min_blink: float = _at_least_zero(0.5)
    expression_max: float = _at_least_zero(0.5)
    expression_blendshapes: tuple[str, ...] = ("mouthSmileLeft", "mouthSmileRight", "jawOpen", "mouthPucker",
                                               "mouthFunnel")
    exclude_eyes_closed: bool = False
    exclude_non_neutral_expression: bool = False

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str | Path = "[qc]") -> QCThresholds:
        """Thresholds from a config's [qc] section; unknown keys and wrong types are input errors."""
        from f2b_study.sections import parse_section

        return parse_section(cls, values, source=source, section="qc")


@dataclasses.dataclass(frozen=True)
class QCResult:
    status: str  # ok | excluded
    reason: str | None  # one of REASONS when excluded
    detail: str | None  # the measurement behind the reason, in words
    flags: tuple[str, ...]  # FLAGS raised (also when they do not exclude)
    n_faces: int


def count_faces(detections: list[list[float]], thresholds: QCThresholds) -> int:
    """Faces in the photo: the main (best) detection plus every other detection that is confident and large
    enough. ``detections`` are [score, x, y, width, height], best first."""
    if not detections:
        return 0
    main_width = detections[0][3]
    others = [d for d in detections[1:] if d[0] >= thresholds.multiple_faces_min_score
              and d[3] >= thresholds.multiple_faces_min_size * main_width]
    return 1 + len(others)


def evaluate(record: dict[str, Any], thresholds: QCThresholds) -> QCResult:
    """QC of one photo's measurements (a cache record's metadata, see `cache.py`)."""
    t = thresholds
    if record.get("error"):
        return QCResult("excluded", record["error"], record.get("detail"), (), 0)
    detections = record.get("detections") or []
    n_faces = count_faces(detections, t)
    if not detections:
        return QCResult("excluded", "no_face", "no detector found a face", (), 0)
    if n_faces > 1:
        scores = ", ".join(f"{d[0]:.2f}" for d in detections[:n_faces])
        return QCResult("excluded", "multiple_faces", f"{n_faces} faces (detection scores {scores})", (), n_faces)
    if not record.get("landmarks"):
        return QCResult("excluded", "no_face", f"a face was detected (score {detections[0][0]:.2f}) but no "
                        "landmark mesh fits it", (), n_faces)

    flags: list[str] = []
    flag_detail: dict[str, str] = {}
    blend = record.get("blendshapes") or {}
    blink = min(blend.get("eyeBlinkLeft", 0.0), blend.get("eyeBlinkRight", 0.0))
    if blend and blink >= t.eyes_closed_min_blink:
        flags.append("eyes_closed")
        flag_detail["eyes_closed"] = f"eyeBlink {blink:.2f} >= {t.eyes_closed_min_blink}"
    strongest = max(t.expression_blendshapes, key=lambda name: blend.get(name, 0.0), default=None)
    if strongest is not None and blend.get(strongest, 0.0) >= t.expression_max:
        flags.append("non_neutral_expression")
        flag_detail["non_neutral_expression"] = f"{strongest} {blend[strongest]:.2f} >= {t.expression_max}"

    def excluded(reason: str, detail: str) -> QCResult:
        return QCResult("excluded", reason, detail, tuple(flags), n_faces)

    score = record.get("score")
    score = detections[0][0] if score is None else score
    if score < t.min_detection_score:
        return excluded("low_confidence", f"detection score {score:.2f} < {t.min_detection_score}")
    interocular = record["interocular_px"]
    if interocular < t.min_interocular_px:
        return excluded("face_too_small", f"{interocular:.1f} px between the eyes < {t.min_interocular_px}")
    limits = (("yaw", t.max_yaw), ("pitch", t.max_pitch), ("roll", t.max_roll))
    beyond = [f"{name} {record[name]:+.1f}° (limit ±{limit:g}°)" for name, limit in limits
              if abs(record[name]) > limit]
    if beyond:
        return excluded("extreme_pose", "; ".join(beyond))
    if "eyes_closed" in flags and t.exclude_eyes_closed:
        return excluded("eyes_closed", flag_detail["eyes_closed"])
    if "non_neutral_expression" in flags and t.exclude_non_neutral_expression:
        return excluded("non_neutral_expression", flag_detail["non_neutral_expression"])
    return QCResult("ok", None, None, tuple(flags), n_faces)
