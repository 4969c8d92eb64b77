"""Issue 24 item 3: reading, validating and describing a recipe import nothing it names.

On the old code ``promptkit.recipes.load(R)`` and ``promptkit data describe --recipe R`` imported
the ``[backbone] factory`` module (running its top-level code), and ``[hooks] output = {call =
"m:f"}`` was imported even with ``check_backbone=False``. Now both stay strings until a run builds
the backbone or its hooks, and a factory's ``[backbone.config]`` keywords are checked against its
signature then. The recipe's module leaves a marker file when it is imported.
"""

from __future__ import annotations

import itertools
import sys

import pytest
import torch
from _helpers import tiny_recipe_dict, to_toml, write_recipe

from promptkit.backbone_files import backbone_kwargs, build_backbone
from promptkit.cli import main
from promptkit.hookspec import CallRef
from promptkit.recipes import RecipeError, from_dict, load, load_recipe_data

_names = itertools.count()
MODULE = '''import pathlib
pathlib.Path({marker!r}).write_text("imported")
from torch import nn


def build(feature_dims, out_dim=1, width: int = 4):
    return nn.Linear(sum(feature_dims.values()), width)


def pick(out):
    return out
'''


@pytest.fixture
def recipe_with_code(tmp_path, monkeypatch):
    """``(recipe path, module name, marker)``: a recipe whose factory and hook output live in a module
    beside it (also on ``sys.path``, where an output function is imported from) that writes the
    marker when imported."""
    name = f"pk_marker_recipe_{next(_names)}"
    marker = tmp_path / "IMPORTED"
    (tmp_path / f"{name}.py").write_text(MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = tiny_recipe_dict(
        backbone={"factory": f"{name}:build", "config": {"width": 3}}, sizes=(8, 4, 4), seq_lens=(3, 3, 3),
        hooks={"trainable": [""], "output": {"call": f"{name}:pick"},
               "features": {"text": "text", "audio": "audio", "vision": "vision"}},
    )
    yield write_recipe(tmp_path, to_toml(raw)), name, marker
    sys.modules.pop(name, None)


def test_loading_and_validating_import_nothing(recipe_with_code):
    path, name, marker = recipe_with_code
    for check in (True, False):
        recipe = load(path, check_backbone=check)
        assert not marker.exists() and name not in sys.modules
        assert recipe.backbone.factory == f"{name}:build"
        assert recipe.hook_spec(resolve=False).output == CallRef(f"{name}:pick")
        from_dict(recipe.to_dict(), source=str(path), check_backbone=check)
    assert not marker.exists() and name not in sys.modules


def test_describing_imports_nothing(recipe_with_code, capsys):
    path, name, marker = recipe_with_code
    assert main(["data", "describe", "--recipe", str(path)]) == 0
    assert "splits" in capsys.readouterr().out
    assert not marker.exists() and name not in sys.modules


def test_a_run_imports_the_factory_and_the_output_function(recipe_with_code):
    path, name, marker = recipe_with_code
    recipe = load(path)
    data = load_recipe_data(recipe)
    assert not marker.exists()
    model = build_backbone(recipe, data)  # the run: the recipe's code runs now, as the README says
    assert marker.exists() and isinstance(model, torch.nn.Linear) and model.out_features == 3
    assert recipe.hook_spec().output is sys.modules[name].pick


def test_a_factorys_keywords_are_checked_by_its_signature_when_a_run_imports_it(recipe_with_code):
    path, name, marker = recipe_with_code
    path.write_text(path.read_text().replace("width = 3", "widht = 3"))
    recipe = load(path)  # nothing to check against without importing it
    assert not marker.exists()
    with pytest.raises(RecipeError, match=rf"recipe {path}: unknown key 'widht' in \[backbone.config\] of "
                                          rf"{name}:build; did you mean 'width'\?"):
        backbone_kwargs(recipe, load_recipe_data(recipe))
    path.write_text(path.read_text().replace("widht = 3", 'width = "3"'))
    recipe = load(path)
    with pytest.raises(RecipeError, match=r"\[backbone.config\] width must be an integer, got '3'"):
        build_backbone(recipe, load_recipe_data(recipe))


def test_an_output_function_that_does_not_import_is_named_when_a_run_asks():
    raw = tiny_recipe_dict(sizes=(8, 4, 4), hooks={"features": {"text": "text"},
                                                   "output": {"call": "pk_no_such_module_q:pick"}})
    recipe = from_dict(raw, source="r.toml")  # read: fine, nothing imported
    with pytest.raises(RecipeError, match=r"recipe r\.toml: \[hooks\] output: HookSpec\.output: cannot import the "
                                          r"output function 'pk_no_such_module_q:pick'"):
        recipe.hook_spec()
    with pytest.raises(RecipeError, match=r"\[hooks\]: HookSpec.output: \{'call': 'os:system\(1\)'\} must name a "
                                          r"function as 'package.module:function'"):
        from_dict({**raw, "hooks": {**raw["hooks"], "output": {"call": "os:system(1)"}}})
