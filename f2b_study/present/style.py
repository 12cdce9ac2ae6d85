"""One figure style for every figure the tool draws (report, screening, explainability), applied through a context
manager (matplotlib.rc_context) so no module changes matplotlib's global state for another.

Sizes are chosen for reading at 100% zoom: the report's column is REPORT_COLUMN_PX wide, a figure is drawn at most
MAX_WIDTH_IN wide so that it is shown at its natural size (1 pt of the figure = 1 pt on screen), and no text is
smaller than MIN_FONT_PT.

    with figure_style():
        fig, ax = new_figure((6, 3))
        ...
        svg = to_svg(fig, "roc")      # an SvgFigure: inline SVG text that can also render a 300-dpi PNG

Figures are matplotlib.figure.Figure objects, not pyplot figures: nothing is registered globally, and a figure is
freed with its SvgFigure.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from typing import Any

MIN_FONT_PT = 9.0
REPORT_COLUMN_PX = 1144  # the STARD report's content width at a 1280-px window (max-width 1200 px less padding)
MAX_WIDTH_IN = 10.8  # 10.8 in = 778 pt = 1037 CSS px: fits the column, so the figure is not scaled down
PNG_DPI = 300

# Okabe–Ito, readable by colour-blind readers and in greyscale print
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
CLASS_COLOURS = {"normal": "#009E73", "osteopenia": "#E69F00", "osteoporosis": "#D55E00"}

STYLE: dict[str, Any] = {
    "svg.fonttype": "none",  # text stays <text>: selectable, searchable, sharp at any zoom
    "svg.hashsalt": "f2b-study",  # deterministic IDs
    "text.parse_math": False,  # a '$' in a centre's name is a '$'
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "Liberation Sans"],
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.5,
    "legend.title_fontsize": 9.5,
    "figure.titlesize": 11.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlepad": 6,
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "image.interpolation": "nearest",
}


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """The project's figure style for the duration of the block (matplotlib's own state is restored after)."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, layout: str | None = None,
               **subplots: Any) -> tuple[Any, Any]:
    """A standalone Figure (not pyplot's) and its axes; call inside ``figure_style()``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout=layout)
    return figure, figure.subplots(nrows, ncols, **subplots)


class SvgFigure(str):
    """Inline SVG text (use it as a str) that keeps its matplotlib figure to render a PNG for the exports."""

    figure: Any
    name: str
    tight: bool

    def __new__(cls, svg: str, figure: Any = None, name: str = "", tight: bool = True) -> SvgFigure:
        obj = super().__new__(cls, svg)
        obj.figure, obj.name, obj.tight = figure, name, tight
        return obj

    def png(self, dpi: int = PNG_DPI) -> bytes | None:
        """The figure as PNG (None when the figure is gone, e.g. an SVG read back from a file)."""
        if self.figure is None:
            return None
        return png_bytes(self.figure, dpi=dpi, tight=self.tight)


def png_bytes(figure: Any, dpi: int = PNG_DPI, tight: bool = True) -> bytes:
    buffer = io.BytesIO()
    with figure_style():
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None,
                       metadata={"Software": None}, facecolor="white")
    return buffer.getvalue()


def to_svg(figure: Any, prefix: str, *, tight: bool = True) -> SvgFigure:
    """The figure as an inline <svg> element: no XML prolog, no metadata, IDs prefixed with ``prefix`` (several
    SVGs share one HTML document), scaled with the page but never beyond its natural size."""
    buffer = io.StringIO()
    with figure_style():
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight" if tight else None)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    svg = re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"',
                 lambda m: f'<svg{m.group(1)} class="figure" data-width-pt="{m.group(2)}" '
                           f'style="max-width:{m.group(2)}pt;width:100%;height:auto"',
                 svg, count=1)
    return SvgFigure(svg.strip(), figure, prefix, tight)


def standalone_svg(svg: str) -> str:
    """An inline figure as an .svg file: XML prolog, and its natural size in points instead of the page styling."""
    match = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg)
    text = re.sub(r' class="figure" data-width-pt="[\d.]+" style="[^"]*"', "", str(svg), count=1)
    if match:
        text = text.replace("<svg", f'<svg width="{match.group(1)}pt" height="{match.group(2)}pt"', 1)
    return '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n' + text.strip() + "\n"


def svg_width_pt(svg: str) -> float | None:
    match = re.search(r'data-width-pt="([\d.]+)"', svg)
    return float(match.group(1)) if match else None


def svg_font_sizes(svg: str) -> list[float]:
    """Every font size of an SVG's text, in the figure's points (matplotlib writes them as px of a pt canvas)."""
    return [float(x) for x in re.findall(r"font-size:\s*([\d.]+)px", svg)] + \
        [float(x) for x in re.findall(r"font:\s*(?:[a-z]+\s+)*([\d.]+)px", svg)]


def shown_font_px(svg: str, column_px: float = REPORT_COLUMN_PX) -> float | None:
    """The smallest text of an inline figure as displayed in a column ``column_px`` wide, in CSS px (9 pt = 12 px):
    a figure wider than the column is scaled down with its text."""
    sizes, width = svg_font_sizes(svg), svg_width_pt(svg)
    if not sizes or width is None:
        return None
    scale = min(1.0, column_px / (width * 4 / 3))
    return min(sizes) * 4 / 3 * scale


def clip_text(text: str, width: int) -> str:
    """One line of at most ``width`` characters (textwrap.shorten drops a long first word entirely)."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
