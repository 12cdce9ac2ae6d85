"""Small helpers every command shares: help formatting, JSON output, warnings."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def add_command(sub: Any, name: str, *, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand parser whose --help ends with examples."""
    return sub.add_parser(name, help=help, description=description, epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively: JSON output never carries NaN."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(json_safe(value), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def warn(command: str, message: str) -> None:
    print(f"f2b-study {command}: warning: {message}", file=sys.stderr)
