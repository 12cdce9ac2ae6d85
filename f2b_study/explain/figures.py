"""The explainability figures as inline SVG (f2b_study.present.style: the project's one figure style), drawn on a
mean face only.

The background is the mean of the explained faces (aligned standardised faces), shown only when at least
MIN_FACES_FOR_MEAN faces went into it (f2b_study.faces.figures); otherwise the maps are drawn on black with the
face outline. No individual face appears.

Maps say how much they vary: every panel gives its map's range inside the face relative to its mean, and a map
whose range is below FLAT_RELATIVE_RANGE is called flat (drawn on a scale from 0, so it looks as uniform as it
is) instead of having its rounding noise stretched over the whole colour scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from f2b_study.faces.figures import MIN_FACES_FOR_MEAN
from f2b_study.present.format import decimals_for, number
from f2b_study.present.labels import subgroup_label
from f2b_study.present.style import CLASS_COLOURS, SvgFigure, figure_style, new_figure, to_svg

FLAT_RELATIVE_RANGE = 0.02  # (max − min) / mean |value| inside the face below 2%: the map is flat
LOG_SPREAD = 100.0  # concept importances spanning more than this factor get a log axis

__all__ = ["MIN_FACES_FOR_MEAN", "background", "concept_importance_svg", "heatmaps_svg", "map_variation",
           "region_values_svg", "upsample"]


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
                      prefix: str) -> SvgFigure:
    """Rows = subgroups, columns = classes; each region of the mean face coloured by its mean Shapley value.
    panels: {subgroup: {class: [value per region] (NaN when no patients)}}."""
    limit = _symmetric_limit([v for row in panels.values() for vals in row.values() for v in vals])
    with figure_style():
        fig, axes = new_figure((2.7 * len(classes) + 1.2, 2.9 * len(panels) + 0.5), len(panels), len(classes),
                               squeeze=False, layout="constrained")
        image = None
        for r, (subgroup, row) in enumerate(panels.items()):
            for c, cls in enumerate(classes):
                axis = axes[r, c]
                axis.imshow(base, interpolation="bilinear")
                values = np.asarray(row.get(cls, [np.nan] * len(regions)), dtype=np.float64)
                layer = np.full(region_labels.shape, np.nan)
                for k in range(len(regions)):
                    layer[region_labels == k] = values[k]
                image = axis.imshow(np.ma.masked_invalid(layer), cmap="RdBu_r", vmin=-limit, vmax=limit,
                                    alpha=0.6, interpolation="nearest")
                axis.set_title(f"{cls} · {subgroup_label(subgroup)}")
                axis.set_axis_off()
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.6, label="mean region Shapley value")
        fig.suptitle(title)
        return to_svg(fig, prefix)


def upsample(map_: np.ndarray, size: int) -> np.ndarray:
    """A (h, w) map stretched bilinearly over a (size, size) frame (pixel centres aligned, as cv2.resize)."""
    import cv2

    map_ = np.asarray(map_, dtype=np.float32)
    if map_.shape == (size, size):
        return map_
    return cv2.resize(map_, (size, size), interpolation=cv2.INTER_LINEAR)


def map_variation(values: np.ndarray) -> dict[str, float | bool | None]:
    """How much a map varies inside the face: min, max, mean, (max − min) / mean |value|, and whether that is below
    FLAT_RELATIVE_RANGE. Measured on the map's own values (before upsampling), NaN outside the face."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return {"min": None, "max": None, "mean": None, "relative_range": None, "flat": True}
    low, high, scale = float(finite.min()), float(finite.max()), float(np.abs(finite).mean())
    relative = (high - low) / scale if scale > 0 else 0.0
    return {"min": low, "max": high, "mean": float(finite.mean()), "relative_range": relative,
            "flat": relative < FLAT_RELATIVE_RANGE}


def _variation_text(variation: Mapping[str, Any]) -> str:
    relative = variation["relative_range"]
    if relative is None:
        return "no values"
    share = f"{number(100 * relative, 1)}%" if relative < 10 else f"{number(relative, 0)}×"
    return f"flat: range {share} of mean" if variation["flat"] else f"range {share} of mean"


def _fixed_point_ticks(bar: Any, low: float, high: float) -> None:
    """Colour-bar ticks in fixed point (one precision for the bar), not matplotlib's "1e−2" offset notation."""
    from matplotlib import ticker

    digits = decimals_for([low, high, (high - low) / 4], significant=2, low=1, high=7)
    bar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: number(v, digits)))
    bar.ax.tick_params(labelsize=9)


def heatmaps_svg(maps: Mapping[str, np.ndarray], base: np.ndarray, face_mask: np.ndarray, classes: Sequence[str], *,
                 title: str, label: str, prefix: str, signed: bool = True) -> SvgFigure:
    """One panel per class: a map (any resolution, stretched over the face frame) over the background, inside the
    face only, with each map's variation written under it.

    signed (attributions): one symmetric colour scale for all panels, ending at the 99th percentile of |values|
    (a few extreme pixels do not wash the rest out), so the classes compare directly.
    unsigned (concept maps, attention): each map its own scale (1st to 99th percentile inside the face) and colour
    bar, so a map's pattern shows even when the maps differ in level; a flat map is drawn from 0 to its maximum."""
    shown = [c for c in classes if c in maps]
    size = base.shape[0]
    layers = {c: np.where(face_mask, upsample(maps[c], size), np.nan) for c in shown}
    variation = {}
    for c in shown:
        own = np.asarray(maps[c], dtype=np.float64)
        if own.shape == face_mask.shape:
            own = np.where(face_mask, own, np.nan)
        variation[c] = map_variation(own)
    columns = max(1, len(shown))
    with figure_style():
        fig, axes = new_figure(((3.0 if signed else 3.4) * columns + (0.9 if signed else 0.2), 3.8), 1, columns,
                               squeeze=False, layout="constrained")
        image = None
        if signed:
            values = np.concatenate([np.abs(layer[np.isfinite(layer)]) for layer in layers.values()]) if shown \
                else np.zeros(0)
            limit = float(np.percentile(values, 99)) if values.size and np.percentile(values, 99) > 0 else \
                _symmetric_limit(values)
        for c, cls in enumerate(shown):
            axis = axes[0, c]
            axis.imshow(base, interpolation="bilinear")
            layer = layers[cls]
            if signed:
                kwargs = {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}
            else:
                inside = layer[np.isfinite(layer)]
                if variation[cls]["flat"] or inside.size == 0:
                    low, high = 0.0, float(inside.max()) if inside.size and inside.max() > 0 else 1.0
                else:
                    low, high = (float(v) for v in np.percentile(inside, [1, 99]))
                    if high <= low:
                        low, high = float(inside.min()), float(inside.max())
                kwargs = {"cmap": "magma", "vmin": low, "vmax": high}
            image = axis.imshow(np.ma.masked_invalid(layer), alpha=0.65, interpolation="nearest", **kwargs)
            axis.set_title(cls)
            if not signed or variation[cls]["max"] == variation[cls]["min"]:
                axis.text(0.5, -0.04, _variation_text(variation[cls]), transform=axis.transAxes, ha="center",
                          va="top", fontsize=9.5, color="#8a1c00" if variation[cls]["flat"] else "#333333")
            axis.set_axis_off()
            if not signed:
                bar = fig.colorbar(image, ax=axis, fraction=0.046, pad=0.03)
                _fixed_point_ticks(bar, kwargs["vmin"], kwargs["vmax"])
        if image is not None and signed:
            bar = fig.colorbar(image, ax=axes, shrink=0.8, label=label)
            _fixed_point_ticks(bar, -limit, limit)
        note = "" if signed else f"\n{label}; each map on its own colour scale (1st–99th percentile inside the face)"
        fig.suptitle(title + note)
        return to_svg(fig, prefix)


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _log_tick(value: float) -> str:
    """A log-axis tick: plain numbers from 0.001 to 1000, powers of ten beyond (10⁻⁶), no math text."""
    if value <= 0:
        return ""
    exponent = int(np.floor(np.log10(value) + 1e-9))
    if -3 <= exponent <= 3:
        return f"{value:g}"
    mantissa = value / 10 ** exponent
    power = "10" + str(exponent).translate(SUPERSCRIPT)
    return power if abs(mantissa - 1) < 1e-6 else f"{mantissa:g}×{power}"


def concept_importance_svg(importance: Mapping[str, Sequence[float]], classes: Sequence[str], *, title: str,
                           prefix: str) -> SvgFigure:
    """Horizontal bars of each class's concepts' total Sobol indices, most important first, each bar labelled with
    its value. A linear axis from 0, unless the values of a class span more than LOG_SPREAD× (then a log axis,
    as in the paper's Figs. 13–15 b, with labelled ticks at 1, 2 and 5 × 10^k)."""
    from matplotlib import ticker

    shown = [c for c in classes if c in importance]
    every = [v for c in shown for v in importance[c]]
    digits = decimals_for(every, significant=2, low=2, high=5)
    positive = np.asarray([v for v in every if np.isfinite(v) and v > 0], dtype=np.float64)
    log = positive.size > 0 and positive.max() / positive.min() > LOG_SPREAD  # one scale for every panel
    floor = float(positive.min()) / 2 if log else 0.0
    top = float(np.nanmax(every)) if every else 1.0
    columns = max(1, len(shown))
    longest = max([len(importance[c]) for c in shown] or [1])
    with figure_style():
        fig, axes = new_figure((3.3 * columns, 1.3 + 0.32 * longest), 1, columns, squeeze=False)
        for c, cls in enumerate(shown):
            values = np.asarray(importance[cls], dtype=np.float64)
            order = np.argsort(-values)
            axis = axes[0, c]
            ends = np.maximum(values[order], floor) if log else values[order]
            axis.barh(np.arange(len(values)), ends - floor, left=floor, color=CLASS_COLOURS.get(cls, "#0072B2"))
            axis.set_yticks(np.arange(len(values)), [f"concept {i + 1}" for i in order])
            axis.invert_yaxis()
            if log:
                axis.set_xscale("log")
                axis.set_xlim(floor, top * 6)
                decades = np.log10(top * 6 / floor)
                subs = (1.0,) if decades >= 2.5 else (1.0, 2.0, 5.0)  # labelled ticks without crowding
                axis.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=5))
                axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _log_tick(v)))
                axis.xaxis.set_minor_locator(ticker.NullLocator())
            else:
                axis.set_xlim(min(0.0, float(np.nanmin(every))), top * 1.3 if top > 0 else 1.0)
                axis.xaxis.set_major_locator(ticker.MaxNLocator(4))
            for k, value in enumerate(values[order]):
                # on a log axis each bar keeps two significant digits; on a linear one the panel shares decimals
                shown = number(value, decimals_for([value], significant=2, low=2, high=8)) if log else \
                    number(value, digits)
                # an offset, not a leading space: SVG collapses leading whitespace in <text>
                axis.annotate(shown, (max(value, floor) if log else max(value, 0.0), k), xytext=(3, 0),
                              textcoords="offset points", va="center", ha="left", fontsize=9)
            axis.set_xlabel("total Sobol index" + (" (log scale)" if log else ""))
            axis.set_title(cls)
        fig.suptitle(title)
        fig.tight_layout()
        return to_svg(fig, prefix)
