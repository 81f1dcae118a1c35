"""Typed configs filled from ``key=value`` options.

A component's ``Config`` is a dataclass. Declare fields with `param` to give
them a help text, a range or a fixed set of choices; `build_config` turns the
strings of ``--attack-opt budget=0.05`` into typed values and refuses an
unknown key, a badly typed value or a value out of range with one line that
names what is accepted. Every number must be finite: NaN fails every comparison,
so a range check alone would let ``nan`` through.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from typing import Any, Iterable

from recguard.errors import OptionError, RecguardError, did_you_mean


def param(default: Any, help: str = "", *, low: float | None = None, high: float | None = None,
          open_low: bool = False, open_high: bool = False, choices: Iterable[Any] | None = None):
    """A dataclass field with documentation and validation metadata."""
    meta = {"help": help, "bounds": ("(" if open_low else "[", low, high, ")" if open_high else "]"),
            "choices": tuple(choices) if choices is not None else None}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def parse_options(pairs: Iterable[str], what: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a pair without '=' is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise RecguardError(f"{what} option {pair!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def build_config(config_cls: type, overrides: dict[str, Any], what: str) -> Any:
    """An instance of ``config_cls`` with ``overrides`` (strings or typed values) applied."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in fields:
            accepted = ", ".join(fields) or "none"
            raise OptionError(f"unknown {what} option {key!r}{did_you_mean(key, fields)}; "
                              f"accepted: {accepted}", what, key)
        with _option(what, key):
            values[key] = coerce(raw, hints[key], f"{what} option {key}")
            check_field(fields[key], values[key], f"{what} option {key}")  # before __post_init__
    try:
        config = config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"invalid {what} options: {exc}", what) from None
    for f in dataclasses.fields(config_cls):
        with _option(what, f.name):
            check_field(f, getattr(config, f.name), f"{what} option {f.name}")
    return config


@contextlib.contextmanager
def _option(role: str, key: str):
    """Re-raise a `RecguardError` about one option as an `OptionError` that names it."""
    try:
        yield
    except OptionError:
        raise
    except RecguardError as exc:
        raise OptionError(str(exc), role, key) from None


def coerce(raw: Any, hint: Any, what: str) -> Any:
    """Convert a string to the type ``hint`` names (int, float, bool, str, Optional, tuple, list)."""
    if not isinstance(raw, str):
        return _check_type(raw, hint, what)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null", "") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for option in inner:
            try:
                return coerce(raw, option, what)
            except RecguardError as exc:
                errors.append(str(exc))
        raise RecguardError(errors[0])
    if origin is typing.Literal:
        if raw in args:
            return raw
        raise RecguardError(f"{what}: {raw!r} is not one of {', '.join(map(repr, args))}")
    if origin in (tuple, list):
        item_type = args[0] if args else str
        items = tuple(coerce(p.strip(), item_type, what) for p in raw.split(",") if p.strip())
        return items if origin is tuple else list(items)
    try:
        if hint is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is str or hint is Any:
            return raw
    except ValueError:
        raise RecguardError(f"{what}: expected {hint.__name__}, got {raw!r}") from None
    raise RecguardError(f"{what}: cannot parse a value of type {hint}")


def _check_type(value: Any, hint: Any, what: str) -> Any:
    """A typed value (from JSON, a record, code) of a plain type must be of that type; an
    int passes as a float. The items of a list or tuple are checked, the value is kept."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return value
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _check_type(value, option, what)
            except RecguardError as exc:
                errors.append(exc)
        raise errors[0]
    if origin in (tuple, list) and isinstance(value, (tuple, list)):
        for item in value:
            _check_type(item, (args or (Any,))[0], what)
        return value
    expected = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}.get(hint)
    if expected is None:
        return value
    if not isinstance(value, expected) or (hint is not bool and isinstance(value, bool)):
        raise RecguardError(f"{what}: expected {hint.__name__}, got {value!r}")
    return value


def check_field(f: dataclasses.Field, value: Any, what: str) -> None:
    meta = f.metadata
    choices = meta.get("choices")
    if choices and value not in choices:
        raise RecguardError(f"{what}: {value!r} is not one of {', '.join(map(repr, choices))}")
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
        check_finite(v, what)
    bounds = meta.get("bounds")
    if not bounds or value is None or isinstance(value, bool):
        return
    left, low, high, right = bounds
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        too_low = low is not None and (v <= low if left == "(" else v < low)
        too_high = high is not None and (v >= high if right == ")" else v > high)
        if too_low or too_high:
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            raise RecguardError(f"{what}: {v!r} is outside {left}{lo}, {hi}{right}")


def check_finite(value: Any, what: str) -> None:
    """The one rule for numbers: a float option or field is finite (no nan, inf, -inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RecguardError(f"{what}: {value!r} is not a finite number")


def describe_fields(config_cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of each field, for documentation and `recguard list`."""
    hints = typing.get_type_hints(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        hint = hints[f.name]
        out.append((f.name, getattr(hint, "__name__", str(hint)), default, f.metadata.get("help", "")))
    return out
