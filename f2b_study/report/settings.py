"""[report]: how the study's report is titled and computed."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """``simulated_labels``: the reference standard is simulated (the demo): every report says so in a banner.
    ``include_faces``: allow identifiable face images in the private outputs (never in shareable reports).
    ``positive_control``: a column faces really carry (e.g. "sex"): `study` also trains the same model and recipe
    on it and reports the result as a pipeline check beside the index test (the demo uses it: its bone labels are
    simulated, so a newcomer can see the machinery learn something real), with at most
    ``positive_control_epochs`` epochs."""

    title: str | None = None
    simulated_labels: bool = False
    include_faces: bool = False
    bootstrap: int = dataclasses.field(default=2000, metadata={"min": 0, "max": 100_000})
    bootstrap_seed: int = dataclasses.field(default=42, metadata={"min": 0})
    subgroups: tuple[str, ...] = ("sex", "center", "age_band")
    positive_control: str | None = None
    positive_control_epochs: int = dataclasses.field(default=10, metadata={"min": 1, "max": 100_000})
