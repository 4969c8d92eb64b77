"""Training state as checkpoint tensors and JSON: name prefixes, optimizer and scheduler state."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch


def add_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries with ``prefix`` put before each name (the inverse of :func:`take_prefix`)."""
    return {prefix + k: v for k, v in tensors.items()}


def take_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def optimizer_to_flat(state_dict: dict[str, Any], prefix: str = "optim.") -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors and JSON.

    Per-parameter tensors (Adam's ``exp_avg``, ``exp_avg_sq``, ``step``) become
    ``{prefix}{param_index}.{name}``; non-tensor per-parameter values and ``param_groups`` go into
    the returned JSON dict.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in state_dict["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(tensors: Mapping[str, torch.Tensor], meta: dict, prefix: str = "optim.") -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_flat`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in take_prefix(tensors, prefix).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def scheduler_to_json(scheduler: Any) -> dict[str, Any]:
    """``scheduler.state_dict()`` checked to be JSON (torch and timm schedulers are)."""
    sd = scheduler.state_dict()
    try:
        return json.loads(json.dumps(sd))
    except TypeError as e:
        raise TypeError(f"{type(scheduler).__name__}.state_dict() is not JSON-serialisable: {e}") from None
