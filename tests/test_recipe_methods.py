"""``[prompt] methods``: one list of registered methods; the old ``controls``/``baselines`` keys are
refused with the list to write instead."""

from __future__ import annotations

import pytest
from _helpers import tiny_recipe_dict

from promptkit.recipes import RecipeError, from_dict


def _recipe(**prompt):
    return from_dict(tiny_recipe_dict(prompt={"epochs": 1, **prompt}))


def test_methods_default_to_the_prompts_alone():
    from promptkit.methods import default_methods

    assert _recipe().prompt.methods is None  # the recipe leaves it to the registry
    assert default_methods() == ["mplmm"]


def test_methods_keep_their_order():
    assert _recipe(methods=["head_only", "mplmm", "ms_mean"]).prompt.methods == ["head_only", "mplmm", "ms_mean"]


@pytest.mark.parametrize(
    "old, replacement",
    [
        ({"controls": ["head_only"]}, '[prompt] methods = ["mplmm", "head_only"]'),
        ({"baselines": ["ms_mean", "lb"]}, '[prompt] methods = ["mplmm", "ms_mean", "lb"]'),
        ({"controls": ["head_only", "full_finetune"], "baselines": ["lora"]},
         '[prompt] methods = ["mplmm", "head_only", "full_finetune", "lora"]'),
    ],
)
def test_old_method_keys_are_refused_with_the_list_to_write(old, replacement):
    with pytest.raises(RecipeError) as err:
        _recipe(**old)
    message = str(err.value)
    assert replacement in message
    for key in old:
        assert f"[prompt] {key} = " in message


def test_an_unknown_method_lists_the_registered_ones():
    with pytest.raises(RecipeError, match=r"unknown method 'lroa'; did you mean 'lora'\?") as err:
        _recipe(methods=["mplmm", "lroa"])
    for name in ("mplmm", "head_only", "full_finetune", "ms_mean", "lb", "lora", "mpmm", "mctn", "mmin"):
        assert name in str(err.value)
