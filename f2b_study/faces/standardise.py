"""The paper's standardised face (Fig. 1): eye line horizontal, elliptical face-oval region on black, 512×512.

One similarity transform (rotation about the eye midpoint, uniform scale, shift) takes the photo to the output
frame: it levels the line between the eye centres (the mean of each eye's 16 contour landmarks, which unlike
the iris centre does not move with the gaze), then scales and centres the ellipse that encloses the face-oval
landmarks so that it fills the frame's height less MARGIN on each side. Everything outside that ellipse is
black. The same transform moves the 478 landmarks into the frame.

The cache stores the face at the photo's own resolution (`compact_face`, never upscaled) and `expand_face`
brings it to 512 (or straight to a model's 224) with the exact ellipse of that frame. Coordinates follow
OpenCV: pixel (row i, column j) is centred on the point x=j, y=i.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from f2b_study.faces import mesh

SIZE = 512
MARGIN = 0.03  # fraction of the frame left black above and below the face ellipse


@dataclasses.dataclass
class StandardFace:
    rgb: np.ndarray  # (SIZE, SIZE, 3) uint8, black outside the face ellipse
    landmarks: np.ndarray  # (478, 2) float32, pixel coordinates in the output frame (x right, y down)
    affine: np.ndarray  # (2, 3) float64: photo pixels -> frame pixels
    eye_angle_deg: float  # eye-line angle in the photo (positive: the subject's left eye lower in the image)
    interocular_px: float  # distance between the eye centres in photo pixels
    scale: float  # frame pixels per photo pixel


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) eye centres (x, y): the means of the subject's right and left eye-contour landmarks."""
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    return points[list(mesh.RIGHT_EYE)].mean(axis=0), points[list(mesh.LEFT_EYE)].mean(axis=0)


def eye_line_angle(landmarks: np.ndarray) -> float:
    """Angle of the line from the right to the left eye centre, degrees; 0 when level."""
    right, left = eye_centres(landmarks)
    dx, dy = left - right
    return float(np.degrees(np.arctan2(dy, dx)))


def enclosing_ellipse(points: np.ndarray) -> tuple[float, float, float, float]:
    """Axis-aligned ellipse (cx, cy, semi-axis x, semi-axis y) centred on the points' bounding box, with the
    bounding box's aspect ratio, just large enough to hold every point. Written by hand rather than
    cv2.fitEllipse because a least-squares fit cuts off part of the chin or forehead."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    semi = np.maximum((high - low) / 2, 1e-6)
    reach = np.sqrt((((points - centre) / semi) ** 2).sum(axis=1)).max()
    semi = semi * max(reach, 1.0)
    return float(centre[0]), float(centre[1]), float(semi[0]), float(semi[1])


def to_frame(points: np.ndarray, size: int) -> np.ndarray:
    """Points of the SIZE frame in a ``size`` frame, with OpenCV's pixel-centre convention (pixel (i, j) is
    centred on x=j, y=i), so that they match an image resized with cv2.resize."""
    points = np.asarray(points, dtype=np.float64)[..., :2]
    return points if size == SIZE else (points + 0.5) * (size / SIZE) - 0.5


def face_ellipse(landmarks: np.ndarray, size: int = SIZE) -> tuple[float, float, float, float]:
    """The face ellipse (cx, cy, semi-axis x, semi-axis y) of landmarks given in the SIZE frame, in a ``size``
    frame (e.g. 224 for a model's input)."""
    return enclosing_ellipse(to_frame(np.asarray(landmarks)[list(mesh.FACE_OVAL)], size))


def _inside_ellipse(size: int, ellipse: tuple[float, float, float, float], grow: float = 0.0) -> np.ndarray:
    cx, cy, ax, ay = ellipse
    grid = np.arange(size, dtype=np.float64)
    return ((grid[:, None] - cy) / (ay + grow)) ** 2 + ((grid[None, :] - cx) / (ax + grow)) ** 2 <= 1.0


def face_mask(landmarks: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(size, size) bool mask of the face ellipse, for landmarks given in the SIZE frame."""
    return _inside_ellipse(size, face_ellipse(landmarks, size))


def alignment(landmarks: np.ndarray, size: int = SIZE, margin: float = MARGIN
              ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The similarity transform of the standardised face: (affine (2, 3) photo -> ``size`` frame, landmarks in
    that frame (478, 2) float32, eye-line angle in the photo in degrees, interocular distance in photo px)."""
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    right, left = eye_centres(points)
    angle = eye_line_angle(points)
    theta = np.radians(-angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pivot = (right + left) / 2
    levelled = (points - pivot) @ rotation.T
    cx, cy, ax, ay = enclosing_ellipse(levelled[list(mesh.FACE_OVAL)])
    scale = size * (1 - 2 * margin) / (2 * max(ax, ay))
    linear = scale * rotation
    shift = np.array([size / 2, size / 2]) - linear @ pivot - scale * np.array([cx, cy])
    affine = np.hstack([linear, shift[:, None]])
    framed = (points @ linear.T + shift).astype(np.float32)
    return affine, framed, angle, float(np.linalg.norm(left - right))


def warp(rgb: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """The photo resampled through ``affine`` into a (size, size, 3) frame, black where the photo ends."""
    import cv2

    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    source, source_affine = rgb, affine
    if scale < 0.5:  # shrink with area averaging first: a bilinear warp alone would alias large photos
        factor = scale * 1.5
        source = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        source_affine = np.hstack([affine[:, :2] / factor, affine[:, 2:]])
    return cv2.warpAffine(np.ascontiguousarray(source), source_affine, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def apply_mask(rgb: np.ndarray, landmarks: np.ndarray, grow: float = 0.0) -> np.ndarray:
    """``rgb`` (size, size, 3) blacked out outside the face ellipse of ``landmarks`` (given in the SIZE frame),
    in place; ``grow`` widens the ellipse by that many pixels of the ``size`` frame."""
    size = rgb.shape[0]
    inside = _inside_ellipse(size, face_ellipse(landmarks, size), grow)
    rgb *= inside[:, :, None].astype(np.uint8)  # a multiply is several times faster than boolean indexing
    return rgb


def standardise(rgb: np.ndarray, landmarks: np.ndarray, margin: float = MARGIN) -> StandardFace:
    """The standardised SIZE x SIZE face of one photo, given its (478, 2 or 3) landmarks in photo pixels."""
    affine, framed, angle, interocular = alignment(landmarks, SIZE, margin)
    face = apply_mask(warp(rgb, affine, SIZE), framed)
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    return StandardFace(rgb=face, landmarks=framed, affine=affine, eye_angle_deg=angle, interocular_px=interocular,
                        scale=scale)


def compact_face(rgb: np.ndarray, affine: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The standardised face at the photo's own resolution, never upscaled: what the cache stores. Most faces
    are smaller than 512 px in their photo, and a stored upscaled copy would only cost disk and PNG time (4-5x
    for the demo's portraits). ``expand_face`` resizes it to any frame size. ``affine`` and ``landmarks`` are
    those of the SIZE frame (`alignment`)."""
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    stored = SIZE if scale <= 1 else max(32, math.ceil(SIZE / scale))
    k = SIZE / stored
    # the SIZE-frame transform seen through cv2.resize's pixel-centre convention (see `to_frame`)
    stored_affine = np.hstack([affine[:, :2] / k, (affine[:, 2:] + 0.5) / k - 0.5])
    # a little wider than the ellipse: the exact edge is cut again after resizing (`expand_face`), without a
    # dark rim; drawn with cv2.ellipse, ten times faster than the exact per-pixel test `apply_mask` makes
    import cv2

    face = warp(rgb, stored_affine, stored)
    cx, cy, ax, ay = face_ellipse(landmarks, stored)
    mask = np.zeros((stored, stored), np.uint8)
    fixed = 16  # cv2's sub-pixel drawing: coordinates in 1/16 px
    cv2.ellipse(mask, (round(cx * fixed), round(cy * fixed)), (round((ax + 2.0) * fixed), round((ay + 2.0) * fixed)),
                0, 0, 360, 1, -1, cv2.LINE_8, 4)
    return face * mask[:, :, None]


def expand_face(stored: np.ndarray, landmarks: np.ndarray, size: int = SIZE) -> np.ndarray:
    """A stored face (`compact_face`) resized to ``size`` x ``size`` with the exact face ellipse of that frame."""
    import cv2

    if stored.shape[0] != size:
        interpolation = cv2.INTER_LINEAR if size > stored.shape[0] else cv2.INTER_AREA
        stored = cv2.resize(stored, (size, size), interpolation=interpolation)
    else:
        stored = stored.copy()
    return apply_mask(stored, landmarks)
