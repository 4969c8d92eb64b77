"""The data a recipe describes: its ``DataBundle``, its pre-training data and the files it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..metrics import metric_kind
from .errors import RecipeError
from .recipe import Recipe
from .schema import DataSection


def load_recipe_data(recipe: Recipe, data_path: str | Path | None = None, **synthetic: Any):
    """The ``DataBundle`` a recipe's ``[data]`` section describes, checked against its metric.

    Synthetic data is generated from ``[data] seed``, ``aligned`` and ``sizes`` and the options of
    ``[data.synthetic]`` (which never holds a seed: :class:`~promptkit.recipes.DataSection`).

    Args:
        data_path: a data file that replaces ``[data] path`` (the CLI's ``--data``); it turns a
            synthetic recipe into a file one.
        **synthetic: generator options that override ``[data.synthetic]`` (e.g.
            ``domain="source"`` for the pre-training domain); synthetic data only.
    """
    from ..data import load_data

    d, where = recipe.data, f"recipe {recipe.source or '<dict>'}"
    if data_path is None and d.source == "synthetic":
        options = {"seed": d.seed, "aligned": d.aligned, "sizes": d.sizes, **d.synthetic, **synthetic}
        if d.modalities is not None:
            options["modalities"] = list(d.modalities)
        data = load_data("synthetic", **options)
    else:
        if synthetic:
            raise ValueError(f"synthetic generator options {sorted(synthetic)} were given for file data")
        path = data_path if data_path is not None else d.path
        if path is None:
            raise RecipeError(f"{where}: [data] source is 'file' but no path is given; pass --data PATH or set [data] path")
        task = metric_kind(d.metric).task
        data = load_data(str(path), format=d.format, task=task, **_file_options(d))
    want = metric_kind(d.metric).task
    out_dim = metric_kind(d.metric).out_dim
    if data.task != want or (out_dim is not None and data.out_dim != out_dim):
        raise RecipeError(
            f"{where}: [data] metric {d.metric!r} needs {want} data"
            + (f" with out_dim {out_dim}" if out_dim is not None else "")
            + f", but {data.description} is {data.task} with out_dim {data.out_dim}"
        )
    return data


def _file_options(d: DataSection) -> dict[str, Any]:
    """``[data] modalities``, ``max_bytes``, ``text`` and ``vocab_size`` as keywords of a file loader (left out when unset)."""
    out: dict[str, Any] = {}
    if d.modalities is not None:
        out["modalities"] = list(d.modalities)
    if d.max_bytes is not None:
        out["max_bytes"] = int(d.max_bytes)
    if d.text != "features":
        out["text"] = d.text
    if d.vocab_size is not None:
        out["vocab_size"] = int(d.vocab_size)
    return out


def load_pretrain_data(recipe: Recipe, target: Any, data_path: str | Path | None = None):
    """The data the backbone pre-trains on: ``target`` itself, or the source domain (see
    :class:`~promptkit.recipes.DataSection`), checked to agree with ``target`` on modalities and
    feature sizes.

    Raises:
        RecipeError: source and target disagree on the modality order or a feature size.
    """
    from ..data import load_data

    d, where = recipe.data, f"recipe {recipe.source or '<dict>'}"
    if d.pretrain_on == "target":
        return target
    if d.source == "synthetic" and data_path is None:
        source = load_recipe_data(recipe, None, domain="source", sizes=d.source_sizes)
    else:
        if d.pretrain_path is None:
            raise RecipeError(f"{where}: [data] pretrain_on = 'source' with file data needs [data] pretrain_path")
        task = metric_kind(d.metric).task
        source = load_data(str(d.pretrain_path), format=d.format, task=task, **_file_options(d))
    if tuple(source.modalities) != tuple(target.modalities):
        raise RecipeError(
            f"{where}: the pre-training data ({source.description}) has modalities {list(source.modalities)}, "
            f"the target ({target.description}) {list(target.modalities)}; they must be the same, in the same order"
        )
    if dict(source.feature_dims) != dict(target.feature_dims) and not recipe.prompt.reinit_projections:
        raise RecipeError(
            f"{where}: the pre-training data ({source.description}) has feature_dims {dict(source.feature_dims)}, "
            f"the target ({target.description}) {dict(target.feature_dims)}; a backbone fits only one "
            "([prompt] reinit_projections = true moves it into the target's feature space)"
        )
    if source.task != target.task or source.out_dim != target.out_dim:
        raise RecipeError(
            f"{where}: the pre-training data is {source.task} with out_dim {source.out_dim}, the target "
            f"{target.task} with out_dim {target.out_dim}"
        )
    return source


def resolve_recipe_file(recipe: Recipe, path: str) -> Path:
    """A path a recipe names (e.g. ``[pretrain] checkpoint``): absolute, else from the recipe's folder,
    else from the working directory."""
    p = Path(path)
    if p.is_absolute():
        return p
    if recipe.source and Path(recipe.source).is_file():
        beside = Path(recipe.source).resolve().parent / p
        if beside.exists():
            return beside
    return p
