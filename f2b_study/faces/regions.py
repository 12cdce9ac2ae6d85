"""Five facial regions (the paper's SHAP analysis): forehead, periorbital, midface, nasolabial, jawline.

Each region is seeded by a set of mesh landmarks (below; indices of MediaPipe's 478-point mesh, "right" =
the subject's right). Every pixel of the face ellipse goes to the region of its nearest seed landmark: a
Voronoi partition of the ellipse over the five seed groups. The regions are therefore disjoint and together
cover the whole face mask by construction, on any frame size, and follow each face's own landmarks.

- forehead: the upper arc of the face oval and the skin between it and the brows (glabella included);
- periorbital: eye contours, irises, brows and two rings of landmarks around each eye, out to the temples;
- midface: the nose (mediapipe's nose contour) and the cheeks from the lower eyelid ring to the cheekbones;
- nasolabial: lips and the skin from the nostrils to the mentolabial fold, nasolabial folds included;
- jawline: the lower arc of the face oval (jaw angles to chin) and the chin.
"""

from __future__ import annotations

import numpy as np

from f2b_study.faces import mesh
from f2b_study.faces.standardise import SIZE, face_mask, to_frame

REGIONS: tuple[str, ...] = ("forehead", "periorbital", "midface", "nasolabial", "jawline")

_BROWS = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
_EYE_RINGS = (
    247, 30, 29, 27, 28, 56, 190, 113, 225, 224, 223, 222, 221, 189,  # right eye, upper rings
    130, 25, 110, 24, 23, 22, 26, 112, 243, 226, 31, 228, 229, 230, 231, 232, 233, 244,  # right eye, lower rings
    467, 260, 259, 257, 258, 286, 414, 342, 445, 444, 443, 442, 441, 413,  # left eye, upper rings
    359, 255, 339, 254, 253, 252, 256, 341, 463, 446, 261, 448, 449, 450, 451, 452, 453, 464,  # left eye, lower
)
_NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)
_CHEEKS = (143, 111, 117, 118, 119, 120, 121, 128, 245, 372, 340, 346, 347, 348, 349, 350, 357, 465,
           50, 280, 101, 330, 36, 266, 205, 425, 123, 352, 116, 345, 147, 376, 187, 411, 93, 323, 234, 454, 137, 366)
_LIPS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269, 270,
         291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)

REGION_LANDMARKS: dict[str, tuple[int, ...]] = {
    "forehead": (10, 338, 297, 332, 284, 251, 21, 54, 103, 67, 109, 151, 9, 108, 69, 104, 68, 71, 337, 299, 333,
                 298, 301),
    "periorbital": (*mesh.RIGHT_EYE, *mesh.LEFT_EYE, *mesh.RIGHT_IRIS, *mesh.LEFT_IRIS, *_BROWS, *_EYE_RINGS,
                    162, 389),
    "midface": (*_NOSE, *_CHEEKS),
    "nasolabial": (*_LIPS, 164, 167, 393, 165, 391, 92, 322, 186, 410, 216, 436, 206, 426, 57, 287, 43, 273, 212,
                   432, 202, 422, 204, 424, 106, 335, 18, 83, 313, 182, 406),
    "jawline": (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 175, 199, 200,
                171, 396, 208, 428, 32, 262, 140, 369, 170, 395, 169, 394, 135, 364, 138, 367, 210, 430, 211, 431,
                194, 418, 214, 434, 192, 416, 213, 433),
}


def region_labels(landmarks: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(size, size) int8 map: the index into REGIONS of each face-mask pixel, -1 outside the face ellipse.
    ``landmarks`` are (478, 2) in the 512 frame; they are scaled to ``size``."""
    from scipy.spatial import cKDTree

    points = to_frame(landmarks, size)
    seeds = np.concatenate([points[list(REGION_LANDMARKS[name])] for name in REGIONS])
    owner = np.concatenate([np.full(len(REGION_LANDMARKS[name]), k, np.int8) for k, name in enumerate(REGIONS)])
    mask = face_mask(landmarks, size)
    rows, cols = np.nonzero(mask)
    labels = np.full((size, size), -1, dtype=np.int8)
    if rows.size:
        _, nearest = cKDTree(seeds).query(np.column_stack([cols, rows]).astype(np.float64))
        labels[rows, cols] = owner[nearest]
    return labels


def region_masks(landmarks: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(5, size, size) bool masks in REGIONS order: disjoint, their union the face ellipse (`face_mask`)."""
    labels = region_labels(landmarks, size)
    return labels[None, :, :] == np.arange(len(REGIONS), dtype=np.int8)[:, None, None]
