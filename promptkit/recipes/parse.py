"""Reading a recipe: a TOML file, or a dict as TOML gives it, into a checked :class:`Recipe`.

:func:`load` finds the file (a path, or a shipped recipe's name) and parses it; :func:`from_dict`
refuses unknown keys (naming the table, the allowed keys and the closest one), builds each section
(which checks itself, :mod:`promptkit.recipes.schema`) and runs the whole-recipe checks
(:func:`promptkit.recipes.validate.validate`). Every error names the file and the table.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from .errors import RecipeError, in_section
from .recipe import Recipe
from .schema import (
    BackboneSection,
    DataSection,
    EvalSection,
    PromptSection,
    StageSection,
)
from .typecheck import check_value, unknown_key
from .validate import validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project runs on 3.11; tomli is the declared fallback
    import tomli as tomllib

RECIPE_DIR = Path(__file__).resolve().parents[2] / "recipes"
"""Where the shipped recipes live in a source checkout."""

_SECTIONS: dict[str, type] = {
    "backbone": BackboneSection,
    "data": DataSection,
    "pretrain": StageSection,
    "prompt": PromptSection,
    "eval": EvalSection,
}
_TOP_LEVEL = {"name": str, "description": str, "cggm": dict[str, Any] | None, "hooks": dict[str, Any] | None}


def load(path: str | Path, *, check_backbone: bool = True) -> Recipe:
    """Read and validate a TOML recipe.

    Imports nothing the recipe names (a factory, a hook output function): see
    :mod:`promptkit.recipes`.

    Args:
        path: a ``.toml`` file, or the name of a shipped recipe (``"mult-synth"``).
        check_backbone: check that ``[backbone] name`` is registered and its ``[backbone.config]``
            keys are its builder's. A ``[backbone] factory`` is checked for its form only
            (``"package.module:function"``) either way; it is imported when a run builds it.

    Raises:
        RecipeError: corrupt TOML (file and line), unknown key, wrong type, unknown backbone,
            a malformed factory string, a ``[hooks]`` table that is not a hook spec.
    """
    p = resolve_recipe_path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"recipe {p} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise RecipeError(f"recipe {p} is not UTF-8 text: {e}") from None
    if not raw:
        raise RecipeError(
            f"recipe {p} is empty; a recipe names at least its [backbone] and [data] (see recipes/mult-synth.toml)"
        )
    return from_dict(raw, source=str(p), check_backbone=check_backbone)


def resolve_recipe_path(path: str | Path) -> Path:
    """A recipe file by path, or a shipped recipe by name (``mult-synth``)."""
    p = Path(path)
    if p.is_file():
        return p
    if p.parent == Path("."):
        for cand in (RECIPE_DIR / p.name, RECIPE_DIR / f"{p.name}.toml"):
            if cand.is_file():
                return cand
    known = [r.stem for r in list_recipes()]
    raise RecipeError(f"recipe {str(path)!r} not found (not a file, not a shipped recipe; shipped: {known})")


def list_recipes() -> list[Path]:
    """The shipped recipe files, sorted by name."""
    return sorted(RECIPE_DIR.glob("*.toml")) if RECIPE_DIR.is_dir() else []


def from_dict(raw: dict[str, Any], *, source: str = "<dict>", check_backbone: bool = True) -> Recipe:
    """Validate a parsed recipe (a dict as TOML gives it) into a :class:`Recipe`."""
    where = f"recipe {source}"
    allowed = list(_SECTIONS) + list(_TOP_LEVEL)
    for key in raw:
        if key not in allowed:
            raise RecipeError(unknown_key(key, "the top level", allowed, where))
    kwargs: dict[str, Any] = {}
    for key, tp in _TOP_LEVEL.items():
        if key in raw:
            kwargs[key] = check_value(raw[key], tp, f"{where}: {key}")
    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise RecipeError(f"{where}: [{name}] must be a table, got {type(table).__name__}")
        if name == "prompt":
            _refuse_old_method_keys(table, where)
        kwargs[name] = _section(cls, table, name, where)
    recipe = Recipe(**kwargs, source=source)
    validate(recipe, where, check_backbone)
    return recipe


def _section(cls: type, table: dict[str, Any], name: str, where: str) -> Any:
    """The section ``cls`` of ``[name]`` from its table: unknown keys refused, then the section's
    own checks, their error given the file and the table."""
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in table:
        if key not in fields:
            raise RecipeError(unknown_key(key, f"[{name}]", fields, where))
    try:
        return cls(**table)
    except ValueError as e:
        raise RecipeError(f"{where}: {in_section(name, e)}") from None


def _refuse_old_method_keys(table: dict[str, Any], where: str) -> None:
    """``[prompt] controls`` and ``baselines`` are refused, naming the one ``methods`` list to write."""
    old = [k for k in ("controls", "baselines") if k in table]
    if not old:
        return
    named = [m for k in old for m in (table[k] if isinstance(table[k], list) else [table[k]])]
    from ..methods import default_methods  # the registry, for the message only

    methods = [*table.get("methods", default_methods()), *named]
    written = " and ".join(f"[prompt] {k} = {table[k]!r}" for k in old)
    raise RecipeError(f"{where}: {written}: these keys were replaced by one list of methods; write "
                      f"[prompt] methods = {json.dumps(methods)} instead")
