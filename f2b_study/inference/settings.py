"""[screening]: how `screen` runs and which operating points are pre-specified."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ScreeningSettings:
    """Pre-specified thresholds (set before the data are seen) make the pathway's operating points pre-specified
    rather than data-derived: refer to DXA when p_osteoporosis ≥ ``osteoporosis_threshold``, or when
    1 − p_normal ≥ ``low_bone_mass_threshold``."""

    osteoporosis_threshold: float | None = dataclasses.field(default=None, metadata={"min": 0.0, "max": 1.0})
    low_bone_mass_threshold: float | None = dataclasses.field(default=None, metadata={"min": 0.0, "max": 1.0})
    batch_size: int | None = dataclasses.field(default=None, metadata={"min": 1, "max": 65_536})
    bf16: bool = True
