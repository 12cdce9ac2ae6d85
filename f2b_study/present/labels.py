"""Codes as words: what a reader sees instead of the data's codes ("F" -> "Female", "sex F" -> "Female")."""

from __future__ import annotations

from typing import Any

SUBGROUP_LABELS = {"sex": "Sex", "center": "Centre", "age_band": "Age band (years)", "split": "Split",
                   "bone_status": "Bone status"}
LEVEL_LABELS: dict[str, dict[str, str]] = {
    "sex": {"F": "Female", "M": "Male", "f": "Female", "m": "Male"},
    "split": {"train": "Training", "validation": "Validation", "test": "Test", "evaluated": "Evaluated"},
}


def column_label(column: str) -> str:
    return SUBGROUP_LABELS.get(column, column.replace("_", " "))


def level_label(column: str | None, level: Any) -> str:
    """A level of a grouping column as a word (unknown codes are shown as they are)."""
    text = "" if level is None else str(level)
    return LEVEL_LABELS.get(column or "", {}).get(text, text)


def subgroup_label(text: str) -> str:
    """Explain's subgroup names ("all", "sex F") as words ("All patients", "Female")."""
    if text == "all":
        return "All patients"
    column, _, level = text.partition(" ")
    if level and column in LEVEL_LABELS:
        return level_label(column, level)
    return text
