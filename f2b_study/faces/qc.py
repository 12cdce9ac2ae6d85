"""Quality control of a photo's measurements: every finding named, thresholds and exclusions from [qc].

Findings, in the order a row reports them (the most basic first; `reason` is the first that excludes,
`reasons` lists every one that excludes, `flags` every one that is only recorded):

- unreadable: the file cannot become pixels (empty, truncated, not an image, over the pixel limit);
- no_face: no detector found a face, or the landmarker found no mesh on it;
- multiple_faces: another confident face at least multiple_faces_min_size times the main face's width, or more
  than max_other_faces smaller ones (a crowd, or a large poster face with people in front of it: which face is
  the patient is not clear);
- low_confidence: the main face's detection score < min_detection_score;
- face_too_small: fewer than min_interocular_px pixels between the eye centres;
- not_measurable: a check could not be computed (e.g. the face is mostly outside the photo); it excludes when
  that check would, else it is a flag;
- blurred: sharpness (`measure.sharpness`) < min_sharpness;
- extreme_pose: |yaw| > max_yaw, |pitch| > max_pitch or |roll| > max_roll (roll from the eye line, yaw and
  pitch from the transformation matrix unless the landmarks contradict it, see `pose.py`);
- underexposed / overexposed: the inner face's median luma < min_luma or > max_luma;
- clipped_highlights: a fraction > max_clipped_fraction of the inner face at luma >= 250 (glare, flash);
- low_contrast: the inner face's 5-95% luma range < min_contrast;
- sunglasses: the lens areas' lightness < sunglasses_max_lens_ratio times the cheeks';
- eyeglasses: edges across the nose bridge >= eyeglasses_min_bridge_edges times the cheeks' (not raised
  together with sunglasses);
- forehead_covered: a fraction >= forehead_min_dark of the forehead darker than hair_dark x the cheeks (hair
  over the forehead, a dark hat or band);
- eyes_closed: both eyeBlink blendshapes >= eyes_closed_min_blink;
- non_neutral_expression: one of expression_blendshapes >= expression_max;
- busy_background: edge density beside the head >= busy_background_min_edges (not a plain wall);
- other_face: a smaller second face (its width ratio to the main face in `other_face_ratio`).

The first six (up to face_too_small, and extreme_pose) always exclude. Each other finding excludes when it is
named in `exclude` (default: blurred and sunglasses), else it is a flag: the photo is kept and the flag recorded.
Thresholds and how they were chosen: docs/quality-control.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

REASONS = ("unreadable", "unsupported_format", "no_face", "multiple_faces", "low_confidence", "face_too_small",
           "not_measurable",
           "blurred", "extreme_pose", "underexposed", "overexposed", "clipped_highlights", "low_contrast",
           "sunglasses", "eyeglasses", "forehead_covered", "eyes_closed", "non_neutral_expression",
           "busy_background", "other_face")
ALWAYS_EXCLUDE = ("unreadable", "unsupported_format", "no_face", "multiple_faces", "low_confidence", "face_too_small",
                  "extreme_pose")
FLAGS = tuple(name for name in REASONS if name not in ALWAYS_EXCLUDE)  # what `exclude` may name
DEFAULT_EXCLUDE = ("blurred", "sunglasses")


def _non_negative(default: float) -> Any:
    return dataclasses.field(default=default, metadata={"min": 0})


@dataclasses.dataclass(frozen=True)
class QCThresholds:
    min_detection_score: float = _non_negative(0.6)
    multiple_faces_min_score: float = _non_negative(0.5)
    # another face at least this fraction of the main face's width
    multiple_faces_min_size: float = _non_negative(0.25)
    max_other_faces: int = _non_negative(1)  # more smaller faces than this: a crowd, not a portrait
    # below it the face is upscaled more than ~3.5x into a 224 model input
    min_interocular_px: float = _non_negative(20.0)
    max_yaw: float = _non_negative(30.0)
    max_pitch: float = _non_negative(25.0)
    # roll is levelled by the alignment; only a sideways-lying head is refused
    max_roll: float = _non_negative(40.0)
    # thresholds below: chosen with scripts/calibrate_qc.py (docs/quality-control.md)
    min_sharpness: float = _non_negative(30.0)
    min_luma: float = _non_negative(50.0)
    max_luma: float = _non_negative(225.0)
    max_clipped_fraction: float = _non_negative(0.02)
    min_contrast: float = _non_negative(50.0)
    sunglasses_max_lens_ratio: float = _non_negative(0.3)
    eyeglasses_min_bridge_edges: float = _non_negative(0.65)
    forehead_min_dark: float = _non_negative(0.2)
    busy_background_min_edges: float = _non_negative(0.04)
    eyes_closed_min_blink: float = _non_negative(0.5)
    expression_max: float = _non_negative(0.5)
    expression_blendshapes: tuple[str, ...] = ("mouthSmileLeft", "mouthSmileRight", "jawOpen", "mouthPucker",
                                               "mouthFunnel")
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    # older spellings, still honoured: true adds the finding to `exclude`
    exclude_eyes_closed: bool = False
    exclude_non_neutral_expression: bool = False

    def __post_init__(self) -> None:
        unknown = [name for name in self.exclude if name not in FLAGS]
        if unknown:
            raise ValueError(f"qc.exclude: {unknown[0]!r} is not a check that can exclude; one of {list(FLAGS)}")

    def excludes(self, name: str) -> bool:
        return (name in ALWAYS_EXCLUDE or name in self.exclude
                or (name == "eyes_closed" and self.exclude_eyes_closed)
                or (name == "non_neutral_expression" and self.exclude_non_neutral_expression))

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str | Path = "[qc]") -> QCThresholds:
        """Thresholds from a config's [qc] section; unknown keys and wrong types are input errors."""
        from f2b_study.sections import parse_section

        return parse_section(cls, values, source=source, section="qc")


@dataclasses.dataclass(frozen=True)
class QCResult:
    status: str  # ok | excluded
    reason: str | None  # the first of `reasons`, None when kept
    detail: str | None  # every finding's measurement in words, excluding ones first
    flags: tuple[str, ...]  # findings recorded without excluding
    n_faces: int  # the main face and every other confident detection
    reasons: tuple[str, ...] = ()  # every finding that excludes, most basic first
    other_face_ratio: float | None = None  # the largest other face's width / the main face's


def other_faces(detections: list[list[float]], thresholds: QCThresholds) -> list[float]:
    """Width ratios to the main face of every other confident detection, largest first. ``detections`` are
    [score, x, y, width, height], best score first (the main face)."""
    if not detections:
        return []
    main_width = max(detections[0][3], 1e-6)
    ratios = [d[3] / main_width for d in detections[1:] if d[0] >= thresholds.multiple_faces_min_score]
    return sorted(ratios, reverse=True)


def count_faces(detections: list[list[float]], thresholds: QCThresholds) -> int:
    """Faces in the photo: the main face plus every other confident detection, whatever its size."""
    return len(other_faces(detections, thresholds)) + 1 if detections else 0


def _findings(record: dict[str, Any], t: QCThresholds, ratios: list[float]) -> list[tuple[str, str]]:
    """(name, detail) of every check that fails on a photo with a face mesh, in REASONS order."""
    found: list[tuple[str, str]] = []
    m = record.get("measures") or {}

    def check(name: str, key: str, failed: Any, describe: Any, absent_passes: bool = False) -> None:
        value = m.get(key)
        if value is None and absent_passes and "why_not" not in m:
            return
        if value is None:
            found.append(("not_measurable", f"{name}: {key} could not be measured"
                          f" ({m.get('why_not', 'too little of the face inside the photo')})"))
        elif failed(value):
            found.append((name, describe(value)))

    score = record.get("score")
    score = record["detections"][0][0] if score is None else score
    if score < t.min_detection_score:
        found.append(("low_confidence", f"detection score {score:.2f} < {t.min_detection_score}"))
    interocular = record["interocular_px"]
    if interocular < t.min_interocular_px:
        found.append(("face_too_small", f"{interocular:.1f} px between the eyes < {t.min_interocular_px}"))
    if record.get("measures") is not None:  # entries of older pipeline versions have none
        check("blurred", "sharpness", lambda v: v < t.min_sharpness,
              lambda v: f"sharpness {v:.1f} < {t.min_sharpness:g}")
    limits = (("yaw", t.max_yaw), ("pitch", t.max_pitch), ("roll", t.max_roll))
    beyond = [f"{name} {record[name]:+.1f}° (limit ±{limit:g}°)" for name, limit in limits
              if abs(record[name]) > limit]
    if beyond:
        source = " (from the landmarks: the transformation matrix disagreed)" \
            if record.get("pose_source") == "landmarks" else ""
        found.append(("extreme_pose", "; ".join(beyond) + source))
    if record.get("measures") is not None:
        check("underexposed", "luma_median", lambda v: v < t.min_luma,
              lambda v: f"face median luma {v:.0f} < {t.min_luma:g}")
        check("overexposed", "luma_median", lambda v: v > t.max_luma,
              lambda v: f"face median luma {v:.0f} > {t.max_luma:g}")
        check("clipped_highlights", "clipped_fraction", lambda v: v > t.max_clipped_fraction,
              lambda v: f"{v:.0%} of the face clipped white > {t.max_clipped_fraction:.0%}")
        check("low_contrast", "contrast", lambda v: v < t.min_contrast,
              lambda v: f"face luma range {v:.0f} < {t.min_contrast:g}")
        check("sunglasses", "lens_luma_ratio", lambda v: v < t.sunglasses_max_lens_ratio,
              lambda v: f"eye areas at {v:.2f} of the cheeks' lightness < {t.sunglasses_max_lens_ratio:g}")
        if not any(name == "sunglasses" for name, _ in found):
            check("eyeglasses", "bridge_edges", lambda v: v >= t.eyeglasses_min_bridge_edges,
                  lambda v: f"nose-bridge edges {v:.2f} x the cheeks' >= {t.eyeglasses_min_bridge_edges:g}")
        check("forehead_covered", "forehead_dark", lambda v: v >= t.forehead_min_dark,
              lambda v: f"{v:.0%} of the forehead much darker than the cheeks >= {t.forehead_min_dark:.0%}")
    blend = record.get("blendshapes") or {}
    blink = min(blend.get("eyeBlinkLeft", 0.0), blend.get("eyeBlinkRight", 0.0))
    if blend and blink >= t.eyes_closed_min_blink:
        found.append(("eyes_closed", f"eyeBlink {blink:.2f} >= {t.eyes_closed_min_blink}"))
    strongest = max(t.expression_blendshapes, key=lambda name: blend.get(name, 0.0), default=None)
    if strongest is not None and blend.get(strongest, 0.0) >= t.expression_max:
        found.append(("non_neutral_expression", f"{strongest} {blend[strongest]:.2f} >= {t.expression_max}"))
    if record.get("measures") is not None:
        check("busy_background", "background_edges", lambda v: v >= t.busy_background_min_edges,
              lambda v: f"background edge density {v:.3f} >= {t.busy_background_min_edges:g}",
              absent_passes=True)  # a crop that shows no background has no busy background
    if ratios:
        found.append(("other_face", f"another face {ratios[0]:.2f} x the main face's width"))
    order = {name: i for i, name in enumerate(REASONS)}
    return sorted(found, key=lambda item: order[item[0]])  # stable: two not_measurable keep their order


def evaluate(record: dict[str, Any], thresholds: QCThresholds) -> QCResult:
    """QC of one photo's measurements (a cache record's metadata, see `cache.py`)."""
    t = thresholds
    if record.get("error"):
        return QCResult("excluded", record["error"], record.get("detail"), (), 0, (record["error"],))
    detections = record.get("detections") or []
    if not detections:
        return QCResult("excluded", "no_face", "no detector found a face", (), 0, ("no_face",))
    ratios = other_faces(detections, t)
    n_faces = len(ratios) + 1
    largest = round(ratios[0], 3) if ratios else None
    comparable = [r for r in ratios if r >= t.multiple_faces_min_size]
    if comparable or len(ratios) > t.max_other_faces:
        scores = ", ".join(f"{d[0]:.2f}" for d in detections[:n_faces])
        detail = (f"{n_faces} faces (detection scores {scores}; other faces' width ratios "
                  f"{', '.join(f'{r:.2f}' for r in ratios)})")
        return QCResult("excluded", "multiple_faces", detail, (), n_faces, ("multiple_faces",), largest)
    if not record.get("landmarks"):
        return QCResult("excluded", "no_face", f"a face was detected (score {detections[0][0]:.2f}) but no "
                        "landmark mesh fits it", (), n_faces, ("no_face",), largest)
    found = _findings(record, t, ratios)
    # not_measurable excludes when the check it stands for would
    def excludes(name: str, detail: str) -> bool:
        return t.excludes(detail.split(":", 1)[0] if name == "not_measurable" else name)

    reasons = [(name, detail) for name, detail in found if excludes(name, detail)]
    flags = [(name, detail) for name, detail in found if not excludes(name, detail)]
    detail = "; ".join(f"{name}: {text}" if len(found) > 1 else text for name, text in reasons + flags) or None
    names = tuple(dict.fromkeys(name for name, _ in reasons))
    flag_names = tuple(dict.fromkeys(name for name, _ in flags))
    if reasons:
        return QCResult("excluded", names[0], detail, flag_names, n_faces, names, largest)
    return QCResult("ok", None, detail, flag_names, n_faces, (), largest)
