"""Values checked against their annotations, and the message for a key nothing takes.

:func:`check_value` is how every recipe value is type-checked (TOML types: ints widen to floats, a
float must be finite, a ``Literal`` names its choices); :func:`check_fields` runs it over a
section's dataclass fields, :func:`unknown_key` words the error for a misspelled key.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from typing import Any, Literal

from .errors import RecipeError


def check_value(value: Any, tp: Any, what: str) -> Any:
    """``value`` if it fits the type ``tp`` (ints widen to floats; dicts and lists are copied),
    else a RecipeError ``"<what> must be <type>, got <value>"``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        # TOML has no null (an optional key is left out); None comes only from Python dicts.
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return check_value(value, a, what)
            except RecipeError:
                pass
        finite = "a finite number" if isinstance(value, float) and not math.isfinite(value) else type_name(tp)
        raise RecipeError(f"{what} must be {finite}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{what} must be {type_name(tp)}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{what} must be a table, got {value!r} ({type(value).__name__})")
        vt = args[1] if args else Any
        return {k: v if vt is Any else check_value(v, vt, f"{what}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{what} must be {type_name(tp)}, got {value!r} ({type(value).__name__})")
        return [check_value(v, args[0], f"{what}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise RecipeError(f"{what} must be {type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is float and not math.isfinite(value):
        raise RecipeError(f"{what} must be a finite number, got {value!r}")
    return value


def type_name(tp: Any) -> str:
    """An annotation in words: ``"an integer"``, ``"one of 'adam', 'adamw'"``, ``"a list of a number"``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is dict:
        return "a table"
    if origin is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(section: Any) -> None:
    """Check every field of the dataclass instance ``section`` against its annotation, in place
    (ints widened to floats where a float is annotated).

    Raises:
        RecipeError: ``"<field> must be <type>, got <value>"`` (the caller adds file and table).
    """
    types_ = _field_types(type(section))
    for f in dataclasses.fields(section):
        setattr(section, f.name, check_value(getattr(section, f.name), types_[f.name], f.name))


def suggest(key: str, allowed: list[str]) -> str | None:
    """The closest allowed key (difflib), or one whose initials match (``learning_rate`` → ``lr``)."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return close[0]
    initials = "".join(w[0] for w in key.split("_") if w)
    return next((a for a in allowed if len(a) > 1 and a == initials), None)


def unknown_key(key: str, section: str, allowed: list[str], where: str) -> str:
    """``"<where>: unknown key 'k' in <section>; did you mean ...? (allowed: ...)"``."""
    close = suggest(key, allowed)
    hint = f"; did you mean {close!r}?" if close else ""
    return f"{where}: unknown key {key!r} in {section}{hint} (allowed: {', '.join(allowed)})"
