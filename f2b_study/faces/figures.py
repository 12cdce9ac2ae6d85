"""The facial-regions figure: the five regions drawn on a cohort's mean standardised face.

A mean of many aligned faces identifies no one, so this figure may go into reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from f2b_study.atomic import atomic_path
from f2b_study.faces.cache import load_face
from f2b_study.faces.regions import REGION_LANDMARKS, REGIONS, region_labels

REGION_COLOURS = ("#e6194b", "#4363d8", "#3cb44b", "#f58231", "#911eb4")
MIN_FACES_FOR_MEAN = 10  # a mean of fewer faces may still look like someone: the figure then shows no pixels


def regions_figure(face_paths: Iterable[str | Path], path: str | Path, *, title: str | None = None) -> Path:
    """The regions figure on the mean of the given cached faces (e.g. a cohort's `ok` rows' face_path)."""
    rgb, landmarks, count = mean_face(face_paths)
    return save_regions_figure(path, rgb, landmarks, n_faces=count, title=title)


def mean_face(face_paths: Iterable[str | Path]) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean RGB uint8, mean landmarks (478, 2), number of faces) of cached standardised faces."""
    total: np.ndarray | None = None
    points: np.ndarray | None = None
    count = 0
    for path in face_paths:
        rgb, landmarks = load_face(path)
        total = rgb.astype(np.float64) if total is None else total + rgb
        points = landmarks.astype(np.float64) if points is None else points + landmarks
        count += 1
    if total is None or points is None:
        raise ValueError("no faces to average")
    return np.round(total / count).astype(np.uint8), (points / count).astype(np.float32), count


def save_regions_figure(path: str | Path, rgb: np.ndarray, landmarks: np.ndarray, *, n_faces: int | None = None,
                        title: str | None = None) -> Path:
    """Write the mean face beside the same face with the five regions and their seed landmarks (PNG). With
    fewer than MIN_FACES_FOR_MEAN faces (``n_faces``), the regions are drawn on black instead of the face."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    if n_faces is None or n_faces < MIN_FACES_FOR_MEAN:
        rgb = np.zeros_like(rgb)
    labels = region_labels(landmarks, rgb.shape[0])
    inside = labels >= 0
    overlay = rgb.astype(np.float64) / 255
    for k, colour in enumerate(REGION_COLOURS):
        overlay[labels == k] = 0.45 * overlay[labels == k] + 0.55 * np.array(to_rgb(colour))
    share = {name: (labels == k).sum() / max(inside.sum(), 1) for k, name in enumerate(REGIONS)}

    fig, axes = plt.subplots(1, 2, figsize=(9, 5.2), dpi=110)
    axes[0].imshow(rgb)
    axes[0].set_title(f"mean standardised face (n = {n_faces})" if rgb.any() else "(too few faces to show)",
                      fontsize=10)
    axes[1].imshow(overlay)
    for k, name in enumerate(REGIONS):
        seeds = landmarks[list(REGION_LANDMARKS[name])]
        axes[1].scatter(seeds[:, 0], seeds[:, 1], s=4, color=REGION_COLOURS[k], edgecolors="white", linewidths=0.3)
    axes[1].set_title("five facial regions (nearest seed landmark)", fontsize=10)
    for axis in axes:
        axis.set_axis_off()
    handles = [Patch(color=REGION_COLOURS[k], label=f"{name} ({share[name]:.0%} of the face)")
               for k, name in enumerate(REGIONS)]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95 if title else 1))
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
