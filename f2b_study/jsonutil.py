"""JSON for outputs: NaN/inf become null, numpy scalars Python numbers, tuples lists, paths strings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def json_safe(value: Any) -> Any:
    """The value with every non-finite float as None and numpy scalars as Python values, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, indent: int | None = 1) -> str:
    """Strict JSON text (never NaN) of ``value`` made JSON-safe."""
    return json.dumps(json_safe(value), indent=indent, ensure_ascii=False, allow_nan=False)
