"""A sweep's grid: ``--set`` axes and ``--seeds`` parsed, expanded into cells, each cell's recipe.

A cell is one value per axis and one training seed; its directory name is readable and injective
(:attr:`SweepCell.name`). :func:`apply_overrides` gives the cell's recipe, checked like any recipe.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tomllib

from ..recipes import Recipe, RecipeError, from_dict

SEED_KEY = "prompt.seed"  # what a sweep's seeds set
_NAME_LIMIT = 200  # the readable part is cut here (the hash keeps the name unique), under the usual 255 bytes


class SweepError(ValueError):
    """A grid that cannot run: a bad ``--set`` or ``--seeds``, or a directory holding another sweep."""


@dataclass(frozen=True)
class SweepCell:
    """One run of a sweep: a value for every axis, and the training seed."""

    overrides: tuple[tuple[str, Any], ...]
    seed: int

    @property
    def label(self) -> str:
        """The readable part of :attr:`name`: ``prompt.eta=0.3,seed=1``, characters outside
        ``[\\w.=,+-]`` replaced by ``_`` (so two cells may share a label)."""
        parts = [f"{k}={literal(v)}" for k, v in self.overrides] + [f"seed={self.seed}"]
        return re.sub(r"[^\w.=,+-]", "_", ",".join(parts))

    @property
    def key(self) -> str:
        """The exact overrides and seed as canonical JSON, keys sorted: equal for equal cells only
        (``1``, ``1.0``, ``"1"`` and ``true`` all differ), whatever the order of the axes."""
        return json.dumps({"overrides": dict(self.overrides), "seed": self.seed},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def name(self) -> str:
        """The cell's directory name, ``<label>@<8 hex of sha256(key)>``: ``prompt.eta=0.3,seed=1@3f2a9c1d``."""
        return f"{self.label[:_NAME_LIMIT]}@{hashlib.sha256(self.key.encode()).hexdigest()[:8]}"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.overrides)


# --- the grid ---------------------------------------------------------------------------------
def parse_assignment(text: str) -> tuple[str, list[Any]]:
    """``"prompt.eta=0.1,0.3"`` → ``("prompt.eta", [0.1, 0.3])``; each value a TOML literal, a
    bare word that is not one (``data``) a string."""
    bad = re.search(r"[\x00-\x08\x0a-\x1f\x7f]", text)
    if bad:
        raise SweepError(f"--set {text!r}: a newline or other control character ({bad.group()!r} at position "
                         f"{bad.start()}) in the assignment; give KEY=V1,V2,... on one line")
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise SweepError(f"--set {text!r}: expected KEY=V1,V2,... (e.g. prompt.eta=0.1,0.3)")
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", key):
        raise SweepError(f"--set {text!r}: the key must be dotted, section.field (e.g. prompt.eta)")
    parsed = [_parse_value(v.strip(), text) for v in _split_values(values, text)]
    if len({json.dumps(v) for v in parsed}) != len(parsed):
        raise SweepError(f"--set {text!r}: a value is listed twice")
    return key, parsed


def _split_values(values: str, where: str) -> list[str]:
    """Split on commas outside quotes and brackets (``[1, 2],[3]`` is two values); a ``#`` outside
    quotes is refused (TOML would read the rest as a comment and drop it)."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(values):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            raise SweepError(f"--set {where!r}: '#' outside quotes would start a TOML comment and drop the rest "
                             f"of the value; quote a string that holds one")
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(values[start:i])
            start = i + 1
    return out + [values[start:]]


def _parse_value(raw: str, where: str) -> Any:
    if not raw:
        raise SweepError(f"--set {where!r}: an empty value")
    try:  # one line without a comment (both refused above): one TOML value, nothing dropped
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(r"[\w.+-]+", raw):
            return raw  # a bare word: a string
        raise SweepError(f"--set {where!r}: {raw!r} is not a TOML value") from None


def literal(value: Any) -> str:
    """A value as a cell label and a CSV cell show it: strings bare, the rest as JSON."""
    return json.dumps(value) if not isinstance(value, str) else value


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``"0-4"`` → ``[0, 1, 2, 3, 4]``; ``"0,2,7"`` and ``"0-2,9"`` too; a list of ints as given."""
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        seeds = []
        for part in text.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise SweepError(f"--seeds {text!r}: expected N, A-B or a comma list of them (e.g. 0-4)")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise SweepError(f"--seeds {text!r}: range {part} runs backwards")
            seeds += range(lo, hi + 1)
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r}: at least one seed, none twice")
    return seeds


def expand_grid(axes: Mapping[str, Sequence[Any]], seeds: Sequence[int]) -> list[SweepCell]:
    """Every combination of the axes' values (the first axis slowest), each for every seed.

    Raises:
        SweepError: an axis without values, or a ``prompt.seed`` axis (the seeds set ``[prompt] seed``
            of every cell, so the axis would be overridden: give those seeds as ``seeds``).
    """
    for key, values in axes.items():
        if not values:
            raise SweepError(f"axis {key!r} has no values")
    if SEED_KEY in axes:
        values = list(axes[SEED_KEY])
        shown = ",".join(literal(v) for v in values)
        hint = f"--seeds {shown}" if all(isinstance(v, int) and not isinstance(v, bool) for v in values) else "--seeds"
        raise SweepError(f"--set {SEED_KEY}={shown} conflicts with --seeds {','.join(map(str, seeds))}: both set "
                         f"[prompt] seed, and the seeds would override the axis in every cell; give the seeds once, "
                         f"as {hint}")
    keys = list(axes)
    cells = [SweepCell(tuple(zip(keys, combo)), int(seed))
             for combo in itertools.product(*(axes[k] for k in keys)) for seed in seeds]
    names: dict[str, SweepCell] = {}
    for c in cells:  # the hash makes names unique; two cells sharing one would share their results
        if names.setdefault(c.name, c) is not c:
            raise SweepError(f"cells {names[c.name].key} and {c.key} share the directory name {c.name!r}")
    return cells


def apply_overrides(recipe: Recipe, overrides: Mapping[str, Any], seed: int | None = None) -> Recipe:
    """``recipe`` with each dotted key set (and ``[prompt] seed`` = ``seed``), validated again as a
    whole recipe, so a wrong key or type is the recipe loader's clear error naming it."""
    raw = copy.deepcopy(recipe.to_dict())
    for key, value in {**overrides, **({"prompt.seed": seed} if seed is not None else {})}.items():
        node: dict[str, Any] = raw
        *path, last = key.split(".")
        for i, part in enumerate(path):
            if part not in node and i > 0:  # a table below a section, absent: it starts empty
                node[part] = {}
            if not isinstance(node.get(part), dict):
                raise RecipeError(f"sweep key {key!r}: {'.'.join(path[:i + 1])!r} is not a recipe table")
            node = node[part]
        node[last] = copy.deepcopy(value)
    raw = {k: v for k, v in raw.items() if v is not None}
    try:  # the source stays the file, so the recipe's relative paths resolve as before
        return from_dict(raw, source=recipe.source or "<dict>")
    except RecipeError as e:
        raise RecipeError(f"sweep cell {dict(overrides)}: {e}") from None


# --- running ----------------------------------------------------------------------------------
