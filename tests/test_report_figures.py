"""Figures: one style for the whole tool (no global matplotlib state changed), text ≥ 9 pt at 100% zoom, working
axes on the CRAFT chart, attention maps that show their variation or say they are flat, PNG exports."""

import io

import matplotlib
import numpy as np
import pytest

from f2b_study import CLASSES
from f2b_study.explain import figures as xfig
from f2b_study.present.style import MIN_FONT_PT, STYLE, shown_font_px, svg_width_pt


def _labelled_ticks(axis) -> list[str]:
    """The x tick labels that are drawn (inside the axis range) and say something."""
    low, high = sorted(axis.get_xlim())
    return [t.get_text() for t, loc in zip(axis.get_xticklabels(), axis.get_xticks(), strict=True)
            if low <= loc <= high and t.get_text().strip()]


def test_figures_leave_matplotlib_global_style_alone():
    before = dict(matplotlib.rcParams)
    xfig.concept_importance_svg({"normal": [0.2, 0.1]}, ["normal"], title="t", prefix="a")
    assert dict(matplotlib.rcParams) == before
    assert STYLE["font.size"] >= MIN_FONT_PT and STYLE["legend.fontsize"] >= MIN_FONT_PT


@pytest.mark.parametrize("spread", ["narrow", "one decade", "wide"])
def test_craft_importance_axes_have_tick_labels_on_every_panel(spread):
    rng = np.random.default_rng(1)
    values = {"narrow": lambda: rng.uniform(0.05, 0.09, 6), "one decade": lambda: rng.uniform(0.02, 0.3, 6),
              "wide": lambda: np.array([0.9, 0.05, 0.004, 0.0002, 0.3, 0.0])}[spread]
    importance = {c: values() for c in CLASSES}
    svg = xfig.concept_importance_svg(importance, CLASSES, title="CRAFT", prefix="xc")
    bars = [a for a in svg.figure.axes if a.get_title() in CLASSES]
    assert len(bars) == 3
    for axis in bars:
        assert len(_labelled_ticks(axis)) >= 2, (spread, axis.get_title(), axis.get_xscale())
        assert axis.get_xscale() == ("log" if spread == "wide" else "linear")
    assert shown_font_px(svg) >= MIN_FONT_PT * 4 / 3 - 1e-6
    assert "e-0" not in svg and "e−0" not in svg  # fixed-point bar labels


def _face(size=48):
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - size / 2) / (0.45 * size)) ** 2 + ((xx - size / 2) / (0.35 * size)) ** 2 <= 1
    return np.zeros((size, size, 3)), mask


def test_flat_attention_maps_say_so():
    base, mask = _face()
    flat = {c: np.full((7, 7), 1 / 49) + 1e-6 * np.random.default_rng(k).normal(size=(7, 7))
            for k, c in enumerate(CLASSES)}
    svg = xfig.heatmaps_svg(flat, base, mask, CLASSES, title="SSAM", label="attention weight", prefix="xa",
                            signed=False)
    assert svg.count("flat: range") == 3
    assert xfig.map_variation(flat["normal"])["flat"]


def test_varying_attention_maps_get_their_own_scale():
    base, mask = _face()
    rng = np.random.default_rng(2)
    maps = {c: rng.uniform(0, 1, (7, 7)) * (k + 1) for k, c in enumerate(CLASSES)}
    svg = xfig.heatmaps_svg(maps, base, mask, CLASSES, title="SSAM", label="attention weight", prefix="xa",
                            signed=False)
    assert "flat" not in svg and svg.count("range") >= 3
    bars = [a for a in svg.figure.axes if a.get_label() == "<colorbar>"]
    assert len(bars) == 3  # one colour bar per map
    limits = sorted(round(b.get_ylim()[1], 3) for b in bars)
    assert limits[0] < limits[-1]  # each map on its own scale


def test_every_figure_renders_a_300_dpi_png():
    from PIL import Image

    svg = xfig.concept_importance_svg({"normal": [0.2, 0.1]}, ["normal"], title="t", prefix="a")
    with Image.open(io.BytesIO(svg.png())) as image:
        assert round(image.info["dpi"][0]) == 300
        width_in = image.size[0] / 300
    assert width_in == pytest.approx(svg_width_pt(svg) / 72, rel=0.05)


def test_region_figure_names_subgroups_in_words():
    base, mask = _face()
    labels = np.where(mask, (np.arange(48)[None, :] * 5 // 48).repeat(48, 0), -1)
    panels = {"all": {c: [0.1, -0.1, 0.0, 0.2, -0.2] for c in CLASSES},
              "sex F": {c: [0.1, -0.1, 0.0, 0.2, -0.2] for c in CLASSES}}
    svg = xfig.region_values_svg(panels, labels, base, CLASSES, ["a", "b", "c", "d", "e"], title="t", prefix="xr")
    assert "Female" in svg and "sex F" not in svg and "All patients" in svg
