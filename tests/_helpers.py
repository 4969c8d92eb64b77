"""Helpers the test files share.

* Tiny recipes: :func:`tiny_recipe_dict` (for ``promptkit.recipes.from_dict``) and
  :func:`tiny_recipe_toml` (the same recipe as a recipe file's text), :func:`write_recipe` (a
  ``.toml`` file of that text), and :data:`FOREIGN_HOOKS`, the ``[hooks]`` table of the test
  package's model (``_foreign_pkg.models``).
* Backbone checks: output shapes on MOSI-shaped inputs, gradients reaching modules, config round
  trips, an eval forward clearing the auxiliary losses. The inputs themselves come from
  ``_backbone_io``.

Tests that depend on a recipe's sizes (which split is which, how many batches) pass them at the
call site, so the numbers an assertion relies on stand in the test file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from _backbone_io import inputs

from backbones import create_backbone
from promptkit.hookspec import resolve_module

# --- tiny recipes ---------------------------------------------------------------------------------
MODALITIES = ("text", "audio", "vision")
SPLITS = ("train", "valid", "test")
TINY_MULT: dict[str, Any] = {"name": "mult", "config": {"d_model": 10, "num_heads": 2, "layers": 1}}


def tiny_recipe_dict(
    *,
    backbone: dict[str, Any] | None = TINY_MULT,
    sizes: Sequence[int] = (32, 16, 16),
    seq_lens: Sequence[int] = (4, 4, 4),
    data: dict[str, Any] | None = None,
    pretrain: dict[str, Any] | None = None,
    **tables: Any,
) -> dict[str, Any]:
    """A recipe on small synthetic data: ``backbone`` (default a one-layer MulT of width 10; None
    leaves the table out), ``[data]`` with ``sizes`` (train, valid, test) and ``seq_lens`` (text,
    audio, vision) plus the keys in ``data``, ``[pretrain]`` (default one epoch of batch 16), then
    ``tables`` as given (``name``, ``description``, ``prompt``, ``eval``, ``cggm``, ...)."""
    recipe: dict[str, Any] = {}
    if backbone is not None:
        recipe["backbone"] = copy.deepcopy(backbone)
    recipe["data"] = {
        "source": "synthetic",
        **(data or {}),
        "sizes": dict(zip(SPLITS, sizes)),
        "synthetic": {"seq_lens": dict(zip(MODALITIES, seq_lens))},
    }
    recipe["pretrain"] = {"epochs": 1, "batch_size": 16} if pretrain is None else dict(pretrain)
    return {**recipe, **copy.deepcopy(tables)}


def tiny_recipe_toml(**kwargs: Any) -> str:
    """:func:`tiny_recipe_dict` (same keywords) as the text of a recipe file; the keys of a table
    keep their order and its sub-tables follow them, so the text ends in the last table given
    (``[pretrain]`` when no more are): a line added at the end goes into it."""
    return to_toml(tiny_recipe_dict(**kwargs))


def to_toml(recipe: dict[str, Any]) -> str:
    """The TOML text of a nested dict, written as recipe files are: every top-level dict, and every
    dict that holds dicts, is a ``[table]`` after the plain keys; a dict of plain values below the
    top level is inline (``sizes = { train = 32, valid = 16, test = 16 }``)."""
    lines: list[str] = []

    def is_table(path: str, v: Any) -> bool:
        return isinstance(v, dict) and (not path or any(isinstance(x, dict) for x in v.values()))

    def table(path: str, d: dict[str, Any]) -> None:
        if path:
            lines.append(f"[{path}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in d.items() if not is_table(path, v))
        for k, v in d.items():
            if is_table(path, v):
                table(f"{path}.{k}" if path else k, v)

    table("", recipe)
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)  # int, float


BASELINE_SEQ: dict[str, int] = {"text": 4, "audio": 5, "vision": 6}
"""Sequence lengths of the baseline tests' tiny data (distinct, so a swapped modality shows)."""


def tiny_baseline_recipe(**prompt: Any) -> Any:
    """The baseline tests' recipe: 24/12/12 samples of :data:`BASELINE_SEQ` steps, a one-layer MulT
    of width 8, one epoch per stage at batch 12, eta 0.7; ``prompt`` adds to (or replaces keys of)
    ``[prompt]``."""
    from promptkit.recipes import from_dict

    return from_dict(tiny_recipe_dict(
        backbone={"name": "mult", "config": {"d_model": 8, "num_heads": 2, "layers": 1}}, sizes=(24, 12, 12),
        seq_lens=tuple(BASELINE_SEQ.values()), pretrain={"epochs": 1, "batch_size": 12},
        prompt={"epochs": 1, "batch_size": 12, "eta": 0.7, **prompt},
    ))


def fresh_backbone_file(recipe: Any, data: Any, directory: Path) -> Path:
    """The recipe's backbone for ``data``, freshly initialised (untrained), saved as
    ``directory/backbone.safetensors``: a stand-in for a pre-trained backbone file."""
    from promptkit.backbone_files import build_backbone, save_backbone

    path = Path(directory) / "backbone.safetensors"
    save_backbone(build_backbone(recipe, data), path, recipe.backbone.name)
    return path


def write_recipe(directory: Path, text: str, name: str = "recipe.toml") -> Path:
    """``text`` written to ``directory / name``; returns the path."""
    path = Path(directory) / name
    path.write_text(text)
    return path


# The [hooks] table of _foreign_pkg.models' model: its hooks() spelled out as a recipe writes it.
FOREIGN_HOOKS = """
[hooks]
trainable = ["head"]
[hooks.features]
text = "text"
audio = "audio"
vision = "vision"
[hooks.signal]
text = "proj.text"
audio = "proj.audio"
vision = "proj.vision"
[[hooks.type]]
path = "enc.text"
[[hooks.type]]
path = "enc.audio"
[[hooks.type]]
path = "enc.vision"
[hooks.encoders]
text = { output = "enc.text", layout = "BTD", params = ["proj.text", "enc.text"] }
audio = { output = "enc.audio", layout = "BTD", params = ["proj.audio", "enc.audio"] }
vision = { output = "enc.vision", layout = "BTD", params = ["proj.vision", "enc.vision"] }
"""

# --- backbone checks ------------------------------------------------------------------------------
# MOSI's step counts: aligned (every modality 50 steps) and unaligned (text 50, audio 375, vision 500)
ALIGNED_AND_UNALIGNED = pytest.mark.parametrize(
    "lengths", [(50, 50, 50), (50, 375, 500)], ids=["aligned", "unaligned"]
)
REGRESSION_AND_CLASSIFICATION = pytest.mark.parametrize("task,out_dim", [("regression", 1), ("classification", 4)])


def assert_output_shape(model: torch.nn.Module, lengths: Sequence[int], out_dim: int, batch: int = 3) -> None:
    """A forward on random inputs of these step counts gives finite ``(batch, out_dim)`` outputs."""
    out = model(**inputs(lengths, batch=batch))
    assert out.shape == (batch, out_dim)
    assert torch.isfinite(out).all()


def assert_gradients_reach(model: torch.nn.Module, paths: Sequence[str], nonzero: bool = True) -> None:
    """After a backward: every parameter of each module in ``paths`` has a finite gradient and,
    with ``nonzero``, some of each module's gradients are not all zero."""
    for path in paths:
        grads = [p.grad for p in resolve_module(model, path).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), path
        if nonzero:
            assert any(g.abs().sum() > 0 for g in grads), path


def assert_config_rebuilds(name: str, model: torch.nn.Module) -> None:
    """``create_backbone(name, **model.config())`` has the same config and, with ``model``'s
    weights, the same eval outputs (``model`` in eval mode)."""
    clone = create_backbone(name, **model.config()).eval()
    assert clone.config() == model.config()
    clone.load_state_dict(model.state_dict())
    x = inputs()
    torch.testing.assert_close(clone(**x), model(**x))


def assert_wrong_width_is_refused(model: torch.nn.Module, modality: str, width: int, expected: int) -> None:
    """Features of ``modality`` ``width`` wide are refused with a message naming the expected
    ``(B, T, expected)`` shape."""
    x = inputs()
    x[modality] = torch.randn(3, 50, width)
    with pytest.raises(ValueError, match=rf"{modality} features must have shape \(B, T, {expected}\)"):
        model(**x)


def assert_eval_forward_clears_auxiliary_loss(model: torch.nn.Module) -> None:
    """An eval-mode forward leaves no auxiliary loss and no loss parts behind."""
    model.eval()
    model(**inputs())
    assert model.auxiliary_loss() is None and model.loss_parts == {}
