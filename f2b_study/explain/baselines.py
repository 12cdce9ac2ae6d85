"""Baselines: what an "absent" facial region becomes in the region Shapley game (docs/methods.md, Explanations).

- "mean" (default): the training split's mean standardised face at the model's input size, one image for every
  explained face. A face without its own pixels in a region looks, there, like the average training face: the
  model's "uninformed" input. Faces are aligned (eye line horizontal, face ellipse centred and scaled), so the
  mean is a face-shaped image; it identifies nobody when many faces go into it.
- "blur": each image's own face blurred by a Gaussian of sigma = size × BLUR_SIGMA_FRACTION pixels (7 px at 112,
  14 px at 224: larger than the eye and lip widths at these sizes, so their shape is gone while the skin tone
  and lighting stay). The blur is normalised inside the face ellipse (blur(image · mask) / blur(mask)) so the black
  background does not darken the regions at the face's edge.

`Baseline.describe()` is what every output records about the choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

BASELINES = ("mean", "blur")
BLUR_SIGMA_FRACTION = 1 / 16


@dataclasses.dataclass
class Baseline:
    kind: str  # "mean" or "blur"
    size: int
    image: np.ndarray | None = None  # mean: (size, size, 3) float32 in [0, 255]
    n_faces: int = 0  # mean: training faces averaged
    sigma: float | None = None  # blur: Gaussian sigma in pixels at `size`
    source: str = ""

    def describe(self) -> dict[str, Any]:
        if self.kind == "mean":
            text = (f"absent regions replaced by the mean of {self.n_faces} standardised training faces "
                    f"({self.source or 'training split'}) at {self.size} px")
        else:
            text = (f"absent regions replaced by the same face blurred (Gaussian, sigma {self.sigma:g} px at "
                    f"{self.size} px, normalised inside the face ellipse)")
        return {"kind": self.kind, "size": self.size, "n_faces": self.n_faces or None, "sigma_px": self.sigma,
                "source": self.source or None, "description": text}

    def for_faces(self, faces: np.ndarray, face_masks: np.ndarray | None = None) -> np.ndarray:
        """The baseline for `faces` (N, S, S, 3) uint8: (S, S, 3) for "mean", (N, S, S, 3) for "blur"."""
        if self.kind == "mean":
            assert self.image is not None
            return self.image
        if face_masks is None:
            face_masks = faces.any(axis=-1)  # standardised faces are black outside the ellipse
        return blur_faces(faces, face_masks, float(self.sigma or blur_sigma(self.size)))


def blur_sigma(size: int) -> float:
    return size * BLUR_SIGMA_FRACTION


def mean_baseline(faces: np.ndarray, *, source: str = "") -> Baseline:
    """The mean of (N, S, S, 3) uint8 faces as a "mean" baseline."""
    if not len(faces):
        raise ValueError("no faces to average for the mean baseline")
    image = faces.astype(np.float64).mean(axis=0).astype(np.float32)
    return Baseline(kind="mean", size=faces.shape[1], image=image, n_faces=len(faces), source=source)


def mean_baseline_from_paths(face_paths: Sequence[str], size: int, *, source: str = "", chunk: int = 256,
                             progress: bool = False) -> Baseline:
    """The mean of cached faces (f2b_study.faces.cache) at `size`, read in chunks (memory stays small)."""
    from f2b_study.faces.cache import load_faces

    if not face_paths:
        raise ValueError("no faces to average for the mean baseline")
    total = np.zeros((size, size, 3), np.float64)
    for start in range(0, len(face_paths), chunk):
        total += load_faces(list(face_paths[start:start + chunk]), size, progress=progress).sum(axis=0)
    return Baseline(kind="mean", size=size, image=(total / len(face_paths)).astype(np.float32),
                    n_faces=len(face_paths), source=source)


def blur_baseline(size: int, sigma: float | None = None) -> Baseline:
    return Baseline(kind="blur", size=size, sigma=float(sigma if sigma is not None else blur_sigma(size)))


def blur_faces(faces: np.ndarray, face_masks: np.ndarray, sigma: float) -> np.ndarray:
    """(N, S, S, 3) float32: each face blurred inside its own mask, normalised so the background does not bleed
    in; outside the mask the face's own (black) pixels."""
    from scipy.ndimage import gaussian_filter

    out = faces.astype(np.float32).copy()
    for i, (face, mask) in enumerate(zip(faces, face_masks, strict=True)):
        weight = mask.astype(np.float32)
        blurred_weight = gaussian_filter(weight, sigma, mode="constant")
        for c in range(3):
            blurred = gaussian_filter(face[..., c].astype(np.float32) * weight, sigma, mode="constant")
            out[i, ..., c] = np.where(mask, blurred / np.maximum(blurred_weight, 1e-6), out[i, ..., c])
    return out
