"""How numbers read in every report: one place, so a table, its XLSX sheet and the console say the same thing.

- Negative numbers carry the Unicode minus (U+2212), never an ASCII hyphen; a value that rounds to zero shows no
  sign ("0.000", not "−0.000").
- Intervals read "0.707 to 0.831" (and "−0.547 to −0.144"): a dash between two negative numbers is unreadable.
- A degenerate interval (lower = upper, or one patient) is not an interval: it shows as "—" with a note.
- P-values: three decimals, "<0.001" below.
"""

from __future__ import annotations

import math
from typing import Any

MINUS = "\u2212"
DASH = "\u2014"  # an undefined value
SMALL_N = 10  # subgroups below this many patients are marked: their estimates are unstable

DEGENERATE_INTERVAL = ("no interval: the lower and upper limits are equal (every bootstrap replicate gave the same "
                       "value, e.g. one class or one patient)")
ONE_PATIENT = "no interval: one patient"


def finite(value: Any) -> float | None:
    """A float, or None for None, NaN and infinities."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def number(value: Any, digits: int = 3) -> str:
    """Fixed-point with ``digits`` decimals and a Unicode minus; "—" when undefined."""
    v = finite(value)
    if v is None:
        return DASH
    text = f"{v:.{digits}f}"
    if v > 0 and float(text) == 0 and digits > 0:
        return f"<{10 ** -digits:.{digits}f}"  # a positive value below the precision shown is not zero
    if text.startswith("-"):
        text = text[1:] if float(text[1:]) == 0 else MINUS + text[1:]
    return text


def integer(value: Any) -> str:
    v = finite(value)
    if v is None:
        return DASH
    return number(round(v), 0)


def p_value(p: Any) -> str:
    v = finite(p)
    if v is None:
        return DASH
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def percent(value: Any, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage ("12.5%")."""
    v = finite(value)
    return DASH if v is None else f"{number(100 * v, digits)}%"


def interval_note(ci: Any, n: int | None = None) -> str | None:
    """Why ``ci`` is not shown as an interval (None when it is a real one)."""
    if n is not None and n <= 1:
        return ONE_PATIENT
    if ci is None:
        return None
    lo, hi = finite(ci[0]), finite(ci[1])
    if lo is None or hi is None:
        return None
    return DEGENERATE_INTERVAL if lo == hi else None


def interval(ci: Any, digits: int = 3, n: int | None = None) -> str:
    """"lo to hi"; "—" for a degenerate interval (see ``interval_note``); "" when there is none."""
    if ci is None:
        return ""
    lo, hi = finite(ci[0]), finite(ci[1])
    if lo is None or hi is None:
        return ""
    if interval_note(ci, n):
        return DASH
    return f"{number(lo, digits)} to {number(hi, digits)}"


def decimals_for(values: list[Any], significant: int = 3, low: int = 3, high: int = 6) -> int:
    """Decimals that give the largest |value| ``significant`` significant digits, within [low, high]: one
    fixed-point precision for a whole table of small numbers (e.g. Shapley values of probabilities)."""
    magnitudes = [abs(v) for v in (finite(x) for x in values) if v is not None and v != 0]
    if not magnitudes:
        return low
    exponent = math.floor(math.log10(max(magnitudes)))
    return max(low, min(high, significant - 1 - exponent))
