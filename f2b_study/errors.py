"""The one error users see for bad input: a single line naming where and what, and exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class InputError(Exception):
    """Bad input a user can fix. The CLI prints it as one line and exits with code 2."""

    exit_code = 2

    @classmethod
    def at(
        cls,
        file: str | Path,
        *,
        expected: str,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
        show_value: bool = True,
    ) -> InputError:
        """Build the error from its parts: file, row (as a spreadsheet shows it, header = 1), column, value."""
        parts = [str(file)]
        if row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column '{column}'")
        where = ", ".join(parts)
        shown = "" if not show_value else f": value {_quote(value)}"
        return cls(f"{where}{shown}: expected {expected}")


def _quote(value: Any) -> str:
    if value is None:
        return "(empty)"
    text = str(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return repr(text)
