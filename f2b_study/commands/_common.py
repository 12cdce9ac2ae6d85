"""Small helpers every command shares: help formatting, JSON output, warnings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from f2b_study.jsonutil import dumps, json_safe

__all__ = ["add_command", "json_safe", "print_json", "warn"]


def add_command(sub: Any, name: str, *, help: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand parser whose --help ends with examples."""
    return sub.add_parser(name, help=help, description=description, epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def print_json(value: Any) -> None:
    sys.stdout.write(dumps(value, indent=2) + "\n")


def warn(command: str, message: str) -> None:
    print(f"f2b-study {command}: warning: {message}", file=sys.stderr)


def load_study_args(sources: Any, args: argparse.Namespace, flags: dict[str, str]) -> Any:
    """The study's configuration for ``sources``, with each given flag (``{"epochs": "train.epochs"}``: argparse
    attribute -> section.key; argparse defaults are None, so only flags the user gave count) over the configs."""
    from f2b_study.config import load_study

    given: dict[str, dict[str, Any]] = {}
    for attribute, target in flags.items():
        value = getattr(args, attribute, None)
        if value is not None:
            section, key = target.split(".")
            given.setdefault(section, {})[key] = value
    return load_study(list(sources) if isinstance(sources, list | tuple) else [sources], given)


def cache_folder(args: argparse.Namespace) -> Any:
    """--cache, else the tool's one default face cache ($F2B_CACHE or .f2b-cache/faces)."""
    from f2b_study.faces.cache import default_cache_dir

    return args.cache if getattr(args, "cache", None) is not None else default_cache_dir()


def cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def split_list(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ["a", "b"]; None stays None (the flag was not given)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]
