"""Subgroup columns for the report's subgroup tables (docs/methods.md, Report: sex, centre, age band)."""

from __future__ import annotations

import math

import numpy as np

# Age bands in years: decades over the eligible ages (men > 50, postmenopausal women); bounds are [lo, hi).
AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<60", -math.inf, 60.0),
    ("60–69", 60.0, 70.0),
    ("70–79", 70.0, 80.0),
    ("≥80", 80.0, math.inf),
)
AGE_BAND_ORDER = tuple(name for name, _, _ in AGE_BANDS)
SUBGROUP_COLUMNS = ("sex", "center", "age_band")
LEVEL_ORDER = {"sex": ("F", "M"), "age_band": AGE_BAND_ORDER}


def age_band(age_years: np.ndarray) -> np.ndarray:
    """Band name per age (None where the age is missing): <60, 60–69, 70–79, ≥80 (69.5 is in 60–69)."""
    ages = np.asarray(age_years, dtype=np.float64)
    out = np.full(ages.shape, None, dtype=object)
    for name, lo, hi in AGE_BANDS:
        out[(ages >= lo) & (ages < hi)] = name
    return out


def ordered_levels(column: str, levels: list[str]) -> list[str]:
    preferred = [v for v in LEVEL_ORDER.get(column, ()) if v in levels]
    return preferred + sorted(v for v in levels if v not in preferred)
