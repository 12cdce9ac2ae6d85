"""Pixel measurements behind the quality checks (sharpness, exposure, eyewear, occlusion, background).

Everything here is threshold-free: the numbers go into the cache entry's metadata and `qc.py` applies the
study's [qc] thresholds on reading, so changing a threshold never recomputes a photo.

Face statistics are computed on the stored compact face (`standardise.compact_face`: already levelled and cut
to the face ellipse) brought to one fixed frame of FRAME x FRAME pixels, where the eye distance is about 37 px
whatever the photo's resolution; background statistics on the photo shrunk to at most BACKGROUND_SIDE pixels.
So the cost per photo is a fraction of a millisecond to a few milliseconds, never proportional to the photo.

Regions are polygons over MediaPipe's mesh indices ("right" = the subject's right): cheeks (the skin
reference), the lens area around each eye, the eyes themselves, the nose bridge, the forehead and the lower
face. Pixels that lie outside the photo (a face cut by the photo's edge is black there) are left out of every
statistic; a statistic with too few pixels left is None, and `qc.py` names that (`not_measurable`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from f2b_study.faces import mesh
from f2b_study.faces.standardise import SIZE, face_ellipse, to_frame

FRAME = 128  # measurement frame of the region statistics (the standardised face at 128 px: eye distance ~37 px)
# Sharpness is measured in a coarser frame, where the eye distance is ~18 px: below the smallest face QC accepts
# (min_interocular_px = 20), so no accepted face is ever scaled up for it and a small but sharp face does not
# read as a blurred one (face size is face_too_small's business, not sharpness's).
SHARPNESS_FRAME = 64
INNER = 0.85  # the face statistics use the face ellipse shrunk to this fraction: skin and features, no rim
MIN_PIXELS = 40  # fewer valid pixels in a region: that statistic is not measurable
BACKGROUND_SIDE = 256  # the photo's longer side for the background statistics
CLIP_HIGH = 250  # luma at or above it: a clipped highlight
CLIP_LOW = 5  # luma at or below it: crushed shadow

# region polygons (convex hulls of these landmarks)
RIGHT_CHEEK = (116, 117, 118, 101, 36, 205, 187, 123, 50)
LEFT_CHEEK = (345, 346, 347, 330, 266, 425, 411, 352, 280)
RIGHT_LENS = (*mesh.RIGHT_EYE, 70, 63, 105, 66, 107, 55, 193, 111, 117, 118, 119, 120, 121, 128, 245, 143, 156)
LEFT_LENS = (*mesh.LEFT_EYE, 300, 293, 334, 296, 336, 285, 417, 340, 346, 347, 348, 349, 350, 357, 465, 372, 383)
NOSE_BRIDGE = (193, 168, 417, 351, 6, 122)
FOREHEAD = (10, 338, 297, 332, 284, 109, 67, 103, 54, 151, 108, 69, 104, 68, 337, 299, 333, 298)
BROWS_TOP = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)
LOWER_FACE = (57, 287, 43, 273, 204, 424, 32, 262, 208, 428, 148, 176, 152, 377, 400, 164, 186, 410, 92, 322)
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)


def _hull_mask(points: np.ndarray, indices: tuple[int, ...], size: int) -> np.ndarray:
    import cv2

    mask = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.round(points[list(indices)]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def _inside_photo(affine: np.ndarray, photo_size: tuple[int, int], size: int) -> np.ndarray:
    """(size, size) bool: frame pixels whose source lies inside the photo. ``affine`` maps photo pixels to
    the SIZE frame."""
    width, height = photo_size
    grid = np.arange(size, dtype=np.float64)
    # frame pixel (size frame) -> SIZE frame (to_frame's inverse) -> photo
    xs = (grid + 0.5) * (SIZE / size) - 0.5
    linear, shift = affine[:, :2], affine[:, 2]
    inverse = np.linalg.inv(linear)
    gx, gy = np.meshgrid(xs, xs)
    px = inverse[0, 0] * (gx - shift[0]) + inverse[0, 1] * (gy - shift[1])
    py = inverse[1, 0] * (gx - shift[0]) + inverse[1, 1] * (gy - shift[1])
    return (px >= -0.5) & (px <= width - 0.5) & (py >= -0.5) & (py <= height - 0.5)


def _lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)  # 8-bit Lab: L 0-255, a/b offset 128


def _median(values: np.ndarray) -> np.ndarray | None:
    return None if len(values) < MIN_PIXELS else np.median(values, axis=0)


def face_measurements(stored: np.ndarray, landmarks: np.ndarray, affine: np.ndarray,
                      photo_size: tuple[int, int]) -> dict[str, Any]:
    """The face's measurements from its stored compact face (RGB), landmarks in the SIZE frame, the SIZE-frame
    affine and the photo's (width, height). Values are floats, or None where not measurable."""
    import cv2

    size = FRAME
    small = cv2.resize(stored, (size, size), interpolation=cv2.INTER_AREA if stored.shape[0] > size
                       else cv2.INTER_LINEAR)
    points = to_frame(landmarks, size)
    valid = _inside_photo(affine, photo_size, size)
    cx, cy, ax, ay = face_ellipse(landmarks, size)
    grid = np.arange(size, dtype=np.float64)
    inner = (((grid[:, None] - cy) / (ay * INNER)) ** 2 + ((grid[None, :] - cx) / (ax * INNER)) ** 2 <= 1.0)
    inner &= valid
    out: dict[str, Any] = {"measured_fraction": round(float(inner.mean() / max(np.pi * INNER ** 2 * ax * ay
                                                                                / size ** 2, 1e-9)), 4)}
    lab = _lab(small)
    luma = lab[:, :, 0]  # L* scaled to 0-255: perceptual lightness
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    face = grey[inner]
    if face.size < MIN_PIXELS:
        return {**out, **dict.fromkeys(MEASURES)}
    p5, p50, p95 = np.percentile(face, (5, 50, 95))
    # clipped pixels (glare) carry no detail: left out of the sharpness, so glare is not read as blur
    unclipped = inner & (grey < CLIP_HIGH)
    if unclipped.sum() >= MIN_PIXELS:
        u5, u95 = np.percentile(grey[unclipped], (5, 95))
        out["sharpness"] = sharpness(grey, unclipped, float(u95 - u5))
    else:
        out["sharpness"] = None
    out["luma_median"] = round(float(p50), 2)
    out["contrast"] = round(float(p95 - p5), 2)
    out["clipped_fraction"] = round(float((face >= CLIP_HIGH).mean()), 4)
    out["dark_fraction"] = round(float((face <= CLIP_LOW).mean()), 4)

    cheeks = (_hull_mask(points, RIGHT_CHEEK, size) | _hull_mask(points, LEFT_CHEEK, size)) & valid
    skin = _median(lab[cheeks])
    if skin is None:
        return {**out, **{key: None for key in MEASURES if key not in out}}
    skin_luma = max(float(skin[0]), 1.0)
    gradient_y = np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))
    gradient = gradient_y + np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3))
    cheek_gradient = max(float(gradient[cheeks].mean()), 1.0)

    eyes = (_hull_mask(points, mesh.RIGHT_EYE, size) | _hull_mask(points, mesh.LEFT_EYE, size)) & valid
    lenses = (_hull_mask(points, RIGHT_LENS, size) | _hull_mask(points, LEFT_LENS, size)) & valid
    bridge = _hull_mask(points, NOSE_BRIDGE, size) & valid
    ring = lenses & ~cv2.dilate(eyes.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    # what a dark lens covers for certain: the eyes and the lids around them (not the lens's rim, where a
    # thick dark frame of ordinary glasses lies)
    behind_lens = cv2.dilate(eyes.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & valid

    def ratio(values: np.ndarray, reference: float) -> float | None:
        return None if values.size < MIN_PIXELS // 4 else round(float(values.mean()) / reference, 3)

    out["eye_luma_ratio"] = ratio(luma[eyes], skin_luma)
    out["lens_luma_ratio"] = ratio(luma[behind_lens], skin_luma)
    out["bridge_edges"] = ratio(gradient_y[bridge], cheek_gradient)
    out["lens_ring_edges"] = ratio(gradient[ring], cheek_gradient)

    distance = np.sqrt(((lab - skin) ** 2).sum(axis=2))  # colour distance (8-bit Lab) from the cheeks' skin
    forehead = _hull_mask(points, FOREHEAD, size) & ~_hull_mask(points, BROWS_TOP, size) & valid
    # hair is darker than the cheeks in most people (not blond or grey hair on light skin: docs say so)
    out["forehead_dark"] = (None if forehead.sum() < MIN_PIXELS
                            else round(float((luma[forehead] < DARK_HAIR * skin_luma).mean()), 4))
    lower = _hull_mask(points, LOWER_FACE, size) & ~_hull_mask(points, LIPS, size) & valid
    out["lower_off_skin"] = (None if lower.sum() < MIN_PIXELS
                             else round(float((distance[lower] > OFF_SKIN).mean()), 4))
    return out


OFF_SKIN = 30.0  # 8-bit Lab distance from the cheeks' median colour beyond which a pixel is not that skin
DARK_HAIR = 0.6  # forehead pixels darker than this fraction of the cheeks' lightness: hair (or a dark hat)
MEASURES = ("sharpness", "luma_median", "contrast", "clipped_fraction", "dark_fraction", "eye_luma_ratio",
            "lens_luma_ratio", "bridge_edges", "lens_ring_edges", "forehead_dark", "lower_off_skin")


def sharpness(grey: np.ndarray, inner: np.ndarray, contrast: float) -> float | None:
    """Spread of the Laplacian (the second derivative, which blur flattens) over the inner face in the
    SHARPNESS_FRAME, per unit of the face's own contrast (its 5-95% luma range) so that a dim or flat-lit face
    does not read as a blurred one. ``grey`` and ``inner`` are in the FRAME frame. Written with cv2.Laplacian:
    none of our libraries ships a no-reference blur score for a masked region."""
    import cv2

    size = SHARPNESS_FRAME
    small = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(inner.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)  # away from the black rim
    if mask.sum() < MIN_PIXELS:
        return None
    laplacian = cv2.Laplacian(small, cv2.CV_32F, ksize=3)[mask]
    return round(float(laplacian.std() / max(contrast, 8.0) * 100), 2)


def background_measurements(rgb: np.ndarray, face_box: tuple[float, float, float, float]) -> dict[str, Any]:
    """Busyness of the background around the head: edge density and colour spread in the columns left and
    right of the head (its box widened to hold hair and ears), from the photo's top down to the chin, and in
    the band above the hair. ``face_box`` is (x, y, width, height) in photo pixels. None when less than a few
    hundred pixels of background show (a tight crop has no background to judge)."""
    import cv2

    height, width = rgb.shape[:2]
    factor = min(1.0, BACKGROUND_SIDE / max(height, width))
    small = rgb if factor == 1.0 else cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    x, y, w, h = (v * factor for v in face_box)
    sh, sw = small.shape[:2]
    left, right = int(max(0, x - 0.45 * w)), int(min(sw, x + w + 0.45 * w))
    bottom = int(min(sh, y + h))
    mask = np.zeros((sh, sw), bool)
    mask[:bottom, :left] = True
    mask[:bottom, right:] = True
    mask[: int(max(0, y - 0.45 * h)), :] = True  # above the hair
    if mask.sum() < MIN_PIXELS * 4:
        return {"background_edges": None, "background_spread": None}
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, 60, 150) > 0
    lab = _lab(small)[mask]
    return {"background_edges": round(float(edges[mask].mean()), 4),
            "background_spread": round(float(np.sqrt(lab.var(axis=0).sum())), 2)}
