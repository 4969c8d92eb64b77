"""The reference every run scores: the frozen pre-trained backbone, missing inputs zero-filled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backbone_files import load_backbone
from ..evaluation.protocol import zero_filled_forward
from ..train.device import resolve_device
from .registry import TrainedMethod, register_method

NAME = "zero_filled"


@register_method(NAME, label="zero-filled frozen backbone", short="zero-fill", trains="nothing", reference=True,
                 rank=0)
def zero_filled(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
                **opts: Any) -> TrainedMethod:
    """Nothing trains: the backbone of ``backbone_file`` on zero-filled inputs."""
    bare = load_backbone(backbone_file, device=resolve_device(opts.get("device")), recipe=recipe)
    spec = hooks if hooks is not None else recipe.hook_spec()
    return TrainedMethod(name=NAME, forward=zero_filled_forward(bare, data.modalities, spec), trainable_params=0,
                         modules={"backbone": bare})
