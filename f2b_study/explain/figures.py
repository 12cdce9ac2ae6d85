"""The explainability figures as inline SVG (f2b_study.report.figures.to_svg), drawn on a mean face only.

The background is the mean of the explained faces (aligned standardised faces), shown only when at least
MIN_FACES_FOR_MEAN faces went into it (f2b_study.faces.figures); otherwise the maps are drawn on black with the
face outline. No individual face appears.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from f2b_study.faces.figures import MIN_FACES_FOR_MEAN


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "f2b-study", "text.parse_math": False,
                         "font.family": "sans-serif", "font.size": 8, "axes.titlesize": 9})
    return plt


def background(mean_rgb: np.ndarray, n_faces: int, face_mask: np.ndarray) -> np.ndarray:
    """Greyscale mean face in [0, 1] (or the face outline on black when too few faces were averaged)."""
    if n_faces >= MIN_FACES_FOR_MEAN:
        grey = mean_rgb.astype(np.float64).mean(axis=-1) / 255.0
        return np.repeat(grey[..., None], 3, axis=-1)
    out = np.zeros((*face_mask.shape, 3))
    out[face_mask] = 0.15
    return out


def _symmetric_limit(values: Sequence[float] | np.ndarray) -> float:
    finite = np.abs(np.asarray(values, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def region_values_svg(panels: Mapping[str, Mapping[str, Sequence[float]]], region_labels: np.ndarray,
                      base: np.ndarray, classes: Sequence[str], regions: Sequence[str], *, title: str,
                      prefix: str) -> str:
    """Rows = subgroups, columns = classes; each region of the mean face coloured by its mean Shapley value.
    panels: {subgroup: {class: [value per region] (NaN when no patients)}}."""
    from f2b_study.report.figures import to_svg

    plt = _plt()
    limit = _symmetric_limit([v for row in panels.values() for vals in row.values() for v in vals])
    fig, axes = plt.subplots(len(panels), len(classes), figsize=(2.3 * len(classes), 2.5 * len(panels)),
                             squeeze=False)
    image = None
    for r, (subgroup, row) in enumerate(panels.items()):
        for c, cls in enumerate(classes):
            axis = axes[r, c]
            axis.imshow(base, interpolation="bilinear")
            values = np.asarray(row.get(cls, [np.nan] * len(regions)), dtype=np.float64)
            layer = np.full(region_labels.shape, np.nan)
            for k in range(len(regions)):
                layer[region_labels == k] = values[k]
            image = axis.imshow(np.ma.masked_invalid(layer), cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6,
                                interpolation="nearest")
            axis.set_title(f"{cls} · {subgroup}", fontsize=8)
            axis.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="mean region Shapley value")
    fig.suptitle(title, fontsize=9)
    return to_svg(fig, prefix)


def upsample(map_: np.ndarray, size: int) -> np.ndarray:
    """A (h, w) map stretched bilinearly over a (size, size) frame (pixel centres aligned, as cv2.resize)."""
    import cv2

    map_ = np.asarray(map_, dtype=np.float32)
    if map_.shape == (size, size):
        return map_
    return cv2.resize(map_, (size, size), interpolation=cv2.INTER_LINEAR)


def heatmaps_svg(maps: Mapping[str, np.ndarray], base: np.ndarray, face_mask: np.ndarray, classes: Sequence[str], *,
                 title: str, label: str, prefix: str, signed: bool = True) -> str:
    """One panel per class: a map (any resolution, stretched over the face frame) over the background, inside the
    face only. The colour scale ends at the 99th percentile of |values| so a few extreme pixels do not wash the
    rest out."""
    from f2b_study.report.figures import to_svg

    plt = _plt()
    shown = [c for c in classes if c in maps]
    size = base.shape[0]
    layers = {c: np.where(face_mask, upsample(maps[c], size), np.nan) for c in shown}
    values = np.concatenate([np.abs(layer[np.isfinite(layer)]) for layer in layers.values()]) if shown else []
    limit = float(np.percentile(values, 99)) if len(values) and np.percentile(values, 99) > 0 else \
        _symmetric_limit(values)
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(2.4 * max(1, len(shown)) + 0.8, 2.7), squeeze=False)
    image = None
    for c, cls in enumerate(shown):
        axis = axes[0, c]
        axis.imshow(base, interpolation="bilinear")
        kwargs = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit} if signed else {"cmap": "magma", "vmin": 0,
                                                                                     "vmax": limit}
        image = axis.imshow(np.ma.masked_invalid(layers[cls]), alpha=0.6, interpolation="nearest", **kwargs)
        axis.set_title(cls, fontsize=8)
        axis.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=label)
    fig.suptitle(title, fontsize=9)
    return to_svg(fig, prefix)


def concept_importance_svg(importance: Mapping[str, Sequence[float]], classes: Sequence[str], *, title: str,
                           prefix: str) -> str:
    """Horizontal bars of each class's concepts' total Sobol indices, most important first (log scale as in the
    paper's Figs. 13–15 b)."""
    from matplotlib import ticker

    from f2b_study.report.figures import CLASS_COLOURS, to_svg

    plt = _plt()
    shown = [c for c in classes if c in importance]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(2.6 * max(1, len(shown)), 2.4), squeeze=False)
    for c, cls in enumerate(shown):
        values = np.asarray(importance[cls], dtype=np.float64)
        order = np.argsort(-values)
        axis = axes[0, c]
        axis.barh(np.arange(len(values)), np.maximum(values[order], 1e-6),
                  color=CLASS_COLOURS.get(cls, "#0072B2"))
        axis.set_yticks(np.arange(len(values)), [f"concept {i + 1}" for i in order])
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_xlabel("total Sobol index")
        axis.set_title(cls, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return to_svg(fig, prefix)
