"""A whole recipe: its sections as one dataclass tree, its hash and its hook spec."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RecipeError
from .schema import (
    BackboneSection,
    DataSection,
    EvalSection,
    PromptSection,
    StageSection,
)

if TYPE_CHECKING:
    from ..hookspec import HookSpec


def config_hash(d: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of a JSON-able dict with sorted keys."""
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class Recipe:
    """A whole recipe. ``source`` is the file it came from (not part of :meth:`to_dict`).

    ``hooks`` is the ``[hooks]`` table as written (validated at load); :meth:`hook_spec` parses it.
    """

    backbone: BackboneSection = field(default_factory=BackboneSection)
    data: DataSection = field(default_factory=DataSection)
    pretrain: StageSection = field(default_factory=StageSection)
    prompt: PromptSection = field(default_factory=PromptSection)
    eval: EvalSection = field(default_factory=EvalSection)
    cggm: dict[str, Any] | None = None
    hooks: dict[str, Any] | None = None
    name: str = ""
    description: str = ""
    source: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Every section as plain dicts (what :func:`promptkit.recipes.from_dict` reads back)."""
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def hash(self) -> str:
        """A short stable hash of :meth:`to_dict` (identifies a run's settings)."""
        return config_hash(self.to_dict())

    def hook_spec(self, *, resolve: bool = True) -> HookSpec | None:
        """The ``[hooks]`` table as a :class:`~promptkit.hookspec.HookSpec`, or None (the backbone's
        registered spec is used).

        Args:
            resolve: import an ``output = {call = "module:function"}`` (what a run does: the
                recipe's code runs). False keeps it as a :class:`~promptkit.hookspec.CallRef` and
                imports nothing (reading, validating, describing).

        Raises:
            RecipeError: with ``resolve``, an output function that cannot be imported.
        """
        if self.hooks is None:
            return None
        from ..hookspec import HookSpec

        spec = HookSpec.from_dict(copy.deepcopy(self.hooks))
        if not resolve:
            return spec
        try:
            return spec.resolved()
        except ValueError as e:
            raise RecipeError(f"recipe {self.source or '<dict>'}: [hooks] output: {e}") from None

    def folder(self) -> Path | None:
        """The folder of the recipe file, or None for a recipe not read from a file."""
        if self.source and Path(self.source).is_file():
            return Path(self.source).resolve().parent
        return None

    def replace(self, **sections: Any) -> Recipe:
        """A copy with whole sections replaced, e.g. ``recipe.replace(pretrain=new_stage)``."""
        return dataclasses.replace(self, **sections)
