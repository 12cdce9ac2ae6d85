"""Pixel measurements behind the quality checks (sharpness, exposure, eyewear, occlusion, background).

Everything here is threshold-free: the numbers go into the cache entry's metadata and `qc.py` applies the
study's [qc] thresholds on reading, so changing a threshold never recomputes a photo.

Face statistics are computed on the stored compact face (`standardise.compact_face`: already levelled and cut
to the face ellipse) brought to one fixed frame of FRAME x FRAME pixels, where the eye distance is about 37 px
whatever the photo's resolution; background statistics on the photo shrunk to at most BACKGROUND_SIDE pixels.
So the cost per photo is a fraction of a millisecond to a few milliseconds, never proportional to the photo.

Regions are polygons over MediaPipe's mesh indices ("right" = the subject's right): cheeks (the skin
reference), the eyes and their lids, the nose bridge, and the forehead. Pixels that lie outside the photo (a
face cut by the photo's edge is black there) are left out of every statistic; a statistic with too few pixels
left is None, and `qc.py` names that (`not_measurable`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from f2b_study.faces import mesh
from f2b_study.faces.standardise import SIZE, face_ellipse, to_frame

FRAME = 128  # measurement frame of the region statistics (the standardised face at 128 px: eye distance ~37 px)
# Sharpness is measured on the stored face brought to SHARPNESS_FRAME (eye distance ~37 px), or at its own
# resolution when it is smaller: never scaled up, since upscaling reads a small but sharp face as a blurred one
# (face size is face_too_small's business, not sharpness's). Sharp natural images keep about the same
# Laplacian-to-contrast ratio across scales, blurred ones lose it.
SHARPNESS_FRAME = 128
INNER = 0.85  # the face statistics use the face ellipse shrunk to this fraction: skin and features, no rim
MIN_PIXELS = 40  # fewer valid pixels in a region: that statistic is not measurable
BACKGROUND_SIDE = 160  # the photo's longer side for the background statistics
CLIP_HIGH = 250  # luma at or above it: a clipped highlight
CLIP_LOW = 5  # luma at or below it: crushed shadow
GLARE = 240  # sharpness leaves out pixels this bright and their neighbours (a flat glare spot has no detail)

# region polygons (convex hulls of these landmarks)
RIGHT_CHEEK = (116, 117, 118, 101, 36, 205, 187, 123, 50)
LEFT_CHEEK = (345, 346, 347, 330, 266, 425, 411, 352, 280)
NOSE_BRIDGE = (193, 168, 417, 351, 6, 122)
FOREHEAD = (10, 338, 297, 332, 284, 109, 67, 103, 54, 151, 108, 69, 104, 68, 337, 299, 333, 298)
BROWS_TOP = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)


def _hull_mask(points: np.ndarray, indices: tuple[int, ...], size: int) -> np.ndarray:
    import cv2

    mask = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.round(points[list(indices)]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def _inside_photo(affine: np.ndarray, photo_size: tuple[int, int], size: int,
                  box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """(size, size) bool: frame pixels whose source lies inside the photo. ``affine`` maps photo pixels to
    the SIZE frame. When ``box`` (x0, y0, x1, y1 in the ``size`` frame) maps wholly into the photo, everything
    in it is inside and the per-pixel mapping is skipped (the common case: a face well inside its photo)."""
    width, height = photo_size
    linear, shift = affine[:, :2], affine[:, 2]
    inverse = np.linalg.inv(linear)

    def to_photo(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # frame pixel (size frame) -> SIZE frame (to_frame's inverse) -> photo
        gx, gy = (xs + 0.5) * (SIZE / size) - 0.5 - shift[0], (ys + 0.5) * (SIZE / size) - 0.5 - shift[1]
        return inverse[0, 0] * gx + inverse[0, 1] * gy, inverse[1, 0] * gx + inverse[1, 1] * gy

    if box is not None:
        px, py = to_photo(np.array([box[0], box[2], box[0], box[2]]), np.array([box[1], box[1], box[3], box[3]]))
        if (px >= -0.5).all() and (px <= width - 0.5).all() and (py >= -0.5).all() and (py <= height - 0.5).all():
            return np.ones((size, size), bool)
    grid = np.arange(size, dtype=np.float64)
    px, py = to_photo(*np.meshgrid(grid, grid))
    return (px >= -0.5) & (px <= width - 0.5) & (py >= -0.5) & (py <= height - 0.5)


def _percentiles(values: np.ndarray, quantiles: tuple[float, ...]) -> list[float]:
    """Percentiles (lower values) of 0-255 integers from their histogram: faster than sorting."""
    cumulative = np.bincount(values.astype(np.uint8), minlength=256).cumsum()
    return [float(np.searchsorted(cumulative, q / 100 * (cumulative[-1] - 1) + 1)) for q in quantiles]


def face_measurements(stored: np.ndarray, landmarks: np.ndarray, affine: np.ndarray,
                      photo_size: tuple[int, int]) -> dict[str, Any]:
    """The face's measurements from its stored compact face (RGB), landmarks in the SIZE frame, the SIZE-frame
    affine and the photo's (width, height). Values are floats, or None where not measurable."""
    import cv2

    size = FRAME
    grey_stored = cv2.cvtColor(stored, cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey_stored, (size, size), interpolation=cv2.INTER_AREA if stored.shape[0] > size
                      else cv2.INTER_LINEAR).astype(np.float32)  # BT.601 luma, 0-255
    points = to_frame(landmarks, size)
    cx, cy, ax, ay = face_ellipse(landmarks, size)
    valid = _inside_photo(affine, photo_size, size, (cx - ax, cy - ay, cx + ax, cy + ay))
    ellipse = _ellipse_mask(landmarks, size)
    inner = ellipse & valid
    out: dict[str, Any] = dict.fromkeys(MEASURES)
    out["measured_fraction"] = round(float(inner.sum() / max(ellipse.sum(), 1)), 4)
    face = grey[inner]
    if face.size < MIN_PIXELS:
        return out
    p5, p50, p95 = _percentiles(face, (5, 50, 95))
    out["sharpness"] = (sharpness(grey, inner) if stored.shape[0] >= size
                        else sharpness(grey_stored.astype(np.float32), _ellipse_mask(landmarks, stored.shape[0])
                                       & _inside_photo(affine, photo_size, stored.shape[0], tuple(
                                           np.array([cx - ax, cy - ay, cx + ax, cy + ay]) * stored.shape[0] / size))))
    out["luma_median"] = round(float(p50), 2)
    out["contrast"] = round(float(p95 - p5), 2)
    out["clipped_fraction"] = round(float((face >= CLIP_HIGH).mean()), 4)
    out["dark_fraction"] = round(float((face <= CLIP_LOW).mean()), 4)

    cheeks = (_hull_mask(points, RIGHT_CHEEK, size) | _hull_mask(points, LEFT_CHEEK, size)) & valid
    if cheeks.sum() < MIN_PIXELS // 2:
        return out
    skin = max(_percentiles(grey[cheeks], (50,))[0], 1.0)
    gradient_y = np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))  # horizontal edges: a glasses bridge
    # the reference is the cheeks' edges in both directions: the skin's own texture and the photo's noise
    cheek_gradient = max(float(gradient_y[cheeks].mean() + np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3))[
        cheeks].mean()), 1.0)
    eyes = (_hull_mask(points, mesh.RIGHT_EYE, size) | _hull_mask(points, mesh.LEFT_EYE, size)).astype(np.uint8)
    # what a dark lens covers for certain: the eyes and the lids around them (not the lens's rim, where the
    # thick dark frame of ordinary glasses lies)
    behind_lens = cv2.dilate(eyes, np.ones((5, 5), np.uint8)).astype(bool) & valid
    bridge = _hull_mask(points, NOSE_BRIDGE, size) & valid
    if behind_lens.sum() >= MIN_PIXELS // 2:
        out["lens_luma_ratio"] = round(float(grey[behind_lens].mean()) / skin, 3)
    if bridge.sum() >= 4:
        out["bridge_edges"] = round(float(gradient_y[bridge].mean()) / cheek_gradient, 3)
    forehead = _hull_mask(points, FOREHEAD, size) & ~_hull_mask(points, BROWS_TOP, size) & valid
    if forehead.sum() >= MIN_PIXELS:
        # hair is darker than the cheeks in most people (not blond or grey hair on light skin: docs say so)
        out["forehead_dark"] = round(float((grey[forehead] < DARK_HAIR * skin).mean()), 4)
    return out


DARK_HAIR = 0.5  # forehead pixels darker than this fraction of the cheeks' luma: hair (or a dark hat, band)
MEASURES = ("sharpness", "luma_median", "contrast", "clipped_fraction", "dark_fraction", "lens_luma_ratio",
            "bridge_edges", "forehead_dark")


def _ellipse_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The face ellipse shrunk to INNER, in a ``size`` frame."""
    cx, cy, ax, ay = face_ellipse(landmarks, size)
    axis = np.arange(size, dtype=np.float64)
    return ((axis[:, None] - cy) / (ay * INNER)) ** 2 + ((axis[None, :] - cx) / (ax * INNER)) ** 2 <= 1.0


def sharpness(grey: np.ndarray, inner: np.ndarray) -> float | None:
    """Spread of the Laplacian (the second derivative, which blur flattens) over the inner face, per unit of
    the face's own contrast (its 5-95% luma range) so that a dim or flat-lit face does not read as a blurred
    one. ``grey`` is the face at min(SHARPNESS_FRAME, its stored size) pixels, ``inner`` its mask. Pixels near
    white (glare) and their neighbours are left out: a flat glare spot has no detail. Written with
    cv2.Laplacian: none of our libraries ships a no-reference blur score for a masked region."""
    import cv2

    near_white = cv2.dilate((grey >= GLARE).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    mask = cv2.erode((inner & ~near_white).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if mask.sum() < MIN_PIXELS:
        return None
    low, high = _percentiles(grey[mask], (5, 95))
    laplacian = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)[mask]
    return round(float(laplacian.std() / max(high - low, 8.0) * 100), 2)


def background_measurements(rgb: np.ndarray, face_box: tuple[float, float, float, float]) -> dict[str, Any]:
    """Busyness of the background around the head: the density of edges (Canny) in the columns left and right
    of the head (its box widened to hold hair and ears) from the photo's top down to the chin, and in the band
    above the hair, on the photo shrunk to BACKGROUND_SIDE. ``face_box`` is (x, y, width, height) in photo
    pixels. None when too little background shows (a tight crop has no background to judge)."""
    import cv2

    height, width = rgb.shape[:2]
    factor = min(1.0, BACKGROUND_SIDE / max(height, width))
    x, y, w, h = (v * factor for v in face_box)
    sh, sw = max(1, round(height * factor)), max(1, round(width * factor))
    left, right = int(max(0, x - 0.45 * w)), int(min(sw, x + w + 0.45 * w))
    bottom, top = int(min(sh, y + h)), int(max(0, y - 0.45 * h))
    mask = np.zeros((sh, sw), bool)
    mask[:bottom, :left] = True
    mask[:bottom, right:] = True
    mask[:top, :] = True
    if mask.sum() < MIN_PIXELS * 4:
        return {"background_edges": None}
    grey = cv2.cvtColor(rgb[:int(min(height, bottom / factor + 1))], cv2.COLOR_RGB2GRAY)  # rows down to the chin
    grey = cv2.resize(grey, (sw, grey.shape[0] * sw // width or 1), interpolation=cv2.INTER_AREA) \
        if factor < 1.0 else grey
    edges = cv2.Canny(grey, 60, 150) > 0
    rows = min(edges.shape[0], bottom)
    return {"background_edges": round(float(edges[:rows][mask[:rows]].mean()), 4)}
