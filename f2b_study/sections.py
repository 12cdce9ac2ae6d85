"""One validator for every configuration section: a frozen dataclass per section, checked by its type hints.

    parse_section(QCThresholds, {"max_yaw": 20}, source="cohorts/a.toml", section="qc") -> QCThresholds(...)
    resolve(TrainConfig, config_values, flag_values, source=..., section="train") -> Resolved(value, origins)

Supported field types: bool, int, float (an int is accepted), str, ``Literal[...]`` (the allowed words), ``X | None``,
``tuple[T, ...]`` / ``list[T]`` (TOML arrays), ``dict[str, Any]`` (TOML tables, checked by the owner). A field's
``metadata`` may carry ``min`` / ``max`` (inclusive) and ``help``. Unknown keys and wrong types are one-line input
errors naming the file, ``section.key``, the value and what was expected (exit code 2).

Precedence is flag > config > default; ``Resolved.origins`` says, per field, which one gave the value, so a run
record can state where each setting came from.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from f2b_study.errors import InputError

T = TypeVar("T")
DEFAULT, CONFIG, FLAG = "default", "config", "flag"


@dataclasses.dataclass(frozen=True)
class Resolved(Generic[T]):
    """A section's settings and, per field, where the value came from (default, config or flag)."""

    value: T
    origins: dict[str, str]

    def describe(self) -> dict[str, dict[str, Any]]:
        """{field: {"value": ..., "from": ...}} for run records."""
        return {name: {"value": _plain(getattr(self.value, name)), "from": origin}
                for name, origin in self.origins.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _describe_type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe_type(a) for a in inner) + (" (or leave it out)" if len(inner) < len(args) else "")
    if origin in (tuple, list):
        plural = {str: "strings", int: "whole numbers", float: "numbers", bool: "true/false values"}
        item = args[0] if args else None
        return f"a list of {plural.get(item, 'values')}" if item is not None else "a list"
    if origin is dict or hint is dict:
        return "a table of settings"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(hint, str(hint))


def _coerce(hint: Any, value: Any) -> tuple[bool, Any]:
    """(ok, converted value) for ``value`` against type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None
        for arg in args:
            if arg is type(None):
                continue
            ok, converted = _coerce(arg, value)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return (value in args and type(value) is type(next(a for a in args if a == value))), value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False, value
        item = args[0] if args else Any
        converted = []
        for element in value:
            ok, element = _coerce(item, element)
            if not ok:
                return False, value
            converted.append(element)
        return True, tuple(converted) if origin is tuple else converted
    if origin is dict or hint is dict:
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if hint is Path:
        return isinstance(value, str | Path), Path(value) if isinstance(value, str | Path) else value
    return isinstance(value, hint), value


def check_value(cls: type, name: str, value: Any, *, source: str | Path, section: str) -> Any:
    """``value`` converted to field ``name``'s type of section class ``cls``, or an InputError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    where = f"{section}.{name}" if section else name
    if name not in fields:
        known = ", ".join(sorted(f for f in fields if not f.startswith("_")))
        raise InputError.at(source, column=where, value=name, expected=f"a setting of [{section}]: {known}")
    ok, converted = _coerce(hints[name], value)
    if not ok:
        raise InputError.at(source, column=where, value=value, expected=_describe_type(hints[name]))
    meta = fields[name].metadata
    numbers = converted if isinstance(converted, list | tuple) else [converted]
    for number in numbers:
        if isinstance(number, int | float) and not isinstance(number, bool):
            low, high = meta.get("min"), meta.get("max")
            if (low is not None and number < low) or (high is not None and number > high):
                bounds = (f"from {low:g} to {high:g}" if low is not None and high is not None
                          else f"≥ {low:g}" if low is not None else f"≤ {high:g}")
                raise InputError.at(source, column=where, value=value, expected=f"{_describe_type(hints[name])} "
                                    f"{bounds}")
    return converted


def parse_section(cls: type[T], values: Mapping[str, Any] | None, *, source: str | Path, section: str) -> T:
    """An instance of the section dataclass ``cls`` from a TOML table (defaults for what it leaves out)."""
    return resolve(cls, values, None, source=source, section=section).value


def resolve(cls: type[T], config: Mapping[str, Any] | None, flags: Mapping[str, Any] | None, *,
            source: str | Path, section: str, flag_source: str = "command line") -> Resolved[T]:
    """Section ``cls`` from its defaults, then ``config`` (a TOML table), then ``flags`` (None = not given)."""
    if config is not None and not isinstance(config, Mapping):
        raise InputError.at(source, column=f"[{section}]", value=config, expected="a table of settings")
    kwargs: dict[str, Any] = {}
    origins = {f.name: DEFAULT for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    for key, value in (config or {}).items():
        kwargs[key] = check_value(cls, key, value, source=source, section=section)
        origins[key] = CONFIG
    for key, value in (flags or {}).items():
        if value is None:
            continue
        kwargs[key] = check_value(cls, key, value, source=flag_source, section=section)
        origins[key] = FLAG
    try:
        instance = cls(**kwargs)
    except (TypeError, ValueError) as error:  # a __post_init__ cross-check between fields
        raise InputError.at(source, column=f"[{section}]", value=None, show_value=False, expected=str(error)) from None
    return Resolved(instance, origins)


def to_mapping(instance: Any) -> dict[str, Any]:
    """A section instance as a plain TOML/JSON-able mapping (tuples as lists); round-trips through ``resolve``."""
    return {f.name: _plain(getattr(instance, f.name)) for f in dataclasses.fields(instance)
            if f.init and not f.name.startswith("_")}
