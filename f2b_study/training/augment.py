"""The paper's augmentations (HorizontalFlip, VerticalFlip, Affine, CLAHE), applied on the fly on uint8 RGB.

Written on OpenCV rather than taken from Albumentations, which the paper used: Albumentations needs
opencv-python-headless, and MediaPipe needs opencv-contrib-python; both install the same `cv2` module. The
parameters follow Albumentations' defaults. Randomness comes from a generator the caller seeds per sample, so a
sample's augmentation depends only on (seed, epoch, index): reproducible across worker counts and resumes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np

AUGMENTATIONS = ("hflip", "vflip", "affine", "clahe")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    hflip: float = 0.5  # probability of each transform
    vflip: float = 0.5
    affine: float = 0.5
    clahe: float = 0.5
    rotate_degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05  # fraction of the side
    clahe_clip: tuple[float, float] = (1.0, 4.0)
    clahe_grid: int = 8

    @classmethod
    def from_names(cls, names: str | None) -> AugmentConfig:
        """``"hflip,affine"`` keeps those; ``"none"`` or ``""`` turns all off; None keeps the paper's four."""
        if names is None:
            return cls()
        chosen = {n.strip() for n in names.split(",") if n.strip() and n.strip() != "none"}
        unknown = chosen - set(AUGMENTATIONS)
        if unknown:
            from f2b_study.errors import InputError

            raise InputError.at("--augment", value=",".join(sorted(unknown)),
                                expected=f"names among {', '.join(AUGMENTATIONS)} (or none)")
        return cls(**{n: (0.5 if n in chosen else 0.0) for n in AUGMENTATIONS})

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def augment(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One random augmentation of an (H, W, 3) uint8 RGB image; the draw order is fixed for reproducibility."""
    draws = rng.random(4)
    out = image
    if draws[0] < config.hflip:
        out = out[:, ::-1]
    if draws[1] < config.vflip:
        out = out[::-1]
    if draws[2] < config.affine:
        out = _affine(np.ascontiguousarray(out), config, rng)
    if draws[3] < config.clahe:
        out = _clahe(np.ascontiguousarray(out), config, rng)
    return np.ascontiguousarray(out)


def _affine(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    angle = rng.uniform(-config.rotate_degrees, config.rotate_degrees)
    scale = rng.uniform(*config.scale)
    shift = rng.uniform(-config.translate, config.translate, size=2) * (width, height)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    matrix[:, 2] += shift
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


def _clahe(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    # equalise lightness only (as Albumentations does for RGB), so colours keep their hue
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=float(rng.uniform(*config.clahe_clip)),
                            tileGridSize=(config.clahe_grid, config.clahe_grid))
    lab[:, :, 0] = clahe.apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
