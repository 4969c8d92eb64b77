"""TOML recipes: one file says which backbone, which data and how each stage trains.

A recipe has the sections ``[backbone]``, ``[data]`` (with an optional ``[data.synthetic]``
table of generator options), ``[pretrain]``, ``[prompt]`` (with ``[prompt.prompter]``, the
``PrompterConfig`` keywords), ``[eval]`` and the optional tables ``[cggm]`` and ``[hooks]`` (the
backbone's hook spec, the schema of :meth:`promptkit.hookspec.HookSpec.from_dict`). Every key is
checked where it enters: an unknown key names the section, the allowed keys and the closest match;
a wrong type names the expected one; an unknown backbone lists the registered ones.

The package, by concern: :mod:`.schema` (the sections, each checking itself), :mod:`.recipe` (the
whole :class:`Recipe`), :mod:`.parse` (TOML to a Recipe), :mod:`.validate` (the checks across
sections and against the registries), :mod:`.data` (the data a recipe describes),
:mod:`.typecheck` and :mod:`.torch_compile` (value checks), :mod:`.errors` (:class:`RecipeError`).

Reading, validating and describing a recipe import nothing it names: a ``[backbone] factory`` and
a ``[hooks] output = {call = "module:function"}`` stay strings until a run builds the backbone
(:func:`promptkit.backbone_files.build_backbone`) or its hooks (:meth:`Recipe.hook_spec`), and
only then is their code imported and run - as with any script you run, run only recipes you trust.
A factory's ``[backbone.config]`` keywords are checked against its signature at that point
(:func:`check_backbone_config`).

Example::

    recipe = load("recipes/mult-synth.toml")
    recipe.pretrain.epochs, recipe.backbone.name, recipe.to_dict()
"""

from .data import load_pretrain_data, load_recipe_data, resolve_recipe_file
from .errors import RecipeError
from .parse import RECIPE_DIR, from_dict, list_recipes, load, resolve_recipe_path
from .recipe import Recipe, config_hash
from .schema import (
    BackboneSection,
    DataSection,
    EvalSection,
    PromptSection,
    StageSection,
)
from .torch_compile import check_compile_backend, compile_backend
from .validate import check_backbone_config

__all__ = [
    "RECIPE_DIR",
    "BackboneSection",
    "DataSection",
    "EvalSection",
    "PromptSection",
    "Recipe",
    "RecipeError",
    "StageSection",
    "check_backbone_config",
    "check_compile_backend",
    "compile_backend",
    "config_hash",
    "from_dict",
    "list_recipes",
    "load",
    "load_pretrain_data",
    "load_recipe_data",
    "resolve_recipe_file",
    "resolve_recipe_path",
]
