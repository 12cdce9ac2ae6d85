"""A section another stage adds to the STARD report (the explainability work): plain data, so the stage that
builds it need not import the report."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class ReportSection:
    """A section added by another part of the tool (the explainability work): ``html`` is a trusted fragment built
    by our own code with escaping; ``figures`` are trusted inline SVGs (present.style.to_svg), named for the exports
    by ``figure_names`` (same order; unnamed ones get the section's name and a number); ``tables`` are
    present.tabular.Table objects, or plain {"caption", "columns", "rows"} dicts the template escapes. A section
    that ``contains_faces`` shows (and exports) its figures only when the report includes faces."""

    title: str
    html: str = ""
    figures: list[str] = dataclasses.field(default_factory=list)
    tables: list[Any] = dataclasses.field(default_factory=list)
    contains_faces: bool = False
    figure_names: list[str] = dataclasses.field(default_factory=list)
